"""Checks for ``send_mail``, the SMTP client (the "SMTP by hand" lab).

Every rule runs the student's function against a real SMTP server on a loopback port:
a scripted peer (:class:`~labkit.checks.peers.SMTPPeer`) that plays the situation the
rule is about, or the lab world itself for the last rule. ::

    from labkit import checks
    checks.send_mail.run(send_mail)                 # a Report: every rule
    checks.send_mail.check(send_mail, ["helo-fallback"])   # raise CheckFailed if it fails
"""

from __future__ import annotations

import builtins
import re
from typing import Any

from ..net import close_socket
from ..smtp.reply import SendResult, SMTPError, SMTPPermanentError, SMTPTransientError
from ..trace import settled
from .harness import ALBERT, BETTY, CAROL, DAVE, Broken, Probe, Rule, difference, entry_points, shown
from .peers import HANG_UP, SILENT, SMTPPeer

HELO = "smtp.awesome.com"
MESSAGE = (b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: Dinner\r\n\r\n"
           b"Hey, let's do dinner tonight.\r\n-Albert\r\n")
TIMEOUT = 2.0  # what the checks pass as send_mail's timeout
SILENT_TIMEOUT = 0.1  # ... where the server is meant to fall silent: any time out passes, so a short one


def _send(probe: Probe, peer: SMTPPeer, rcpt_to: list[str], message: bytes = MESSAGE, *,
          timeout: float = TIMEOUT, mail_from: str = ALBERT, helo: str = HELO) -> SendResult:
    """Run the student's send_mail against ``peer``; SMTPError passes through."""
    sock = peer.connect()
    sock.settimeout(None)  # a blocking socket, as from socket.create_connection: the timeout is the client's job
    try:
        return probe(sock, helo=helo, mail_from=mail_from, rcpt_to=rcpt_to, message=message, timeout=timeout,
                     step="send_mail(...)")
    finally:
        close_socket(sock)
        peer.wait(3)


def _result(probe: Probe, peer: SMTPPeer, rcpt_to: list[str], message: bytes = MESSAGE, *,
            hint: str = "the server accepted the message: nothing here is an error", **kw: Any) -> SendResult:
    """Like :func:`_send`, for rules where the transaction should succeed."""
    try:
        result = _send(probe, peer, rcpt_to, message, **kw)
    except SMTPError as error:
        raise Broken("send_mail(...)", "a SendResult", f"{type(error).__name__}: {error}", hint=hint) from None
    if result.accepted and not peer.data:  # what the server said, never made up
        raise Broken("what the server received", "the transaction the SendResult reports: MAIL, RCPT, DATA, the "
                     "message", _commands(peer), hint="the SendResult reports the server's replies to what you sent")
    return result


