"""Run a session's rules in order: a rule that breaks the session fails, and the rules
after it are reported as not checked because of it (never silently missing, never a
second failure); a wait cut short by the time limit makes its rule and the later ones
"not checked (the time limit ran out)"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..checks.result import Result
from .probe import ProbeError
from .rows import excerpt
from .rubric import Rule, after, time_up
from .target import Line, Target, TimeUp


class Stop(Exception):
    """A step's row that ends the session: the later rules cannot be checked."""

    def __init__(self, row: Result) -> None:
        super().__init__(row.got)
        self.row = row


@dataclass
class Step:
    rule: Rule
    run: Callable[[], Result]
    expected: str = "the session to go on"  # what the step waited for, if the session breaks there
    hint: str = ""
    step: str = ""


def run_steps(steps: list[Step], transcript: list[Line], target: Target) -> list[Result]:
    rows: list[Result] = []
    for index, step in enumerate(steps):
        mark = len(transcript)
        later = steps[index + 1:]
        try:
            rows.append(step.run())
            continue
        except Stop as stop:
            rows.append(stop.row)
            rows += [after(s.rule, step.rule) for s in later]
        except (TimeUp, ProbeError) as error:
            if isinstance(error, TimeUp) or target.expired():
                rows += [time_up(s.rule) for s in steps[index:]]
            else:
                rows.append(Result(step.rule.title, "fail", step=step.step, expected=step.expected, got=str(error),
                                   rfc=step.rule.rfc, transcript=excerpt(transcript, mark), hint=step.hint))
                rows += [after(s.rule, step.rule) for s in later]
        break
    return rows
