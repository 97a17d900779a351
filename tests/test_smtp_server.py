"""The sans-IO SMTP server session against aiosmtpd: one corpus, the same replies.

Both front ends ask the same MTA core, so every dialogue below gets the same reply codes
from smtp.brilliant.com served by aiosmtpd (the default) and by
:class:`labkit.smtp.server.SMTPServerSession`. Then real clients (smtplib, the world's
own relay, swaks) deliver through the sans-IO session and Betty reads the result.
"""

from __future__ import annotations

import base64
import smtplib
import socket
import subprocess

import pytest

from conftest import need
from labkit.smtp.server import SMTPServerSession

BETTY_PLAIN = base64.b64encode(b"\0betty@brilliant.com\0betty-password").decode()
WRONG_PLAIN = base64.b64encode(b"\0betty@brilliant.com\0guess").decode()
B64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731

HELO = "HELO client.example"
MAIL = "MAIL FROM:<someone@example.org>"
RCPT = "RCPT TO:<betty@brilliant.com>"
BODY = "Subject: corpus\r\n\r\nhello\r\n.\r\n"

# (service, [client lines]); a line is sent, then one reply is read.
CORPUS: dict[str, tuple[str, list[str]]] = {
    "the whole transaction": ("smtp", [HELO, MAIL, RCPT, "DATA", BODY, "QUIT"]),
    "EHLO and parameters": ("smtp", ["EHLO client.example", MAIL + " SIZE=100 BODY=8BITMIME", RCPT, "DATA", BODY]),
    "MAIL before HELO": ("smtp", [MAIL]),
    "RCPT before MAIL": ("smtp", [HELO, RCPT]),
    "DATA before RCPT": ("smtp", [HELO, MAIL, "DATA"]),
    "nested MAIL": ("smtp", [HELO, MAIL, MAIL]),
    "HELO without a name": ("smtp", ["HELO", "EHLO"]),
    "MAIL syntax": ("smtp", [HELO, "MAIL someone@example.org", "MAIL FROM:", "MAIL TO:<a@b.c>",
                             "MAIL FROM:someone@example.org", MAIL, "RCPT TO:betty@brilliant.com"]),
    "the null reverse-path": ("smtp", [HELO, "MAIL FROM:<>", RCPT]),
    "RCPT syntax": ("smtp", [HELO, MAIL, "RCPT TO:<>", "RCPT", "RCPT FROM:<betty@brilliant.com>"]),
    "unknown and empty commands": ("smtp", [HELO, "FOO bar", ""]),
    "RSET forgets the transaction": ("smtp", [HELO, MAIL, RCPT, "RSET", "DATA", "RCPT TO:<betty@brilliant.com>"]),
    "NOOP, VRFY": ("smtp", [HELO, "NOOP", "NOOP anything", "VRFY betty", "VRFY"]),
    "a command line too long": ("smtp", [HELO, "NOOP " + "x" * 600, "MAIL FROM:<" + "a" * 600 + "@example.org>"]),
    "a text line too long": ("smtp", [HELO, MAIL, RCPT, "DATA", "Subject: x\r\n\r\n" + "y" * 1200 + "\r\n.\r\n", MAIL]),
    "dots are unstuffed": ("smtp", [HELO, MAIL, RCPT, "DATA", "Subject: dots\r\n\r\n..leading dot\r\n.\r\n"]),
    "no smuggling through bare LF": ("smtp", [HELO, MAIL, RCPT, "DATA",
                                              "Subject: smuggle\r\n\r\nhi\n.\nMAIL FROM:<evil@x.org>\r\n.\r\n", "RSET"]),
    "unknown user, no relay": ("smtp", [HELO, MAIL, "RCPT TO:<nobody@brilliant.com>", "RCPT TO:<carol@careful.com>"]),
    "control characters in addresses": ("smtp", [HELO, "MAIL FROM:<nul\0byte@example.org>", MAIL,
                                                 "RCPT TO:<bet\x01ty@brilliant.com>"]),
    "parameters we do not know": ("smtp", ["EHLO client.example", MAIL + " SIZE=999999999", MAIL + " FOO=1",
                                           MAIL, RCPT + " NOTIFY=NEVER"]),
    "parameters after HELO": ("smtp", [HELO, MAIL + " SIZE=10"]),
    "arguments where none belong": ("smtp", [HELO, MAIL, RCPT, "DATA now", "RSET x", "QUIT now"]),
    "AUTH on port 25": ("smtp", ["EHLO client.example", "AUTH PLAIN " + BETTY_PLAIN]),
    "submission needs AUTH": ("submission", ["EHLO client.example", MAIL]),
    "AUTH PLAIN": ("submission", ["EHLO client.example", "AUTH PLAIN " + WRONG_PLAIN, "AUTH PLAIN " + BETTY_PLAIN,
                                  "AUTH PLAIN " + BETTY_PLAIN, MAIL, "MAIL FROM:<betty@brilliant.com>",
                                  "RCPT TO:<carol@careful.com>"]),
    "AUTH PLAIN after a challenge": ("submission", ["EHLO client.example", "AUTH PLAIN", BETTY_PLAIN]),
    "AUTH LOGIN": ("submission", ["EHLO client.example", "AUTH LOGIN", B64("betty"), B64("betty-password")]),
    "AUTH cancelled, garbled, unknown": ("submission", ["EHLO client.example", "AUTH LOGIN", "*", "AUTH PLAIN",
                                                        "not base64!", "AUTH CRAM-MD5"]),
}


