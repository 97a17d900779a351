"""The SMTP client: the sans-IO core without sockets, then `send_mail` against real
servers on 127.0.0.1 (aiosmtpd, and scripted raw-socket servers for the edge cases)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import smtplib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from labkit.aio import BackgroundLoop
from labkit.smtp.client import (
    ClientTransaction,
    MalformedReply,
    Reply,
    ReplyParser,
    SendResult,
    SMTPError,
    SMTPPermanentError,
    SMTPTransientError,
    dot_stuff,
    parse_extensions,
)
from labkit.smtp.send import connect, send_mail

MESSAGE = b"From: albert@awesome.com\nTo: betty@brilliant.com\nSubject: hi\n\nHello Betty\n.\n..two\n"
WIRE_MESSAGE = MESSAGE.replace(b"\n", b"\r\n")
USERS = {"albert@awesome.com": "albert-password", "betty@brilliant.com": "betty-password"}


# -- the sans-IO core -----------------------------------------------------------------
def test_reply_properties() -> None:
    reply = Reply(550, ("5.1.1 <x@y>: no such user", "see you"))
    assert reply.text == "5.1.1 <x@y>: no such user\nsee you"
    assert (reply.positive, reply.transient, reply.permanent) == (False, False, True)
    assert reply.enhanced == "5.1.1"
    assert str(reply) == "550-5.1.1 <x@y>: no such user\r\n550 see you"
    assert Reply(451, ("try later",)).transient and Reply(354, ("go",)).positive
    assert str(Reply(250, ("a", ""))) == "250-a\r\n250"  # a code-only last line


@pytest.mark.parametrize(
    "reply, enhanced",
    [
        (Reply(250, ("2.0.0 OK",)), "2.0.0"),
        (Reply(250, ("OK",)), None),
        (Reply(550, ("4.1.1 class does not match the code",)), None),  # RFC 2034 §4
        (Reply(550, ("5.1.10",)), "5.1.10"),
        (Reply(550, ("5.1.1x no",)), None),
    ],
)
def test_enhanced_status_code(reply: Reply, enhanced: str | None) -> None:
    assert reply.enhanced == enhanced


def test_parser_joins_multiline_replies_however_split() -> None:
    wire = b"250-mx.test greets you\r\n250-SIZE 1000\r\n250 8BITMIME\r\n354 go on\r\n"
    whole = ReplyParser().feed(wire)
    parser = ReplyParser()
    pieces = [reply for i in range(len(wire)) for reply in parser.feed(wire[i : i + 1])]
    assert pieces == whole == [
        Reply(250, ("mx.test greets you", "SIZE 1000", "8BITMIME")),
        Reply(354, ("go on",)),
    ]
    assert str(whole[0]).encode() + b"\r\n" == wire[: wire.index(b"354")]


def test_parser_accepts_odd_but_legal_forms() -> None:
    # RFC 5321 §4.2: the text is optional ("250" alone, "250-" alone); bare LF tolerated.
    assert ReplyParser().feed(b"250-\r\n250-SIZE\n250\r\n") == [Reply(250, ("", "SIZE", ""))]


@pytest.mark.parametrize(
    "wire, problem",
    [
        (b"hello there\r\n", "malformed reply line"),
        (b"25\r\n", "malformed reply line"),
        (b"2500 x\r\n", "malformed reply line"),
        (b"250x\r\n", "malformed reply line"),
        (b"650 bad class\r\n", "malformed reply line"),
        (b"250-a\r\n251 b\r\n", "changes the code"),
        (b"250 " + b"x" * 10_000, "longer than"),
    ],
)
def test_parser_rejects_malformed_replies(wire: bytes, problem: str) -> None:
    with pytest.raises(MalformedReply, match=problem):
        ReplyParser().feed(wire)


def test_dot_stuffing_and_line_endings() -> None:
    # RFC 5321 §4.5.2 (transparency) and §2.3.8 (no bare CR or LF).
    assert dot_stuff(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert dot_stuff(b"ends well\r\n") == b"ends well\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"


def test_parse_extensions() -> None:
    ehlo = Reply(250, ("mx.test", "size 1000", "AUTH PLAIN LOGIN", "8BITMIME"))
    assert parse_extensions(ehlo) == {"SIZE": "1000", "AUTH": "PLAIN LOGIN", "8BITMIME": ""}


def converse(txn: ClientTransaction, *replies: bytes) -> list[str]:
    """Feed the server's replies one at a time; return the client's lines in order."""
    sent = txn.data_to_send()
    for reply in replies:
        txn.receive_data(reply)
        sent += txn.data_to_send()
    return sent.decode().split("\r\n")[:-1]


def transaction(**kwargs) -> ClientTransaction:
    args = dict(helo="client.test", mail_from="albert@awesome.com", rcpt_to=["betty@brilliant.com"], message=MESSAGE)
    return ClientTransaction(**(args | kwargs))


GREETING, HELLO = b"220 mx.test ESMTP\r\n", b"250 mx.test\r\n"
OK, GO, BYE = b"250 OK\r\n", b"354 go on\r\n", b"221 bye\r\n"


def test_core_runs_a_whole_transaction_without_sockets() -> None:
    seen: list[tuple[str, str]] = []
    txn = transaction(listener=lambda d, line: seen.append((d, line)))
    sent = converse(txn, GREETING, HELLO, OK, OK, GO, b"250 OK queued as FFDC3387\r\n", BYE)
    assert sent == [
        "EHLO client.test",
        "MAIL FROM:<albert@awesome.com>",
        "RCPT TO:<betty@brilliant.com>",
        "DATA",
        *WIRE_MESSAGE.replace(b"\r\n.", b"\r\n..").decode().split("\r\n")[:-1],
        ".",
        "QUIT",
    ]
    result = txn.result()
    assert result.accepted == {"betty@brilliant.com": Reply(250, ("OK",))}
    assert result.data_reply == Reply(250, ("OK queued as FFDC3387",))
    assert result.transcript == seen and result.transcript[:2] == [("S", "220 mx.test ESMTP"), ("C", "EHLO client.test")]


def test_core_falls_back_to_helo_and_sends_null_sender() -> None:
    txn = transaction(mail_from="")
    sent = converse(txn, GREETING, b"502 5.5.1 what is EHLO?\r\n", HELLO, OK)
    assert sent[:3] == ["EHLO client.test", "HELO client.test", "MAIL FROM:<>"]  # RFC 5321 §3.2, §4.5.5


@pytest.mark.parametrize(
    "extensions, message, params",
    [
        (b"", b"caf\xc3\xa9\n", ""),  # 8BITMIME not offered: no BODY=
        (b"250-8BITMIME\r\n", b"plain\n", ""),  # 7-bit message: no BODY=
        (b"250-8BITMIME\r\n", b"caf\xc3\xa9\n", " BODY=8BITMIME"),  # RFC 6152
        (b"250-SIZE 100\r\n", b"12345\n", " SIZE=7"),  # RFC 1870, counted with CRLF
        (b"250-SIZE\r\n250-8BITMIME\r\n", b"\xff\n", " SIZE=3 BODY=8BITMIME"),
    ],
)
def test_core_mail_parameters(extensions: bytes, message: bytes, params: str) -> None:
    txn = transaction(message=message)
    sent = converse(txn, GREETING, b"250-mx.test\r\n" + extensions + b"250 HELP\r\n")
    assert sent[-1] == f"MAIL FROM:<albert@awesome.com>{params}"


def test_core_needs_smtputf8_for_non_ascii_addresses() -> None:
    sent = converse(transaction(rcpt_to=["bétty@brilliant.com"]), GREETING, b"250-mx.test\r\n250 SMTPUTF8\r\n")
    assert sent[-1] == "MAIL FROM:<albert@awesome.com> SMTPUTF8"  # RFC 6531 §3.4
    txn = transaction(mail_from="älbert@awesome.com")
    assert converse(txn, GREETING, b"250-mx.test\r\n250 8BITMIME\r\n", BYE)[-1] == "QUIT"
    with pytest.raises(SMTPPermanentError, match="not ASCII.*SMTPUTF8") as caught:
        txn.result()
    assert caught.value.stage == "MAIL" and caught.value.reply is None


def test_core_refuses_a_message_over_the_size_limit() -> None:
    txn = transaction(message=b"x" * 500)
    assert converse(txn, GREETING, b"250-mx.test\r\n250 SIZE 100\r\n", BYE) == ["EHLO client.test", "QUIT"]
    with pytest.raises(SMTPPermanentError, match="502 octets exceeds the server's SIZE limit of 100"):
        txn.result()


@pytest.mark.parametrize(
    "offered, expected",
    [
        ("PLAIN LOGIN CRAM-MD5", ["AUTH PLAIN AGFsYmVydEBhd2Vzb21lLmNvbQBzM2NyZXQ="]),
        ("LOGIN", ["AUTH LOGIN", "YWxiZXJ0QGF3ZXNvbWUuY29t", "czNjcmV0"]),
    ],
)
def test_core_auth(offered: str, expected: list[str]) -> None:
    txn = transaction(auth=("albert@awesome.com", "s3cret"))
    challenges = [b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n"][: len(expected) - 1]
    ehlo = f"250-mx.test\r\n250 AUTH {offered}\r\n".encode()
    sent = converse(txn, GREETING, ehlo, *challenges, b"235 2.7.0 OK\r\n")
    assert sent[1:] == [*expected, "MAIL FROM:<albert@awesome.com>"]
    assert not any("czNjcmV0" in line or "s3cret" in line for _, line in txn.transcript)  # never shown


def test_core_auth_not_offered_is_permanent() -> None:
    txn = transaction(auth=("albert@awesome.com", "s3cret"))
    converse(txn, GREETING, b"250-mx.test\r\n250 AUTH CRAM-MD5\r\n", BYE)
    with pytest.raises(SMTPPermanentError, match="AUTH: server offers no AUTH PLAIN or LOGIN"):
        txn.result()


def test_core_without_accepted_recipients_sends_no_data() -> None:
    txn = transaction(rcpt_to=["nobody@brilliant.com", "busy@brilliant.com"])
    sent = converse(txn, GREETING, HELLO, OK, b"550 5.1.1 no such user\r\n", b"451 4.3.0 later\r\n", OK, BYE)
    assert sent[-2:] == ["RSET", "QUIT"] and "DATA" not in sent
    result = txn.result()
    assert result.accepted == {} and result.data_reply is None
    assert [r.enhanced for r in result.refused.values()] == ["5.1.1", "4.3.0"]


@pytest.mark.parametrize(
    "replies, error, stage, problem",
    [
        ([b"554 5.3.2 go away\r\n"], SMTPPermanentError, "greeting", "did not greet with 220"),
        ([b"421 4.3.2 busy\r\n"], SMTPTransientError, "greeting", "shutting down"),
        ([HELLO], SMTPTransientError, "greeting", "did not greet with 220"),  # nonsense: try later
        ([GREETING, b"554 no\r\n"], SMTPPermanentError, "EHLO", "EHLO refused"),
        ([GREETING, b"502 no\r\n", b"501 no\r\n"], SMTPPermanentError, "EHLO", "HELO refused"),
        ([GREETING, HELLO, b"451 4.3.0 later\r\n"], SMTPTransientError, "MAIL", "sender refused"),
        ([GREETING, HELLO, OK, b"421 4.3.2 bye\r\n"], SMTPTransientError, "RCPT", "shutting down"),
        ([GREETING, HELLO, OK, OK, b"554 no\r\n"], SMTPPermanentError, "DATA", "DATA refused"),
        ([GREETING, HELLO, OK, OK, GO, b"552 5.3.4 too big\r\n"], SMTPPermanentError, "DATA", "refused after DATA"),
    ],
)
def test_core_errors_name_stage_and_reply_then_quit(replies, error, stage, problem) -> None:
    txn = transaction()
    sent = converse(txn, *replies)
    assert sent[-1] == "QUIT" and not txn.finished  # waits politely for the 221
    txn.receive_data(b"")  # ... and the server hangs up: fine, the error stands
    with pytest.raises(error, match=problem) as caught:
        txn.result()
    assert caught.value.stage == stage and caught.value.reply is not None
    assert str(caught.value).startswith(f"{stage}: ") and str(caught.value.reply.code) in str(caught.value)


def test_core_broken_connections_are_transient() -> None:
    txn = transaction()
    converse(txn, GREETING, b"250-mx.test\r\n")
    txn.receive_data(b"")
    with pytest.raises(SMTPTransientError, match="EHLO: server closed the connection in the middle of a reply"):
        txn.result()
    txn = transaction()
    assert converse(txn, GREETING, b"hello?\r\n") == ["EHLO client.test", "QUIT"]
    assert txn.finished
    with pytest.raises(SMTPTransientError, match="malformed reply line b'hello\\?'"):
        txn.result()


def test_core_refuses_replies_to_commands_not_sent() -> None:
    txn = transaction()
    assert converse(txn, GREETING + b"250 OK\r\n") == ["EHLO client.test", "QUIT"]
    with pytest.raises(SMTPTransientError, match="EHLO: server sent '250 OK' before the command it answers"):
        txn.result()


def test_core_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="invalid e-mail address"):
        transaction(rcpt_to=["betty@brilliant.com>\r\nRCPT TO:<eve@evil.com"])
    with pytest.raises(ValueError, match="no recipients"):
        transaction(rcpt_to=[])
    with pytest.raises(TypeError):
        transaction(rcpt_to="betty@brilliant.com")


def test_send_mail_signature_is_the_seam() -> None:
    params = inspect.signature(send_mail).parameters
    assert list(params) == ["sock", "helo", "mail_from", "rcpt_to", "message", "auth", "timeout"]
    assert params["auth"].default is None and params["timeout"].default == 30.0
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name != "sock")


# -- aiosmtpd servers -----------------------------------------------------------------
class RecordingHandler:
    """An aiosmtpd handler that records envelopes (and who logged in) and refuses
    ``nobody@`` (550) and ``busy@`` (451) recipients."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[bytes | None] = []

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options) -> str:
        local = address.partition("@")[0]
        if local == "nobody":
            return f"550 5.1.1 <{address}>: no such user"
        if local == "busy":
            return f"451 4.3.0 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        self.logins.append(session.auth_data.login if session.authenticated else None)
        return "250 OK queued as FFDC3387"


