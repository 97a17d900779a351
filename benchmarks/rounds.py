"""Interleaved rounds: labkit and its real peer (Postfix, Dovecot) measured turn about.

On a shared two-core machine other jobs come and go; measuring one server for a minute
and then the other would charge one of them for a neighbour's burst. So each round
measures both, in alternating order, and the ratio is taken per round: its min, median
and max say how solid a figure is (only gaps of 2x or more survive a noisy machine).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Figure:
    """One row of the table: a value per round for labkit and for the peer."""

    label: str
    unit: str  # of the values, e.g. "msg/s", "ms"
    higher_is_better: bool  # a rate (the ratio is labkit / peer) or a time (also labkit / peer)
    target: float | None = None  # the ratio to reach: >= for a rate, <= for a time
    peer: str = "peer"
    mine: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [m / t for m, t in zip(self.mine, self.theirs) if t > 0]

    def met(self) -> bool | None:
        ratios = self.ratios()
        if self.target is None or not ratios:
            return None
        median = statistics.median(ratios)
        return median >= self.target if self.higher_is_better else median <= self.target

    def line(self) -> str:
        mine = statistics.median(self.mine) if self.mine else float("nan")
        text = f"{self.label:44} labkit {_fmt(mine)} {self.unit:5}"
        ratios = self.ratios()
        if ratios:
            theirs = statistics.median(self.theirs)
            text += (f"  {self.peer} {_fmt(theirs)} {self.unit:5}  ratio {statistics.median(ratios):5.2f}"
                     f" ({min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} rounds)")
            if self.target is not None:
                sign = ">=" if self.higher_is_better else "<="
                text += f"  target {sign} {self.target:g}: {'OK' if self.met() else 'MISSED'}"
        return text


def _fmt(value: float) -> str:
    return f"{value:9.1f}" if value >= 10 else f"{value:9.3f}"


def interleave(rounds: int, measures: list[Callable[[], None]]) -> None:
    """Run every measure once a round, the order turned about each round."""
    for r in range(rounds):
        order = measures if r % 2 == 0 else list(reversed(measures))
        for measure in order:
            measure()
