"""The send_mail checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from labkit import checks
from labkit.smtp.send import send_mail as labkits_own
from checking import caught, fails_with, passes_every_rule
from mistakes.send_mail import MISTAKES, good


def test_a_right_implementation_passes_every_rule():
    passes_every_rule(checks.send_mail, good)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(mistake, visible_rules):
    visible = visible_rules("1-smtp-by-hand")["send_mail"]
    result = caught(checks.send_mail, MISTAKES, mistake, deadline=1.0, visible=visible)
    assert result.rfc.startswith("RFC")


def test_a_made_up_send_result_passes_no_rule():
    """A stub that returns a perfect SendResult without a word to the server: no rule
    takes the result alone (with partial credit, one that did would pay for it)."""
    from labkit.lab import Reply, SendResult

    def made_up(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0):
        return SendResult({r: Reply(250, ("2.1.5 OK",)) for r in rcpt_to}, {}, Reply(250, ("2.0.0 queued",)))

    report = checks.send_mail.run(made_up)
    assert [r.title for r in report if r.status == "pass"] == []


def test_labkits_own_client_earns_nothing():
    report = checks.send_mail.run(labkits_own, only=["delivers", "helo-fallback", "in-the-world"])
    assert [r.status for r in report] == ["fail", "fail", "fail"]
    assert all("yours to write" in r.text() for r in report), str(report)  # in the world too


@pytest.mark.parametrize("impl, says", [
    (lambda sock, **kw: None, "got None"),
    (lambda sock, **kw: 1 / 0, "ZeroDivisionError"),
    (lambda sock, **kw: time.sleep(30), "longer than 0.5s"),
])
def test_broken_clients_fail_every_rule_with_the_boundarys_message(impl, says):
    fails_with(checks.send_mail, impl, ["delivers", "per-recipient"], says)


def test_a_client_with_the_wrong_signature_fails_at_plugging_in():
    report = checks.send_mail.run(lambda sock: None, only=["delivers"])
    assert "must be callable as send_mail(sock, *, helo" in report.results[0].got


def test_a_failure_shows_the_transcript_around_it():
    impl, rule, _ = MISTAKES["no HELO fallback"]
    result = checks.send_mail.run(impl, only=[rule], deadline=1.0).results[0]
    assert ("C", "EHLO smtp.awesome.com") in result.transcript
    assert ("S", '500 5.5.2 command "EHLO" not recognized') in result.transcript
    assert "RFC 5321 §3.2" in result.text()


def test_a_split_reply_waits_until_the_client_has_read_each_piece():
    """The scripted server sends a reply's next piece once the client has read the one
    before (so a client reads each alone, on an idle machine or a busy one), which it
    knows from the client's receive queue."""
    import socket
    import threading

    from labkit.checks.peers import send_in_pieces
    from labkit.checks.receive_queue import other_end

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        with client, conn:
            conn.sendall(b"25")
            assert other_end(conn)[0] == 2  # there, not read
            assert client.recv(10) == b"25"
            assert other_end(conn)[0] == 0
            conn.sendall(b"0 OK\r\n")
            assert client.recv(10) == b"0 OK\r\n"
            reads: list[bytes] = []
            reader = threading.Thread(target=lambda: reads.extend(client.recv(10) for _ in range(3)))
            reader.start()
            send_in_pieces(conn, [b"2", b"50", b" OK\r\n"])
            reader.join(10)
            assert reads == [b"2", b"50", b" OK\r\n"]  # each piece read on its own


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_other_ends_receive_queue_is_told_alike_by_netlink_and_by_proc(host):
    """sock_diag answers for that one socket; /proc/net/tcp{,6} (the fallback) is read in
    one piece so that no row is skipped; both count what the other end has not read."""
    import socket

    from labkit.checks import receive_queue

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = socket.create_server((host, 0), family=family)
    except OSError:
        pytest.skip(f"no {host} on this machine")
    with server:
        client = socket.create_connection(server.getsockname()[:2])
        conn, _ = server.accept()
        with client, conn:
            ends = client.getpeername()[:2], client.getsockname()[:2]
            client.sendall(b"HELO client.exa")
            told = (receive_queue._by_netlink(family, *ends), receive_queue._by_proc(family, *ends))
            assert told == ((15, 15), 15)  # (unread, received in all), and /proc's unread
            assert conn.recv(100) == b"HELO client.exa"
            told = (receive_queue._by_netlink(family, *ends), receive_queue._by_proc(family, *ends))
            assert told == ((0, 15), 0)
        assert receive_queue.other_end(client) is None  # closed: nothing to tell


def test_an_empty_queue_is_not_taken_for_read_before_the_piece_has_arrived():
    """On a busy machine the kernel may deliver a loopback send after send returns: the
    other end's queue is then empty because the piece is not there yet. The wait between
    pieces also wants every byte sent received, and waits (up to SPLIT_WAIT) until it is."""
    import socket

    from labkit.checks import peers
    from labkit.checks.receive_queue import other_end

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        with client, conn:
            client.sendall(b"HELO")
            assert conn.recv(10) == b"HELO"
            received = other_end(client)[1]
            if received is None:
                pytest.skip("this kernel does not tell the bytes a socket has received")
            t0 = time.monotonic()
            peers._wait_read(client, received)  # all there and read: no wait
            assert time.monotonic() - t0 < peers.SPLIT_WAIT * 0.8
            t0 = time.monotonic()
            peers._wait_read(client, received + 5)  # five more sent, not yet arrived: it waits
            assert time.monotonic() - t0 >= peers.SPLIT_WAIT * 0.9
