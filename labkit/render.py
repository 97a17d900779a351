"""Show trace events to people: a terminal (colour, slide-style notes) or JSON.

The annotations name each SMTP step as the lecture's slides do ("server greeting",
"sender command", …), so a live demo reads like the slides.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO

from .sequence import Annotator
from .trace import TraceEvent

class TerminalRenderer:
    """Prints events as lines; coloured when writing to a terminal (and NO_COLOR unset)."""

    COLOURS = {"C": "36", "S": "32", "*": "33", "error": "31", "dns": "35", "note": "2"}

    def __init__(self, out: IO[str] | None = None, *, colour: bool | None = None, annotate: bool = True) -> None:
        self.out = out or sys.stdout
        if colour is None:
            colour = hasattr(self.out, "isatty") and self.out.isatty() and not os.environ.get("NO_COLOR")
        self.colour = colour
        self.annotator = Annotator() if annotate else None

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def format(self, event: TraceEvent) -> str:
        if event.direction == "*":
            return self.paint(f"  ** {event.line}", self.COLOURS["*"])
        if event.direction == "C":
            who, arrow = f"{event.client} -> {event.server}", "C:"
        else:
            who, arrow = f"{event.server} -> {event.client}", "S:"
        colour = self.COLOURS["dns"] if event.protocol == "dns" else self.COLOURS[event.direction]
        if event.direction == "S" and event.line[:1] in ("4", "5") and event.protocol == "smtp":
            colour = self.COLOURS["error"]
        if event.direction == "S" and event.line.startswith("-ERR"):
            colour = self.COLOURS["error"]
        note = self.annotator(event) if self.annotator else ""
        text = f"  [{event.protocol:4}] {who:40} {self.paint(arrow + ' ' + event.line, colour)}"
        if note:
            text += "   " + self.paint(f"<- {note}", self.COLOURS["note"])
        return text

    def __call__(self, event: TraceEvent) -> None:
        print(self.format(event), file=self.out, flush=True)


def to_json_lines(events: list[TraceEvent]) -> str:
    """Events as JSON lines (grading feedback, logs)."""
    return "\n".join(json.dumps(e.to_json()) for e in events)
