"""The MTA over real sockets: dialogue, policy, Received, queue ids, relaying."""

from __future__ import annotations

import asyncio
import email
import re
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from conftest import lecture_config, need
from labkit.commit import Staged
from labkit.mta.core import MTA
from labkit.mta.server import Hooks, TracedSMTP
from labkit.serve import SessionServer
from labkit.world import World

QUEUED = re.compile(r"^2\.0\.0 OK queued as ([0-9A-F]{8})$")
MESSAGE = b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: Lunch\r\n\r\nLunch on Friday?\r\n"


def smtp(world, host: str, service: str = "smtp") -> smtplib.SMTP:
    endpoint = world.host(host).services[service]
    return smtplib.SMTP(endpoint.host, endpoint.port, local_hostname="client.test", timeout=10)


def headers(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw)


def test_lecture_dialogue_over_a_raw_socket(world):
    """The slide's HELO dialogue, line by line, with the codes the lecture shows."""
    endpoint = world.host("smtp.brilliant.com").services["smtp"]
    with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
        f = sock.makefile("rwb")

        def say(line: str) -> str:
            f.write(line.encode() + b"\r\n")
            f.flush()
            return f.readline().decode()

        assert f.readline().startswith(b"220 smtp.brilliant.com")
        assert say("HELO smtp.awesome.com").startswith("250 ")
        assert say("MAIL FROM:<albert@awesome.com>").startswith("250 ")
        assert say("RCPT TO:<betty@brilliant.com>").startswith("250 ")
        assert say("DATA").startswith("354 ")
        reply = say("Subject: Lunch\r\n\r\n..a line that starts with a dot\r\nbye\r\n.")
        assert re.match(r"250 2\.0\.0 OK queued as [0-9A-F]{8}\r\n", reply), reply
        assert say("QUIT").startswith("221")
    world.wait_for_delivery("betty@brilliant.com")
    stored = world.messages("betty@brilliant.com")[0]
    assert b"\r\n.a line that starts with a dot\r\n" in stored  # dot-stuffing undone once
    assert stored.startswith(b"Return-Path: <albert@awesome.com>\r\n")


def test_a_250_never_waits_for_the_maildir_copies_after_it(world):
    """The one flush before the 250 (the spool file) and the Maildir copies after it
    have writer threads of their own: with every Maildir copy held up, messages are
    still accepted, and each is stored once the copies may go on."""
    gate = threading.Event()
    held = world.context.deliverer.submit(lambda: (gate.wait(30), Staged()))
    try:
        with smtp(world, "smtp.brilliant.com") as client:
            for i in range(3):
                client.sendmail("albert@awesome.com", ["betty@brilliant.com"], MESSAGE + b"%d\r\n" % i)
        assert world.messages("betty@brilliant.com") == []  # all three acknowledged, none stored yet
    finally:
        gate.set()
    assert held.result(timeout=30)
    world.wait_for_delivery("betty@brilliant.com", count=3)
    assert sorted(m[-3:] for m in world.messages("betty@brilliant.com")) == [b"0\r\n", b"1\r\n", b"2\r\n"]


