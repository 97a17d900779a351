"""Show trace events to people: a terminal (colour, the slides' labels) or JSON.

The labels name each step as the lecture's slides do ("server greeting", "sender
command", …), so a live demo reads like the slides. On a terminal, lines are wrapped at
its width (a projector's 100 columns) and labels are bold: readable in colour and in
monochrome, never dim.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import unicodedata
from typing import IO, Iterable

from .sequence import Annotator, is_failure
from .trace import TraceEvent


def terminal_size(out: IO[str]) -> os.terminal_size | None:
    """The size of the terminal ``out`` writes to, or None (a file, a pipe, or a
    terminal that does not know its size)."""
    try:
        size = os.get_terminal_size(out.fileno()) if out.isatty() else None
    except (AttributeError, OSError, ValueError):
        return None
    return size if size and size.columns > 0 and size.lines > 0 else None


# C0 controls and DEL in caret notation (^[ for ESC), C1 controls as \x9b: an escape
# sequence from the network must not move the lecturer's cursor or recolour the screen.
_VISIBLE = {**{c: f"^{chr(c ^ 0x40)}" for c in (*range(32), 127)}, **{c: f"\\x{c:02x}" for c in range(128, 160)},
            ord("\t"): "    "}


def visible(line: str) -> str:
    """A protocol line as a terminal may show it: tabs as spaces, controls escaped."""
    return line.translate(_VISIBLE)


def _columns(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes (wide East Asian characters take two)."""
    return len(text) if text.isascii() else sum(_columns(ch) for ch in text)


def cut(text: str, width: int | None, indent: int) -> list[str]:
    """``text`` in pieces of at most ``width`` columns, every piece after the first
    indented by ``indent`` spaces. A protocol line is cut anywhere: it has no words to
    keep together, and what it says must stay exactly what went over the wire."""
    if width is None or columns(text) <= width:
        return [text]
    indent = min(indent, width // 2)
    pieces, piece, used = [], "", 0
    for ch in text:
        size = _columns(ch)
        if used + size > width:
            pieces.append(piece)
            piece, used = " " * indent, indent
        piece += ch
        used += size
    pieces.append(piece)
    return pieces


class TerminalRenderer:
    """Prints events as lines; coloured when writing to a terminal (and NO_COLOR unset).

    ``width``: wrap at this many columns (default: the terminal's; none for a file or a
    pipe). ``dialogue``: name only who speaks each line (a demo step is one dialogue),
    instead of the protocol and both ends (a live trace of many connections)."""

    COLOURS = {"C": "36", "S": "32", "*": "1", "error": "1;31", "dns": "35", "label": "1"}

    def __init__(self, out: IO[str] | None = None, *, colour: bool | None = None, annotate: bool = True,
                 width: int | None = None, dialogue: bool = False) -> None:
        self.out = out or sys.stdout
        if colour is None:
            colour = hasattr(self.out, "isatty") and self.out.isatty() and not os.environ.get("NO_COLOR")
        self.colour = colour
        self.annotator = Annotator() if annotate else None
        size = terminal_size(self.out)
        self.width = width if width is not None else (size.columns if size else None)
        self.dialogue = dialogue
        self.who_width = 18 if dialogue else 40
        self.label_column = 0  # where labels start, when they fit there (see fit)

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def _who(self, event: TraceEvent) -> str:
        if self.dialogue:
            return event.client if event.direction == "C" else event.server
        return f"{event.client} -> {event.server}" if event.direction == "C" else f"{event.server} -> {event.client}"

    def _head(self, event: TraceEvent) -> str:
        if self.dialogue:
            return f"  {self._who(event):{self.who_width}} "
        return f"  [{event.protocol:4}] {self._who(event):{self.who_width}} "

    def fit(self, events: Iterable[TraceEvent]) -> None:
        """Size the columns for ``events`` (a demo step): the speaker column as wide as its
        longest name, the labels in one column as far right as the lines allow."""
        events = [e for e in events if e.direction != "*"]
        if self.dialogue and events:
            self.who_width = max(len(self._who(e)) for e in events)
        if self.annotator is None or self.width is None:
            return
        labels, columns_at = Annotator(), []  # a scratch annotator: the real one keeps its state
        for e in events:
            label = labels(e)
            at = len(self._head(e)) + 3 + columns(visible(e.line)) + 3  # after "C: " and the line
            if label and at + len(f"<- {label}") <= self.width:
                columns_at.append(at)
        self.label_column = max(columns_at, default=0)

    def lines(self, event: TraceEvent) -> list[str]:
        """The event as the terminal's lines, each at most ``width`` columns."""
        if event.direction == "*":
            code = self.COLOURS["error"] if is_failure(event) else self.COLOURS["*"]
            return [self.paint(piece, code) for piece in cut(f"  ** {visible(event.line)}", self.width, 5)]
        colour = self.COLOURS["dns"] if event.protocol == "dns" else self.COLOURS[event.direction]
        if is_failure(event):
            colour = self.COLOURS["error"]
        head = self._head(event)
        plain = cut(head + f"{event.direction}: {visible(event.line)}", self.width, len(head) + 3)
        shown = [head + self.paint(plain[0][len(head):], colour)]
        shown += [piece[:len(head)] + self.paint(piece[len(head):], colour) for piece in plain[1:]]
        label = self.annotator(event) if self.annotator else ""
        if label:
            tail, end = f"<- {label}", columns(plain[-1])
            at = max(self.label_column, end + 3)
            if self.width is not None and at + len(tail) > self.width:
                at = end + 3
            if self.width is None or at + len(tail) <= self.width:
                shown[-1] += " " * (at - end) + self.paint(tail, self.COLOURS["label"])
            else:  # a line of its own, under the line's text if there is room
                indent = max(4, min(len(head), self.width - len(tail)))
                shown += [self.paint(piece, self.COLOURS["label"]) for piece in
                          textwrap.wrap(tail, self.width, initial_indent=" " * indent, subsequent_indent=" " * (indent + 3))]
        return shown

    def format(self, event: TraceEvent) -> str:
        return "\n".join(self.lines(event))

    def __call__(self, event: TraceEvent) -> None:
        print(self.format(event), file=self.out, flush=True)


def to_json_lines(events: list[TraceEvent]) -> str:
    """Events as JSON lines (grading feedback, logs)."""
    return "\n".join(json.dumps(e.to_json()) for e in events)
