"""The lecture page's server side without a browser: the live feed (batches, folding,
pages that fall behind) and the views (the Received chain, the queue)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from labkit.checks.harness import ALBERT, BETTY, DINNER
from labkit.lecture import feed as feed_module
from labkit.lecture.feed import Feed
from labkit.lecture.views import mailboxes, queue, received_hop
from labkit.trace import TraceEvent, Tracer
from labkit.world import World


def turns(count: int, session: str = "s1") -> list[TraceEvent]:
    """``count`` lines, alternately client and server: one row each."""
    return [TraceEvent("smtp", "a.example", "b.example", "C" if i % 2 == 0 else "S", f"line {i}", session)
            for i in range(count)]


def batches(feed: Feed, after: int = 0) -> list[tuple[str, dict]]:
    shown = []
    for _, wire in feed.since(after) or []:
        head, data = wire.decode().split("\ndata: ")
        shown.append((head.split("\n")[0].removeprefix("event: "), json.loads(data)))
    return shown


def on_a_loop(scenario):
    async def run():
        tracer = Tracer()
        feed = Feed(tracer, asyncio.get_running_loop(), delay=60, max_rows=5)  # batches made by hand here
        try:
            return scenario(tracer, feed)
        finally:
            feed.close()

    return asyncio.run(run())


def test_a_batch_carries_its_last_rows_and_folds_the_rest():
    def scenario(tracer, feed):
        for event in turns(12):
            tracer.emit(event)
        feed.flush()
        return batches(feed), feed.snapshot()

    [(kind, batch)], snapshot = on_a_loop(scenario)
    assert kind == "rows" and batch["folded"] == 7 and batch["events"] == 12
    assert [row["text"] for row in batch["rows"]] == [f"line {i}" for i in range(7, 12)]
    assert len(snapshot["rows"]) == 12 and snapshot["folded"] == 0  # a page opening now sees them all


def test_a_row_that_grows_is_sent_again_with_its_id():
    def scenario(tracer, feed):
        tracer.emit(TraceEvent("smtp", "a", "b", "S", "250-b.example", "s1"))
        feed.flush()
        tracer.emit(TraceEvent("smtp", "a", "b", "S", "250 HELP", "s1"))  # the same reply goes on
        feed.flush()
        return batches(feed)

    first, second = on_a_loop(scenario)
    assert first[1]["rows"][0]["id"] == second[1]["rows"][0]["id"]
    assert second[1]["rows"][0]["text"] == "250-b.example … (+1 lines)"


def test_events_from_any_thread_are_counted_and_a_flood_is_folded_unseen(monkeypatch):
    monkeypatch.setattr(feed_module, "MAX_PENDING", 100)

    def scenario(tracer, feed):
        threads = [threading.Thread(target=lambda s=s: [tracer.emit(e) for e in turns(60, f"s{s}")]) for s in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        feed.flush()
        return batches(feed)

    [(_, batch)] = on_a_loop(scenario)
    assert batch["events"] == 240  # every event counted: 100 taken, 140 beyond MAX_PENDING
    assert len(batch["rows"]) == 5 and batch["folded"] == 100 - 5 + 140


def test_a_page_too_far_behind_is_told_to_start_again():
    def scenario(tracer, feed):
        for i in range(feed_module.LOG + 10):
            feed.publish("views", {"n": i})
        return feed.since(0), feed.since(feed.number - 3), feed.since(feed.number)

    behind, close, current = on_a_loop(scenario)
    assert behind is None and len(close) == 3 and current == []


def test_the_received_chain_is_read_as_rfc_5321_writes_it():
    hop = received_hop("from pc.awesome.com ([1.2.3.100])\r\n\tby smtp.awesome.com (labkit) with ESMTPA id 0F4653B4"
                       "\r\n\tfor <betty@brilliant.com>; Sun, 06 Dec 2026 08:59:16 +0000")
    assert (hop.sender, hop.sender_info, hop.receiver, hop.protocol, hop.queue_id, hop.recipient, hop.date) == (
        "pc.awesome.com", "[1.2.3.100]", "smtp.awesome.com", "ESMTPA", "0F4653B4", "betty@brilliant.com",
        "Sun, 06 Dec 2026 08:59:16 +0000")
    assert hop.names == ["pc.awesome.com", "smtp.awesome.com", "1.2.3.100"]
    odd = received_hop("by mx.example.org with SMTP; Mon, 1 Jan 2024 00:00:00 +0000")  # no "from" at all
    assert (odd.sender, odd.receiver, odd.names) == ("", "mx.example.org", ["mx.example.org"])
    assert received_hop("garbage without clauses").names == []


def test_views_read_the_worlds_mailboxes_and_queue(tmp_path):
    with World(state_dir=tmp_path / "state") as world:
        world.set_behaviour("smtp.chaos.com", "down")
        world.send(ALBERT, [BETTY, "chuck@chaos.com"], DINNER)
        world.wait_for_delivery(BETTY)
        world.wait_for(lambda e: e.kind == "deferred")
        betty = next(box for box in mailboxes(world.aworld) if box["address"] == BETTY)
        assert betty["count"] == 1 and betty["messages"][0]["subject"] == "Dinner"
        assert [h["receiver"] for h in betty["messages"][0]["hops"]] == ["smtp.awesome.com", "smtp.brilliant.com"]
        async def on_the_loop():  # the queue is the loop's to read
            return queue(world.aworld)

        waiting = world.run(on_the_loop())
        assert [(w["host"], [r["address"] for r in w["recipients"]]) for w in waiting] == [
            ("smtp.awesome.com", ["chuck@chaos.com"])]
        assert waiting[0]["recipients"][0]["why"].startswith("451 4.4.1 smtp.chaos.com [1.2.3.13]")
        assert 0 <= waiting[0]["retry_in"] <= 20


@pytest.mark.parametrize("kind", ["behaviour", "fault"])
def test_control_changes_are_notes_in_the_trace(kind, tmp_path):
    with World(state_dir=tmp_path / "state") as world, world.tracer.record() as events:
        if kind == "behaviour":
            world.set_behaviour("chaos.com", "tarpit")
        else:
            world.set_dns_fault("brilliant.com", "timeout")
    assert [(e.kind, e.line) for e in events] == [
        ("behaviour", "smtp.chaos.com now behaves: tarpit") if kind == "behaviour"
        else ("fault", "DNS: brilliant.com now gets timeout")]
