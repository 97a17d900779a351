"""Small helpers every rule uses to build its :class:`~labkit.checks.Result` row."""

from __future__ import annotations

from ..checks.result import TRANSCRIPT_CONTEXT
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


def said(reply: Reply | None) -> str:
    return reply.one_line() if reply is not None else "(no reply)"