def _wire(message: bytes) -> bytes:
    """What DATA must carry for ``message``: CRLF lines, dot-stuffed, then '.' (RFC 5321 §4.5.2)."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def _expect_data(peer: SMTPPeer, message: bytes, expected: str, hint: str) -> None:
    """The DATA the peer received is ``message`` as the wire must carry it; if not, the
    row shows where they differ and what that difference usually is."""
    wanted = _wire(message)
    got = peer.data[0] if peer.data else None
    if got == wanted:
        return
    if got is None:
        raise Broken("the message after DATA", expected, "no DATA", hint=hint)
    want_text, got_text, where = difference(wanted, got)
    raise Broken("the message after DATA", f"{expected}: {want_text}", got_text + (f"\n({where})" if where else ""),
                 hint=_data_mistake(wanted, got) or hint)


def _data_mistake(wanted: bytes, got: bytes) -> str:
    """The classic mistake that turns ``wanted`` into ``got``, in a sentence (or "")."""
    if got.endswith(b"\r\n\r\n.\r\n") and got[:-5] + b".\r\n" == wanted:
        return ("an extra empty line before the final '.': the message already ends with CRLF, so send only "
                "'.\\r\\n' after it (an empty line would become part of the message)")
    if wanted.endswith(b"\r\n.\r\n") and got == wanted[:-5] + b".\r\n":
        return "the final '.' must be on a line of its own: CRLF '.' CRLF (RFC 5321 §4.1.1.4)"
    if re.search(rb"(?<!\r)\n", got):
        return "a bare LF is not a line end in SMTP: every line ends with CRLF (RFC 5321 §2.3.8)"
    if wanted.replace(b"\r\n..", b"\r\n.") == got:
        return "dot-stuffing: a line that starts with '.' gets one more '.' in front (RFC 5321 §4.5.2)"
    if not got.endswith(b".\r\n"):
        return "end the data with a line holding a single '.': CRLF . CRLF (RFC 5321 §4.1.1.4)"
    return ""


END_OF_DATA = ("after DATA's 354 the message goes, then a line with a single '.' (CRLF . CRLF), and only then does "
               "the server reply (RFC 5321 §4.1.1.4)")
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
        raise Broken(what, f"the server's reply {code}", shown(reply), hint="each reply belongs to the command just "
                     "sent: " + MULTILINE)


def _expect_text(what: str, reply: Any, text: str) -> None:
    """``reply`` is the server's reply with ``text`` in its lines (a tuple of str)."""
    lines = getattr(reply, "lines", None)
    if isinstance(lines, str):
        raise Broken(what, f"Reply({reply.code}, ({lines!r},)): lines is a tuple of the reply's lines",
                     f"{shown(reply)}: lines is a str, where a tuple of str belongs",
                     hint="Reply(code, lines) takes the lines as a tuple, one str per line, without '250-'/'250 ': "
                          "Reply(250, ('2.0.0 OK',)) (a str there is taken one character per line)")
    if not any(text in line for line in lines or ()):
        raise Broken(what, f"the server's own reply text (…{text})", shown(reply),
                     hint="keep the text of the reply's lines, after the code and its ' ' or '-'")


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
    _expect_data(peer, MESSAGE, "the message, then a line with a single '.'",
                 "end the data with CRLF . CRLF (RFC 5321 §4.1.1.4)")
    _expect_code("accepted[betty]", result.accepted.get(BETTY), 250)
    _expect_code("data_reply", result.data_reply, 250)
    _expect_text("data_reply", result.data_reply, "queued as PEER1")
    _expect_quit(peer)


def delivers_other(probe: Probe) -> None:
    """The same, for other people, another name and a message without a final newline."""
    message = b"From: Carol <carol@careful.com>\r\nSubject: re: Dinner\r\n\r\nYes! 8pm.\r\n-Carol"
    with SMTPPeer({".": "250 2.0.0 Ok: queued as 4QXk2"}, note=probe.note) as peer:
        result = _result(probe, peer, [DAVE, BETTY], message, mail_from=CAROL, helo="mx2.careful.com")
    hello = [line for d, line in peer.transcript if d == "C" and line.upper().startswith(("EHLO", "HELO"))]
    if hello[:1] != ["EHLO mx2.careful.com"]:
        raise Broken("the hello", "EHLO mx2.careful.com: the helo name you were given", hello[0] if hello else "none")
    sent = [line for d, line in peer.transcript if d == "C" and line.upper().startswith(("MAIL", "RCPT"))]
    wanted = [f"MAIL FROM:<{CAROL}>", f"RCPT TO:<{DAVE}>", f"RCPT TO:<{BETTY}>"]
    if [line.split(" SIZE=")[0] for line in sent] != wanted:
        raise Broken("MAIL and RCPT", " / ".join(wanted), " / ".join(sent) or "none",
                     hint="use mail_from and each address of rcpt_to as given")
    _expect_data(peer, message, "the message with CRLF line ends, then '.'",
                 "the last line needs its CRLF before the final '.' line")
    _expect_text("data_reply", result.data_reply, "queued as 4QXk2")
    _expect_quit(peer)


def multiline_greeting(probe: Probe) -> None:
    greeting = "220-peer.example ESMTP\r\n220-This server is monitored.\r\n220 Welcome"
    with SMTPPeer(note=probe.note, greeting=greeting) as peer:
        result = _result(probe, peer, [BETTY], hint=MULTILINE)
    _expect_code("accepted[betty]", result.accepted.get(BETTY), 250)
    _expect_code("data_reply", result.data_reply, 250)


