"""Every protocol exchange in the lab world becomes a :class:`TraceEvent`.

Servers and clients call :meth:`Tracer.emit`; renderers (terminal, notebook, JSON for
grading feedback) subscribe. Tests and the demo *wait* on events instead of sleeping::

    event = world.tracer.wait_for(lambda e: e.kind == "delivered", timeout=5)
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Literal

Direction = Literal["C", "S", "*"]
"""``C``: client to server; ``S``: server to client; ``*``: a note (queued, delivered…)."""


@dataclass(frozen=True)
class TraceEvent:
    protocol: str  # smtp, dns, pop3, imap, mta
    client: str  # who is on the client side (a host name or address)
    server: str  # who is on the server side
    direction: Direction
    line: str  # one protocol line, without CRLF (or a note)
    session: str = ""  # connection id, to tell parallel sessions apart
    kind: str = "line"  # line, or a note kind: queued, delivered, deferred, bounced, query…
    data: dict = field(default_factory=dict)  # structured extras (queue id, recipient…)
    time: float = field(default_factory=time.time)
    seam: str = ""  # the student's part this went through ("" for labkit's own)

    def to_json(self) -> dict:
        return asdict(self)


Subscriber = Callable[[TraceEvent], None]


def delivered_to(recipient: str) -> Callable[[TraceEvent], bool]:
    """A predicate: a message for ``recipient`` was stored in its Maildir."""
    recipient = recipient.lower()
    return lambda e: (e.kind == "delivered" and e.data.get("recipient", "").lower() == recipient
                      and e.data.get("detail", "").startswith("maildir"))


def settled(recipient: str) -> Callable[[TraceEvent], bool]:
    """A predicate: the mail for ``recipient`` has an outcome, for now: stored in its
    Maildir (:func:`delivered_to`), or deferred or failed for it."""
    arrived, recipient = delivered_to(recipient), recipient.lower()
    return lambda e: arrived(e) or (e.kind in ("deferred", "failed")
                                    and e.data.get("recipient", "").lower() == recipient)

_session_ids = itertools.count(1)


def new_session_id(prefix: str) -> str:
    """A short id that tells one connection's lines from another's."""
    return f"{prefix}{next(_session_ids)}"


class Tracer:
    """A thread-safe event bus with a bounded history."""

    def __init__(self, history: int = 20_000) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()  # replaced, never mutated: safe to read unlocked
        self._history: collections.deque[TraceEvent] = collections.deque(maxlen=history)
        self._cond = threading.Condition()
        self._waiters = 0

    def emit(self, event: TraceEvent) -> None:
        # The hot path of every server: no lock unless someone waits. A waiter counts
        # itself (under the lock) before it scans the history, so an event appended
        # after its scan always finds it counted and wakes it.
        self._history.append(event)
        if self._waiters:
            with self._cond:
                self._cond.notify_all()
        for fn in self._subscribers:
            fn(event)

    def note(self, protocol: str, kind: str, line: str, *, client: str = "", server: str = "", **data) -> None:
        """Emit a note: something happened that is not a protocol line. A ``seam``
        in ``data`` marks it as having gone through that student part; an empty one
        (labkit's own part) is left out of ``data``."""
        seam = data.get("seam", "")
        if not seam:
            data.pop("seam", None)
        self.emit(TraceEvent(protocol, client, server, "*", line, kind=kind, data=data, seam=seam))

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn`` for every future event; returns the function that unsubscribes."""
        with self._cond:
            self._subscribers = (*self._subscribers, fn)

        def unsubscribe() -> None:
            with self._cond:
                self._subscribers = tuple(f for f in self._subscribers if f is not fn)

        return unsubscribe

    def events(self) -> list[TraceEvent]:
        return list(self._history)  # one C call under the GIL: a consistent copy

    @contextmanager
    def record(self) -> Iterator[list[TraceEvent]]:
        """Collect the events emitted inside the ``with`` block."""
        got: list[TraceEvent] = []
        unsubscribe = self.subscribe(got.append)
        try:
            yield got
        finally:
            unsubscribe()

    def wait_for(
        self,
        predicate: Callable[[TraceEvent], bool],
        timeout: float = 10.0,
        *,
        since: float | None = None,
        count: int = 1,
    ) -> TraceEvent:
        """Block until ``count`` events matching ``predicate`` have been emitted (at or
        after ``since``, a ``time.time()`` value; default: any in the history) and
        return the last of them. Raises :class:`TimeoutError` saying how many came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            try:
                while True:
                    found = [e for e in list(self._history) if (since is None or e.time >= since) and predicate(e)]
                    if len(found) >= count:
                        return found[count - 1]
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"{len(found)} of {count} matching trace events within {timeout}s")
                    self._cond.wait(remaining)
            finally:
                self._waiters -= 1

    def clear(self) -> None:
        self._history.clear()


class LineTracer:
    """Splits a byte stream into lines and emits one event per line (for adapters).

    Long data (a 10 MB message, a big FETCH) is traced line by line up to
    ``max_lines`` per burst, then summarised, so traces stay readable and cheap.
    """

    def __init__(self, tracer: Tracer, protocol: str, client: str, server: str, session: str, seam: str = "") -> None:
        self.tracer, self.protocol = tracer, protocol
        self.client, self.server, self.session = client, server, session
        self.seam = seam  # the student part on either end of this connection, if any
        self._partial: dict[str, bytes] = {"C": b"", "S": b""}

    def feed(self, direction: Direction, data: bytes, max_lines: int = 24) -> None:
        buf = self._partial[direction] + data
        *lines, rest = buf.split(b"\n")
        self._partial[direction] = rest[-4096:]
        for i, raw in enumerate(lines):
            if i == max_lines:
                self.line(direction, f"... ({len(lines) - max_lines} more lines)")
                break
            self.line(direction, raw.rstrip(b"\r").decode("utf-8", "replace"))

    def line(self, direction: Direction, text: str) -> None:
        self.tracer.emit(TraceEvent(self.protocol, self.client, self.server, direction, text, self.session,
                                    seam=self.seam))
