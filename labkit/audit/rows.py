"""Small helpers every rule uses to build its :class:`~labkit.checks.Result` row."""

from __future__ import annotations

from ..checks.result import TRANSCRIPT_CONTEXT, Result
from ..smtp.client import Reply
from .target import Line

AFTER = 4  # transcript lines shown after the step that went wrong


def excerpt(transcript: list[Line], start: int = 0, end: int | None = None) -> list[Line]:
    """The lines of one step (``start`` to ``end``), with a little context before;
    a long step keeps its first lines and its last ones."""
    end = len(transcript) if end is None else end
    lines = transcript[max(0, start - 2):end]
    if len(lines) > TRANSCRIPT_CONTEXT + AFTER:
        lines = lines[:AFTER] + [("*", "…")] + lines[-TRANSCRIPT_CONTEXT:]
    return list(lines)


def not_checked(rule: str, because: str, rfc: str = "") -> Result:
    """A rule that could not be checked because something it needs failed first: it
    counts as failed (a setup that cannot be probed does not get the points)."""
    return Result(rule, "fail", got=f"not checked: {because}", rfc=rfc)


def skipped(rule: str, because: str) -> Result:
    """A rule that does not apply here (no --user, no POP3 offered): no points either way."""
    return Result(rule, "skip", got=because)


def said(reply: Reply | None) -> str:
    return reply.one_line() if reply is not None else "(no reply)"