def _ehlo_reply(extensions: list[str]) -> str:
    return "\r\n".join(["250-peer.example Hello", *(f"250-{e}" for e in extensions[:-1]), f"250 {extensions[-1]}"])


def multiline_ehlo(probe: Probe) -> None:
    with SMTPPeer({"EHLO": _ehlo_reply([*(f"X-EXTENSION-{i}" for i in range(6)), "HELP"])}, note=probe.note) as peer:
        result = _result(probe, peer, [BETTY], hint=MULTILINE)
    _expect_code("accepted[betty]", result.accepted.get(BETTY), 250)
    _expect_code("data_reply", result.data_reply, 250)


def long_ehlo(probe: Probe) -> None:
    """An EHLO reply longer than one recv(4096) can hold."""
    lines = [f"X-LONG-EXTENSION-{i} " + "x" * 100 for i in range(60)] + ["HELP"]
    with SMTPPeer({"EHLO": _ehlo_reply(lines)}, note=probe.note) as peer:
        result = _result(probe, peer, [BETTY], hint=MULTILINE + "; a reply may be longer than one recv() returns")
    _expect_code("accepted[betty]", result.accepted.get(BETTY), 250)
    _expect_code("data_reply", result.data_reply, 250)


def _helo_fallback(probe: Probe, refusal: str) -> None:
    with SMTPPeer({"EHLO": refusal}, note=probe.note) as peer:
        result = _result(probe, peer, [BETTY], hint="500 or 502 to EHLO: an old server, not a failure: say HELO")
    if "HELO" not in peer.commands:
        raise Broken(f"after {refusal[:3]} to EHLO", "HELO (an old server: RFC 5321 §3.2)", _commands(peer))
    _expect_code("data_reply", result.data_reply, 250)


def helo_fallback(probe: Probe) -> None:
    _helo_fallback(probe, '500 5.5.2 command "EHLO" not recognized')


def helo_fallback_502(probe: Probe) -> None:
    _helo_fallback(probe, "502 5.5.1 EHLO not implemented")


def _per_recipient(probe: Probe, replies: dict[str, str]) -> None:
    """Recipients each get their reply (``replies``; the rest 250)."""
    script = {"RCPT": lambda line: next((r for a, r in replies.items() if line == f"RCPT TO:<{a}>"), "250 2.1.5 OK")}
    rcpts = [*replies, BETTY]
    with SMTPPeer(script, note=probe.note) as peer:
        result = _result(probe, peer, rcpts, hint="one refused recipient does not end the transaction: record its "
                         "reply in refused and go on with the next")
    for rcpt, reply in replies.items():
        code = int(reply[:3])
        table = result.accepted if code < 400 else result.refused
        name = "accepted" if code < 400 else "refused"
        if rcpt not in table:
            why = "2xx accepts a recipient" if code < 400 else "4xx and 5xx refuse a recipient"
            raise Broken(f"result.{name}[{rcpt!r}]", f"the {code} reply ({why}, RFC 5321 §4.2.1)",
                         f"accepted = {result.accepted!r}, refused = {result.refused!r}",
                         hint="every RCPT gets its own reply: keep each one, under its recipient")
        _expect_code(f"{name}[{rcpt!r}]", table[rcpt], code)
    _expect_code(f"accepted[{BETTY!r}]", result.accepted.get(BETTY), 250)
    if "DATA" not in peer.commands:
        raise Broken("after the RCPTs", "DATA: recipients were accepted", _commands(peer))
    _expect_code("data_reply", result.data_reply, 250)


def per_recipient(probe: Probe) -> None:
    _per_recipient(probe, {CAROL: "550 5.1.1 <carol@careful.com>: user unknown",
                           DAVE: "451 4.2.0 <dave@brilliant.com>: mailbox busy"})


