"""The world's trace, drawn for a notebook: the slides' annotated dialogue and a
sequence diagram in which the student's own parts stand out.

    from labkit.notebook import dialogue, sequence
    with world.tracer.record() as events:
        world.send(...)
    dialogue(events)                 # the SMTP lines with the slides' labels
    sequence(events)                 # who talks to whom, your parts in orange
    state_diagram("pop3", taught)    # a protocol's states, drawn from labkit's own server's table

``dialogue`` returns HTML (and plain text for print()); ``sequence`` a
:class:`~labkit.picture.Picture`, which JupyterLab shows trusted or not (SVG, PNG).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Iterable

from .diskspy import PowerCut, power_cut  # noqa: F401 - a notebook's: a crash in the middle of a delivery
from .picture import Picture
from .sequence import Annotator, Sequencer
from .statechart import state_diagram  # noqa: F401 - notebooks import it from here
from .trace import TraceEvent, delivered_to, queued_for, settled


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


def sequence(events: Iterable[TraceEvent], *, names: dict[str, str] | None = None, title: str = "",
             participants: list[str] | None = None) -> Picture:
    """A sequence diagram: a lifeline per host, an arrow per turn of a dialogue (a
    multi-line reply, or a whole message, is one arrow), a note per MTA event, a dashed
    red arrow per MX that did not answer; whatever went through a student's part is
    drawn in orange. The rows are :class:`~labkit.sequence.Sequencer`'s, as every drawing
    of a trace (the terminal, the lecture page) has them."""
    diagram = Sequencer(names)
    shown = diagram.rows(events)
    people = participants or diagram.lanes.order
    if not any(not row.is_note or row.source != row.target for row in shown):
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
    for i, row in enumerate(cut):
        e = row.event
        y = top + gap * (i + 1)
        colour = STUDENT if e.seam else COLOURS.get(e.protocol, "#24292f")
        label = row.text if len(row.text) <= 52 else row.text[:49] + "..."
        start, end = x.get(row.source), x.get(row.target)
        if e.kind == "unreachable" and start is not None and end is not None:  # a connection nobody answered
            picture.arrow((start, y), (end, y), colour="#cf222e", dashed=True)
            picture.label((start + end) / 2, y - 4, f"connect to [{e.data.get('address', '')}]:25: no answer",
                          "#cf222e", anchor="middle")
            text.append(f"  {row.source + ' -> ' + row.target:45} connect: no answer (next MX)")
            continue
        if row.is_note:
            at = start or x[people[0]]
            anchor, at = ("end", at - 6) if at > svg_width - width else ("start", at + 6)
            picture.label(at, y, label, colour, anchor=anchor, italic=True)
            text.append(f"  ** {row.text}")
            continue
        if start is None or end is None:
            continue
        picture.arrow((start, y), (end, y), colour=colour)
        picture.label((start + end) / 2, y - 4, label, colour, anchor="middle")
        text.append(f"  {row.source + ' -> ' + row.target:45} {row.text}" + ("   (your code)" if e.seam else ""))
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


def follow(world, recipient: str, *, since: float = 0.0, timeout: float = 10.0, retries: bool = False) -> Shown:
    """What became of the mail for ``recipient``: delivered, or the trace's reason why
    not (a student's part that failed, a deferral, a bounce); ``retries=True``: past
    deferrals, to delivery, a bounce or a failed part. Never raises: a notebook cell
    that shows the story must not fail because the story went wrong."""
    arrived, outcome = delivered_to(recipient), settled(recipient)

    def ended(e: TraceEvent) -> bool:
        return e.kind == "seam-error" or (outcome(e) and not (retries and e.kind == "deferred"))

    entered = queued_for(recipient)
    try:  # mail no host took (its sender failed) has nothing to wait for
        world.wait_for(lambda e: entered(e) or ended(e), timeout=min(timeout, ENTER_WAIT), since=since)
    except TimeoutError:
        return _failed(f"no host has taken mail for {recipient}: nothing to follow")
    try:
        event = world.wait_for(ended, timeout=timeout, since=since)
    except TimeoutError:
        return _failed(f"nothing has happened to the mail for {recipient} in {timeout:g}s")
    if arrived(event):
        _relay_done(world, recipient, event, since)
        text = f"delivered: {recipient} has it ({event.line})"
        return Shown(f"<b style='color:#1a7f37'>{html.escape(text)}</b>", text)
    detail = event.data.get("traceback") or ""
    text = f"not delivered: {event.line}" + (f"\n{detail}" if detail else "")
    return Shown(f"<b style='color:#cf222e'>not delivered</b><pre>{html.escape(text)}</pre>", text)


def _failed(text: str) -> Shown:
    return Shown(f"<b style='color:#cf222e'>{html.escape(text)}</b>", text)


ENTER_WAIT = 2.0  # seconds follow() waits for any host to queue the mail, when none has yet
RELAY_WAIT = 5.0  # seconds follow() waits for a relay to finish its dialogue (QUIT) once the mail has arrived


def _relay_done(world, recipient: str, arrived: TraceEvent, since: float) -> None:
    """If another host relayed the mail, wait until it has noted the outcome, which it
    does after its QUIT: a picture drawn now shows the relay's whole dialogue."""
    queued = queued_for(recipient)
    relayed = any(queued(e) and e.server != arrived.server for e in world.tracer.events() if e.time >= since)
    if relayed:
        try:
            world.wait_for(lambda e: e.kind in ("delivered", "deferred", "failed") and e.server != arrived.server
                           and e.data.get("recipient", "").lower() == recipient.lower(), timeout=RELAY_WAIT,
                           since=since)
        except TimeoutError:
            pass
