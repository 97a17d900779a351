"""Checks for ``smtp_session``, the SMTP server session (the "Receiving mail" lab).

Every rule serves the student's session for real: a lab world runs it as
smtp.brilliant.com's front end on port 25 (the ``smtp`` service), through the world's
own fault boundary and reference fence, and the rule talks to it over a loopback socket
as telnet would (a line, then one reply), with Python's smtplib, or through the world's
own relay from smtp.awesome.com. A session that raises, returns the wrong type or hangs
is answered ``451 4.3.0 … internal error in the SMTP session`` by the world; the rule
then shows the student's traceback. Replies that are the host's policy (550 unknown
user, 454 relay denied, 250 queued as ID) must be what ``mta`` told the session. ::

    from labkit import checks
    checks.smtp_session.run(MySession)
"""

from __future__ import annotations

import re
import smtplib
import socket
import time
from typing import Any

from ..smtp.lockstep import LockstepClient
from ..mta.core import MTA
from ..smtp.client import MalformedReply, Reply, ReplyParser
from ..trace import delivered_to, settled
from .harness import ALBERT, BETTY, CAROL, Broken, Probe, Rule, difference, entry_points, parsed
from .peers import hangs_up, send_in_pieces
from .received_header import clause

HOST = "smtp.brilliant.com"
NOBODY = "nobody@brilliant.com"
SENDER, CLIENT = "someone@example.org", "client.example"
HELO, EHLO, MAIL, RCPT = f"HELO {CLIENT}", f"EHLO {CLIENT}", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{BETTY}>"
MESSAGE = (b"From: Someone <someone@example.org>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: Receiving mail\r\n"
           b"\r\nHello Betty,\r\nthis came in through your SMTP session.\r\n")
REPLY_GRACE = 1.0  # a reply may take the deadline (then the world answers 451), and this much more
LAST_LINE = ("in a multi-line reply every line but the last has '-' after the code ('250-'), the last one a space "
             "('250 '): with '-' on the last line the client cannot know the reply is over")
CLOSE_WAIT = 1.0  # seconds the server may take to hang up after its 221
SHOWN = 80  # longer lines are shortened in the transcript


# -- talking to the session ----------------------------------------------------------------
class _CRLFReplies(ReplyParser):
    """The client's reply parser, but strict: a reply line ends with CRLF (RFC 5321
    §2.3.8). A client may forgive a bare LF; the lab's server must not send one."""

    def feed(self, data: bytes) -> list[Reply]:
        bare = re.search(rb"(?<!\r)\n", self._buffer[-1:] + data)
        replies = super().feed(data)  # first, so the lines are in the transcript
        if bare:
            raise MalformedReply("a reply line ends in a bare LF, not CRLF (RFC 5321 §2.3.8)")
        return replies


def _shown(line: str) -> str:
    line = line.replace("\n", "\\n")  # a bare LF, visible
    return line if len(line) <= SHOWN else f"{line[:SHOWN // 2]}... ({len(line) + 2} octets)"


def _said(reply: Reply) -> str:
    return str(reply).replace("\r\n", "\n")


class _Wire(LockstepClient):
    """A raw connection to the session under test on smtp.brilliant.com port 25.

    A failed wait is a :class:`Broken`; so is the world's 451 for a session that broke
    (with the student's traceback from the world's seam-error event)."""

    def __init__(self, probe: Probe, world: Any) -> None:
        timeout = probe.boundary.deadline + REPLY_GRACE
        sock = probe.enter(socket.create_connection(("127.0.0.1", _port(world)), timeout=timeout))
        super().__init__(sock, timeout=timeout, transcript=probe.transcript)
        self.parser = _CRLFReplies(on_line=self.parser.on_line)
        self.probe, self.world = probe, world
        self.step, self.expected, self.hint = "the greeting", "", ""  # what a failed wait reports

    def reply(self) -> Reply:
        reply = super().reply()
        self.probe.raise_world_failure(self.world, self.step)  # the world's 451: the session broke
        return reply

    def command(self, line: str, *, shown: str | None = None, hint: str = "") -> Reply:
        self.step, self.expected, self.hint = shown or _shown(line), "", hint
        return super().command(line, shown=self.step)

    def send(self, data: bytes, step: str, *, expected: str = "", hint: str = "") -> None:
        """Bytes as they are: commands sent together, a message, a bare LF."""
        self.step, self.expected, self.hint = step, expected, hint
        for line in data.decode("utf-8", "replace").split("\r\n")[:-1]:
            self.transcript.append(("C", _shown(line)))
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise self._broken(f"cannot send: {error.strerror or error}") from None

    def send_pieces(self, pieces: list[bytes], step: str, *, expected: str = "", hint: str = "") -> None:
        """Bytes in several writes, each read before the next: the session gets them in pieces."""
        self.step, self.expected, self.hint = step, expected, hint
        for line in b"".join(pieces).decode("utf-8", "replace").split("\r\n")[:-1]:
            self.transcript.append(("C", _shown(line)))
        try:
            send_in_pieces(self.sock, pieces)
        except OSError as error:
            raise self._broken(f"cannot send: {error.strerror or error}") from None

    def _broken(self, problem: str) -> Exception:  # what a failed wait raises
        unfinished = self.parser.mid_reply
        super()._broken(problem)
        self.probe.raise_world_failure(self.world, self.step)
        if unfinished and "no reply" in problem:
            return Broken(self.step, "the reply's last line: the code, then a space ('250 HELP'), which says the "
                          "reply is over (RFC 5321 §4.2.1)", "every line so far had '-' after the code, so the "
                          f"client waits for more ({problem})", hint=LAST_LINE)
        if "bare LF" in problem:
            return Broken(self.step, "reply lines ending in CRLF (RFC 5321 §2.3.8)", problem,
                          hint="end every reply line with b'\\r\\n': a '\\n' alone is not a line end in SMTP")
        return Broken(self.step, self.expected or "a reply (RFC 5321 §4.2: every command gets one)", problem,
                      hint=_wire_hint(problem, self.hint))

    def hangs_up(self) -> bool:
        """Whether the server closes the connection within CLOSE_WAIT seconds."""
        return hangs_up(self.sock, CLOSE_WAIT)