def per_recipient_others(probe: Probe) -> None:
    _per_recipient(probe, {"tom@twins.com": "251 2.1.5 user not local; will forward",
                           "pat@plain.com": "452 4.5.3 too many recipients",
                           "x@nomail.com": "553 5.1.2 no such domain",
                           DAVE: "250 2.1.5 OK"})


def nobody_accepted(probe: Probe) -> None:
    _nobody_accepted(probe, "550 5.1.1 user unknown", SMTPPermanentError)


def nobody_accepted_4xx(probe: Probe) -> None:
    _nobody_accepted(probe, "450 4.2.1 mailbox unavailable, try later", SMTPTransientError)


def _nobody_accepted(probe: Probe, refusal: str, error_class: type[SMTPError]) -> None:
    with SMTPPeer({"RCPT": refusal}, note=probe.note) as peer:
        try:
            result = _send(probe, peer, [CAROL, DAVE])
        except error_class:
            result = None
        except SMTPError as error:
            raise Broken("every RCPT refused", f"a SendResult with both in refused, or {error_class.__name__}",
                         f"{type(error).__name__}: {error}", hint=f"{refusal[:3]}: "
                         f"{'4xx: try again later' if refusal[0] == '4' else '5xx: permanent'}") from None
    if "DATA" in peer.commands:
        raise Broken("after every RCPT was refused", "no DATA: there is no one to send it to (RFC 5321 §3.3)",
                     _commands(peer))
    if result is not None and (result.accepted or result.data_reply is not None):
        raise Broken("the result", "nobody accepted, data_reply None", repr(result))
    _expect_quit(peer)


STUFFING = "without dot-stuffing a line with a single '.' ends the message early (RFC 5321 §4.5.2)"
CRLF_HINT = "a bare LF is not a line end in SMTP: convert the message's line endings first"


def _stuffing(probe: Probe, message: bytes) -> None:
    with SMTPPeer(note=probe.note) as peer:
        _result(probe, peer, [BETTY], message)
    _expect_data(peer, message, "every line starting with '.' with one more '.'", STUFFING)


def dot_stuffing(probe: Probe) -> None:
    _stuffing(probe, b"Subject: dots\r\n\r\nA list:\r\n.hidden file\r\n.\r\n..two dots\r\nend\r\n")


def dot_stuffing_ends(probe: Probe) -> None:
    """Dots at the end of the message, and a dot line inside a paragraph."""
    _stuffing(probe, b"Subject: more dots\r\n\r\nsee you.\r\n. . .\r\nx.\r\n...\r\n.")


def _line_endings(probe: Probe, message: bytes) -> None:
    with SMTPPeer(note=probe.note) as peer:
        _result(probe, peer, [BETTY], message)
    _expect_data(peer, message, "every line ending as CRLF (RFC 5321 §2.3.8), then '.'", CRLF_HINT)


def line_endings(probe: Probe) -> None:
    _line_endings(probe, b"Subject: unix\n\nwritten on Unix\nwith LF endings\n")


def line_endings_mixed(probe: Probe) -> None:
    """Mixed endings, and no newline after the last line."""
    _line_endings(probe, b"Subject: mixed\r\n\nsome CRLF\r\nsome LF\nno newline at the end")


ERRORS = "4xx or a broken connection: try again later; 5xx: give up, RFC 5321 §4.2.1"


def _failure(probe: Probe, peer: SMTPPeer, error_class: type[SMTPError], step: str, *, hint: str = "",
             timeout: float = TIMEOUT) -> SMTPError:
    """Run the transaction, expecting it to raise ``error_class``; returns the error."""
    wanted = f"{error_class.__name__} ({ERRORS})"
    try:
        outcome: Any = _send(probe, peer, [BETTY], timeout=timeout)
    except SMTPError as error:
        outcome = error
    except Broken as broken:
        if broken.failure != "raised":
            raise
        name = broken.got.split(":", 1)[0]
        raised = getattr(builtins, name, None)
        from_socket = isinstance(raised, type) and issubclass(raised, OSError)
        raise Broken(step, wanted, broken.got, failure="raised", hint=(
            f"{name} is how the socket told you; it is not send_mail's answer: catch it (OSError covers "
            f"TimeoutError and ConnectionError) and raise {error_class.__name__}(problem, stage=..., reply=None)")
            if error_class is SMTPTransientError and from_socket else hint) from None
    if isinstance(outcome, error_class):
        return outcome
    got = f"{type(outcome).__name__}: {outcome}" if isinstance(outcome, SMTPError) else shown(outcome)
    raise Broken(step, wanted, got, hint=hint)


