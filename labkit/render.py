"""Show trace events to people: a terminal (colour, slide-style notes) or JSON.

The annotations name each SMTP step as the lecture's slides do ("server greeting",
"sender command", …), so a live demo reads like the slides.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO

from .trace import TraceEvent

_SMTP_COMMANDS = {
    "HELO": "client greeting",
    "EHLO": "client greeting (extended SMTP)",
    "AUTH": "client logs in",
    "MAIL": "sender command",
    "RCPT": "recipient command",
    "DATA": "start of message",
    "QUIT": "quit",
    "RSET": "reset: forget this transaction",
}
_POP3_COMMANDS = {"USER": "user name", "PASS": "password", "STAT": "how many messages?", "LIST": "list messages",
                  "RETR": "retrieve a message", "DELE": "mark for deletion", "QUIT": "quit (deletions happen now)"}
_IMAP_COMMANDS = {"LOGIN": "log in", "SELECT": "open a folder", "EXAMINE": "open a folder read-only",
                  "FETCH": "fetch message data", "UID": "by unique id", "SEARCH": "search", "IDLE": "wait for new mail",
                  "LOGOUT": "log out", "CAPABILITY": "what can you do?", "LIST": "list folders", "STORE": "set flags"}


class Annotator:
    """Names each line's role in its dialogue; remembers per-session state (in DATA?)."""

    def __init__(self) -> None:
        self._state: dict[str, str] = {}

    def __call__(self, event: TraceEvent) -> str:
        state = self._state.get(event.session, "")
        line = event.line
        if event.protocol == "smtp":
            if event.direction == "C":
                if state == "data":
                    if line == ".":
                        self._state[event.session] = "end"
                        return "end of message"
                    return ""
                verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "DATA":
                    self._state[event.session] = "data?"
                return _SMTP_COMMANDS.get(verb, "")
            code = line[:3]
            if state == "" and code == "220":
                self._state[event.session] = "greeted"
                return "server greeting"
            if state == "data?" and code == "354":
                self._state[event.session] = "data"
                return "go ahead: send the message, end with a lone '.'"
            if state == "end":
                self._state[event.session] = "greeted"
                return "acknowledgement of end: the message is queued" if code == "250" else "message refused"
            if code == "221":
                return "server says goodbye"
            return ""
        if event.direction == "C" and event.protocol in ("pop3", "imap"):
            words = line.split()
            verb = (words[0] if event.protocol == "pop3" else (words[1] if len(words) > 1 else "")).upper()
            table = _POP3_COMMANDS if event.protocol == "pop3" else _IMAP_COMMANDS
            return table.get(verb, "")
        return ""


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