def _wire_hint(problem: str, hint: str) -> str:
    if "no reply" in problem:
        return hint or "receive(data) returns the replies to every complete line in data (b'' only while a " \
                       "line is still incomplete)"
    if "closed" in problem:
        return "the session closed the connection: set closed = True only after QUIT"
    return hint or "a reply line is a 3-digit code, then '-' (more lines follow) or ' ' (the last), then text"


def _port(world: Any) -> int:
    return world.host(HOST).services["smtp"].port


def _connect(probe: Probe) -> _Wire:
    """A world running the student's session on smtp.brilliant.com, and a connection
    to it, greeted (the greeting has its own rule). The transcript is the wire's: the
    world's copy of the same lines would come in a moment later, between them."""
    wire = _Wire(probe, probe.world(host=HOST, lines=False))
    wire.reply()
    return wire


# Hints for one reply code given where RFC 5321 §4.2.2 wants another: (wanted, got).
_CONFUSED = {
    (501, 500): "the command word is one you know, only its argument is wrong: that is 501; 500 is for a "
                "command you do not know. Do you match commands by a prefix like 'MAIL FROM:'? The command "
                "is the first word of the line",
    (501, 503): "503 is for a command out of order; this one came in order, only its argument is wrong: 501",
    (503, 501): "this command's syntax is right, it came out of order: 503 (bad sequence), not 501",
    (500, 502): "502 is for a command you know but did not implement; one you do not know at all is 500 "
                "(RFC 5321 §4.2.4)",
}


def _expect(wire: _Wire, line: str, code: int, why: str, hint: str = "") -> Reply:
    """Send one command; its reply must have ``code`` (``why``: what RFC 5321 says)."""
    reply = wire.command(line, hint=hint)
    if reply.code != code:
        raise Broken(wire.step, f"{code}: {why}", _said(reply), hint=_CONFUSED.get((code, reply.code), hint))
    return reply


def _dialogue(wire: _Wire, steps: list[tuple[str, int, str, str]]) -> None:
    for line, code, why, hint in steps:
        _expect(wire, line, code, why, hint)


def _names_host(reply: Reply, step: str, expected: str, hint: str) -> None:
    words = reply.lines[0].split() if reply.lines else []
    if not words or words[0].lower().rstrip(".") != HOST:
        raise Broken(step, expected, _said(reply), hint=hint)


HELLO_OK = "the hello, with the client's name (RFC 5321 §4.1.1.1)"
MAIL_OK = "the sender accepted (RFC 5321 §4.1.1.2)"
RCPT_OK = "Betty is a user here: accepted (RFC 5321 §4.1.1.3)"
ORDER = "bad sequence of commands (RFC 5321 §4.1.4)"
TRANSACTION = [(MAIL, 250, MAIL_OK, ""), (RCPT, 250, RCPT_OK, ""),
               ("DATA", 354, "go ahead, then the client sends the message (RFC 5321 §4.1.1.4)",
                "answer DATA with 354, then read message lines up to the line with a lone '.'")]


def _deliver(wire: _Wire, data: bytes) -> tuple[Reply, bytes]:
    """One transaction to Betty; ``data`` is sent as it is after the 354 (dot-stuffed,
    with its final '.'). Returns the reply after the data and the message stored."""
    _dialogue(wire, [(EHLO, 250, HELLO_OK, ""), *TRANSACTION])
    since = time.time()
    wire.send(data, "the message, then a line with a lone '.'")
    reply = wire.reply()
    if reply.code != 250:
        raise Broken(wire.step, "250 ... queued as ID: the reply mta.data(txn, message) gave once the message was "
                     "stored (RFC 5321 §4.1.1.4)", _said(reply),
                     hint="at the lone '.', call mta.data(txn, message) and send the reply it returns")
    return reply, _stored(wire.world, since)


STORE_WAIT = 3.0  # seconds the host may take to store what mta.data accepted (milliseconds, as a rule)


