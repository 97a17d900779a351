"""The live feed behind the lecture page: trace events, as they happen, become the
diagram's rows (:mod:`labkit.sequence`), sent in batches, with what a page could never
draw in time folded into a count. Any number of pages read it, each at its own pace.

The tracer calls :meth:`Feed.event` on the hot path of every server, in any thread: it
only appends to a deque (and, once per batch, wakes the world's loop). On the loop, a
batch is made ``delay`` seconds after its first event: the events are fed to the
sequencer, the rows they made or grew are serialised once (at most ``max_rows``: the
earlier ones are folded, only counted), and the batch joins a short numbered log that
each page's stream reads from its own cursor. A page that falls further behind than the
log reaches is told to start again from a snapshot (``reset``), so a slow page costs
the world nothing but a few kilobytes.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
from typing import Any, Callable

from ..sequence import Row, Sequencer
from ..trace import TraceEvent, Tracer

BATCH_DELAY = 0.05  # seconds the first event of a batch waits for others
MAX_ROWS = 150  # rows a batch carries; earlier ones of the same batch are folded
HISTORY = 200  # rows a page that opens now is shown
LOG = 256  # batches kept for pages that are a little behind
MAX_PENDING = 100_000  # events waiting for the loop; beyond, they are folded unseen
# Notes that change what the page's other panels show.
VIEWS_KINDS = frozenset({"queued", "deferred", "delivered", "failed", "discarded", "behaviour", "fault"})

Message = tuple[int, bytes]  # (number, the server-sent event as it goes on the wire)


def sse(kind: str, payload: Any, number: int = 0) -> bytes:
    """One server-sent event (HTML Living Standard §9.2): its name, id and JSON data."""
    return f"event: {kind}\nid: {number}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class Feed:
    def __init__(self, tracer: Tracer, loop: asyncio.AbstractEventLoop, *, names: dict[str, str] | None = None,
                 delay: float = BATCH_DELAY, max_rows: int = MAX_ROWS,
                 on_views: Callable[[], None] = lambda: None) -> None:
        self.loop, self.delay, self.max_rows, self.on_views = loop, delay, max_rows, on_views
        self.sequencer = Sequencer(names)
        self.recent: collections.deque[Row] = collections.deque(maxlen=HISTORY)
        self.log: collections.deque[Message] = collections.deque(maxlen=LOG)
        self.number = 0  # of the last message in the log
        self.rows_made = 0
        self.events_seen = 0
        self.folded = 0  # rows never sent (a batch had more than max_rows)
        self.closed = False
        self._pending: collections.deque[TraceEvent] = collections.deque()
        self._dropped = itertools.count()  # events beyond MAX_PENDING (next() is atomic: any thread)
        self._dropped_seen = self._looks = 0  # each look at _dropped takes a number too
        self._last: Row | None = None
        self._scheduled = False
        self._news = asyncio.Event()
        self._unsubscribe = tracer.subscribe(self.event)

    # -- any thread: the tracer's hot path --------------------------------------------------
    def event(self, event: TraceEvent) -> None:
        if len(self._pending) < MAX_PENDING:
            self._pending.append(event)
        else:
            next(self._dropped)
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._schedule)
            except RuntimeError:  # the loop has closed: the world is stopping
                pass

    # -- the world's loop -------------------------------------------------------------------
    def _schedule(self) -> None:
        if not self.closed:
            self.loop.call_later(self.delay, self.flush)

    def flush(self) -> None:
        """Make a batch of what has come (runs on the loop, by itself or from a test)."""
        self._scheduled = False  # first: an event from now on schedules the next batch
        events = [self._pending.popleft() for _ in range(len(self._pending))]
        dropped = next(self._dropped) - self._looks
        self._looks += 1
        unseen, self._dropped_seen = dropped - self._dropped_seen, dropped
        touched: dict[int, Row] = {}  # made or grown in this batch, in the order they were made
        views = False
        for event in events:
            row = self.sequencer.feed(event)
            views = views or event.kind in VIEWS_KINDS
            if row is None:
                continue
            if row is not self._last:  # the sequencer only ever grows its last row
                self._last = row
                self.rows_made += 1
                self.recent.append(row)
            touched[row.id] = row
        self.events_seen += len(events) + unseen
        rows = list(touched.values())
        folded = max(len(rows) - self.max_rows, 0) + unseen
        self.folded += folded
        if rows or folded:
            self.publish("rows", {"rows": [r.to_json() for r in rows[-self.max_rows:]], "folded": folded,
                                  "events": self.events_seen})
        if views:
            self.on_views()

    def publish(self, kind: str, payload: Any) -> None:
        """Add a message to the log and wake the pages' streams."""
        self.number += 1
        self.log.append((self.number, sse(kind, payload, self.number)))
        self._news.set()
        self._news = asyncio.Event()

    def snapshot(self) -> dict[str, Any]:
        """What a page that opens now starts from: the latest rows, and the number of the
        last message they include."""
        return {"number": self.number, "rows": [r.to_json() for r in self.recent],
                "folded": self.rows_made - len(self.recent), "events": self.events_seen}

    def since(self, number: int) -> list[Message] | None:
        """The messages after ``number``; None if some are no longer in the log."""
        if number == self.number:
            return []
        if not self.log or self.log[0][0] > number + 1:
            return None
        return [m for m in self.log if m[0] > number]

    async def wait(self, number: int, timeout: float) -> None:
        """Until there is a message after ``number``, or ``timeout`` seconds pass."""
        if self.number == number and not self.closed:
            try:
                await asyncio.wait_for(self._news.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        self.closed = True
        self._unsubscribe()
        self._news.set()
