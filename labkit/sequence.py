"""The trace as the lecture draws it: each line's label on the slides, and the rows and
lanes of a sequence diagram. Sans-IO and incremental, so every drawing of a trace (the
terminal, a notebook's SVG, the live lecture page) says the same thing::

    diagram = Sequencer()
    for event in world.tracer.events():
        row = diagram.feed(event)      # None, a new Row, or the last Row grown by a line

The labels name each step as the lecture's slides do ("server greeting", "sender
command", ...). A row is one arrow (consecutive lines one way on one connection: a
multi-line reply, or a whole message, is one arrow) or one note (queued, delivered,
deferred, ...); whatever went through a student's part carries ``seam``.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

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
                  "RETR": "retrieve a message", "DELE": "mark for deletion", "QUIT": "quit (deletions happen now)",
                  "UIDL": "unique ids: which are new?", "TOP": "header and first lines", "RSET": "unmark deletions",
                  "CAPA": "what can you do?"}
_IMAP_COMMANDS = {"LOGIN": "log in", "SELECT": "open a folder", "EXAMINE": "open a folder read-only",
                  "FETCH": "fetch message data", "UID": "by unique id", "SEARCH": "search", "IDLE": "wait for new mail",
                  "LOGOUT": "log out", "CAPABILITY": "what can you do?", "LIST": "list folders", "STORE": "set flags",
                  "EXPUNGE": "remove the \\Deleted", "CLOSE": "close the folder (and expunge)",
                  "NOOP": "anything new?"}
_DNS_QUESTIONS = {"MX": "which hosts receive its mail? (MX)", "A": "its address? (A)",
                  "AAAA": "its IPv6 address? (AAAA)", "CNAME": "is it another name's alias? (CNAME)"}
_DNS_ANSWERS = {"MX": "its mail exchanger", "A": "the address", "AAAA": "the IPv6 address",
                "CNAME": "an alias: ask again for its target", "NODATA": "no record of that type",
                "NXDOMAIN": "no such name", "SERVFAIL": "the server failed: try again later",
                "REFUSED": "not this server's zone"}
_DNS_FAILURES = ("NXDOMAIN", "SERVFAIL", "REFUSED", "FORMERR", "NOTIMP")

#: The notes a diagram shows, besides the protocol lines.
NOTE_KINDS = ("queued", "delivered", "deferred", "failed", "dropped", "discarded", "seam-error", "seam-call",
              "behaviour", "fault", "mx", "unreachable")
RESOLVER = "resolver at {}"  # a DNS client no MTA asked through: a notebook's dnspython, dig, ...


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
                return "go ahead; end with a lone '.'"
            if state == "end":
                self._state[event.session] = "greeted"
                return "acknowledgement of end: queued" if code == "250" else "message refused"
            if code == "221":
                return "server says goodbye"
            return ""
        if event.protocol == "dns":
            words = line.split()  # "brilliant.com. IN MX", "brilliant.com. 300 IN MX 10 smtp...", "NXDOMAIN"
            if event.direction == "C":
                return _DNS_QUESTIONS.get(words[-1], "") if len(words) == 3 else ""
            return _DNS_ANSWERS.get(words[3] if len(words) > 4 and words[2] == "IN" else line, "")
        if event.direction == "C" and event.protocol in ("pop3", "imap"):
            words = line.split()
            verb = (words[0] if event.protocol == "pop3" else (words[1] if len(words) > 1 else "")).upper()
            table = _POP3_COMMANDS if event.protocol == "pop3" else _IMAP_COMMANDS
            return table.get(verb, "")
        return ""


def is_failure(event: TraceEvent) -> bool:
    """A refusal or a failure: a 4xx/5xx SMTP reply, -ERR, an IMAP NO/BAD, a failed DNS
    answer, or a note that something did not go through."""
    if event.direction == "*":
        return event.kind in ("deferred", "failed", "dropped", "seam-error")
    if event.direction != "S":
        return False
    line = event.line
    if event.protocol == "smtp":
        return line[:1] in ("4", "5")
    if event.protocol == "pop3":
        return line.startswith("-ERR")
    if event.protocol == "imap":
        words = line.split(maxsplit=2)
        return len(words) > 1 and words[0] != "*" and words[1].upper() in ("NO", "BAD")
    return event.protocol == "dns" and line in _DNS_FAILURES


def note_text(e: TraceEvent) -> str:
    """A note as a diagram shows it: short, the queue id, the recipient, when it retries."""
    rcpt = e.data.get("recipient")
    if e.kind == "queued":
        return f"queued {e.data.get('queue_id', '')}"
    if e.kind == "delivered":
        return f"delivered to <{rcpt}>" + (" (Maildir)" if e.data.get("detail", "").startswith("maildir") else "")
    if e.kind == "deferred":
        retry = e.data.get("retry_in")
        return f"deferred <{rcpt}>" + (f", retry in {retry:g}s" if isinstance(retry, (int, float)) else "")
    if e.kind == "failed":
        return f"could not deliver to <{rcpt}>"
    if e.kind in ("seam-error", "seam-call"):
        return f"your {e.data.get('seam')} " + ("failed" if e.kind == "seam-error" else "ran")
    if e.kind == "mx":
        return "MX: " + ", ".join(e.data.get("hops", ())) + (" (your resolve_mx)" if e.seam else "")
    if e.kind == "unreachable":
        return f"{e.server} [{e.data.get('address', '')}] does not answer: next MX"
    return e.line


def drawn(event: TraceEvent) -> bool:
    """Whether a diagram shows this event: protocol lines and the notes of NOTE_KINDS."""
    return event.direction in ("C", "S") or event.kind in NOTE_KINDS


_row_ids = itertools.count(1)


@dataclass
class Row:
    """One arrow or one note of the diagram."""

    event: TraceEvent  # its first event
    source: str  # the lane an arrow leaves (a note's lane)
    target: str  # the lane it points to (a note: the same)
    count: int = 1  # protocol lines in this arrow
    labels: list[str] = field(default_factory=list)  # the slides' labels of its lines
    id: int = field(default_factory=lambda: next(_row_ids))

    @property
    def is_note(self) -> bool:
        return self.event.direction == "*"

    @property
    def text(self) -> str:
        if self.is_note:
            return note_text(self.event)
        return self.event.line + (f" … (+{self.count - 1} lines)" if self.count > 1 else "")

    @property
    def label(self) -> str:
        return "; ".join(self.labels)

    @property
    def failure(self) -> bool:
        return is_failure(self.event)

    def to_json(self) -> dict[str, Any]:
        e = self.event
        if self.is_note:  # its host (an unreachable MX: the MTA and the MX)
            lanes = list(dict.fromkeys((self.source, self.target)))
        else:  # client first: lanes appear in the order hosts take part
            lanes = [self.target, self.source] if e.direction == "S" else [self.source, self.target]
        return {"id": self.id, "note": self.is_note, "from": self.source, "to": self.target, "lanes": lanes,
                "text": self.text,
                "label": self.label, "protocol": e.protocol, "kind": e.kind, "student": bool(e.seam),
                "failure": self.failure, "detail": e.line if self.is_note else "", "time": e.time}


class Lanes:
    """One lane per host, in the order hosts first take part; ``names`` renames a
    client's address ("1.2.3.100" -> "Albert's PC")."""

    def __init__(self, names: dict[str, str] | None = None, order: list[str] | None = None) -> None:
        self.names = names or {}
        self.order: list[str] = list(order or [])

    def name(self, who: str) -> str:
        return self.names.get(who, who)

    def add(self, *people: str) -> list[str]:
        """Give each of ``people`` a lane if it has none; returns the new lanes."""
        new = [p for p in dict.fromkeys(people) if p and p not in self.order]
        self.order.extend(new)
        return new

    def ends(self, e: TraceEvent) -> tuple[str, str]:
        """Where an event's arrow leaves and arrives (a note: the host it is about, twice)."""
        client, server = self.name(e.client), self.name(e.server)
        if e.kind == "unreachable":  # a note drawn as the connection nobody answered
            return client, server
        if e.direction == "*":
            at = server or client
            return at, at
        return (client, server) if e.direction == "C" else (server, client)