def _landed(world: Any, since: float, accepted: int | None = None) -> list[bytes]:
    """Betty's Maildir, once the ``accepted`` messages (default: as many 250 "queued
    as" replies as the host's trace shows) since ``since`` are stored there: the host
    makes a message durable in its spool before its 250 and delivers it right after (as
    Postfix does)."""
    if accepted is None:
        accepted = sum(1 for e in world.tracer.events() if e.time >= since and e.server == HOST
                       and e.protocol == "smtp" and "queued as" in e.line)
    if accepted:
        try:
            world.wait_for(delivered_to(BETTY), timeout=STORE_WAIT, since=since, count=accepted)
        except TimeoutError:
            pass  # what is there is judged
    return world.messages(BETTY)


def _stored(world: Any, since: float) -> bytes:
    """The one message in Betty's Maildir, accepted since ``since`` (mta.data makes it
    safe before its 250)."""
    messages = _landed(world, since, accepted=1)
    if len(messages) != 1:
        raise Broken("Betty's Maildir", "the message, once: mta.data(txn, message) stores it before its 250",
                     f"{len(messages)} messages", hint="at the lone '.', call mta.data(txn, message) once and send "
                     "the reply it returns: a 250 is a promise that the message is safe")
    return messages[0]


def _body(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[-1]


def _expect_body(stored: bytes, body: bytes, expected: str, hint: str) -> None:
    if _body(stored) != body:
        wanted, got, where = difference(body, _body(stored))
        raise Broken("the message in Betty's Maildir", f"the body {wanted}: {expected}",
                     got + (f"\n({where})" if where else ""), hint=hint)


def _stamped(world: Any, stored: bytes, step: str) -> None:
    received = [" ".join(h.split()) for h in parsed(stored).get_all("Received", [])]
    if not any(clause(f"Received: {h}", "by") == HOST for h in received):
        raise Broken(step, f"a Received: header 'from … by {HOST} …' (RFC 5321 §4.4: every server that takes "
                     "a message stamps one)", "; ".join(received) or "no Received: header",
                     hint="mta.data(txn, message) stamps it: give it the message as it came")


# -- the rules ---------------------------------------------------------------------------
def greeting(probe: Probe) -> None:
    wire = _Wire(probe, probe.world(host=HOST, lines=False))
    reply = wire.reply()
    expected = f"220 {HOST} ...: the greeting names the server (RFC 5321 §4.2)"
    if reply.code != 220:
        raise Broken("the greeting", expected, _said(reply), hint="220 means 'ready'; start() returns "
                     "mta.greeting() + '\\r\\n', as bytes")
    _names_host(reply, "the greeting", expected, "use the hostname you were given: smtp_session(peer, mta, *, "
                "hostname), or mta.greeting()")


def ehlo(probe: Probe) -> None:
    _ehlo(probe, EHLO)


def ehlo_other_name(probe: Probe) -> None:
    _ehlo(probe, "ehlo mail.example.org")


def _ehlo(probe: Probe, line: str) -> None:
    wire = _connect(probe)
    extensions = MTA(wire.world.host(HOST), "smtp").extensions()
    expected = (f"250-{HOST} ..., then one line per extension of mta.extensions() ({', '.join(extensions)}), "
                "'250-' on every line but the last, which has '250 ' (RFC 5321 §4.1.1.1, §4.2.1)")
    reply = _expect(wire, line, 250, HELLO_OK)
    _names_host(reply, EHLO, expected, "the first line of the EHLO reply names the server")
    offered = {line.upper() for line in reply.lines[1:]}
    if any(e.upper() not in offered for e in extensions):
        hint = ("with '250 ' on every line, each line is a whole reply: the client takes the first as the answer "
                "and the rest as answers to its next commands") if wire.pending else (
                "EHLO lists what the server can do, one extension a line: mta.extensions()")
        raise Broken(EHLO, expected, _said(reply), hint=hint)
    _names_host(reply, line, expected, "the first line of the EHLO reply names the server")
    reply = _expect(wire, HELO, 250, "HELO may come again after EHLO; it starts over (RFC 5321 §4.1.4)")
    if len(reply.lines) != 1:
        raise Broken(HELO, f"one line: 250 {HOST} (HELO has no extensions, RFC 5321 §4.1.1.1)", _said(reply),
                     hint="only EHLO lists extensions")
    _names_host(reply, HELO, f"250 {HOST} (RFC 5321 §4.1.1.1)", "the HELO reply names the server")


def sequence_again(probe: Probe) -> None:
    _dialogue(_connect(probe), [
        (EHLO, 250, HELLO_OK, ""),
        ("DATA", 503, f"DATA before MAIL: {ORDER}", "DATA needs MAIL and an accepted RCPT first"),
        (MAIL, 250, MAIL_OK, ""),
        (f"RCPT TO:<{NOBODY}>", 550, "no such user: the policy's 550 (RFC 5321 §4.1.1.3)", ""),
        ("DATA", 503, f"DATA when every recipient was refused: {ORDER}",
         "only an accepted RCPT (2xx from mta.rcpt) moves the session on"),
        (RCPT, 250, RCPT_OK, ""),
        ("DATA", 354, "DATA after an accepted recipient (RFC 5321 §4.1.1.4)", ""),
    ])


def sequence(probe: Probe) -> None:
    _dialogue(_connect(probe), [
        (MAIL, 503, f"MAIL before HELO/EHLO: {ORDER}", "the client says HELO or EHLO before anything else"),
        (HELO, 250, HELLO_OK, ""),
        (RCPT, 503, f"RCPT before MAIL: {ORDER}", "keep the session's state: RCPT only after an accepted MAIL"),
        (MAIL, 250, MAIL_OK, ""),
        ("DATA", 503, f"DATA before any accepted recipient: {ORDER}",
         "DATA needs at least one accepted recipient (RFC 5321 §3.3)"),
        (MAIL, 503, f"a nested MAIL, inside a transaction: {ORDER}",
         "a second MAIL must not silently replace the sender: RSET first"),
        (RCPT, 250, "the first MAIL still stands: a 5xx reply means nothing was done (RFC 5321 §4.2.1)",
         "a refused command changes nothing"),
    ])


def syntax(probe: Probe) -> None:
    path = "RFC 5321 §4.1.2: the path goes in angle brackets"
    _dialogue(_connect(probe), [
        ("HELO", 501, "HELO without the client's name: a syntax error in the argument (RFC 5321 §4.1.1.1, "
         "§4.2.2)", "check the argument before answering 250"),
        (MAIL, 503, "the refused HELO did not count: a 5xx reply means nothing was done (RFC 5321 §4.2.1)",
         "you record the hello before checking its syntax: a command answered 501 changes nothing"),
        (HELO, 250, HELLO_OK, ""),
        (f"MAIL {SENDER}", 501, f"MAIL FROM:<reverse-path> ({path})", "parse FROM:<...> before calling mta.mail"),
        ("MAIL FROM:", 501, f"MAIL FROM:<reverse-path> ({path})", "parse FROM:<...> before calling mta.mail"),
        ("MAIL FROM:<>", 250, "<> is the null reverse-path, the sender of every bounce (RFC 5321 §4.5.5)",
         "MAIL FROM:<> is the null reverse-path: accept an empty path in MAIL (never in RCPT)"),
        ("RCPT TO:<>", 501, "a recipient is never empty (RFC 5321 §4.1.1.3)", "refuse RCPT TO:<> with 501"),
        (RCPT, 250, "the transaction goes on after a 501 (RFC 5321 §4.2.1)", "a refused command changes nothing"),
    ])


def syntax_again(probe: Probe) -> None:
    path = "RFC 5321 §4.1.2: the path goes in angle brackets"
    _dialogue(_connect(probe), [
        ("EHLO", 501, "EHLO without the client's name (RFC 5321 §4.1.1.1, §4.2.2)", "check the argument first"),
        (EHLO, 250, HELLO_OK, ""),
        ("MAIL TO:<someone@example.org>", 501, f"MAIL FROM:<reverse-path> ({path})", "MAIL takes FROM:, not TO:"),
        (MAIL, 250, MAIL_OK, ""),
        (f"RCPT TO:{BETTY}", 501, f"RCPT TO:<forward-path> ({path})", "parse TO:<...> before calling mta.rcpt"),
        (f"RCPT FROM:<{BETTY}>", 501, f"RCPT TO:<forward-path> ({path})", "RCPT takes TO:, not FROM:"),
        (RCPT, 250, "the transaction goes on after a 501 (RFC 5321 §4.2.1)", "a refused command changes nothing"),
    ])


def unknown_again(probe: Probe) -> None:
    _dialogue(_connect(probe), [
        ("XYZZY", 500, "a command the server does not know (RFC 5321 §4.2.4), even before the hello",
         "answer 500 to any command word you do not know"),
        ("Helo client.example", 250, "command words are case-insensitive (RFC 5321 §2.4)",
         "compare command words in upper case"),
        ("Rset", 250, "command words are case-insensitive (RFC 5321 §2.4)", "compare command words in upper case"),
    ])


def unknown(probe: Probe) -> None:
    _dialogue(_connect(probe), [
        (HELO, 250, HELLO_OK, ""),
        ("FOO bar", 500, "a command the server does not know (RFC 5321 §4.2.4), and the session goes on",
         "answer 500 to any command word you do not know, and keep reading"),
        ("noop", 250, "command words are case-insensitive (RFC 5321 §2.4)",
         "command words are case-insensitive: compare them in upper case (clients may send 'mail FROM:')"),
    ])


def rset(probe: Probe) -> None:
    _dialogue(_connect(probe), [
        (EHLO, 250, HELLO_OK, ""), (MAIL, 250, MAIL_OK, ""), (RCPT, 250, RCPT_OK, ""),
        ("RSET", 250, "RSET is always accepted (RFC 5321 §4.1.1.5)", ""),
        ("DATA", 503, "RSET cleared the recipients: no transaction now (RFC 5321 §4.1.1.5)",
         "RSET forgets the sender and the recipients: call txn.reset() and go back to the state after HELO"),
        (RCPT, 503, "RSET cleared the sender too (RFC 5321 §4.1.1.5)", "RSET forgets the sender: MAIL comes first"),
        (MAIL, 250, "RSET keeps the HELO: no new hello is needed (RFC 5321 §4.1.1.5)",
         "RSET is not a new connection: keep the client's HELO/EHLO"),
        (RCPT, 250, RCPT_OK, ""),
    ])


def rset_mail(probe: Probe) -> None:
    _dialogue(_connect(probe), [
        (HELO, 250, HELLO_OK, ""), (MAIL, 250, MAIL_OK, ""),
        ("rset", 250, "RSET is always accepted (RFC 5321 §4.1.1.5)", ""),
        (RCPT, 503, "RSET cleared the sender (RFC 5321 §4.1.1.5)", "RSET forgets the sender: MAIL comes first"),
        ("MAIL FROM:<>", 250, "RSET keeps the HELO: a new transaction may start (RFC 5321 §4.1.1.5)",
         "RSET is not a new connection: keep the client's HELO/EHLO"),
        ("RSET", 250, "RSET is always accepted (RFC 5321 §4.1.1.5)", ""),
        ("RSET", 250, "RSET is always accepted, even twice (RFC 5321 §4.1.1.5)", ""),
    ])


def noop_again(probe: Probe) -> None:
    _dialogue(_connect(probe), [
        (EHLO, 250, HELLO_OK, ""), (MAIL, 250, MAIL_OK, ""), (RCPT, 250, RCPT_OK, ""),
        ("NOOP", 250, "NOOP works in any state (RFC 5321 §4.1.1.9)", ""),
        ("DATA", 354, "NOOP changes nothing: DATA may follow (RFC 5321 §4.1.1.9)", "NOOP must not touch the "
         "transaction"),
    ])


def quit_in_transaction(probe: Probe) -> None:
    wire = _connect(probe)
    _dialogue(wire, [(EHLO, 250, HELLO_OK, ""), (MAIL, 250, MAIL_OK, ""), (RCPT, 250, RCPT_OK, ""),
                     ("QUIT", 221, "QUIT in the middle of a transaction: 221, the transaction is abandoned "
                      "(RFC 5321 §4.1.1.10)", "")])
    if not wire.hangs_up():
        raise Broken("after the 221", "the server closes the connection (RFC 5321 §4.1.1.10)",
                     f"the connection is still open after {CLOSE_WAIT:g}s", hint="set self.closed = True when you "
                     "answer QUIT")


def noop(probe: Probe) -> None:
    _dialogue(_connect(probe), [
        ("NOOP", 250, "NOOP works in any state, even before HELO (RFC 5321 §4.1.1.9)", "NOOP needs no HELO"),
        (HELO, 250, HELLO_OK, ""), (MAIL, 250, MAIL_OK, ""),
        ("NOOP anything", 250, "NOOP may carry a string, which is ignored (RFC 5321 §4.1.1.9)",
         "do not refuse an argument to NOOP"),
        (RCPT, 250, "NOOP changes nothing: the transaction goes on (RFC 5321 §4.1.1.9)",
         "NOOP must not touch the transaction"),
    ])


def quit_(probe: Probe) -> None:
    wire = _connect(probe)
    _dialogue(wire, [(HELO, 250, HELLO_OK, ""), ("QUIT", 221, "QUIT is answered 221 (RFC 5321 §4.1.1.10)", "")])
    if not wire.hangs_up():
        raise Broken("after the 221", "the server closes the connection (RFC 5321 §4.1.1.10: reply 221, then "
                     "close)", f"the connection is still open after {CLOSE_WAIT:g}s",
                     hint="set self.closed = True when you answer QUIT")


RELAYING = "port 25 takes mail for this host's domains only, so no relaying (RFC 5321 §3.6.2)"


def policy(probe: Probe) -> None:
    _policy(probe, ((NOBODY, "no such user here"), (CAROL, RELAYING)))


def policy_again(probe: Probe) -> None:
    _policy(probe, (("ghost@staff.brilliant.com", "no such user here"), ("tom@twins.com", RELAYING)))


def _policy(probe: Probe, refused: tuple[tuple[str, str], ...]) -> None:
    wire = _connect(probe)
    _dialogue(wire, [(HELO, 250, HELLO_OK, ""), (MAIL, 250, MAIL_OK, "")])
    mta = MTA(wire.world.host(HOST), "smtp")
    txn = mta.transaction(("127.0.0.1", 0))
    txn.mail_from = SENDER
    for address, what in refused:
        wanted = mta.rcpt(txn, address)
        reply = wire.command(f"RCPT TO:<{address}>")
        if reply.one_line() != wanted:
            raise Broken(wire.step, f"{wanted} (what mta.rcpt(txn, {address!r}) answered, as it is: {what})",
                         _said(reply), hint="the host's policy decides, the session speaks: send the reply "
                         "string mta.rcpt returns, and count the recipient only if it starts with 2")
    _expect(wire, RCPT, 250, "refused recipients do not end the transaction (RFC 5321 §3.3)")
    _expect(wire, "DATA", 354, "Betty was accepted: DATA may follow (RFC 5321 §4.1.1.4)",
            "only the accepted recipients count")


def data(probe: Probe) -> None:
    _data(probe, MESSAGE)


def data_again(probe: Probe) -> None:
    _data(probe, b"From: Pat <pat@plain.com>\r\nSubject: two\r\n paragraphs\r\n\r\nfirst\r\n\r\n\r\nsecond, "
                 b"with   spaces  \r\n")


def _data(probe: Probe, message: bytes) -> None:
    wire = _connect(probe)
    reply, stored = _deliver(wire, message + b".\r\n")
    queued = [e.data.get("queue_id", "") for e in wire.world.tracer.events() if delivered_to(BETTY)(e)]
    if not queued or f"queued as {queued[0]}" not in reply.text:
        raise Broken("the reply after the data", f"250 ... queued as {queued[0] if queued else 'ID'}: the reply "
                     "mta.data gave, as it is", _said(reply), hint="send the reply mta.data(txn, message) returns")
    _expect_body(stored, _body(message), "what the client sent, without the final '.' line (RFC 5321 §4.1.1.4)",
                 "the final '.' ends the data and is not part of the message")
    _expect(wire, "QUIT", 221, "QUIT is answered 221 (RFC 5321 §4.1.1.10)")


UNSTUFF = "dot-unstuffing: remove exactly one leading '.' from each line that has one, nothing else"


def _unstuffing(probe: Probe, sent: bytes, body: bytes) -> None:
    _, stored = _deliver(_connect(probe), sent)
    _expect_body(stored, body, "a line that starts with '.' loses one '.': the client doubled it (RFC 5321 §4.5.2)",
                 UNSTUFF)


def dot_unstuffing(probe: Probe) -> None:
    _unstuffing(probe, b"Subject: dots\r\n\r\n..leading dot\r\n..\r\n...two dots\r\nend\r\n.\r\n",
                b".leading dot\r\n.\r\n..two dots\r\nend\r\n")


def dot_unstuffing_again(probe: Probe) -> None:
    _unstuffing(probe, b"Subject: more dots\r\n\r\nsee you.\r\n.. . .\r\n....\r\n..\r\n.\r\n",
                b"see you.\r\n. . .\r\n...\r\n.\r\n")


def line_limits(probe: Probe) -> None:
    wire = _connect(probe)
    long_line = "NOOP " + "x" * 600
    _dialogue(wire, [
        (HELO, 250, HELLO_OK, ""),
        (long_line, 500, "a command line is at most 512 octets with its CRLF (RFC 5321 §4.5.3.1.4); longer is "
         "500 Line too long (§4.5.3.1.10)", "count the octets of a command line; above 512, answer 500 and go on"),
        ("NOOP", 250, "the session goes on after an over-long line", ""),
        *TRANSACTION,
    ])
    since = time.time()
    wire.send(b"Subject: long\r\n\r\n" + b"y" * 1200 + b"\r\n.\r\n", "a message with a 1202-octet line")
    reply = wire.reply()
    if reply.code != 500:
        raise Broken(wire.step, "500 after the final '.': a text line is at most 1000 octets with its CRLF "
                     "(RFC 5321 §4.5.3.1.6, §4.5.3.1.10)", _said(reply), hint="count each message line's octets; "
                     "remember an over-long one and answer 500 at the final '.' instead of calling mta.data")
    _expect(wire, MAIL, 250, "after the refused message, the next transaction may start (RFC 5321 §4.1.1.4)",
            "the refused message ended the transaction: go back to the state after HELO")
    stored = _landed(wire.world, since)
    if stored:
        raise Broken("Betty's Maildir", "empty: a message refused with 500 is not stored",
                     f"{len(stored)} message(s)", hint="answer 500 at the final '.' only, and "
                     "do not pass the message to mta.data")


SMUGGLING = ("a bare LF is not a line end in DATA: split message lines at CRLF only, or '\\n.\\n' ends the message "
             "early and what follows runs as commands (SMTP smuggling)")


def _bare_lf(probe: Probe, sent: bytes, body: bytes) -> None:
    wire = _connect(probe)
    _, stored = _deliver(wire, sent)
    _expect_body(stored, body, "all of it, as one message: only CRLF . CRLF ends the data (RFC 5321 §4.1.1.4), "
                 "and the text after a '\\n.\\n' is message text, never a command", SMUGGLING)
    _expect(wire, "RSET", 250, "RSET is always accepted (RFC 5321 §4.1.1.5)")


def line_limits_exact(probe: Probe) -> None:
    """Lines of exactly the limit are fine; one octet more is not."""
    wire = _connect(probe)
    longest = "NOOP " + "x" * (512 - 2 - 5)
    _dialogue(wire, [
        (HELO, 250, HELLO_OK, ""),
        (longest, 250, "a command line of exactly 512 octets with its CRLF is allowed (RFC 5321 §4.5.3.1.4)",
         "at most 512 octets including the CRLF: 510 before it is fine"),
        (longest + "x", 500, "513 octets with its CRLF: 500 Line too long (RFC 5321 §4.5.3.1.4, §4.5.3.1.10)",
         "count the octets of a command line with its CRLF; above 512, answer 500 and go on"),
        *TRANSACTION,
    ])
    wire.send(b"Subject: longest\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n", "a message with a 1000-octet line")
    reply = wire.reply()
    if reply.code != 250:
        raise Broken(wire.step, "250: a text line of exactly 1000 octets with its CRLF is allowed (RFC 5321 "
                     "§4.5.3.1.6)", _said(reply), hint="at most 1000 octets including the CRLF: 998 before it is fine")


def bare_lf(probe: Probe) -> None:
    _bare_lf(probe, b"Subject: smuggling\r\n\r\nhi\n.\nMAIL FROM:<evil@example.org>\r\n.\r\n",
             b"hi\r\n.\r\nMAIL FROM:<evil@example.org>\r\n")


def bare_lf_again(probe: Probe) -> None:
    _bare_lf(probe, b"Subject: smuggling\r\n\r\nhello\n.\r\nRSET\r\n.\r\n", b"hello\r\n.\r\nRSET\r\n")  # LF . CRLF


PIECES = ("receive(data) may bring several lines at once, or half of one: answer each complete line, in order, "
          "and keep an incomplete one for the next call")


def _pieces(wire: _Wire, pieces: list[bytes], codes: list[int]) -> None:
    expected = f"replies {' '.join(map(str, codes))}: one per command, once the command is complete"
    wire.send_pieces(pieces, f"{len(codes)} commands in {len(pieces)} pieces", expected=expected, hint=PIECES)
    got = [wire.reply().code for _ in codes]
    if got != codes:
        raise Broken(wire.step, expected, " ".join(map(str, got)), hint=PIECES)


def pipelining_pieces(probe: Probe) -> None:
    _pieces(_connect(probe), [b"EHLO client.exa", b"mple\r\nMAIL FR", b"OM:<someone@example.org>\r", b"\nRCPT TO:<betty@",
                    b"brilliant.com>\r\nNO", b"OP\r\n"], [250, 250, 250, 250])


def pipelining(probe: Probe) -> None:
    wire = _connect(probe)
    _pieces(wire, [b"HELO client.exa", b"mple\r\n"], [250])
    hint = PIECES
    for lines, codes in (([HELO, MAIL, RCPT, f"RCPT TO:<{NOBODY}>", "DATA"], [250, 250, 250, 550, 354]),
                         ([MESSAGE.decode() + ".", "QUIT"], [250, 221])):
        expected = f"replies {' '.join(map(str, codes))}: one per command, in order, nothing read ever dropped " \
                   "(RFC 2920 §3)"
        wire.send("".join(f"{line}\r\n" for line in lines).encode(), f"{len(codes)} commands in one write",
                  expected=expected, hint=hint)
        got = [wire.reply().code for _ in codes]
        if got != codes:
            raise Broken(wire.step, expected, " ".join(map(str, got)), hint=hint)


def smtplib_delivers(probe: Probe) -> None:
    world = probe.world(host=HOST, servers=[HOST])
    step = f"smtplib.SMTP(...).sendmail({SENDER!r}, [{BETTY!r}], message)"
    since = time.time()
    try:
        with smtplib.SMTP("127.0.0.1", _port(world), local_hostname=CLIENT,
                          timeout=probe.boundary.deadline + REPLY_GRACE) as client:
            client.sendmail(SENDER, [BETTY], MESSAGE)
    except (smtplib.SMTPException, OSError) as error:
        probe.raise_world_failure(world, step)
        got = f"{type(error).__name__}: {error}"
        raise Broken(step, "the message accepted: 250 to the hello, MAIL, RCPT and the data", got,
                     hint="smtplib sends its commands in lower case ('ehlo', 'mail FROM:<…> size=…'): command "
                     "words are case-insensitive (RFC 5321 §2.4)" if "500" in got else
                     "the transcript shows what smtplib sent and what your session answered") from None
    _stamped(world, _stored(world, since), "the message in Betty's Maildir")


def relay(probe: Probe) -> None:
    world = probe.world(host=HOST, servers=[HOST])
    since = time.time()
    world.send(ALBERT, [BETTY], MESSAGE)
    step, expected = f"Albert -> smtp.awesome.com -> (your session on) {HOST}", "Betty has the mail"
    hint = "MAIL may carry parameters after the path: the relay sends MAIL FROM:<…> SIZE=n (RFC 5321 §4.1.1.2, " \
           "RFC 1870); pass them to mta.mail(txn, address, params)"
    ended = probe.wait(world, settled(BETTY), step=step, expected=expected, hint=hint)
    if ended.kind != "delivered":
        raise Broken(step, expected, ended.line, hint=hint)
    _stamped(world, _stored(world, since), "the message in Betty's Maildir")


RULES: list[Rule] = [
    Rule("greeting", "greets with 220 and its own host name", "RFC 5321 §4.2, §3.1", greeting),
    Rule("ehlo", "EHLO: a multi-line 250 with the extensions; HELO: one line", "RFC 5321 §4.1.1.1, §4.2.1", ehlo),
    Rule("ehlo-other-name", "EHLO in lower case from another client: the same multi-line 250",
         "RFC 5321 §4.1.1.1, §4.2.1, §2.4", ehlo_other_name, variant_of="ehlo"),
    Rule("sequence", "commands out of order get 503: MAIL before HELO, RCPT before MAIL, DATA before RCPT, "
         "a second MAIL", "RFC 5321 §4.1.4", sequence),
    Rule("sequence-again", "503 for DATA before MAIL, and before an accepted recipient", "RFC 5321 §4.1.4",
         sequence_again, variant_of="sequence"),
    Rule("syntax", "bad arguments get 501 and change nothing (HELO without a name, MAIL without FROM:<…>, "
         "RCPT TO:<>); MAIL FROM:<> is fine", "RFC 5321 §4.1.2, §4.2.2", syntax),
    Rule("syntax-again", "501 for EHLO without a name, MAIL TO:, RCPT without <…>, RCPT FROM:",
         "RFC 5321 §4.1.2, §4.2.2", syntax_again, variant_of="syntax"),
    Rule("unknown", "an unknown command gets 500 and the session goes on; commands are case-insensitive",
         "RFC 5321 §2.4, §4.2.4", unknown),
    Rule("unknown-again", "500 before the hello too; 'Helo' and 'Rset' are commands", "RFC 5321 §2.4, §4.2.4",
         unknown_again, variant_of="unknown"),
    Rule("rset", "RSET forgets the transaction but keeps the HELO", "RFC 5321 §4.1.1.5", rset),
    Rule("rset-mail", "RSET after MAIL only, and twice", "RFC 5321 §4.1.1.5", rset_mail, variant_of="rset"),
    Rule("noop", "NOOP answers 250 and changes nothing", "RFC 5321 §4.1.1.9", noop),
    Rule("noop-again", "NOOP after RCPT changes nothing", "RFC 5321 §4.1.1.9", noop_again, variant_of="noop"),
    Rule("quit", "QUIT: 221, then the server closes the connection", "RFC 5321 §4.1.1.10", quit_),
    Rule("quit-in-transaction", "QUIT in a transaction: 221, then the server closes the connection",
         "RFC 5321 §4.1.1.10", quit_in_transaction, variant_of="quit"),
    Rule("policy", "the host's RCPT replies are passed on: 550 unknown user, 454 relay denied",
         "RFC 5321 §4.1.1.3, §3.6.2", policy),
    Rule("policy-again", "the host's RCPT replies for other recipients are passed on", "RFC 5321 §4.1.1.3, §3.6.2",
         policy_again, variant_of="policy"),
    Rule("data", "DATA: 354, the message up to the lone '.', then 250 queued as ID", "RFC 5321 §4.1.1.4", data),
    Rule("data-again", "DATA: a message with a folded header and empty lines, stored as sent", "RFC 5321 §4.1.1.4",
         data_again, variant_of="data"),
    Rule("dot-unstuffing", "a line '..x' is stored as '.x'", "RFC 5321 §4.5.2", dot_unstuffing, hint=UNSTUFF),
    Rule("dot-unstuffing-again", "dot-unstuffing at the end of a message", "RFC 5321 §4.5.2", dot_unstuffing_again,
         hint=UNSTUFF, variant_of="dot-unstuffing"),
    Rule("line-limits", "a 600-octet command line gets 500; a 1200-octet text line gets 500 after the data",
         "RFC 5321 §4.5.3.1", line_limits),
    Rule("line-limits-exact", "lines of exactly 512 and 1000 octets are fine, 513 is not", "RFC 5321 §4.5.3.1",
         line_limits_exact, variant_of="line-limits"),
    Rule("bare-lf", "a bare LF ends nothing in DATA: no command is smuggled in a message",
         "RFC 5321 §4.1.1.4, §2.3.8", bare_lf, hint=SMUGGLING),
    Rule("bare-lf-again", "LF . CRLF ends nothing in DATA either", "RFC 5321 §4.1.1.4, §2.3.8", bare_lf_again,
         hint=SMUGGLING, variant_of="bare-lf"),
    Rule("pipelining", "a command in two pieces, and commands sent together, are answered one by one, in order",
         "RFC 5321 §2.3.8; RFC 2920 §3", pipelining, hint=PIECES),
    Rule("pipelining-pieces", "commands cut anywhere, even between CR and LF", "RFC 5321 §2.3.8; RFC 2920 §3",
         pipelining_pieces, hint=PIECES, variant_of="pipelining"),
    Rule("smtplib", "Python's smtplib delivers to Betty, and the message gets smtp.brilliant.com's Received: line",
         "RFC 5321 §4.4", smtplib_delivers),
    Rule("relay", "the world's relay (smtp.awesome.com) delivers Albert's mail to Betty through it",
         "RFC 5321 §2.1, §4.1.1.2; RFC 1870", relay),
]

run, check = entry_points("smtp_session", RULES)
