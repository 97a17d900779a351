"""The imap_session checks catch each classic mistake, with its message."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from checking import caught, fails_with, passes_every_rule, with_receive
from labkit import checks
from labkit.checks.sessions import Served
from labkit.imap.session import IMAPSession as LabkitsOwn
from labkit.trace import Tracer
from mistakes.imap_session import MISTAKES, good


def test_a_right_session_passes_every_rule():
    passes_every_rule(checks.imap_session, good)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_caught_with_its_message(mistake):
    assert caught(checks.imap_session, MISTAKES, mistake).rfc.startswith("RFC 3501")


@pytest.mark.parametrize("impl, says", [
    (with_receive(good, lambda self, data: data.decode().split()[5]), "IndexError"),
    (with_receive(good, lambda self, data: "* OK a str"), "must return bytes, got str"),
    (with_receive(good, lambda self, data: time.sleep(30)), "longer than 0.5s"),
    (type("Mine", (LabkitsOwn,), {}), "yours to write"),
])
def test_broken_sessions_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.imap_session, impl, ["login", "logout"], says)


def test_the_wire_shows_the_servers_bye():
    result = checks.imap_session.run(with_receive(good, lambda self, data: 1 / 0), only=["logout"]).results[0]
    assert any("* BYE [SERVERBUG] smtp.brilliant.com: internal error in the IMAP session" in line
               for _, line in result.transcript), result.transcript


def _resets_after_logout(server: socket.socket) -> None:
    """One IMAP connection that answers LOGOUT, then resets it (SO_LINGER 0: an RST, no FIN)."""
    conn, _ = server.accept()
    conn.settimeout(5)
    conn.sendall(b"* OK ready\r\n")
    reader = conn.makefile("rb")
    if reader.readline(1000).startswith(b"z9 LOGOUT"):
        conn.sendall(b"* BYE logging out\r\nz9 OK LOGOUT completed\r\n")
        time.sleep(0.2)  # the client has read the reply: the reset cannot eat it
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_a_server_that_resets_after_logout_has_hung_up(monkeypatch):
    """A reset is a hang-up too (was: 'it stays open', the reset taken for a timeout)."""
    server = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=_resets_after_logout, args=(server,), daemon=True)
    thread.start()

    def served(probe):
        return Served(probe, SimpleNamespace(tracer=Tracer()), "127.0.0.1", server.getsockname()[1], "", queue.Queue())

    monkeypatch.setattr(checks.imap_session, "_served", served)
    try:
        report = checks.imap_session.run(good, only=["logout"])
    finally:
        thread.join(5)
        server.close()
    assert report.passed, str(report)