def _sender_refused(probe: Probe, refusal: str, error_class: type[SMTPError]) -> None:
    code = int(refusal[:3])
    with SMTPPeer({"MAIL": refusal}, note=probe.note) as peer:
        error = _failure(probe, peer, error_class, f"{code} to MAIL FROM", hint="a refused MAIL ends the "
                         f"transaction: raise {error_class.__name__}(problem, stage='MAIL', reply=the reply)")
    if getattr(error.reply, "code", None) != code:
        raise Broken(f"the {error_class.__name__}", f"its reply: the server's {code}", shown(error.reply),
                     hint="pass the server's Reply as reply=, so the bounce can quote it")
    _expect_quit(peer)


def sender_refused(probe: Probe) -> None:
    _sender_refused(probe, "553 5.7.1 <albert@awesome.com>: sender rejected", SMTPPermanentError)


def sender_refused_451(probe: Probe) -> None:
    _sender_refused(probe, "451 4.7.1 greylisted, come back in 5 minutes", SMTPTransientError)


def _greeting_refused(probe: Probe, greetings: tuple[tuple[str, type[SMTPError]], ...]) -> None:
    for greeting, error_class in greetings:
        with SMTPPeer(greeting=greeting, note=probe.note) as peer:
            _failure(probe, peer, error_class, f"greeting {greeting[:3]}",
                     hint="only 220 invites the client in (RFC 5321 §3.1)")
        if any(c in ("MAIL", "RCPT", "DATA") for c in peer.commands):
            raise Broken(f"after greeting {greeting[:3]}", "no mail transaction", _commands(peer))


def greeting_refused(probe: Probe) -> None:
    _greeting_refused(probe, (("554 5.3.2 no service here", SMTPPermanentError),
                              ("421 4.3.2 too busy, try later", SMTPTransientError)))


def greeting_refused_others(probe: Probe) -> None:
    _greeting_refused(probe, (("521 5.3.2 mx.example does not accept mail", SMTPPermanentError),
                              ("450-4.3.2 system maintenance\r\n450 4.3.2 back at noon", SMTPTransientError)))


def data_refused(probe: Probe) -> None:
    _data_refused(probe, (("552 5.3.4 message too big", 552, SMTPPermanentError),
                          ("451 4.3.0 try again later", 451, SMTPTransientError)))


def data_refused_others(probe: Probe) -> None:
    _data_refused(probe, (("554 5.7.1 message rejected as spam", 554, SMTPPermanentError),
                          ("452 4.3.1 insufficient system storage", 452, SMTPTransientError)))


def _data_refused(probe: Probe, ends: tuple[tuple[str, int, type[SMTPError]], ...]) -> None:
    for end, code, error_class in ends:
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


PIECES = ("TCP delivers bytes, not lines: one recv() may hold half a reply, or two; keep reading into a buffer "
          "until the line end, and a multi-line reply until its last line ('250 ', with a space)")
HANG_UP_HINT = ("recv() returning b'' means the server closed the connection: raise SMTPTransientError(problem, "
                "stage=the command you were at, reply=None)")
TIMEOUT_HINT = ("sock.settimeout(timeout) before the first recv: then a recv that waits too long raises TimeoutError, "
                "which you turn into SMTPTransientError")


def _split(probe: Probe, split: bool | str) -> None:
    with SMTPPeer(note=probe.note, split=split) as peer:
        result = _result(probe, peer, [BETTY, CAROL], hint=PIECES)
    _expect_code("accepted", result.accepted.get(CAROL), 250)
    _expect_code("data_reply", result.data_reply, 250)


def split_replies(probe: Probe) -> None:
    _split(probe, True)


