"""Checks for ``send_mail``, the SMTP client (the "SMTP by hand" lab).

Every rule runs the student's function against a real SMTP server on a loopback port:
a scripted peer (:class:`~labkit.checks.peers.SMTPPeer`) that plays the situation the
rule is about, or the lab world itself for the last rule. ::

    from labkit import checks
    checks.send_mail.run(send_mail)                 # a Report: every rule
    checks.send_mail.check(send_mail, ["helo-fallback"])   # raise CheckFailed if it fails
"""

from __future__ import annotations

import re
from typing import Any

from ..net import close_socket
from ..smtp.reply import SendResult, SMTPError, SMTPPermanentError, SMTPTransientError
from .harness import ALBERT, BETTY, CAROL, DAVE, Broken, Probe, Rule, entry_points
from .peers import SMTPPeer

HELO = "smtp.awesome.com"
MESSAGE = (b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: Dinner\r\n\r\n"
           b"Hey, let's do dinner tonight.\r\n-Albert\r\n")
TIMEOUT = 2.0  # what the checks pass as send_mail's timeout


def _send(probe: Probe, peer: SMTPPeer, rcpt_to: list[str], message: bytes = MESSAGE, *,
          timeout: float = TIMEOUT) -> SendResult:
    """Run the student's send_mail against ``peer``; SMTPError passes through."""
    sock = peer.connect()
    sock.settimeout(None)  # a blocking socket, as from socket.create_connection: the timeout is the client's job
    try:
        return probe(sock, helo=HELO, mail_from=ALBERT, rcpt_to=rcpt_to, message=message, timeout=timeout,
                     step="send_mail(...)")
    finally:
        close_socket(sock)
        peer.wait(3)


def _result(probe: Probe, peer: SMTPPeer, rcpt_to: list[str], message: bytes = MESSAGE, *,
            hint: str = "the server accepted the message: nothing here is an error") -> SendResult:
    """Like :func:`_send`, for rules where the transaction should succeed."""
    try:
        return _send(probe, peer, rcpt_to, message)
    except SMTPError as error:
        raise Broken("send_mail(...)", "a SendResult", f"{type(error).__name__}: {error}", hint=hint) from None


MULTILINE = ("a multi-line reply is 'NNN-text' lines, then one 'NNN text' line (RFC 5321 §4.2.1): read up to that "
             "last line, or the rest of the reply is taken as the answer to your next command")


def _commands(peer: SMTPPeer) -> str:
    return " ".join(peer.commands) or "(nothing)"


def _expect_quit(peer: SMTPPeer) -> None:
    if not peer.quit_sent:
        raise Broken("the end of the dialogue", "QUIT as the last command (RFC 5321 §4.1.1.10)",
                     f"commands: {_commands(peer)}", hint="always end with QUIT, even after an error")


def _expect_code(what: str, reply: Any, code: int) -> None:
    got = getattr(reply, "code", reply)
    if got != code:
        raise Broken(what, f"the server's reply {code}", f"{reply!r}", hint="each reply belongs to the command just "
                     "sent: " + MULTILINE)


