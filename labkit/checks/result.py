"""What a check says: a verdict per rule, in protocol terms.

Every probe in :mod:`labkit.checks` (and `labkit check`, and the grader) returns a
:class:`Report` of :class:`Result` rows. A failed row says which step failed, what was
expected, what came back, the transcript around it and the RFC rule, so a student (or a
sysadmin) can act on it without reading the check's code::

    report = checks.send_mail.run(my_send_mail)
    print(report)                 # one line per rule, failures in full
    report.assert_passed()        # in a notebook test cell: CheckFailed if any rule failed
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator, Literal

Status = Literal["pass", "fail", "warn", "skip", "unchecked"]
"""``unchecked``: a rule that could not run (a rule it needs failed first, time ran out):
shown, not earned, but not another failure."""
Line = tuple[str, str]
"""One transcript line: (``C`` client, ``S`` server or ``*`` a note, text)."""

TRANSCRIPT_CONTEXT = 12  # lines shown before the failing step, and a few after
MARKS = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "SKIP", "unchecked": "----"}


@dataclass
class Result:
    """The verdict on one rule."""

    rule: str  # what was checked, in a student's words: "EHLO falls back to HELO"
    status: Status
    step: str = ""  # where it went wrong: "RCPT TO:<carol@careful.com>"
    expected: str = ""
    got: str = ""
    rfc: str = ""  # "RFC 5321 §4.1.1.1"
    hint: str = ""  # the common mistake this looks like, and what to do
    transcript: list[Line] = field(default_factory=list)
    points: float = 1.0  # weight in the score
    info: str = ""  # what was found, shown even on a pass: "EHLO extensions: PIPELINING SIZE …"

    @property
    def passed(self) -> bool:
        return self.status not in ("fail", "unchecked")

    def text(self) -> str:
        """The row as plain text: one line when it passed, the whole story when not."""
        mark = MARKS[self.status]
        head = f"[{mark}] {self.rule}" + (f": {self.info}" if self.info else "")
        head += f"  ({self.rfc})" if self.rfc and self.status != "pass" else ""
        if self.status == "pass":
            return head
        lines = [head]
        for label, value in (("step", self.step), ("expected", self.expected), ("got", self.got), ("hint", self.hint)):
            if value:
                lines.append(f"    {label + ':':9} {_indent(value, 15)}")
        if self.transcript:
            lines.append("    transcript:")
            lines += [f"      {d}: {text}" for d, text in self.transcript]
        return "\n".join(lines)


def _indent(text: str, width: int) -> str:
    return text.replace("\n", "\n" + " " * width)


@dataclass
class Report:
    """All the rows of one check run (one seam, one mail setup)."""

    title: str
    results: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> Result:
        self.results.append(result)
        return result

    def extend(self, results: Iterable[Result]) -> None:
        self.results.extend(results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def score(self) -> float:
        return sum(r.points for r in self.results if r.status in ("pass", "warn"))

    @property
    def max_score(self) -> float:
        return sum(r.points for r in self.results if r.status != "skip")

    def result(self, rule: str) -> Result:
        """The row for ``rule`` (KeyError names the rules there are)."""
        for r in self.results:
            if r.rule == rule:
                return r
        raise KeyError(f"no rule {rule!r} in {self.title!r}; rules: {', '.join(r.rule for r in self.results)}")

    def summary(self) -> str:
        counts = {s: sum(1 for r in self.results if r.status == s) for s in MARKS}
        shown = ", ".join(f"{n} {'not checked' if s == 'unchecked' else s}" for s, n in counts.items() if n)
        return f"{self.title}: {shown or 'nothing checked'} (score {self.score:g}/{self.max_score:g})"

    def __str__(self) -> str:
        return "\n".join([self.summary(), *(r.text() for r in self.results)])

    __repr__ = __str__  # a notebook cell that ends with a check shows the rows, not a dataclass

    def _repr_html_(self) -> str:  # Jupyter shows this
        rows = []
        colours = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "skip": "#6e7781", "unchecked": "#6e7781"}
        for r in self.results:
            detail = "" if r.status == "pass" else f"<pre style='margin:2px 0 6px 1.5em'>{html.escape(r.text())}</pre>"
            info = f": {html.escape(r.info)}" if r.info and r.status == "pass" else ""
            rows.append(f"<div><b style='color:{colours[r.status]}'>{r.status.upper()}</b> {html.escape(r.rule)}"
                        f"{info}{detail}</div>")
        return f"<div><b>{html.escape(self.summary())}</b>{''.join(rows)}</div>"

    def to_json(self) -> dict:
        return {"title": self.title, "score": self.score, "max_score": self.max_score, "passed": self.passed,
                "results": [asdict(r) for r in self.results]}

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    def raise_for_failures(self) -> "Report":
        """Raise :class:`CheckFailed` (an AssertionError, so test cells fail) if any
        rule failed; its message is the report. Returns the report otherwise."""
        if not self.passed:
            raise CheckFailed(self)
        return self

    def assert_passed(self) -> None:
        """For a test cell: raise :class:`CheckFailed` if a rule failed, else show the
        rows. Returns nothing, so the cell has no result value (nbgrader would read
        a test cell's result as partial credit)."""
        self.raise_for_failures()
        _show(self)


def _show(report: "Report") -> None:
    """Display in a notebook (HTML), print elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is not None and get_ipython() is not None:
        display(report)
    else:
        print(report)


class CheckFailed(AssertionError):
    """A check found a broken rule; ``report`` has the rows, the message shows them."""

    def __init__(self, report: Report) -> None:
        self.report = report
        failed = [r.text() for r in report.failures]
        super().__init__("\n".join([report.summary(), *failed]))

    def _render_traceback_(self) -> list[str]:
        """What IPython (a notebook cell) shows instead of a Python traceback: the
        broken rules in protocol terms, not the check's own frames."""
        lines = str(self).splitlines()
        return [f"CheckFailed: {lines[0]}", *lines[1:]]