def authenticator(server, session, envelope, mechanism: str, auth_data: LoginPassword) -> AuthResult:
    login, password = auth_data.login.decode(), auth_data.password.decode()
    return AuthResult(success=USERS.get(login) == password, handled=False, auth_data=auth_data)


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop("smtp-test") as background:
        yield background


@contextmanager
def aiosmtpd_server(loop: BackgroundLoop, handler: object, **kwargs) -> Iterator[int]:
    """Serve aiosmtpd's SMTP on 127.0.0.1, any free port; yields the port."""
    kwargs.setdefault("hostname", "mx.test")
    if "authenticator" in kwargs:
        kwargs.setdefault("auth_require_tls", False)

    async def start() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(lambda: SMTP(handler, **kwargs), "127.0.0.1", 0)

    server = loop.run(start())
    try:
        yield server.sockets[0].getsockname()[1]
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        loop.run(stop())


def send_to(port: int, **kwargs) -> SendResult:
    args = dict(helo="client.test", mail_from="albert@awesome.com", rcpt_to=["betty@brilliant.com"], message=MESSAGE)
    with connect("127.0.0.1", port, timeout=10) as sock:
        return send_mail(sock, **(args | kwargs))


def test_send_to_aiosmtpd_with_per_recipient_results(loop: BackgroundLoop) -> None:
    handler = RecordingHandler()
    with aiosmtpd_server(loop, handler) as port:
        rcpts = ["betty@brilliant.com", "nobody@brilliant.com", "carol@careful.com"]
        result = send_to(port, rcpt_to=rcpts)
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "albert@awesome.com"
    assert envelope.rcpt_tos == ["betty@brilliant.com", "carol@careful.com"]
    assert envelope.original_content == WIRE_MESSAGE  # dots unstuffed again, CRLF throughout
    assert set(result.accepted) == {"betty@brilliant.com", "carol@careful.com"}
    assert result.refused["nobody@brilliant.com"].code == 550
    assert result.refused["nobody@brilliant.com"].enhanced == "5.1.1"
    assert result.data_reply == Reply(250, ("OK queued as FFDC3387",))
    assert result.transcript[0][0] == "S" and result.transcript[0][1].startswith("220 mx.test")
    assert ("C", "...two") in result.transcript and result.transcript[-2:] == [("C", "QUIT"), ("S", "221 Bye")]