# -- the rules ---------------------------------------------------------------------------
def delivers(probe: Probe) -> None:
    with SMTPPeer(note=probe.note) as peer:
        result = _result(probe, peer, [BETTY])
    sequence = [c for c in peer.commands if c != "NOOP"]
    if sequence[:1] not in (["EHLO"], ["HELO"]):
        raise Broken("after the greeting", "EHLO (or HELO)", _commands(peer),
                     hint="the client greets first (RFC 5321 §4.1.1.1)")
    mails = [line for d, line in peer.transcript if d == "C" and line.upper().startswith("MAIL")]
    if mails[:1] != [f"MAIL FROM:<{ALBERT}>"] and not (mails and mails[0].startswith(f"MAIL FROM:<{ALBERT}> ")):
        raise Broken("the MAIL command", f"MAIL FROM:<{ALBERT}>", mails[0] if mails else "no MAIL",
                     hint="the address goes in angle brackets, no space after the colon (RFC 5321 §4.1.1.2)")
    rcpts = [line for d, line in peer.transcript if d == "C" and line.upper().startswith("RCPT")]
    if rcpts != [f"RCPT TO:<{BETTY}>"]:
        raise Broken("the RCPT command", f"RCPT TO:<{BETTY}>", " / ".join(rcpts) or "no RCPT")
    if not peer.data or peer.data[0] != MESSAGE + b".\r\n":
        raise Broken("the message after DATA", "the message, then a line with a single '.'",
                     repr(peer.data[0][:120]) if peer.data else "no DATA",
                     hint="end the data with CRLF . CRLF (RFC 5321 §4.1.1.4)")
    _expect_code("accepted[betty]", result.accepted.get(BETTY), 250)
    _expect_code("data_reply", result.data_reply, 250)
    if "PEER1" not in str(getattr(result.data_reply, "text", "")):
        raise Broken("data_reply", "the server's own reply text (…queued as PEER1)", repr(result.data_reply))
    _expect_quit(peer)


def multiline_greeting(probe: Probe) -> None:
    greeting = "220-peer.example ESMTP\r\n220-This server is monitored.\r\n220 Welcome"
    with SMTPPeer(note=probe.note, greeting=greeting) as peer:
        result = _result(probe, peer, [BETTY], hint=MULTILINE)
    _expect_code("accepted[betty]", result.accepted.get(BETTY), 250)
    _expect_code("data_reply", result.data_reply, 250)


def multiline_ehlo(probe: Probe) -> None:
    ehlo = "\r\n".join(["250-peer.example Hello", *(f"250-X-EXTENSION-{i}" for i in range(6)), "250 HELP"])
    with SMTPPeer({"EHLO": ehlo}, note=probe.note) as peer:
        result = _result(probe, peer, [BETTY], hint=MULTILINE)
    _expect_code("accepted[betty]", result.accepted.get(BETTY), 250)
    _expect_code("data_reply", result.data_reply, 250)


def helo_fallback(probe: Probe) -> None:
    with SMTPPeer({"EHLO": '500 5.5.2 command "EHLO" not recognized'}, note=probe.note) as peer:
        result = _result(probe, peer, [BETTY])
    if "HELO" not in peer.commands:
        raise Broken("after 500 to EHLO", "HELO (an old server: RFC 5321 §3.2)", _commands(peer))
    _expect_code("data_reply", result.data_reply, 250)


def per_recipient(probe: Probe) -> None:
    script = {"RCPT": lambda line: {f"RCPT TO:<{CAROL}>": "550 5.1.1 <carol@careful.com>: user unknown",
                                    f"RCPT TO:<{DAVE}>": "451 4.2.0 <dave@brilliant.com>: mailbox busy"}.get(
        line, "250 2.1.5 OK")}
    with SMTPPeer(script, note=probe.note) as peer:
        result = _result(probe, peer, [CAROL, BETTY, DAVE])
    for rcpt, code in ((CAROL, 550), (DAVE, 451)):
        if rcpt not in result.refused:
            raise Broken(f"result.refused[{rcpt!r}]", f"the {code} reply", f"refused = {result.refused!r}",
                         hint="one refused recipient does not end the transaction: record it and go on")
        _expect_code(f"refused[{rcpt!r}]", result.refused[rcpt], code)
    _expect_code(f"accepted[{BETTY!r}]", result.accepted.get(BETTY), 250)
    if "DATA" not in peer.commands:
        raise Broken("after the RCPTs", "DATA: one recipient was accepted", _commands(peer))
    _expect_code("data_reply", result.data_reply, 250)


def nobody_accepted(probe: Probe) -> None:
    with SMTPPeer({"RCPT": "550 5.1.1 user unknown"}, note=probe.note) as peer:
        try:
            result = _send(probe, peer, [CAROL, DAVE])
        except SMTPPermanentError:
            result = None
    if "DATA" in peer.commands:
        raise Broken("after every RCPT was refused", "no DATA: there is no one to send it to (RFC 5321 §3.3)",
                     _commands(peer))
    if result is not None and (result.accepted or result.data_reply is not None):
        raise Broken("the result", "nobody accepted, data_reply None", repr(result))
    _expect_quit(peer)