def split_replies_lines(probe: Probe) -> None:
    """Each line of a reply in its own packet, its LF apart from the rest."""
    _split(probe, "lines")


def _hung_up(probe: Probe, peer: SMTPPeer, step: str, stage: str) -> None:
    """A hang-up is a transient failure at the stage it happened, with no reply: the server
    said nothing, so a made-up reply would be quoted in the bounce as if it had."""
    error = _failure(probe, peer, SMTPTransientError, step, hint=HANG_UP_HINT)
    if error.reply is not None or error.stage != stage:
        raise Broken(step, f"SMTPTransientError(problem, stage={stage!r}, reply=None)",
                     f"stage={error.stage!r}, reply={shown(error.reply)}", hint=HANG_UP_HINT)


def connection_lost(probe: Probe) -> None:
    with SMTPPeer({"RCPT": None}, note=probe.note) as peer:  # hangs up at RCPT
        _hung_up(probe, peer, "the server hung up", "RCPT")


def connection_lost_in_reply(probe: Probe) -> None:
    with SMTPPeer({"EHLO": "250-peer.example Hello" + HANG_UP}, note=probe.note) as peer:
        _hung_up(probe, peer, "the server hung up in the middle of a reply", "EHLO")


def server_silent(probe: Probe) -> None:
    with SMTPPeer(greeting=None, note=probe.note) as peer:
        _failure(probe, peer, SMTPTransientError, "a server that never greets", timeout=SILENT_TIMEOUT,
                 hint=TIMEOUT_HINT)


def server_silent_later(probe: Probe) -> None:
    with SMTPPeer({"MAIL": SILENT}, note=probe.note) as peer:
        _failure(probe, peer, SMTPTransientError, "a server that falls silent after MAIL", timeout=SILENT_TIMEOUT,
                 hint=TIMEOUT_HINT)


WORLD_SENDS = 3  # messages the world relays: a client that works by luck of timing fails one


def in_the_world(probe: Probe) -> None:
    world = probe.world(servers=["smtp.brilliant.com"])  # the relay's dialogue, as smtp.brilliant.com saw it
    step = "Albert -> smtp.awesome.com -> (your send_mail) -> smtp.brilliant.com"
    for n in range(1, WORLD_SENDS + 1):
        since = world.tracer.events()[-1].time if world.tracer.events() else 0.0
        world.send(ALBERT, [BETTY], MESSAGE.replace(b"Subject: Dinner", b"Subject: Dinner #%d" % n))
        ended = probe.wait(world, lambda e, since=since: e.time >= since and settled(BETTY)(e),
                           step=f"{step} (message {n} of {WORLD_SENDS})",
                           expected="delivered at the first try, as the world cell above shows it")
        if ended.kind != "delivered":
            raise Broken(f"{step} (message {n} of {WORLD_SENDS})", "delivered at the first try", ended.line,
                         hint="the world keeps the message queued and tries again later; the transcript shows the "
                         "relay's dialogue. A client that works only sometimes reads replies by luck of timing: "
                         "see 'replies that arrive in pieces'")