def test_send_8bit_and_smtputf8_to_aiosmtpd(loop: BackgroundLoop) -> None:
    handler = RecordingHandler()
    message = "Subject: café\n\nün\n".encode()
    with aiosmtpd_server(loop, handler, enable_SMTPUTF8=True) as port:
        send_to(port, message=message, mail_from="älbert@awesome.com", rcpt_to=["bétty@brilliant.com"])
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "älbert@awesome.com" and envelope.rcpt_tos == ["bétty@brilliant.com"]
    assert envelope.smtp_utf8 and "BODY=8BITMIME" in envelope.mail_options
    assert f"SIZE={len(message) + 3}" in envelope.mail_options  # three LF became CRLF
    assert envelope.original_content == message.replace(b"\n", b"\r\n")


def test_non_ascii_address_without_smtputf8_fails_before_mail(loop: BackgroundLoop) -> None:
    handler = RecordingHandler()
    with aiosmtpd_server(loop, handler) as port, pytest.raises(SMTPPermanentError) as caught:
        send_to(port, rcpt_to=["bétty@brilliant.com"])
    assert caught.value.stage == "MAIL" and "SMTPUTF8" in str(caught.value)
    assert handler.envelopes == []


def test_size_limit_of_aiosmtpd(loop: BackgroundLoop) -> None:
    handler = RecordingHandler()
    with aiosmtpd_server(loop, handler, data_size_limit=1000) as port:
        with pytest.raises(SMTPPermanentError, match="exceeds the server's SIZE limit of 1000"):
            send_to(port, message=b"x" * 2000)
        assert send_to(port).data_reply is not None
    assert len(handler.envelopes) == 1