def dialogue(port: int, lines: list[str]) -> list[str]:
    """The greeting and each line's reply (the last line of a multi-line one)."""
    got = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            while True:
                line = reader.readline().decode("utf-8", "replace")
                if len(line) < 4 or line[3] != "-":
                    return line.rstrip("\r\n")

        got.append(reply())
        for line in lines:
            sock.sendall(line.encode("utf-8") + (b"" if line.endswith("\r\n.\r\n") else b"\r\n"))
            got.append(reply())
    return got


def codes(port: int, lines: list[str]) -> list[str]:
    """Each line's reply code."""
    return [reply[:3] for reply in dialogue(port, lines)]


@pytest.mark.parametrize("name", CORPUS)
def test_both_front_ends_give_the_same_replies(world, name):
    service, lines = CORPUS[name]
    port = world.host("brilliant.com").services[service].port
    aiosmtpd = codes(port, lines)
    world.use(host="smtp.brilliant.com", smtp_session=SMTPServerSession)
    sans_io = codes(port, lines)
    assert sans_io == aiosmtpd
    assert "" not in aiosmtpd  # every line got a reply from both


def test_dots_and_smuggling_are_stored_alike(world):
    port = world.host("brilliant.com").services["smtp"].port
    for front_end in (None, SMTPServerSession):
        world.use(host="smtp.brilliant.com", smtp_session=front_end)
        codes(port, CORPUS["dots are unstuffed"][1] + CORPUS["no smuggling through bare LF"][1])
    world.wait_for_delivery("betty@brilliant.com", count=4)
    stored = [m.split(b"\r\n\r\n", 1)[1] for m in world.messages("betty@brilliant.com")]
    assert stored[0] == stored[2] == b".leading dot\r\n"
    assert stored[1] == stored[3] == b"hi\r\n.\r\nMAIL FROM:<evil@x.org>\r\n"  # text, not a command


@pytest.mark.parametrize("service", ["smtp", "submission"])
@pytest.mark.parametrize("front_end", [None, SMTPServerSession], ids=["aiosmtpd", "sans-IO"])
def test_a_control_character_never_gets_into_an_address(world, service, front_end):
    """NUL, ^A, ESC, DEL in HELO/EHLO (a name for the Received stamp), MAIL, RCPT (local or
    relayed) and VRFY: 501 on both ports with both front ends, the character shown
    escaped; a refused HELO is no hello, a refused MAIL starts no transaction."""
    world.use(host="smtp.brilliant.com", smtp_session=front_end)
    login = ["AUTH PLAIN " + BETTY_PLAIN] if service == "submission" else []
    sender = "MAIL FROM:<betty@brilliant.com>" if service == "submission" else MAIL
    got = dialogue(world.host("brilliant.com").services[service].port, [
        "EHLO evil\0host", "HELO \x1b[31mevil", MAIL, "EHLO client.example", *login,
        "MAIL FROM:<nul\0byte@example.org>", RCPT, sender, "RCPT TO:<bet\0ty@brilliant.com>",
        "RCPT TO:<carol\x7f@careful.com>", "VRFY <nul\0byte@example.org>", "VRFY bet\x01ty"])
    hello = "501 5.5.2 <{}>: bad HELO/EHLO name: control character (RFC 5321 4.1.1.1)"
    assert got[1:3] == [hello.format("evil\\x00host"), hello.format("\\x1b[31mevil")]
    assert got[3][:3] == "503"  # still no hello: MAIL is out of order
    got = got[5 + len(login):]
    assert got[0] == ("501 5.1.7 <nul\\x00byte@example.org>: bad sender address syntax: control character in "
                      "address (RFC 5321 4.1.2)")
    assert got[1][:3] == "503" and got[2][:3] == "250"  # no transaction until a good MAIL
    shown = ["bet\\x00ty@brilliant.com", "carol\\x7f@careful.com", "nul\\x00byte@example.org", "bet\\x01ty"]
    assert [g.partition(">:")[0] for g in got[3:]] == [f"501 5.1.3 <{address}" for address in shown]


@pytest.fixture
def sans_io(world):
    world.use(host="smtp.brilliant.com", smtp_session=SMTPServerSession)
    return world


