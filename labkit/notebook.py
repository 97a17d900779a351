"""The world's trace, drawn for a notebook: the slides' annotated dialogue and a
sequence diagram in which the student's own parts stand out.

    from labkit.notebook import dialogue, sequence
    with world.tracer.record() as events:
        world.send(...)
    dialogue(events)                 # the SMTP lines with the slides' labels
    sequence(events)                 # who talks to whom, your parts in orange

``dialogue`` returns HTML (and plain text for print()); ``sequence`` a
:class:`~labkit.picture.Picture`, which JupyterLab shows trusted or not (SVG, PNG).
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from typing import Iterable

from .picture import Picture
from .render import Annotator
from .statechart import state_diagram  # noqa: F401 - notebooks import it from here
from .trace import TraceEvent, delivered_to, settled


def World(*args, **kwargs):  # noqa: N802 - it makes a World, as the class would
    """The lab world for a notebook: :class:`labkit.world.World` (``World(seed="lab 0")``,
    ``.start()``); in a notebook being graded, the grader's world
    (:class:`labkit.graded.RemoteWorld`), with the same methods."""
    from . import graded

    if graded.active():
        return graded.RemoteWorld(*args, **kwargs)
    from .world import World as LocalWorld

    return LocalWorld(*args, **kwargs)

STUDENT = "#d9730d"  # the student's parts
COLOURS = {"smtp": "#1f6feb", "dns": "#8250df", "imap": "#1a7f37", "pop3": "#1a7f37", "mta": "#6e7781",
           "seam": STUDENT}
MAX_ARROWS = 80


@dataclass
class Shown:
    """Something a notebook displays: HTML for Jupyter, text for print()."""

    html: str
    text: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _lines(events: Iterable[TraceEvent], protocols: tuple[str, ...]) -> list[TraceEvent]:
    return [e for e in events if e.protocol in protocols and e.direction in ("C", "S")]


def dialogue(events: Iterable[TraceEvent], *, protocol: str = "smtp", server: str | None = None,
             session: str | None = None, names: dict[str, str] | None = None) -> Shown:
    """One connection's dialogue, each line labelled as the lecture's slides do (server
    greeting, sender command, …): the first of ``protocol`` (with ``server``, the first
    to that server), or ``session``; ``session="*"``: every line of ``protocol``."""
    lines = _lines(events, (protocol,))
    if server is not None:
        lines = [e for e in lines if e.server == server]
    if session is None and lines:
        session = lines[0].session
    if session != "*":
        lines = [e for e in lines if e.session == session]
    names = names or {}
    annotate = Annotator()
    rows, text = [], []
    for e in lines:
        who = names.get(e.client, e.client) if e.direction == "C" else e.server
        label = annotate(e)
        colour = STUDENT if e.seam else ("#0550ae" if e.direction == "C" else "#116329")
        rows.append(f"<tr><td style='color:#6e7781;padding-right:1em;vertical-align:top'>{html.escape(who)}</td>"
                    f"<td style='font-family:monospace;color:{colour};white-space:pre-wrap;word-break:break-all'>"
                    f"{e.direction}: "
                    f"{html.escape(e.line)}</td><td style='color:#6e7781;padding-left:1em'><i>"
                    f"{html.escape(label)}</i></td></tr>")
        text.append(f"{who:>22}  {e.direction}: {e.line}" + (f"   <- {label}" if label else ""))
    table = "<table style='border-collapse:collapse'>" + "".join(rows) + "</table>"
    return Shown(table, "\n".join(text))


def _participants(events: list[TraceEvent], names: dict[str, str]) -> list[str]:
    order: list[str] = []
    for e in events:
        for who in (names.get(e.client, e.client), names.get(e.server, e.server)):
            if who and who not in order:
                order.append(who)
    return order


RESOLVER = "resolver at {}"  # a DNS client no MTA asked through: a notebook's, dig, ...


def _attributed(events: Iterable[TraceEvent]) -> list[TraceEvent]:
    """Protocol lines and notes, with DNS queries credited to the MTA that asked: the
    ones between its "lookup" note and its answer ("mx"), or the outcome that ended it.
    Any other query is its resolver's own (a notebook's dnspython, dig)."""
    asking = ""
    shown: list[TraceEvent] = []
    for e in events:
        if e.kind == "lookup":
            asking = e.client
        elif asking and e.direction == "*" and e.kind in ("mx", "deferred", "failed") and asking in (
                e.client, e.server):
            asking = ""
        if e.protocol == "dns" and e.direction in ("C", "S"):
            e = dataclasses.replace(e, client=asking or RESOLVER.format(e.client))
        if e.direction in ("C", "S") or e.kind in ("queued", "delivered", "deferred", "failed", "seam-error",
                                                   "seam-call", "mx", "unreachable"):
            shown.append(e)
    return shown


@dataclass
class _Step:
    """One arrow (consecutive lines one way on one connection) or one note."""

    event: TraceEvent
    count: int = 1

    @property
    def label(self) -> str:
        e = self.event
        if e.direction == "*":
            return _note(e)
        return e.line + (f" … (+{self.count - 1} lines)" if self.count > 1 else "")


def _note(e: TraceEvent) -> str:
    rcpt = e.data.get("recipient")
    short = {"queued": f"queued {e.data.get('queue_id', '')}",
             "delivered": f"delivered to <{rcpt}>" + (" (Maildir)" if e.data.get("detail", "").startswith("maildir")
                                                      else ""),
             "deferred": f"deferred <{rcpt}>", "failed": f"could not deliver to <{rcpt}>",
             "seam-error": f"your {e.data.get('seam')} failed", "seam-call": f"your {e.data.get('seam')} ran",
             "mx": "MX: " + ", ".join(e.data.get("hops", ())) + (" (your resolve_mx)" if e.seam else ""),
             "unreachable": f"{e.server} [{e.data.get('address', '')}] does not answer: next MX"}
    return short.get(e.kind, e.line)


def _steps(events: list[TraceEvent]) -> list[_Step]:
    steps: list[_Step] = []
    for e in events:
        last = steps[-1].event if steps else None
        if last is not None and e.direction != "*" and (e.session, e.direction, e.protocol) == (
                last.session, last.direction, last.protocol) and e.session:
            steps[-1].count += 1
        else:
            steps.append(_Step(e))
    return steps


def sequence(events: Iterable[TraceEvent], *, names: dict[str, str] | None = None, title: str = "",
             participants: list[str] | None = None) -> Picture:
    """A sequence diagram: a lifeline per host, an arrow per turn of a dialogue (a
    multi-line reply, or a whole message, is one arrow), a note per MTA event; whatever
    went through a student's part is drawn in orange."""
    names = names or {}
    shown = _steps(_attributed(events))
    lines = [step.event for step in shown if step.event.direction in ("C", "S") or step.event.kind == "unreachable"]
    people = participants or _participants(lines, names)
    if not people:
        return Picture(300, 24, "(nothing in the trace)")
    cut = shown[:MAX_ARROWS]
    width, gap, top = 180, 22, 56
    svg_width = width * len(people) + 40
    height = top + gap * (len(cut) + 3)
    x = {p: 20 + width * i + width // 2 for i, p in enumerate(people)}
    text = [f"sequence: {' | '.join(people)}"]
    picture = Picture(svg_width, height)
    if title:
        picture.label(10, 14, title, bold=True)
        text.insert(0, title)
    for p in people:
        picture.label(x[p], 38, p, anchor="middle", bold=True)
        picture.line(x[p], 44, x[p], height - 8 - gap, "#d0d7de", dashed=True)
    for i, step in enumerate(cut):
        e = step.event
        y = top + gap * (i + 1)
        colour = STUDENT if e.seam else COLOURS.get(e.protocol, "#24292f")
        label = step.label if len(step.label) <= 52 else step.label[:49] + "..."
        if e.kind == "unreachable" and e.client in x and e.server in x:  # a connection nobody answered
            picture.arrow((x[e.client], y), (x[e.server], y), colour="#cf222e", dashed=True)
            picture.label((x[e.client] + x[e.server]) / 2, y - 4, f"connect to [{e.data.get('address', '')}]:25: "
                          "no answer", "#cf222e", anchor="middle")
            text.append(f"  {e.client + ' -> ' + e.server:45} connect: no answer (next MX)")
            continue
        if e.direction == "*":
            at = x.get(names.get(e.server, e.server)) or x.get(names.get(e.client, e.client)) or x[people[0]]
            anchor, at = ("end", at - 6) if at > svg_width - width else ("start", at + 6)
            picture.label(at, y, label, colour, anchor=anchor, italic=True)
            text.append(f"  ** {step.label}")
            continue
        client, server = names.get(e.client, e.client), names.get(e.server, e.server)
        start, end = (x.get(client), x.get(server)) if e.direction == "C" else (x.get(server), x.get(client))
        if start is None or end is None:
            continue
        picture.arrow((start, y), (end, y), colour=colour)
        picture.label((start + end) / 2, y - 4, label, colour, anchor="middle")
        arrow = f"{client} -> {server}" if e.direction == "C" else f"{server} -> {client}"
        text.append(f"  {arrow:45} {step.label}" + ("   (your code)" if e.seam else ""))
    if len(shown) > MAX_ARROWS:
        picture.label(10, height - 8 - gap, f"... {len(shown) - MAX_ARROWS} more events", "#6e7781")
        text.append(f"  ... {len(shown) - MAX_ARROWS} more events")
    picture.label(10, height - 8, "arrows: protocol lines;", "#6e7781")
    picture.label(140, height - 8, "orange: through your code", STUDENT)
    picture.text = "\n".join(text)
    return picture


class Telnet:
    """Talk to a server line by line, as with telnet, from a notebook cell::

        smtp = Telnet(world.connect("1.2.3.5", 25))
        smtp.read()                      # the greeting
        smtp.say("HELO alberts-box")     # prints C: and S: lines, returns the reply

    Every wait is bounded by ``timeout``; a multi-line reply ("250-...") is read to
    its last line."""

    def __init__(self, sock, *, timeout: float = 5.0, echo: bool = True) -> None:
        self.sock, self.echo = sock, echo
        sock.settimeout(timeout)
        self._file = sock.makefile("rb")

    def read(self) -> str:
        """One whole reply (all its lines)."""
        lines = []
        while True:
            raw = self._file.readline(8192)
            if not raw:
                lines.append("(the server closed the connection)")
                break
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            lines.append(line)
            if self.echo:
                print(f"S: {line}")
            if line[3:4] != "-":
                break
        return "\n".join(lines)

    def say(self, line: str, *, reply: bool = True) -> str:
        """Send one line (CRLF added); then read the reply, unless ``reply=False``
        (message lines inside DATA get no reply of their own)."""
        if self.echo:
            print(f"C: {line}")
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        return self.read() if reply else ""

    def close(self) -> None:
        self._file.close()
        self.sock.close()


def hosts(world) -> Shown:
    """The world's mail hosts: name, address, domains, users (a table)."""
    info = world.info()
    rows, text = [], []
    users = {}
    for address, box in info["mailboxes"].items():
        users.setdefault(box["host"], []).append(address)
    for name, host in info["hosts"].items():
        cells = [name, ", ".join(host["addresses"]), ", ".join(host["domains"]), ", ".join(users.get(name, []))]
        rows.append("<tr>" + "".join(f"<td style='padding-right:1.5em'>{html.escape(c)}</td>" for c in cells) + "</tr>")
        text.append(f"{cells[0]:20} {cells[1]:20} {cells[2]:36} {cells[3]}")
    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("mail host", "address (DNS)", "domains", "users"))
    return Shown(f"<table><tr>{head}</tr>{''.join(rows)}</table>", "\n".join(text))