@pytest.mark.parametrize("exclude", [[], ["PLAIN"]], ids=["PLAIN", "LOGIN-only"])
def test_auth_with_aiosmtpd(loop: BackgroundLoop, exclude: list[str]) -> None:
    handler = RecordingHandler()
    with aiosmtpd_server(loop, handler, authenticator=authenticator, auth_exclude_mechanism=exclude) as port:
        result = send_to(port, auth=("albert@awesome.com", "albert-password"))
        with pytest.raises(SMTPPermanentError, match="AUTH: authentication failed.*535") as caught:
            send_to(port, auth=("albert@awesome.com", "wrong"))
    assert caught.value.reply is not None and caught.value.reply.code == 535
    assert handler.logins == [b"albert@awesome.com"]
    mechanism = "LOGIN" if exclude else "PLAIN"
    assert any(line.startswith(f"AUTH {mechanism}") for d, line in result.transcript if d == "C")
    assert not any("albert-password" in line for _, line in result.transcript)


def test_no_accepted_recipient_means_no_data(loop: BackgroundLoop) -> None:
    handler = RecordingHandler()
    with aiosmtpd_server(loop, handler) as port:
        result = send_to(port, rcpt_to=["nobody@brilliant.com", "busy@brilliant.com"])
    assert handler.envelopes == [] and result.data_reply is None and result.accepted == {}
    assert result.refused["busy@brilliant.com"].transient
    sent = [line for d, line in result.transcript if d == "C"]
    assert sent[-2:] == ["RSET", "QUIT"] and "DATA" not in sent


