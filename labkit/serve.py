"""One asyncio adapter that serves any sans-IO session (:mod:`labkit.session`) on a TCP port.

The adapter feeds a session the bytes a client sent and writes back the bytes it returns;
all IO code is here. A *session factory* makes one session per connection. Every call
into a session runs off the event loop, through :mod:`labkit.boundary`: a student's
session gets a deadline and its answers are checked; a failure is answered with the
protocol's own "server error" line (``failure_reply``) and the connection is closed,
while every other connection goes on.

labkit's own sessions may say that a call needs no thread: ``in_memory(data)`` true
means ``receive(data)`` answers from memory (a POP3 LIST from its login snapshot), and the
adapter calls it right on the event loop, sparing the hand-off to a worker and back that
would cost more than the work. Such a command is even answered inside the transport's
``data_received`` (:class:`_Link`), as an ``asyncio.Protocol`` answers: the reply is
written at once, with no task woken and no await, while the connection is idle and the
transport's buffer is under its high-water mark. A student's session is always called
through the boundary, in a worker thread.

Memory stays bounded whatever a client sends: a session may return a big reply as an
iterator of chunks (:func:`labkit.session.stream` makes one), which the adapter takes one
chunk at a time, each written and drained before the next is made, so a client that does
not read holds up its own session and nothing else; and it stops reading from a client
that sends more than :data:`labkit.aio.READ_SIZE` bytes before the reply to what it sent
before is all written.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

from . import contracts
from .aio import READ_SIZE, heap_sized_reads
from .boundary import Boundary, SeamError
from .net import AddressMap
from .session import DEFAULT_TIMEOUT, PeerInfo, SessionFactory
from .trace import LineTracer, Tracer, new_session_id

log = logging.getLogger(__name__)


# The line for a broken session when the protocol has no better one (see failure_line).
GENERIC_FAILED = "-ERR server error: {detail}"


def failure_line(template: str, host: str, error: SeamError) -> bytes:
    """A protocol's "the server broke" line (then the connection closes), as ASCII with
    CRLF: ``template`` with the ``host``, then the failure on one line (positional
    ``{}``/``{}``, or ``{host}``, ``{failure}``), and ``{detail}``, the bare detail."""
    failure = error.one_line()
    text = template.format(host, failure, host=host, failure=failure, detail=error.detail)
    return (text + "\r\n").encode("ascii", "replace")


@dataclass
class SessionPart:
    """Which session a connection gets, and how to call it safely.

    ``choose()`` is asked at each new connection (so a swapped seam serves the next
    one) and returns ``(factory, is_student)``; ``failure_reply(error)`` is the
    protocol's own line for "the server broke" (``-ERR [SYS/TEMP] …``)."""

    seam: str
    host: str
    choose: Callable[[], tuple[SessionFactory, bool]]
    failure_reply: Callable[[SeamError], bytes]
    boundary: Boundary | None = None
    name_for: Callable[[str], str] = str  # a peer's address -> how traces name it (smtp.awesome.com)
    on_open: Callable[[tuple], None] | None = None  # told the client's (ip, port) when it connects
    on_close: Callable[[tuple], None] | None = None  # ... and when its connection is over


_DONE = object()  # a streamed reply has no more chunks


Step = tuple[Any, bool, Any]  # what a session call gave, whether it is closed, its reply_delay


def _step(session: Any, method: str, *args: Any) -> Step:
    """Runs in a worker: one session call, then the session's state (:func:`_state`)."""
    fn = getattr(session, method, None)
    return (fn(*args) if fn is not None else b""), *_state(session)


def _pull(session: Any, chunks: Iterator[Any]) -> Step:
    """Runs in a worker: the next chunk of a streamed reply (``_DONE`` after the last)."""
    return next(chunks, _DONE), *_state(session)


def _state(session: Any) -> tuple[bool, Any]:
    """Whether the session is closed, and the reply delay it asked for (taken: set
    back to 0). Read here, in the worker: a student's property may do anything."""
    delay = getattr(session, "reply_delay", 0)
    if delay:
        session.reply_delay = 0
    return bool(getattr(session, "closed", False)), delay


@functools.cache  # a handful of method names: each check is made once, not per call
def _after_step(method: str) -> Callable[[Step], Step] | None:
    if method == "connection_lost":  # it returns None: there is nothing left to send
        return None
    check = contracts.session_bytes(method)
    return lambda value: (check(value[0]), value[1], contracts.reply_delay(value[2]))


