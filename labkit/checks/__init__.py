"""Real-session probes shared by notebooks, grading and tests: one module per seam.

    from labkit import checks
    print(checks.send_mail.run(my_send_mail))       # a Report, one row per rule
    checks.send_mail.check(my_send_mail, ["helo-fallback"])   # CheckFailed if it fails

Each module has ``RULES`` (name, title, RFC section), ``run(impl, only=None)`` and
``check(impl, only=None)``. A failed row says the step, what was expected, what came
back, the transcript around it and the RFC rule (:mod:`.result`).
"""

import importlib

from .result import CheckFailed, Report, Result

SEAM_CHECKS = ("send_mail", "resolve_mx", "smtp_session", "received_header", "route", "deliver", "next_retry",
               "make_bounce", "pop3_session", "imap_session", "sendmail", "story")
__all__ = ["CheckFailed", "Report", "Result", *SEAM_CHECKS]


class _JudgedByTheGrader:
    """A check module in a notebook being graded: the grader runs the checks beside the
    notebook (``labkit.grade``), so here they only say so."""

    def __init__(self, name: str) -> None:
        self.__name__ = f"{__name__}.{name}"

    def run(self, *args: object, **kwargs: object) -> Report:
        report = Report(self.__name__.rpartition(".")[2])
        report.add(Result("judged by the grader, beside this notebook", "skip"))
        return report

    def check(self, *args: object, **kwargs: object) -> None:
        return None


def __getattr__(name: str):
    if name in SEAM_CHECKS:  # imported on first use: a check module may start a world
        from .. import graded

        if graded.active():
            return _JudgedByTheGrader(name)
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