def test_null_sender_for_bounces(loop: BackgroundLoop) -> None:
    handler = RecordingHandler()
    with aiosmtpd_server(loop, handler) as port:
        result = send_to(port, mail_from="")
    assert ("C", f"MAIL FROM:<> SIZE={len(WIRE_MESSAGE)}") in result.transcript
    assert handler.envelopes[0].mail_from == "<>"  # aiosmtpd's spelling of the null path


# -- scripted raw-socket servers ------------------------------------------------------
READ, READ_DATA, CLOSE, HANG = "READ", "READ_DATA", "CLOSE", "HANG"


class ScriptedServer:
    """A one-connection server that plays a script: bytes to send, READ (one client
    line), READ_DATA (up to the lone "."), CLOSE, HANG (until released). After the
    script it records what else the client sends until it hangs up."""

    def __init__(self, *script: bytes | str) -> None:
        self.script, self.received = script, []
        self.release = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as reader:
            conn.settimeout(10)
            for step in self.script:
                if step == CLOSE:
                    return
                if step == HANG:
                    self.release.wait(10)
                elif step == READ_DATA:
                    self.received.append(b"".join(iter(lambda: self._line(reader, b".\r\n"), b"")).decode("latin-1"))
                elif step == READ:
                    if not self._record(reader):
                        return
                else:
                    conn.sendall(step)  # type: ignore[arg-type]
            while self._record(reader):
                pass

    @staticmethod
    def _line(reader, end: bytes) -> bytes:
        line = reader.readline()
        return b"" if line in (end, b"") else line

    def _record(self, reader) -> bool:
        try:
            line = reader.readline()
        except OSError:
            return False
        if line:
            self.received.append(line.decode("latin-1").rstrip("\r\n"))
        return bool(line)

    def finish(self) -> list[str]:
        """Wait for the conversation to end; return the client's lines."""
        self.release.set()
        self.thread.join(10)
        self.listener.close()
        assert not self.thread.is_alive(), "scripted server did not finish"
        return self.received