@functools.cache
def _after_pull(method: str) -> Callable[[Step], Step]:
    check = contracts.session_chunk(method)
    return lambda value: (value[0] if value[0] is _DONE else check(value[0]), value[1],
                          contracts.reply_delay(value[2]))


class _Connection:
    """One client connection served by a session, through the boundary."""

    def __init__(self, part: SessionPart, boundary: Boundary, factory: SessionFactory, student: bool) -> None:
        self.part, self.boundary, self.factory, self.student = part, boundary, factory, student
        self.session: Any = None
        self.streaming: Iterator[Any] | None = None  # a reply not all sent yet
        self.in_memory: Callable[[bytes], bool] | None = None  # labkit's own sessions: see the module doc

    async def make(self, peer: PeerInfo) -> None:
        self.session = await self.boundary.acall(
            self.part.seam, self.part.host, self.factory, peer, student=self.student,
            check=contracts.session_object, note=False)
        if not self.student:
            self.in_memory = getattr(self.session, "in_memory", None)

    async def step(self, method: str, *args: Any) -> Step:
        return await self.boundary.acall(self.part.seam, self.part.host, _step, self.session, method, *args,
                                         student=self.student, check=_after_step(method), note=False)

    def here(self, method: str, *args: Any) -> bool:
        """Whether to call ``method`` right on the event loop: labkit's own session
        says it answers this ``receive`` in memory."""
        return method == "receive" and self.in_memory is not None and self.in_memory(*args)

    async def reply(self, method: str, *args: Any, send: Callable[[bytes], Awaitable[None]]) -> bool:
        """Call ``method`` (off the loop unless :meth:`here`) and :meth:`finish` with
        its reply. Whether the session is closed."""
        here = self.here(method, *args)
        step = _step(self.session, method, *args) if here else await self.step(method, *args)
        return await self.finish(step, method, send, here=here)

    async def finish(self, step: Step, method: str, send: Callable[[bytes], Awaitable[None]], *,
                     here: bool) -> bool:
        """``send`` what a call of ``method`` gave, after the delay the session asked
        for; a streamed reply chunk by chunk, each taken from the session only once the
        one before is sent (``here``: on the loop, as the call was). Whether it is closed."""
        out, closed, delay = step
        if isinstance(out, bytes):
            await _sent(send, out, delay)
            return closed
        self.streaming = out
        while True:
            if here:
                chunk, closed, delay = _pull(self.session, out)
            else:
                chunk, closed, delay = await self.boundary.acall(
                    self.part.seam, self.part.host, _pull, self.session, out, student=self.student,
                    check=_after_pull(method), note=False)
            if chunk is _DONE:
                self.streaming = None
                return closed
            await _sent(send, chunk, delay)

    async def attribute(self, name: str, default: Any) -> Any:
        return await self.boundary.acall(self.part.seam, self.part.host, getattr, self.session, name, default,
                                         student=self.student, note=False)


async def _sent(send: Callable[[bytes], Awaitable[None]], data: bytes, delay: float) -> None:
    if delay:
        await asyncio.sleep(delay)
    await send(data)