def _data_segments_in(sock: socket.socket) -> int:
    """Linux's count of TCP segments with data this socket has received: struct
    tcp_info's tcpi_data_segs_in (a u32 at byte 152, since Linux 4.6)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    return int.from_bytes(info[152:156], "little")


def test_a_multiline_reply_comes_in_one_segment(world):
    """The EHLO reply's six lines go in one write, as Postfix sends them: not a segment,
    and a wake-up of the client, for each line."""
    endpoint = world.host("smtp.brilliant.com").services["smtp"]
    with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        before = _data_segments_in(sock)
        sock.sendall(b"EHLO client.test\r\n")
        lines = [f.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(f.readline())
        assert len(lines) >= 5 and lines[-1].startswith(b"250 "), lines
        assert _data_segments_in(sock) - before == 1
        sock.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"221 ")


def test_local_delivery_with_received_header(world):
    with smtp(world, "smtp.brilliant.com") as client:
        client.ehlo()
        code, text = client.docmd("MAIL FROM:<albert@awesome.com>")
        assert code == 250
        assert client.rcpt("betty@brilliant.com")[0] == 250
        code, text = client.data(MESSAGE)
        assert code == 250
        queue_id = QUEUED.match(text.decode()).group(1)
    world.wait_for_delivery("betty@brilliant.com")
    msg = headers(world.messages("betty@brilliant.com")[0])
    received = msg.get_all("Received")
    assert len(received) == 1
    assert "by smtp.brilliant.com" in received[0]
    assert f"id {queue_id}" in received[0]
    assert "for <betty@brilliant.com>" in received[0]
    assert "from client.test ([127.0.0.1])" in received[0]  # a real client shows its real address
    assert msg["Subject"] == "Lunch"


def test_relay_path_shows_in_received_headers(world):
    """Albert -> smtp.awesome.com -> (MX) -> smtp.brilliant.com -> Betty's Maildir."""
    result = world.send("albert@awesome.com", ["betty@brilliant.com"], MESSAGE)
    assert result.data_reply.code == 250
    world.wait_for_delivery("betty@brilliant.com")
    received = headers(world.messages("betty@brilliant.com")[0]).get_all("Received")
    assert len(received) == 2
    top, first = received
    assert top.startswith("from smtp.awesome.com (smtp.awesome.com [1.2.3.4])")  # the virtual address
    assert "by smtp.brilliant.com" in top
    assert "by smtp.awesome.com" in first and "with ESMTPA" in first  # authenticated submission
    # the relay really looked up the MX in the lab DNS
    questions = [e.line for e in world.tracer.events() if e.protocol == "dns" and e.direction == "C"]
    assert any(q.lower().startswith("brilliant.com. in mx") for q in questions)


def test_port_25_never_relays_for_strangers(world):
    with smtp(world, "smtp.awesome.com") as client:
        client.ehlo()
        assert client.docmd("MAIL FROM:<spammer@example.org>")[0] == 250
        code, text = client.rcpt("victim@brilliant.com")
        assert (code, text[:5]) == (454, b"4.7.1")
        assert b"Relay access denied" in text
        assert client.rcpt("albert@awesome.com")[0] == 250  # its own domain is fine


def test_submission_needs_auth_outside_trusted_networks(world):
    with smtp(world, "smtp.brilliant.com", "submission") as client:
        client.ehlo()
        code, text = client.docmd("MAIL FROM:<betty@brilliant.com>")
        assert code == 530 and b"Authentication required" in text
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("betty@brilliant.com", "wrong")
        client.login("betty", "betty-password")
        code, text = client.docmd("MAIL FROM:<albert@awesome.com>")
        assert code == 553 and b"not owned by user" in text  # no forging other users
        client.rset()
        assert client.docmd("MAIL FROM:<betty@brilliant.com>")[0] == 250
        assert client.rcpt("albert@awesome.com")[0] == 250  # authenticated: may relay


def test_trusted_network_relays_without_auth(world):
    """The lecture's unauthenticated HELO dialogue to smtp.awesome.com works."""
    with smtp(world, "smtp.awesome.com", "submission") as client:
        client.helo("pc.awesome.com")
        assert client.docmd("MAIL FROM:<albert@awesome.com>")[0] == 250
        assert client.rcpt("betty@brilliant.com")[0] == 250


@pytest.mark.parametrize(
    "command, code, enhanced",
    [
        ("RCPT TO:<nobody@brilliant.com>", 550, b"5.1.1"),
        ("RCPT TO:<betty>", 501, b"5.1.3"),
        ("RCPT TO:<betty@@brilliant.com>", 501, b"5.1.3"),
    ],
)
def test_recipient_errors(world, command, code, enhanced):
    with smtp(world, "smtp.brilliant.com") as client:
        client.ehlo()
        client.docmd("MAIL FROM:<albert@awesome.com>")
        got, text = client.docmd(command)
        assert (got, text[:5]) == (code, enhanced), text
        assert client.rcpt("betty@brilliant.com")[0] == 250  # the session goes on


def test_bad_sender_syntax_is_501(world):
    with smtp(world, "smtp.brilliant.com") as client:
        client.ehlo()
        code, text = client.docmd("MAIL FROM:<albert>")
        assert code == 501 and b"sender" in text