@pytest.fixture
def scripted() -> Iterator[type[ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(*script: bytes | str) -> ScriptedServer:
        servers.append(ScriptedServer(*script))
        return servers[-1]

    yield make  # type: ignore[misc]
    for server in servers:
        server.finish()


def lockstep(*replies: bytes) -> list[bytes | str]:
    """A script: the greeting, then each reply after reading the client's line (or,
    after a 354, the whole message)."""
    script: list[bytes | str] = [replies[0]]
    for previous, reply in itertools.pairwise(replies):
        script += [READ_DATA if previous.startswith(b"354") else READ, reply]
    return script


def test_helo_only_server(scripted) -> None:
    server = scripted(*lockstep(GREETING, b"502 5.5.2 EHLO not implemented\r\n", HELLO, OK, OK, GO, OK, BYE))
    result = send_to(server.port, message=b"\xff 8 bits\n")  # no 8BITMIME advertised: no BODY=
    received = server.finish()
    assert received[:3] == ["EHLO client.test", "HELO client.test", "MAIL FROM:<albert@awesome.com>"]
    assert received[5] == "\xff 8 bits\r\n"
    assert received[-1] == "QUIT" and result.data_reply == Reply(250, ("OK",))


def test_4xx_on_one_recipient(scripted) -> None:
    server = scripted(*lockstep(GREETING, HELLO, OK, OK, b"452 4.2.2 mailbox full\r\n", OK, GO, OK, BYE))
    result = send_to(server.port, rcpt_to=["a@b.test", "full@b.test", "c@b.test"])
    received = server.finish()
    assert list(result.accepted) == ["a@b.test", "c@b.test"]
    assert result.refused["full@b.test"] == Reply(452, ("4.2.2 mailbox full",))
    assert received[2:6] == ["RCPT TO:<a@b.test>", "RCPT TO:<full@b.test>", "RCPT TO:<c@b.test>", "DATA"]
    assert received[6] == WIRE_MESSAGE.replace(b"\r\n.", b"\r\n..").decode()


def test_554_greeting(scripted) -> None:
    server = scripted(b"554 5.3.2 no SMTP service here\r\n", READ, BYE)
    with pytest.raises(SMTPPermanentError) as caught:
        send_to(server.port)
    assert caught.value.stage == "greeting" and caught.value.reply.code == 554
    assert "no SMTP service here" in str(caught.value)
    assert server.finish() == ["QUIT"]  # RFC 5321 §3.1: QUIT after a 554 greeting


def test_connection_closed_mid_reply(scripted) -> None:
    server = scripted(GREETING, READ, b"250-mx.test\r\n250-SIZE 1000\r\n", CLOSE)
    with pytest.raises(SMTPTransientError, match="server closed the connection in the middle of a reply") as caught:
        send_to(server.port)
    assert caught.value.stage == "EHLO"
    assert server.finish() == ["EHLO client.test"]


def test_timeout(scripted) -> None:
    server = scripted(GREETING, READ, HANG)
    with pytest.raises(SMTPTransientError, match=r"EHLO: no reply from the server within 0.3s"):
        send_to(server.port, timeout=0.3)
    assert server.finish() == ["EHLO client.test", "QUIT"]  # a last QUIT all the same


def test_malformed_reply(scripted) -> None:
    server = scripted(GREETING, READ, b"250 mx.test\r\n", READ, b"OK, go ahead\r\n")
    with pytest.raises(SMTPTransientError, match="MAIL: malformed reply line b'OK, go ahead'"):
        send_to(server.port)
    assert server.finish()[-1] == "QUIT"


def test_quit_errors_are_ignored(scripted) -> None:
    server = scripted(*lockstep(GREETING, HELLO, OK, OK, GO, OK), READ, CLOSE)
    assert send_to(server.port).data_reply == Reply(250, ("OK",))
    assert server.finish()[-1] == "QUIT"


def test_connect_failure_is_transient() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(SMTPTransientError, match=f"connect: cannot connect to 127.0.0.1:{port}"):
        connect("127.0.0.1", port, timeout=5)


ODD_EHLO = b"250-mx.test hello\r\n250-\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250\r\n"


def test_multiline_reply_as_smtplib_sees_it(scripted) -> None:
    server = scripted(GREETING, READ, ODD_EHLO, READ, BYE)
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=10) as client:
        code, text = client.ehlo()
    server.finish()
    (ours,) = ReplyParser().feed(ODD_EHLO)
    assert (ours.code, ours.text) == (code, text.decode())
    assert parse_extensions(ours)["SIZE"] == client.esmtp_features["size"]


def test_errors_are_smtp_errors() -> None:
    assert issubclass(SMTPTransientError, SMTPError) and issubclass(SMTPPermanentError, SMTPError)
    error = SMTPPermanentError("sender refused", stage="MAIL", reply=Reply(553, ("5.7.1 not yours",)))
    assert str(error) == "MAIL: sender refused (server said: 553 5.7.1 not yours)"


# -- the transition table tells what the client does ------------------------------------------------
SCRIPTS = {  # the server's replies, in order, for the situations a relay meets
    "delivered": ["220 x", "250-x\r\n250 SIZE 100000", "250 ok", "250 ok", "354 go", "250 queued", "221 bye"],
    "old server": ["220 x", "500 what", "250 x", "250 ok", "250 ok", "354 go", "250 queued", "221 bye"],
    "with auth": ["220 x", "250-x\r\n250 AUTH LOGIN", "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "235 ok", "250 ok",
                  "250 ok", "354 go", "250 queued", "221 bye"],
    "refused greeting": ["554 no", "221 bye"],
    "nobody accepted": ["220 x", "250 x", "250 ok", "550 no", "550 no", "250 reset", "221 bye"],
    "data refused": ["220 x", "250 x", "250 ok", "250 ok", "250 ok", "451 later", "221 bye"],
    "shutting down": ["220 x", "250 x", "421 going down", "221 bye"],
}


@pytest.mark.parametrize("situation", SCRIPTS)
def test_every_move_the_client_makes_is_in_its_transition_table(situation):
    """The table the lab draws its state diagram from is the one the client runs."""
    from labkit.smtp.client import TRANSITIONS, State

    moves = []
    txn = ClientTransaction(helo="me.example", mail_from="a@x.example", rcpt_to=["b@y.example", "c@y.example"],
                            message=b"Subject: x\r\n\r\nhi\r\n",
                            auth=("u", "p") if situation == "with auth" else None)
    for reply in SCRIPTS[situation]:
        before = txn.state
        txn.data_to_send()
        txn.receive_data(reply.encode() + b"\r\n")
        moves.append((before, txn.state))
    assert txn.finished
    for before, after in moves:
        allowed = {state for state, _ in TRANSITIONS[before].leads_to}
        assert after in allowed or (after is State.QUIT and situation == "shutting down"), (before, after)
