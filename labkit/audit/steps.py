"""Run a session's rules in order: a rule that breaks the session fails, and the rules
after it are reported as not checked (never silently missing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..checks.result import Result
from .probe import ProbeError
from .rows import excerpt, not_checked
from .target import Line


class Stop(Exception):
    """A step's row that ends the session: the later rules cannot be checked."""

    def __init__(self, row: Result, because: str) -> None:
        super().__init__(because)
        self.row, self.because = row, because


@dataclass
class Step:
    rule: str
    rfc: str
    run: Callable[[], Result]


def run_steps(steps: list[Step], transcript: list[Line]) -> list[Result]:
    rows: list[Result] = []
    for index, step in enumerate(steps):
        mark = len(transcript)
        try:
            rows.append(step.run())
            continue
        except Stop as stop:
            rows.append(stop.row)
            because = stop.because
        except ProbeError as error:
            rows.append(Result(step.rule, "fail", expected="the session to go on", got=str(error), rfc=step.rfc,
                               transcript=excerpt(transcript, mark)))
            because = f"the session broke at the step before ({error})"
        rows += [not_checked(later.rule, because, later.rfc) for later in steps[index + 1:]]
        break
    return rows