def test_postmaster_always_exists(world):
    """RFC 5321 §4.5.1: every domain must accept mail for postmaster."""
    with smtp(world, "smtp.brilliant.com") as client:
        client.ehlo()
        client.docmd("MAIL FROM:<albert@awesome.com>")
        assert client.rcpt("postmaster@brilliant.com")[0] == 250


def test_queue_ids_are_unique(world):
    ids = set()
    with smtp(world, "smtp.brilliant.com") as client:
        for _ in range(40):
            client.ehlo()
            client.docmd("MAIL FROM:<albert@awesome.com>")
            client.rcpt("betty@brilliant.com")
            code, text = client.data(MESSAGE)
            ids.add(QUEUED.match(text.decode()).group(1))
    assert len(ids) == 40


def test_mail_loop_is_refused(world):
    loop = b"".join(b"Received: from a by b; Wed, 25 Nov 2026 10:00:00 +0000\r\n" for _ in range(30)) + MESSAGE
    with smtp(world, "smtp.brilliant.com") as client:
        client.ehlo()
        client.docmd("MAIL FROM:<albert@awesome.com>")
        client.rcpt("betty@brilliant.com")
        code, text = client.data(loop)
    assert (code, text[:5]) == (554, b"5.4.6")
    assert b"Too many hops" in text


def test_eight_bit_and_utf8_text_arrive_intact(world):
    body = "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße aus Zürich ✉\r\n"
    result = world.send("albert@awesome.com", ["betty@brilliant.com"], body.encode())
    assert result.data_reply.code == 250
    world.wait_for_delivery("betty@brilliant.com")
    assert "Grüße aus Zürich ✉".encode() in world.messages("betty@brilliant.com")[0]


def test_every_smtp_line_is_traced(world):
    world.send("albert@awesome.com", ["betty@brilliant.com"], MESSAGE)
    world.wait_for_delivery("betty@brilliant.com")
    world.wait_for(lambda e: e.server == "smtp.brilliant.com" and e.line.startswith("221"))
    lines = [(e.direction, e.client, e.server, e.line) for e in world.tracer.events() if e.protocol == "smtp"]
    relay = [line for line in lines if line[1] == "smtp.awesome.com" and line[2] == "smtp.brilliant.com"]
    verbs = [text.split(":")[0].split(" ")[0] for d, _, _, text in relay if d == "C"]
    assert verbs[0] == "EHLO" and "MAIL" in verbs and "RCPT" in verbs and "DATA" in verbs and verbs[-1] == "QUIT"
    assert any(d == "S" and text.startswith("250 2.0.0 OK queued as") for d, _, _, text in relay)


@pytest.mark.parametrize("how", ["after the 354, with QUIT", "with DATA, before the 354", "a byte at a time"])
def test_the_message_arrives_whole_however_the_client_sends_it(world, how):
    """The body after DATA goes to the message's reader as it comes, whatever arrived
    with it: sent in one write with the next command (which is then answered), sent
    before the 354 by a client that did not wait (no PIPELINING is offered, but it must
    not be lost), or in pieces that split the final CRLF "." CRLF."""
    endpoint = world.host("smtp.brilliant.com").services["smtp"]
    text = b"y" * 70 + b"\r\n"
    body = b"Subject: pieces\r\n\r\n..dot\r\n" + text * 50 + b"last\r\n.\r\n"
    with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"HELO client.test\r\nMAIL FROM:<albert@awesome.com>\r\nRCPT TO:<betty@brilliant.com>\r\n")
        assert [f.readline()[:3] for _ in range(3)] == [b"250"] * 3
        if how == "with DATA, before the 354":
            sock.sendall(b"DATA\r\n" + body + b"QUIT\r\n")
            assert f.readline().startswith(b"354")
        else:
            sock.sendall(b"DATA\r\n")
            assert f.readline().startswith(b"354")
            if how == "a byte at a time":
                sock.sendall(body[:-40])
                for i in range(len(body) - 40, len(body)):  # the end, byte by byte
                    sock.sendall(body[i:i + 1])
                sock.sendall(b"QUIT\r\n")
            else:
                sock.sendall(body + b"QUIT\r\n")
        assert QUEUED.match(f.readline().decode()[4:].strip())
        assert f.readline().startswith(b"221")
    world.wait_for_delivery("betty@brilliant.com")
    stored = world.messages("betty@brilliant.com")[0]
    assert stored.endswith(b"Subject: pieces\r\n\r\n.dot\r\n" + text * 50 + b"last\r\n")


