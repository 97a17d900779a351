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
from .harness import ALBERT, BETTY, CAROL, Broken, Probe, Rule, entry_points, parsed
from .peers import hangs_up
from .received_header import clause

HOST = "smtp.brilliant.com"
NOBODY = "nobody@brilliant.com"
SENDER, CLIENT = "someone@example.org", "client.example"
HELO, EHLO, MAIL, RCPT = f"HELO {CLIENT}", f"EHLO {CLIENT}", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{BETTY}>"
MESSAGE = (b"From: Someone <someone@example.org>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: Receiving mail\r\n"
           b"\r\nHello Betty,\r\nthis came in through your SMTP session.\r\n")
REPLY_GRACE = 1.0  # a reply may take the deadline (then the world answers 451), and this much more
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

    def _broken(self, problem: str) -> Exception:  # what a failed wait raises
        super()._broken(problem)
        self.probe.raise_world_failure(self.world, self.step)
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
    to it, greeted (the greeting has its own rule)."""
    wire = _Wire(probe, probe.world(host=HOST, servers=[HOST]))
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
        raise Broken("the message in Betty's Maildir", f"the body {body!r}: {expected}", repr(_body(stored)),
                     hint=hint)


def _stamped(world: Any, stored: bytes, step: str) -> None:
    received = [" ".join(h.split()) for h in parsed(stored).get_all("Received", [])]
    if not any(clause(f"Received: {h}", "by") == HOST for h in received):
        raise Broken(step, f"a Received: header 'from … by {HOST} …' (RFC 5321 §4.4: every server that takes "
                     "a message stamps one)", "; ".join(received) or "no Received: header",
                     hint="mta.data(txn, message) stamps it: give it the message as it came")


# -- the rules ---------------------------------------------------------------------------
def greeting(probe: Probe) -> None:
    wire = _Wire(probe, probe.world(host=HOST, servers=[HOST]))
    reply = wire.reply()
    expected = f"220 {HOST} ...: the greeting names the server (RFC 5321 §4.2)"
    if reply.code != 220:
        raise Broken("the greeting", expected, _said(reply), hint="220 means 'ready'; start() returns "
                     "mta.greeting() + '\\r\\n', as bytes")
    _names_host(reply, "the greeting", expected, "use the hostname you were given: smtp_session(peer, mta, *, "
                "hostname), or mta.greeting()")


def ehlo(probe: Probe) -> None:
    wire = _connect(probe)
    extensions = MTA(wire.world.host(HOST), "smtp").extensions()
    expected = (f"250-{HOST} ..., then one line per extension of mta.extensions() ({', '.join(extensions)}), "
                "'250-' on every line but the last, which has '250 ' (RFC 5321 §4.1.1.1, §4.2.1)")
    reply = _expect(wire, EHLO, 250, HELLO_OK)
    _names_host(reply, EHLO, expected, "the first line of the EHLO reply names the server")
    offered = {line.upper() for line in reply.lines[1:]}
    if any(e.upper() not in offered for e in extensions):
        hint = ("with '250 ' on every line, each line is a whole reply: the client takes the first as the answer "
                "and the rest as answers to its next commands") if wire.pending else (
                "EHLO lists what the server can do, one extension a line: mta.extensions()")
        raise Broken(EHLO, expected, _said(reply), hint=hint)
    reply = _expect(wire, HELO, 250, "HELO may come again after EHLO; it starts over (RFC 5321 §4.1.4)")
    if len(reply.lines) != 1:
        raise Broken(HELO, f"one line: 250 {HOST} (HELO has no extensions, RFC 5321 §4.1.1.1)", _said(reply),
                     hint="only EHLO lists extensions")
    _names_host(reply, HELO, f"250 {HOST} (RFC 5321 §4.1.1.1)", "the HELO reply names the server")


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


def policy(probe: Probe) -> None:
    wire = _connect(probe)
    _dialogue(wire, [(HELO, 250, HELLO_OK, ""), (MAIL, 250, MAIL_OK, "")])
    mta = MTA(wire.world.host(HOST), "smtp")
    txn = mta.transaction(("127.0.0.1", 0))
    txn.mail_from = SENDER
    for address, what in ((NOBODY, "no such user here"), (CAROL, "port 25 takes mail for this host's domains only, "
                                                              "so no relaying (RFC 5321 §3.6.2)")):
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
    wire = _connect(probe)
    reply, stored = _deliver(wire, MESSAGE + b".\r\n")
    queued = [e.data.get("queue_id", "") for e in wire.world.tracer.events() if delivered_to(BETTY)(e)]
    if not queued or f"queued as {queued[0]}" not in reply.text:
        raise Broken("the reply after the data", f"250 ... queued as {queued[0] if queued else 'ID'}: the reply "
                     "mta.data gave, as it is", _said(reply), hint="send the reply mta.data(txn, message) returns")
    _expect_body(stored, _body(MESSAGE), "what the client sent, without the final '.' line (RFC 5321 §4.1.1.4)",
                 "the final '.' ends the data and is not part of the message")
    _expect(wire, "QUIT", 221, "QUIT is answered 221 (RFC 5321 §4.1.1.10)")


def dot_unstuffing(probe: Probe) -> None:
    sent = b"Subject: dots\r\n\r\n..leading dot\r\n..\r\n...two dots\r\nend\r\n.\r\n"
    _, stored = _deliver(_connect(probe), sent)
    _expect_body(stored, b".leading dot\r\n.\r\n..two dots\r\nend\r\n", "a line that starts with '.' loses "
                 "one '.': the client doubled it (RFC 5321 §4.5.2)",
                 "dot-unstuffing: remove exactly one leading '.' from each line that has one, nothing else")


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


def bare_lf(probe: Probe) -> None:
    sent = b"Subject: smuggling\r\n\r\nhi\n.\nMAIL FROM:<evil@example.org>\r\n.\r\n"
    wire = _connect(probe)
    _, stored = _deliver(wire, sent)
    _expect_body(stored, b"hi\r\n.\r\nMAIL FROM:<evil@example.org>\r\n", "all of it, as one message: only "
                 "CRLF . CRLF ends the data (RFC 5321 §4.1.1.4), and the text after a '\\n.\\n' is message text, "
                 "never a command", "a bare LF is not a line end in DATA: split message lines at CRLF only, or "
                 "'\\n.\\n' ends the message early and what follows runs as commands (SMTP smuggling)")
    _expect(wire, "RSET", 250, "RSET is always accepted (RFC 5321 §4.1.1.5)")


def pipelining(probe: Probe) -> None:
    wire = _connect(probe)
    hint = "receive(data) may bring several lines at once: answer each, in order, and keep an incomplete " \
           "line for the next call"
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
    Rule("sequence", "commands out of order get 503: MAIL before HELO, RCPT before MAIL, DATA before RCPT, "
         "a second MAIL", "RFC 5321 §4.1.4", sequence),
    Rule("syntax", "bad arguments get 501 and change nothing (HELO without a name, MAIL without FROM:<…>, "
         "RCPT TO:<>); MAIL FROM:<> is fine", "RFC 5321 §4.1.2, §4.2.2", syntax),
    Rule("unknown", "an unknown command gets 500 and the session goes on; commands are case-insensitive",
         "RFC 5321 §2.4, §4.2.4", unknown),
    Rule("rset", "RSET forgets the transaction but keeps the HELO", "RFC 5321 §4.1.1.5", rset),
    Rule("noop", "NOOP answers 250 and changes nothing", "RFC 5321 §4.1.1.9", noop),
    Rule("quit", "QUIT: 221, then the server closes the connection", "RFC 5321 §4.1.1.10", quit_),
    Rule("policy", "the host's RCPT replies are passed on: 550 unknown user, 454 relay denied",
         "RFC 5321 §4.1.1.3, §3.6.2", policy),
    Rule("data", "DATA: 354, the message up to the lone '.', then 250 queued as ID", "RFC 5321 §4.1.1.4", data),
    Rule("dot-unstuffing", "a line '..x' is stored as '.x'", "RFC 5321 §4.5.2", dot_unstuffing),
    Rule("line-limits", "a 600-octet command line gets 500; a 1200-octet text line gets 500 after the data",
         "RFC 5321 §4.5.3.1", line_limits),
    Rule("bare-lf", "a bare LF ends nothing in DATA: no command is smuggled in a message",
         "RFC 5321 §4.1.1.4, §2.3.8", bare_lf),
    Rule("pipelining", "commands sent together are answered one by one, in order", "RFC 5321 §2.3.8; RFC 2920 §3",
         pipelining),
    Rule("smtplib", "Python's smtplib delivers to Betty, and the message gets smtp.brilliant.com's Received: line",
         "RFC 5321 §4.4", smtplib_delivers),
    Rule("relay", "the world's relay (smtp.awesome.com) delivers Albert's mail to Betty through it",
         "RFC 5321 §2.1, §4.1.1.2; RFC 1870", relay),
]

run, check = entry_points("smtp_session", RULES)