def dot_stuffing(probe: Probe) -> None:
    message = b"Subject: dots\r\n\r\nA list:\r\n.hidden file\r\n.\r\n..two dots\r\nend\r\n"
    stuffed = b"Subject: dots\r\n\r\nA list:\r\n..hidden file\r\n..\r\n...two dots\r\nend\r\n.\r\n"
    with SMTPPeer(note=probe.note) as peer:
        _result(probe, peer, [BETTY], message)
    if not peer.data or peer.data[0] != stuffed:
        raise Broken("the message after DATA", f"{stuffed!r} (every line starting with '.' gets one more)",
                     repr(peer.data[0]) if peer.data else "no DATA",
                     hint="without dot-stuffing a line with a single '.' ends the message early (RFC 5321 §4.5.2)")


def line_endings(probe: Probe) -> None:
    with SMTPPeer(note=probe.note) as peer:
        _result(probe, peer, [BETTY], b"Subject: unix\n\nwritten on Unix\nwith LF endings\n")
    sent = peer.data[0] if peer.data else b""
    if re.search(rb"(?<!\r)\n", sent) or not sent.endswith(b"with LF endings\r\n.\r\n"):
        raise Broken("the message after DATA", "every line ending as CRLF (RFC 5321 §2.3.8)", repr(sent),
                     hint="a bare LF is not a line end in SMTP: convert the message's line endings first")


def _failure(probe: Probe, peer: SMTPPeer, error_class: type[SMTPError], step: str, *, hint: str = "",
             timeout: float = TIMEOUT) -> SMTPError:
    """Run the transaction, expecting it to raise ``error_class``; returns the error."""
    try:
        outcome: Any = _send(probe, peer, [BETTY], timeout=timeout)
    except SMTPError as error:
        outcome = error
    if isinstance(outcome, error_class):
        return outcome
    got = f"{type(outcome).__name__}: {outcome}" if isinstance(outcome, SMTPError) else repr(outcome)
    raise Broken(step, f"{error_class.__name__} (4xx: try again later; 5xx: give up, RFC 5321 §4.2.1)", got,
                 hint=hint)


def sender_refused(probe: Probe) -> None:
    with SMTPPeer({"MAIL": "553 5.7.1 <albert@awesome.com>: sender rejected"}, note=probe.note) as peer:
        error = _failure(probe, peer, SMTPPermanentError, "553 to MAIL FROM", hint="a refused MAIL ends the "
                         "transaction: raise SMTPPermanentError(problem, stage='MAIL', reply=the reply)")
    if getattr(error.reply, "code", None) != 553:
        raise Broken("the SMTPPermanentError", "its reply: the server's 553", repr(error.reply))
    _expect_quit(peer)


def greeting_refused(probe: Probe) -> None:
    for greeting, error_class in (("554 5.3.2 no service here", SMTPPermanentError),
                                  ("421 4.3.2 too busy, try later", SMTPTransientError)):
        with SMTPPeer(greeting=greeting, note=probe.note) as peer:
            _failure(probe, peer, error_class, f"greeting {greeting[:3]}",
                     hint="only 220 invites the client in (RFC 5321 §3.1)")
        if any(c in ("MAIL", "RCPT", "DATA") for c in peer.commands):
            raise Broken(f"after greeting {greeting[:3]}", "no mail transaction", _commands(peer))


