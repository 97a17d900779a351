"""The imap_session checks catch each classic mistake, with its message, and pass every legal answer."""

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
from labkit.checks.imap_client import Untagged, Unreadable, fetch_items
from labkit.checks.sessions import Served
from labkit.imap.session import IMAPSession as LabkitsOwn
from labkit.trace import Tracer
from mistakes.imap_session import BASIC, MISTAKES, good
from mistakes.independent import imap_session as independent

CORPORA = {"labkit's": MISTAKES, "independent": independent.MISTAKES}
LAB = "6-imap"


def test_a_first_session_passes_the_basic_rules():
    report = checks.imap_session.run(good, only=BASIC, deadline=2.0)
    assert report.passed and len(report) == len(BASIC), str(report)


def test_an_independently_written_right_answer_passes_every_rule():
    passes_every_rule(checks.imap_session, independent.good)


def test_labkits_own_session_passes_every_rule(monkeypatch):
    """labkit's server (more commands, PERMANENTFLAGS, its own untagged news) is a legal
    answer: the checks must accept it, the fence lifted."""
    monkeypatch.setattr("labkit.fence.check_fence", lambda *args: None)
    passes_every_rule(checks.imap_session, LabkitsOwn)


@pytest.mark.parametrize("corpus, mistake", [(c, m) for c, mistakes in CORPORA.items() for m in mistakes])
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(corpus, mistake, visible_rules):
    visible = visible_rules(LAB)["imap_session"]
    assert caught(checks.imap_session, CORPORA[corpus], mistake, visible=visible).rfc.startswith("RFC 3501")


def test_fetch_responses_are_read_with_their_literals_and_sections():
    response = Untagged("* 2 FETCH (UID 3 FLAGS (\\Seen $Junk) BODY[HEADER.FIELDS (FROM TO)] \x000\x00 "
                        'INTERNALDATE " 6-Dec-2025 10:00:00 +0000" X NIL)', [b"From: a\r\n)(\r\n\r\n"])
    assert fetch_items(response) == {"UID": 3, "FLAGS": ["\\Seen", "$Junk"], "X": None,
                                     "BODY[HEADER.FIELDS (FROM TO)]": b"From: a\r\n)(\r\n\r\n",
                                     "INTERNALDATE": b" 6-Dec-2025 10:00:00 +0000"}
    for broken in ("* 1 FETCH (UID 3", "* 1 FETCH (UID)", "* 1 FETCH UID 3"):
        with pytest.raises(Unreadable):
            fetch_items(Untagged(broken))


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


def test_a_row_shows_the_servers_reply_and_names_the_literal_size_when_a_fetch_cannot_be_read():
    """A literal's {size} in characters, seen first by the uid rule: the row names the
    literal size (not only UIDs), and its transcript ends with the server's reply to the
    UID FETCH (was: it ended at the client's command, the reply traced after the client
    had read it)."""
    impl = independent.MISTAKES["literal size in characters (the UID FETCH shows it)"][0]
    result = checks.imap_session.run(impl, only=["uid"]).results[0]
    assert result.status == "fail" and "literal size" in result.hint and "len() of the bytes" in result.hint
    assert "{203}" in result.got, result.got
    lines = [line for _, line in result.transcript]
    asked = max(i for i, line in enumerate(lines) if "UID FETCH 3 (BODY.PEEK[])" in line)
    assert any(line.endswith("OK fetched") for line in lines[asked:]), lines[asked:]


def test_a_watch_that_returns_no_unwatch_function_is_said_at_once():
    """IDLE's watch(wake) must return the function that stops it: one that returns None
    was never woken (the adapter waited for the client only), and the only symptom was a
    client timing out. Now the connection ends at once with the contract's words."""
    from labkit.world import World

    class ForgetsToReturn(independent.good):
        def watch(self, wake):
            self.wake = wake  # no return: None

    with World(control=False) as world:
        world.use(host="smtp.brilliant.com", imap_session=ForgetsToReturn)
        with world.connect("1.2.3.5", 143, timeout=10) as sock:
            reader = sock.makefile("rb")
            greeting, said = reader.readline(), reader.readline().decode()
        assert greeting.startswith(b"* OK") and said.startswith("* BYE"), said
        assert "watch(wake) must return the function that stops the watching" in said and "None" in said, said
        errors = [e for e in world.tracer.events() if e.kind == "seam-error"]
        assert errors and "mailbox_changed() never runs" in errors[0].data["detail"], errors
