"""The trace bus: waiting on events across threads, subscribers, JSON output, and the
address map that names peers in traces."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from labkit.net import AddressMap, Endpoint, NoRoute
from labkit.render import TerminalRenderer, to_json_lines
from labkit.trace import LineTracer, TraceEvent, Tracer


def test_wait_for_wakes_when_another_thread_emits():
    tracer = Tracer()
    threading.Timer(0.05, tracer.note, ("mta", "delivered", "done")).start()
    event = tracer.wait_for(lambda e: e.kind == "delivered", timeout=5)
    assert event.line == "done"


def test_wait_for_counts_and_says_how_many_came():
    tracer = Tracer()
    for i in range(3):
        tracer.note("mta", "queued", f"q{i}")
    assert tracer.wait_for(lambda e: e.kind == "queued", count=3).line == "q2"
    with pytest.raises(TimeoutError, match="3 of 4 matching"):
        tracer.wait_for(lambda e: e.kind == "queued", timeout=0.05, count=4)


def test_since_ignores_older_events():
    tracer = Tracer()
    tracer.note("mta", "queued", "old")
    start = time.time()
    with pytest.raises(TimeoutError):
        tracer.wait_for(lambda e: e.kind == "queued", timeout=0.05, since=start + 1)


def test_subscribers_and_record():
    tracer = Tracer()
    seen: list[TraceEvent] = []
    unsubscribe = tracer.subscribe(seen.append)
    with tracer.record() as recorded:
        tracer.note("dns", "lookup", "one")
    tracer.note("dns", "lookup", "two")
    unsubscribe()
    tracer.note("dns", "lookup", "three")
    assert [e.line for e in recorded] == ["one"]
    assert [e.line for e in seen] == ["one", "two"]


def test_line_tracer_splits_and_summarises_long_bursts():
    tracer = Tracer()
    lines = LineTracer(tracer, "pop3", "client", "server", "s1")
    lines.feed("S", b"+OK 3 lines\r\nfirst\r\nsec")
    lines.feed("S", b"ond\r\n")
    lines.feed("C", b"".join(b"line %d\r\n" % i for i in range(100)), max_lines=5)
    got = [(e.direction, e.line) for e in tracer.events()]
    assert got[:3] == [("S", "+OK 3 lines"), ("S", "first"), ("S", "second")]
    assert got[-1] == ("C", "... (95 more lines)") and len(got) == 3 + 5 + 1


def test_line_tracer_shows_whole_lines_only_and_counts_the_cut_ones():
    tracer = Tracer()
    lines = LineTracer(tracer, "imap", "client", "server", "s1")
    lines.feed("S", b"a\r\nb\r\nc\r\nd\r\ne\r\nf", max_lines=5)  # five shown; "f" waits for its end
    lines.feed("S", b"g\r\n")
    lines.feed("S", b"h\r\ni\r\nj\r\nk", max_lines=2)  # two shown, one cut; "k" is after the cut
    lines.feed("S", b"", max_lines=2)
    lines.feed("S", b"\r\n")
    assert [e.line for e in tracer.events()] == ["a", "b", "c", "d", "e", "fg", "h", "i", "... (1 more lines)", "k"]


def test_lines_nobody_watched_become_the_same_events_when_read():
    """With no subscriber a burst is kept as it came (nothing is formatted); reading the
    history, or waiting on it, gives exactly the events a subscriber sees at once."""
    burst = b"+OK 120 octets\r\n" + b"".join(b"line %d\r\n" % i for i in range(40)) + b".\r\n"
    quiet, watched, seen = Tracer(), Tracer(), []
    watched.subscribe(seen.append)
    for tracer in (quiet, watched):
        LineTracer(tracer, "pop3", "client", "server", "s1").feed("S", burst)
    rows = [[(e.direction, e.line, e.session, e.protocol) for e in events]
            for events in (quiet.events(), watched.events(), seen)]
    assert rows[0] == rows[1] == rows[2] and rows[0][-1][1] == "... (18 more lines)" and len(rows[0]) == 25
    later = LineTracer(quiet, "pop3", "client", "server", "s2")
    threading.Timer(0.05, later.feed, ("C", b"QUIT\r\n")).start()
    assert quiet.wait_for(lambda e: e.line == "QUIT", timeout=5).session == "s2"


def test_json_lines_and_plain_terminal_output():
    tracer = Tracer()
    tracer.emit(TraceEvent("smtp", "smtp.awesome.com", "smtp.brilliant.com", "C", "MAIL FROM:<a@b>", "s1"))
    tracer.emit(TraceEvent("smtp", "smtp.awesome.com", "smtp.brilliant.com", "S", "550 5.1.1 no", "s1"))
    rows = [json.loads(line) for line in to_json_lines(tracer.events()).splitlines()]
    assert rows[0]["line"] == "MAIL FROM:<a@b>" and rows[1]["direction"] == "S"
    renderer = TerminalRenderer(colour=False)
    text = renderer.format(tracer.events()[0])
    assert "smtp.awesome.com -> smtp.brilliant.com" in text and "<- sender command" in text
    assert "\x1b[" not in text and "\x1b[1;31m" in TerminalRenderer(colour=True).format(tracer.events()[1])


def test_terminal_lines_wrap_at_the_width_and_labels_are_bold_not_dim():
    long = TraceEvent("smtp", "smtp.awesome.com", "smtp.brilliant.com", "S", "354 " + "x" * 150, "s2")
    data = TraceEvent("smtp", "smtp.awesome.com", "smtp.brilliant.com", "C", "DATA", "s2")
    renderer = TerminalRenderer(colour=False, width=60)
    assert renderer.format(data).split("\n")[1].strip() == "<- start of message"  # no room beside the line
    assert all(len(line) <= 60 for line in renderer.lines(data))
    renderer = TerminalRenderer(colour=False, width=60, dialogue=True)
    assert renderer.format(data).endswith("C: DATA   <- start of message")
    shown = renderer.lines(long)
    assert len(shown) > 3 and all(len(line) <= 60 for line in shown)
    assert "".join(line.strip() for line in shown[:-1]).endswith("x" * 150)  # nothing cut off
    assert shown[-1].strip() == "<- go ahead; end with a lone '.'"  # its own line: no room
    coloured = TerminalRenderer(colour=True, width=60, dialogue=True).format(data)
    assert "\x1b[1m<- start of message" in coloured and "\x1b[2m" not in coloured
    assert coloured.startswith("  smtp.awesome.com   ")  # who speaks, not both ends


def test_address_map_routes_names_peers_and_refuses_the_unknown():
    amap = AddressMap()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        amap.add("1.2.3.5", 25, Endpoint("127.0.0.1", port))
        with amap.connect("1.2.3.5", 25, source="1.2.3.4") as client:
            peer, _ = server.accept()
            with peer:
                assert amap.peer_address(peer.getpeername()) == "1.2.3.4"
                assert client.getpeername()[1] == port
    with pytest.raises(NoRoute, match="nothing listens on 1.2.3.9:25"):
        amap.connect("1.2.3.9", 25)
    assert amap.resolve("127.0.0.1", 2525) == Endpoint("127.0.0.1", 2525)  # loopback passes through