def test_smtplib_delivers_through_the_sans_io_session(sans_io):
    port = sans_io.host("brilliant.com").services["smtp"].port
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        code, lines = client.ehlo("client.example")
        assert code == 250 and b"ENHANCEDSTATUSCODES" in lines
        refused = client.sendmail("someone@example.org", ["betty@brilliant.com"], b"Subject: smtplib\r\n\r\nhi\r\n")
        assert refused == {}
    sans_io.wait_for_delivery("betty@brilliant.com")
    with sans_io.reader("betty@brilliant.com") as inbox:
        assert "Subject: smtplib" in inbox.show(1)


def test_the_worlds_relay_delivers_through_it(sans_io):
    sans_io.send("albert@awesome.com", ["betty@brilliant.com"], b"Subject: relayed\r\n\r\nhi\r\n")
    sans_io.wait_for_delivery("betty@brilliant.com")
    stored = sans_io.messages("betty@brilliant.com")[0]
    assert b"by smtp.brilliant.com (labkit) with ESMTP id" in stored
    lines = sans_io.wait_for(lambda e: e.protocol == "smtp" and e.server == "smtp.brilliant.com" and e.line == "DATA")
    assert lines.client == "smtp.awesome.com"


def test_swaks_delivers_through_it(sans_io):
    swaks = need("swaks")
    port = sans_io.host("brilliant.com").services["smtp"].port
    done = subprocess.run([swaks, "--server", f"127.0.0.1:{port}", "--from", "someone@example.org",
                           "--to", "betty@brilliant.com", "--header", "Subject: swaks"],
                          capture_output=True, timeout=30, text=True)
    assert done.returncode == 0, done.stdout
    assert "250 2.0.0 OK queued as" in done.stdout
    sans_io.wait_for_delivery("betty@brilliant.com")


def test_pipelined_commands_are_answered_in_order(sans_io):
    port = sans_io.host("brilliant.com").services["smtp"].port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"{HELO}\r\n{MAIL}\r\n{RCPT}\r\nRCPT TO:<nobody@brilliant.com>\r\nDATA\r\n".encode())
        assert [reader.readline()[:3] for _ in range(5)] == [b"250", b"250", b"250", b"550", b"354"]
        sock.sendall(BODY.encode() + b"QUIT\r\n")
        assert reader.readline().startswith(b"250 2.0.0 OK queued as")
        assert reader.readline().startswith(b"221")


def test_a_session_swapped_out_as_a_client_connects_still_serves_it(sans_io, monkeypatch):
    """The listener picks the front end once per connection: a ``use(smtp_session=None)``
    right after that choice must not leave the connection with no session (and no reply)."""
    host = sans_io.host("brilliant.com")
    part = host.part

    def swapped_after_the_first_look(seam: str):
        found = part(seam)
        if seam == "smtp_session":
            monkeypatch.setattr(host, "part", part)
            sans_io.seams.use(host.name, smtp_session=None)  # as world.use would, between factory and handler
        return found

    monkeypatch.setattr(host, "part", swapped_after_the_first_look)
    port = host.services["smtp"].port
    assert codes(port, [HELO, "QUIT"]) == ["220", "250", "221"]
    assert host.part("smtp_session") == (None, False)


def test_every_command_in_every_state_is_answered_as_its_table_says(world):
    """The command x state table is what the session does: a command where it may not
    come gets the table's 503 and changes nothing; a positive reply moves to its state."""
    from labkit.mta.core import MTA
    from labkit.smtp.server import COMMANDS, SMTPServerSession, State

    lines = {"HELO": "HELO client.example", "EHLO": "EHLO client.example", "MAIL": "MAIL FROM:<a@example.org>",
             "RCPT": "RCPT TO:<betty@brilliant.com>", "DATA": "DATA", "RSET": "RSET", "NOOP": "NOOP", "QUIT": "QUIT",
             "VRFY": "VRFY betty", "HELP": "HELP", "EXPN": "EXPN staff", "AUTH": "AUTH PLAIN"}
    paths = {State.GREETED: [], State.READY: ["HELO client.example"],
             State.MAIL: ["HELO client.example", "MAIL FROM:<a@example.org>"],
             State.RCPT: ["HELO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<betty@brilliant.com>"]}
    for state, path in paths.items():
        for name, command in COMMANDS.items():
            session = SMTPServerSession(("127.0.0.1", 1), MTA(world.host("smtp.brilliant.com"), "smtp"),
                                        hostname="smtp.brilliant.com")
            session.start()
            for line in path:
                session.receive(line.encode() + b"\r\n")
            assert session.state is state
            reply = session.receive(lines[name].encode() + b"\r\n").decode()
            refusal = command.refusal(state)
            if refusal:
                assert (reply, session.state) == (refusal + "\r\n", state), (name, state)
            elif command.then is not None and reply[:1] in "23":
                assert session.state is command.then, (name, state, reply)