class _Link(asyncio.Protocol):
    """One client connection's transport, as its serving coroutine sees it: what the
    client sent (:meth:`read`), flow control for what goes back (:meth:`drain`), and a
    way round both, ``quick``: while the coroutine only waits for the client
    (``idle``) and the transport takes more, bytes that ``quick(data)`` answers get
    their reply written right in :meth:`data_received` (a POP3 RETR: no task woken, no
    await). A reply ``quick`` cannot finish there (streamed, delayed, or the last) is
    ``handed`` to the coroutine."""

    def __init__(self, serve: Callable[["_Link"], Awaitable[None]]) -> None:
        self._serve = serve
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.quick: Callable[[bytes], bool] | None = None  # answers data (True), or leaves it (False)
        self.idle = False  # the coroutine waits for the client (and a wake-up), nothing else
        self.heard = 0.0  # loop time of the last bytes answered (the autologout counts from it)
        self.handed: Step | None = None  # a reply quick began, for the coroutine to finish
        self.at_eof = False
        self._data: collections.deque[bytes] = collections.deque()  # as each read of the socket brought it
        self._size = 0
        self._reading = True
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # set while the transport's buffer is full
        self._lost: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        heap_sized_reads(transport)
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._task = loop.create_task(self._serve(self))

    def data_received(self, data: bytes) -> None:
        waiting = self._waiter is not None and not self._waiter.done()  # and nothing read is left unanswered
        if waiting and self.idle and self.quick is not None and self._writable is None and self.quick(data):
            return
        self._data.append(data)
        self._size += len(data)
        if self._size > READ_SIZE and self._reading:  # bounded: the client waits until we catch up
            self._reading = False
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.at_eof = True
        self._wake()
        return True  # half-closed: the replies to what it sent still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self.at_eof = True
        self._wake()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self.resume_writing()  # drain() then says the connection is lost

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- for the serving coroutine

    def hand(self, step: Step) -> None:
        """A reply begun in :meth:`data_received`, for the coroutine to finish."""
        self.handed = step
        self._wake()

    async def read(self) -> bytes:
        """The next thing the client sent, as one read of the socket brought it (b"" with
        :attr:`handed`, or at its end). Two reads are never joined: a session is handed a
        command in two pieces as two calls, however late it asks (a check sends the second
        piece once the first is read, and the session's start may still be running)."""
        if not (self._data or self.at_eof or self.handed):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._data.popleft() if self._data else b""
        self._size -= len(data)
        if not self._reading and self._size <= READ_SIZE and not self.transport.is_closing():
            self._reading = True
            self.transport.resume_reading()
        return data

    async def drain(self) -> None:
        """Wait until the transport takes more (ConnectionResetError if it is gone)."""
        if self._writable is not None:
            await asyncio.shield(self._writable)
        if self._lost is not None and self._lost.done():
            raise ConnectionResetError("connection lost")

    async def close(self) -> None:
        """Close the connection, waiting (at most 2 s) until it is."""
        self.transport.close()
        if self._lost is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), 2)
            except asyncio.TimeoutError:
                pass

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class SessionServer:
    """A listening service; :meth:`close` also ends its live connections (a hung
    student session must not keep a stopping world waiting)."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.transports: set[asyncio.BaseTransport] = set()

    @property
    def sockets(self):
        return self.server.sockets if self.server else ()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for transport in list(self.transports):
            transport.abort()

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()


def session_protocol(
    part: SessionPart,
    *,
    protocol: str,
    server_name: str,
    tracer: Tracer | None = None,
    addresses: AddressMap | None = None,
    served: SessionServer | None = None,
) -> Callable[..., asyncio.Protocol]:
    """The protocol factory that serves ``part`` (for ``loop.create_server``); called
    with ``chosen``, what ``part.choose()`` gave a listener that already asked it for
    this connection (asking again could get another answer: a seam swapped since)."""
    boundary = part.boundary or Boundary(tracer or Tracer())

    def connection(chosen: tuple[SessionFactory, bool] | None = None) -> asyncio.Protocol:
        return _Link(functools.partial(handle, chosen=chosen))

    async def handle(link: _Link, chosen: tuple[SessionFactory, bool] | None) -> None:
        try:
            await serve(link, chosen)
        except asyncio.CancelledError:  # the world is stopping: this connection is over
            pass

    async def serve(link: _Link, chosen: tuple[SessionFactory, bool] | None) -> None:
        transport = link.transport
        if served is not None:
            served.transports.add(transport)
        peername = transport.get_extra_info("peername") or ("?", 0)
        peer = addresses.peer_address(peername) if addresses else peername[0]
        make, student = chosen or part.choose()
        lines = LineTracer(tracer, protocol, part.name_for(peer), server_name, new_session_id(protocol),
                           seam=part.seam if student else "") if tracer else None
        connection = _Connection(part, boundary, make, student)
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        unwatch: Callable[[], None] | None = None

        def send(data: bytes) -> None:
            if data:
                if lines:  # traced first: a client that reads the reply at once finds it in the trace
                    lines.feed("S", data)
                transport.write(data)

        async def send_drained(data: bytes) -> None:
            send(data)
            await link.drain()

        def answer(data: bytes) -> bool:
            """The link's quick way: a command labkit's session answers in memory,
            answered now (a reply it cannot finish here is handed to this coroutine)."""
            if not connection.here("receive", data):
                return False
            if lines:
                lines.feed("C", data)
            step = _step(connection.session, "receive", data)
            if type(step[0]) is bytes and not step[1] and not step[2]:
                send(step[0])
                link.heard = loop.time()
            else:
                link.hand(step)
            return True

        def wake_soon() -> None:  # called from any thread: a delivery, another session
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed: nobody to wake
                pass

        async def client_or_wake(timeout: float) -> bool:
            """Wait for the client (or ``wake``) until it has been idle ``timeout``
            seconds since it was last answered; whether it was."""
            pending = {p for p in (read, woke) if p is not None}
            link.idle, link.heard = True, loop.time()
            try:
                while True:  # answers given meanwhile in data_received move the deadline on
                    done, _ = await asyncio.wait(pending, timeout=link.heard + timeout - loop.time(),
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if done:
                        return True
                    if loop.time() >= link.heard + timeout:
                        return False
            finally:
                link.idle = False

        read: asyncio.Future[bytes] | None = None
        woke: asyncio.Future[Any] | None = None
        if part.on_open:
            part.on_open(peername)
        try:
            await connection.make(PeerInfo(peer, peername[1], server_name, peername))
            closed = await connection.reply("start", send=send_drained)
            timeout = await connection.attribute("timeout", DEFAULT_TIMEOUT)
            timeout = timeout if isinstance(timeout, (int, float)) and timeout > 0 else DEFAULT_TIMEOUT
            watch = await connection.attribute("watch", None)
            if callable(watch):
                unwatch = await boundary.acall(part.seam, part.host, watch, wake_soon, student=student, note=False,
                                               check=contracts.unwatch)
            link.quick = answer if connection.in_memory is not None else None
            while not closed:
                # One pending read survives wake-ups, so no client bytes are lost.
                read = read or asyncio.ensure_future(link.read())
                if unwatch is not None:
                    woke = woke or asyncio.ensure_future(wake.wait())
                if not await client_or_wake(timeout):  # idle too long: autologout
                    await connection.reply("timed_out", send=send_drained)
                    break
                if woke is not None and woke.done():
                    wake.clear()
                    woke = None
                    closed = await connection.reply("mailbox_changed", send=send_drained)
                if not read.done() or closed:
                    continue
                data, read = read.result(), None
                step, link.handed = link.handed, None
                if step is not None:  # a reply begun in data_received
                    closed = await connection.finish(step, "receive", send_drained, here=True)
                if data and not closed:
                    if lines:
                        lines.feed("C", data)
                    closed = await connection.reply("receive", data, send=send_drained)
                elif not data and link.at_eof:
                    break
        except SeamError as error:
            try:
                send(part.failure_reply(error))
                await asyncio.wait_for(link.drain(), 2)
            except (ConnectionError, OSError, asyncio.TimeoutError):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            link.quick = None
            if served is not None:
                served.transports.discard(transport)
            for pending in (read, woke):
                if pending is not None:
                    pending.cancel()
            await _end(connection, boundary, part, unwatch, student)
            if part.on_close:
                part.on_close(peername)
            await link.close()

    return connection


async def serve_session(
    factory: SessionFactory | SessionPart,
    *,
    protocol: str,
    server_name: str,
    tracer: Tracer | None = None,
    addresses: AddressMap | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> SessionServer:
    """Listen on ``host:port`` (0: any free port) and serve one session per connection.
    ``factory`` is a plain session factory (labkit's own code) or a
    :class:`SessionPart` (a seam that may be a student's)."""
    if isinstance(factory, SessionPart):
        part = factory
    else:
        plain = factory
        part = SessionPart(protocol, server_name, lambda: (plain, False),
                           functools.partial(failure_line, GENERIC_FAILED, server_name))
    served = SessionServer()
    connection = session_protocol(part, protocol=protocol, server_name=server_name, tracer=tracer,
                                  addresses=addresses, served=served)
    served.server = await asyncio.get_running_loop().create_server(connection, host, port)
    return served


async def _end(connection: _Connection, boundary: Boundary, part: SessionPart,
               unwatch: Callable[[], None] | None, student: bool) -> None:
    """The last calls into a session, whatever ended it (failures only traced)."""
    if connection.session is None:
        return
    try:
        close = getattr(connection.streaming, "close", None)
        if close is not None:  # a reply cut off by the client: let its generator clean up
            await boundary.acall(part.seam, part.host, close, student=student, note=False)
        if callable(unwatch):
            await boundary.acall(part.seam, part.host, unwatch, student=student, note=False)
        # connection_lost() returns None (see Session): no bytes check, unlike the other steps
        await boundary.acall(part.seam, part.host, _step, connection.session, "connection_lost",
                             student=student, note=False)
    except SeamError:
        pass
    except asyncio.CancelledError:  # the world is stopping: let it
        raise