class Sequencer:
    """Turns events, in order, into diagram rows (see the module's docstring)."""

    def __init__(self, names: dict[str, str] | None = None, lanes: list[str] | None = None) -> None:
        self.lanes = Lanes(names, lanes)
        self.annotate = Annotator()
        self.last: Row | None = None
        self.asking, self.seam = "", ""  # the MTA whose MX lookup is under way (through a student's part?)

    def credit(self, e: TraceEvent) -> TraceEvent:
        """``e``, a DNS line credited to the MTA that asked (between its "lookup" note and
        the outcome that ended it), and to a student's resolve_mx when it asked (the note's
        seam); any other query is its resolver's own (a notebook's dnspython, dig), named
        for the address it came from."""
        if e.kind == "lookup":
            self.asking, self.seam = e.client, e.seam
        elif self.asking and e.direction == "*" and e.kind in ("mx", "deferred", "failed") and self.asking in (
                e.client, e.server):
            self.asking = ""
        if e.protocol == "dns" and e.direction in ("C", "S"):
            return dataclasses.replace(e, client=self.asking or RESOLVER.format(e.client),
                                       seam=e.seam or (self.seam if self.asking else ""))
        return e

    def feed(self, e: TraceEvent) -> Row | None:
        """The row ``e`` makes or grows (the same object as the last one then), or None
        for an event no diagram shows. New lanes are in ``self.lanes.order``."""
        e = self.credit(e)
        if not drawn(e):
            return None
        label = self.annotate(e) if e.direction != "*" else ""
        last = self.last
        if (last is not None and not last.is_note and e.direction != "*" and e.session
                and (e.session, e.direction, e.protocol) == (last.event.session, last.event.direction,
                                                             last.event.protocol)):
            last.count += 1
            if label and label not in last.labels:
                last.labels.append(label)
            return last
        source, target = self.lanes.ends(e)
        self.lanes.add(*((source, target) if e.direction == "*" else (self.lanes.name(e.client),
                                                                       self.lanes.name(e.server))))
        self.last = Row(e, source, target, labels=[label] if label else [])
        return self.last

    def rows(self, events) -> list[Row]:
        """Every row of ``events`` (each once, grown to its last line)."""
        rows: list[Row] = []
        for e in events:
            row = self.feed(e)
            if row is not None and (not rows or rows[-1] is not row):
                rows.append(row)
        return rows