def data_refused(probe: Probe) -> None:
    for end, code, error_class in (("552 5.3.4 message too big", 552, SMTPPermanentError),
                                   ("451 4.3.0 try again later", 451, SMTPTransientError)):
        with SMTPPeer({".": end}, note=probe.note) as peer:
            try:
                result = _send(probe, peer, [BETTY])
            except SMTPError as error:
                if not isinstance(error, error_class):
                    raise Broken(f"{code} after the data", error_class.__name__,
                                 f"{type(error).__name__}: {error}") from None
                continue
        if getattr(result.data_reply, "code", None) != code:
            raise Broken(f"{code} after the data", f"{error_class.__name__}, or data_reply {code}",
                         f"data_reply = {result.data_reply!r}",
                         hint="the reply after the final '.' decides whether the message was taken")


def split_replies(probe: Probe) -> None:
    with SMTPPeer(note=probe.note, split=True) as peer:
        result = _result(probe, peer, [BETTY, CAROL], hint="TCP delivers bytes, not lines: one recv() may hold half "
                         "a reply, or two; keep reading into a buffer until the line end")
    _expect_code("accepted", result.accepted.get(CAROL), 250)
    _expect_code("data_reply", result.data_reply, 250)


def connection_lost(probe: Probe) -> None:
    with SMTPPeer({"RCPT": None}, note=probe.note) as peer:  # hangs up at RCPT
        _failure(probe, peer, SMTPTransientError, "the server hung up",
                 hint="recv() returning b'' means the server closed the connection")


def server_silent(probe: Probe) -> None:
    with SMTPPeer(greeting=None, note=probe.note) as peer:
        _failure(probe, peer, SMTPTransientError, "a server that never greets", timeout=0.5,
                 hint="sock.settimeout(timeout): a recv that times out raises TimeoutError")


def in_the_world(probe: Probe) -> None:
    world = probe.world(servers=["smtp.brilliant.com"])  # the relay's dialogue, as smtp.brilliant.com saw it
    world.send(ALBERT, [BETTY], MESSAGE)
    probe.delivered(world, BETTY, step="Albert -> smtp.awesome.com -> (your send_mail) -> smtp.brilliant.com")


RULES: list[Rule] = [
    Rule("delivers", "sends one message: EHLO, MAIL, RCPT, DATA, the message, '.', QUIT", "RFC 5321 §3.3", delivers),
    Rule("greeting-multiline", "waits for the whole multi-line greeting", "RFC 5321 §4.2.1", multiline_greeting),
    Rule("ehlo-multiline", "reads the whole multi-line EHLO reply", "RFC 5321 §4.1.1.1, §4.2.1", multiline_ehlo),
    Rule("helo-fallback", "EHLO refused (500): falls back to HELO", "RFC 5321 §3.2", helo_fallback),
    Rule("per-recipient", "a reply per recipient: some refused, the rest still get the message",
         "RFC 5321 §3.3", per_recipient),
    Rule("nobody-accepted", "no DATA when every recipient was refused", "RFC 5321 §3.3", nobody_accepted),
    Rule("dot-stuffing", "lines starting with '.' are dot-stuffed", "RFC 5321 §4.5.2", dot_stuffing),
    Rule("line-endings", "the message goes with CRLF line endings", "RFC 5321 §2.3.8", line_endings),
    Rule("sender-refused", "a refused MAIL FROM raises SMTPPermanentError", "RFC 5321 §4.2.1", sender_refused),
    Rule("greeting-refused", "554 and 421 greetings: permanent and temporary failure", "RFC 5321 §3.1, §4.2.1",
         greeting_refused),
    Rule("data-refused", "5xx and 4xx after the data: permanent and temporary", "RFC 5321 §4.2.1", data_refused),
    Rule("split-replies", "replies that arrive in pieces", "RFC 5321 §2.3.8 (TCP is a byte stream)", split_replies),
    Rule("connection-lost", "a server that hangs up: SMTPTransientError", "RFC 5321 §3.8", connection_lost),
    Rule("timeout", "a silent server: gives up after the timeout", "RFC 5321 §4.5.3.2", server_silent),
    Rule("in-the-world", "as smtp.awesome.com's relay client, Albert's mail reaches Betty", "RFC 5321 §2.1",
         in_the_world),
]


run, check = entry_points("send_mail", RULES)