def follow(world, recipient: str, *, since: float = 0.0, timeout: float = 10.0) -> Shown:
    """What became of the mail for ``recipient``: delivered, or the trace's reason why
    not (a student's part that failed, a deferral, a bounce). Never raises: a notebook
    cell that shows the story must not fail because the story went wrong."""
    arrived, outcome = delivered_to(recipient), settled(recipient)

    def ended(e: TraceEvent) -> bool:
        return outcome(e) or e.kind == "seam-error"

    try:
        event = world.wait_for(ended, timeout=timeout, since=since)
    except TimeoutError:
        text = f"nothing has happened to the mail for {recipient} in {timeout:g}s"
        return Shown(f"<b style='color:#cf222e'>{html.escape(text)}</b>", text)
    if arrived(event):
        _relay_done(world, recipient, event, since)
        text = f"delivered: {recipient} has it ({event.line})"
        return Shown(f"<b style='color:#1a7f37'>{html.escape(text)}</b>", text)
    detail = event.data.get("traceback") or ""
    text = f"not delivered: {event.line}" + (f"\n{detail}" if detail else "")
    return Shown(f"<b style='color:#cf222e'>not delivered</b><pre>{html.escape(text)}</pre>", text)


RELAY_WAIT = 5.0  # seconds follow() waits for a relay to finish its dialogue (QUIT) once the mail has arrived


def _relay_done(world, recipient: str, arrived: TraceEvent, since: float) -> None:
    """If another host relayed the mail, wait until it has noted the outcome, which it
    does after its QUIT: a picture drawn now shows the relay's whole dialogue."""
    relayed = any(e.kind == "queued" and e.server != arrived.server and recipient.lower() in
                  (r.lower() for r in e.data.get("recipients", ())) for e in world.tracer.events() if e.time >= since)
    if relayed:
        try:
            world.wait_for(lambda e: e.kind in ("delivered", "deferred", "failed") and e.server != arrived.server
                           and e.data.get("recipient", "").lower() == recipient.lower(), timeout=RELAY_WAIT,
                           since=since)
        except TimeoutError:
            pass