def test_a_message_over_the_size_limit_is_refused_and_the_session_goes_on(tmp_path):
    """RFC 1870: more mail data than the server takes is answered 552 once the end has
    come, nothing is queued, and the client may go on with its next transaction."""
    with World(lecture_config(max_message_size=1000), state_dir=tmp_path / "state") as world:
        endpoint = world.host("smtp.brilliant.com").services["smtp"]
        with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(b"HELO client.test\r\nMAIL FROM:<albert@awesome.com>\r\nRCPT TO:<betty@brilliant.com>\r\n"
                         b"DATA\r\n")
            assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
            sock.sendall(b"Subject: big\r\n\r\n" + (b"z" * 70 + b"\r\n") * 100 + b".\r\nRSET\r\n")
            assert f.readline().startswith(b"552")
            assert f.readline().startswith(b"250")  # the RSET that came with the message
        assert len(world.host("brilliant.com").spool) == 0


def test_an_idle_client_is_let_go_and_a_talking_one_kept(world):
    """RFC 5321 §4.5.3.2.7's server timeout on the aiosmtpd front end, whose one timer
    follows the last command: a client that keeps talking stays past several timeouts,
    one that falls silent is disconnected. (The lab's timeout is five minutes; this
    server's, on the world's loop, half a second.)"""
    host = world.host("smtp.brilliant.com")

    async def serve() -> asyncio.Server:
        loop = asyncio.get_running_loop()
        hooks = Hooks(MTA(host, "smtp"), SessionServer())
        return await loop.create_server(lambda: TracedSMTP(hooks, hostname=host.name, timeout=0.5, loop=loop),
                                        "127.0.0.1", 0)

    server = world.run(serve())
    try:
        with socket.create_connection(server.sockets[0].getsockname()[:2], timeout=10) as sock:
            f = sock.makefile("rwb")
            assert f.readline().startswith(b"220 ")
            talked = time.monotonic()
            while time.monotonic() - talked < 1.5:  # three timeouts, a command every 1/25 of one
                f.write(b"NOOP\r\n")
                f.flush()
                assert f.readline().startswith(b"250 "), "disconnected while talking"
                time.sleep(0.02)
            assert f.readline() == b""  # silent: the server hangs up (well within the 10 s)
    finally:
        server.close()


def test_swaks_talks_to_the_mta(world):
    swaks = need("swaks")
    endpoint = world.host("smtp.brilliant.com").services["smtp"]
    run = subprocess.run(
        [swaks, "--server", f"{endpoint.host}:{endpoint.port}", "--from", "albert@awesome.com",
         "--to", "betty@brilliant.com", "--helo", "swaks.test", "--header", "Subject: from swaks"],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"<-  250 2\.0\.0 OK queued as [0-9A-F]{8}", run.stdout)
    world.wait_for_delivery("betty@brilliant.com")
    assert headers(world.messages("betty@brilliant.com")[0])["Subject"] == "from swaks"


def test_swaks_relay_refused(world):
    swaks = need("swaks")
    endpoint = world.host("smtp.brilliant.com").services["smtp"]
    run = subprocess.run(
        [swaks, "--server", f"{endpoint.host}:{endpoint.port}", "--from", "x@example.org", "--to", "y@example.net"],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode != 0
    assert "454 4.7.1 <y@example.net>: Relay access denied" in run.stdout


def test_auth_login_on_submission(world):
    with smtp(world, "smtp.brilliant.com", "submission") as client:
        client.ehlo()
        assert "LOGIN" in client.esmtp_features["auth"] and "PLAIN" in client.esmtp_features["auth"]
        client.user, client.password = "betty@brilliant.com", "betty-password"
        code, _ = client.auth("LOGIN", client.auth_login)
        assert code == 235
        assert client.docmd("MAIL FROM:<betty@brilliant.com>")[0] == 250


def test_port_25_offers_no_auth(world):
    with smtp(world, "smtp.brilliant.com") as client:
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.has_extn("enhancedstatuscodes") and client.has_extn("8bitmime") and client.has_extn("smtputf8")