RULES: list[Rule] = [
    Rule("delivers", "sends one message: EHLO, MAIL, RCPT, DATA, the message, '.', QUIT", "RFC 5321 §3.3", delivers,
         hint=END_OF_DATA),
    Rule("delivers-other", "sends another message: other people, another helo name, no final newline",
         "RFC 5321 §3.3", delivers_other, variant_of="delivers"),
    Rule("greeting-multiline", "waits for the whole multi-line greeting", "RFC 5321 §4.2.1", multiline_greeting,
         hint=MULTILINE),
    Rule("ehlo-multiline", "reads the whole multi-line EHLO reply", "RFC 5321 §4.1.1.1, §4.2.1", multiline_ehlo,
         hint=MULTILINE),
    Rule("ehlo-long", "reads a multi-line EHLO reply longer than one recv()", "RFC 5321 §4.1.1.1, §4.2.1", long_ehlo,
         hint=MULTILINE, variant_of="ehlo-multiline"),
    Rule("helo-fallback", "EHLO refused (500): falls back to HELO", "RFC 5321 §3.2", helo_fallback),
    Rule("helo-fallback-502", "EHLO refused (502): falls back to HELO", "RFC 5321 §3.2", helo_fallback_502,
         variant_of="helo-fallback"),
    Rule("per-recipient", "a reply per recipient: some refused, the rest still get the message",
         "RFC 5321 §3.3", per_recipient),
    Rule("per-recipient-others", "a reply per recipient: 251, 452, 553 and 250", "RFC 5321 §3.3, §4.2.1",
         per_recipient_others, variant_of="per-recipient"),
    Rule("nobody-accepted", "no DATA when every recipient was refused", "RFC 5321 §3.3", nobody_accepted),
    Rule("nobody-accepted-4xx", "no DATA when every recipient was refused for now (4xx)", "RFC 5321 §3.3",
         nobody_accepted_4xx, variant_of="nobody-accepted"),
    Rule("dot-stuffing", "lines starting with '.' are dot-stuffed", "RFC 5321 §4.5.2", dot_stuffing, hint=STUFFING),
    Rule("dot-stuffing-ends", "dot-stuffing at the end of a message without a final newline", "RFC 5321 §4.5.2",
         dot_stuffing_ends, hint=STUFFING, variant_of="dot-stuffing"),
    Rule("line-endings", "the message goes with CRLF line endings", "RFC 5321 §2.3.8", line_endings, hint=CRLF_HINT),
    Rule("line-endings-mixed", "mixed line endings and no final newline: CRLF everywhere", "RFC 5321 §2.3.8",
         line_endings_mixed, hint=CRLF_HINT, variant_of="line-endings"),
    Rule("sender-refused", "a refused MAIL FROM raises SMTPPermanentError", "RFC 5321 §4.2.1", sender_refused),
    Rule("sender-refused-451", "a MAIL FROM refused for now (451) raises SMTPTransientError", "RFC 5321 §4.2.1",
         sender_refused_451, variant_of="sender-refused"),
    Rule("greeting-refused", "554 and 421 greetings: permanent and temporary failure", "RFC 5321 §3.1, §4.2.1",
         greeting_refused),
    Rule("greeting-refused-others", "521 and a multi-line 450 greeting: permanent and temporary failure",
         "RFC 5321 §3.1, §4.2.1; RFC 7504", greeting_refused_others, variant_of="greeting-refused"),
    Rule("data-refused", "5xx and 4xx after the data: permanent and temporary", "RFC 5321 §4.2.1", data_refused),
    Rule("data-refused-others", "554 and 452 after the data: permanent and temporary", "RFC 5321 §4.2.1",
         data_refused_others, variant_of="data-refused"),
    Rule("split-replies", "replies that arrive in pieces", "RFC 5321 §2.3.8 (TCP is a byte stream)", split_replies,
         hint=PIECES),
    Rule("split-replies-lines", "replies whose lines arrive one by one", "RFC 5321 §2.3.8 (TCP is a byte stream)",
         split_replies_lines, hint=PIECES, variant_of="split-replies"),
    Rule("connection-lost", "a server that hangs up: SMTPTransientError", "RFC 5321 §3.8", connection_lost,
         hint=HANG_UP_HINT),
    Rule("connection-lost-in-reply", "a server that hangs up in the middle of a reply: SMTPTransientError",
         "RFC 5321 §3.8", connection_lost_in_reply, hint=HANG_UP_HINT, variant_of="connection-lost"),
    Rule("timeout", "a silent server: gives up after the timeout", "RFC 5321 §4.5.3.2", server_silent,
         hint=TIMEOUT_HINT),
    Rule("timeout-later", "a server silent after MAIL: gives up after the timeout", "RFC 5321 §4.5.3.2",
         server_silent_later, hint=TIMEOUT_HINT, variant_of="timeout"),
    Rule("in-the-world", "as smtp.awesome.com's relay client, Albert's mail reaches Betty", "RFC 5321 §2.1",
         in_the_world),
]


run, check = entry_points("send_mail", RULES)
