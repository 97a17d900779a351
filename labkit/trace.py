"""Every protocol exchange in the lab world becomes a :class:`TraceEvent`.

Servers and clients call :meth:`Tracer.emit`; renderers (terminal, notebook, JSON for
grading feedback) subscribe. Tests and the demo *wait* on events instead of sleeping::

    event = world.tracer.wait_for(lambda e: e.kind == "delivered", timeout=5)

Protocol lines cost nothing while no one watches them: a :class:`LineTracer` burst (the
lines of one read or write) that no subscriber is there to see goes into the history as
it came, and becomes events only when someone reads the history
(:meth:`Tracer.events`, :meth:`Tracer.wait_for`).
"""

from __future__ import annotations

import collections
import itertools
import struct
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


def queued_for(recipient: str) -> Callable[[TraceEvent], bool]:
    """A predicate: a host queued a message with ``recipient`` among its recipients."""
    recipient = recipient.lower()
    return lambda e: e.kind == "queued" and recipient in (r.lower() for r in e.data.get("recipients", ()))


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


class _Burst(bytes):
    """Lines of one read or write nobody watched as they came, kept as they came: one
    bytes object holding who sent them, when, how many more were cut, and the lines
    shown (a single allocation, big enough to bypass Python's small-object heap, so the
    history never pins the memory a big mailbox's session used). Made into events, once,
    when someone reads the history."""

    _TAIL = struct.Struct("<dQ")  # when, lines cut

    @staticmethod
    def head(who: tuple[str, ...], direction: Direction) -> bytes:
        """What every burst of one connection in one direction starts with."""
        return "\0".join((*who, direction, "")).encode("utf-8", "replace")

    @classmethod
    def of(cls, head: bytes, lines: bytes, more: int, when: float) -> "_Burst":
        return cls(head + cls._TAIL.pack(when, more) + lines)

    def events(self) -> list[TraceEvent]:
        made = self.__dict__.get("made")
        if made is None:
            *who, direction, rest = self.split(b"\0", 6)
            protocol, client, server, session, seam = (part.decode("utf-8", "replace") for part in who)
            when, more = self._TAIL.unpack_from(rest)
            texts = [raw.rstrip(b"\r").decode("utf-8", "replace") for raw in rest[self._TAIL.size:].split(b"\n")]
            if more:
                texts.append(f"... ({more} more lines)")
            made = self.__dict__["made"] = [
                TraceEvent(protocol, client, server, direction.decode(), text, session, time=when, seam=seam)
                for text in texts]
        return made


class Tracer:
    """A thread-safe event bus with a bounded history (``history`` entries: an event,
    or a burst of at most :data:`LineTracer` ``max_lines`` + 1 lines nobody watched)."""

    def __init__(self, history: int = 20_000) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()  # replaced, never mutated: safe to read unlocked
        self._history: collections.deque[TraceEvent | _Burst] = collections.deque(maxlen=history)
        self._cond = threading.Condition()
        self._waiters = 0

    @property
    def watched(self) -> bool:
        """Whether anyone sees events as they come (a subscriber); if not, protocol
        lines may be :meth:`keep`-ed as they came."""
        return bool(self._subscribers)

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

    def keep(self, burst: _Burst) -> None:
        """Emit the events of a burst nobody watches (see :attr:`watched`) when the
        history is read."""
        self._history.append(burst)
        if self._waiters:  # appended before this check: see emit
            with self._cond:
                self._cond.notify_all()

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
        items = list(self._history)  # one C call under the GIL: a consistent copy
        if not any(type(item) is _Burst for item in items):
            return items  # type: ignore[return-value]
        out: list[TraceEvent] = []
        for item in items:
            if type(item) is _Burst:
                out += item.events()
            else:
                out.append(item)  # type: ignore[arg-type]
        return out

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
                    found = [e for e in self.events() if (since is None or e.time >= since) and predicate(e)]
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
        self._heads = {d: _Burst.head((protocol, client, server, session, seam), d) for d in ("C", "S")}

    def feed(self, direction: Direction, data: bytes, max_lines: int = 24) -> None:
        partial = self._partial[direction]
        buf = partial + data if partial else data
        lines = buf.count(b"\n")
        if lines <= max_lines:  # nearly always (a command, a reply): every whole line is shown
            cut = last = buf.rfind(b"\n")  # where the last line shown ends (-1: none)
        else:
            after = buf.split(b"\n", max_lines)[-1]  # what follows the lines shown
            cut = len(buf) - len(after) - 1
            last = buf.rfind(b"\n")  # the end of the last line cut
        more = lines - max_lines if lines > max_lines else 0
        self._partial[direction] = buf[last + 1:][-4096:]
        if cut < 0:
            return
        if self.tracer.watched:
            for raw in buf[:cut].split(b"\n"):
                self.line(direction, raw.rstrip(b"\r").decode("utf-8", "replace"))
            if more:
                self.line(direction, f"... ({more} more lines)")
        else:
            self.tracer.keep(_Burst.of(self._heads[direction], buf[:cut], more, time.time()))

    def line(self, direction: Direction, text: str) -> None:
        self.tracer.emit(TraceEvent(self.protocol, self.client, self.server, direction, text, self.session,
                                    seam=self.seam))
