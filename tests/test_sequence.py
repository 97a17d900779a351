"""labkit.sequence: the slides' labels, and the rows and lanes every diagram of a trace
draws (terminal, notebook, the lecture page), from a real run of the lecture's world."""

from __future__ import annotations

import pytest

from labkit.checks.harness import ALBERT, BETTY, DINNER
from labkit.notebook import sequence
from labkit.sequence import Sequencer, is_failure
from labkit.trace import TraceEvent
from labkit.world import World


@pytest.fixture(scope="module")
def story():
    """The events of Albert's dinner mail to Betty, submitted and relayed for real."""
    with World() as world:
        world.send(ALBERT, [BETTY], DINNER)
        world.wait_for(lambda e: e.kind == "delivered" and e.server == "smtp.awesome.com")
        yield world.tracer.events()


def test_rows_are_turns_of_dialogue_with_the_slides_labels(story):
    rows = Sequencer({"127.0.0.1": "Albert's mail client"}).rows(story)
    assert [r.label for r in rows if r.label][:7] == [
        "server greeting", "client greeting (extended SMTP)", "client logs in", "sender command",
        "recipient command", "start of message", "go ahead; end with a lone '.'"]
    ehlo_reply = rows[2]
    assert ehlo_reply.text.startswith("250-smtp.awesome.com … (+") and not ehlo_reply.label
    message = next(r for r in rows if r.label == "end of message")  # the whole message is one arrow
    assert message.count == DINNER.count(b"\r\n") + 1  # its lines and the lone "."
    assert (message.source, message.target) == ("Albert's mail client", "smtp.awesome.com")


def test_lanes_are_hosts_in_the_order_they_take_part_and_dns_names_the_asking_host(story):
    diagram = Sequencer({"127.0.0.1": "Albert's mail client"})
    rows = diagram.rows(story)
    assert diagram.lanes.order == ["Albert's mail client", "smtp.awesome.com", "ns.lab", "smtp.brilliant.com"]
    mx = next(r for r in rows if r.event.protocol == "dns" and r.event.direction == "C")
    assert (mx.source, mx.target, mx.label) == ("smtp.awesome.com", "ns.lab", "which hosts receive its mail? (MX)")


def test_queue_ids_and_deliveries_are_notes_on_their_hosts_lane(story):
    notes = [(r.source, r.text) for r in Sequencer().rows(story) if r.is_note]
    assert notes[0][0] == "smtp.awesome.com" and notes[0][1].startswith("queued ")
    assert ("smtp.brilliant.com", f"delivered to <{BETTY}> (Maildir)") in notes
    assert notes[-1] == ("smtp.awesome.com", f"delivered to <{BETTY}>")


def test_failures_are_marked_whatever_the_protocol():
    def line(protocol: str, text: str, direction: str = "S") -> TraceEvent:
        return TraceEvent(protocol, "c", "s", direction, text)  # type: ignore[arg-type]

    assert is_failure(line("smtp", "451 4.7.1 greylisted")) and is_failure(line("pop3", "-ERR no"))
    assert is_failure(line("imap", "a1 NO [AUTHENTICATIONFAILED] no")) and is_failure(line("dns", "SERVFAIL"))
    assert not is_failure(line("smtp", "250 OK")) and not is_failure(line("imap", "* NO alert"))
    assert not is_failure(line("smtp", "451 said by a client", "C"))


def test_the_notebook_diagram_draws_the_same_rows(story):
    shown = sequence(story, names={"127.0.0.1": "Albert's mail client"}).text.splitlines()
    assert shown[0] == "sequence: Albert's mail client | smtp.awesome.com | ns.lab | smtp.brilliant.com"
    assert any(line.split() == ["smtp.awesome.com", "->", "ns.lab", "brilliant.com.", "IN", "MX"] for line in shown)
    assert "  ** queued " in "\n".join(shown)
