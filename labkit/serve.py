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
would cost more than the work. A student's session is always called through the boundary.

Memory stays bounded whatever a client sends: a session may return a big reply as an
iterator of chunks (:func:`labkit.session.stream` makes one), which the adapter takes one
chunk at a time, each written and drained before the next is made, so a client that does
not read holds up its own session and nothing else; and it reads nothing more from a
client until the reply to what it sent before is all written.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

from . import contracts
from .boundary import Boundary, SeamError
from .net import AddressMap
from .session import DEFAULT_TIMEOUT, PeerInfo, SessionFactory
from .trace import LineTracer, Tracer, new_session_id

log = logging.getLogger(__name__)
READ_SIZE = 65536


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

    async def reply(self, method: str, *args: Any, send: Callable[[bytes], Awaitable[None]]) -> bool:
        """Call ``method`` and ``send`` its reply, after the delay the session asked
        for; a streamed one chunk by chunk, each taken from the session (off the loop,
        like every call, unless labkit's own session answers in memory) only once the
        one before is sent. Whether it is closed."""
        here = method == "receive" and self.in_memory is not None and self.in_memory(*args)
        out, closed, delay = _step(self.session, method, *args) if here else await self.step(method, *args)
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


def session_handler(
    part: SessionPart,
    *,
    protocol: str,
    server_name: str,
    tracer: Tracer | None = None,
    addresses: AddressMap | None = None,
    served: SessionServer | None = None,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """The per-connection coroutine that serves ``part`` (for ``asyncio.start_server``)."""
    boundary = part.boundary or Boundary(tracer or Tracer())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     chosen: tuple[SessionFactory, bool] | None = None) -> None:
        """``chosen``: what ``part.choose()`` gave a listener that already asked it for
        this connection (asking again could get another answer: a seam swapped since)."""
        try:
            await serve(reader, writer, chosen)
        except asyncio.CancelledError:
            # The world is stopping. Ended, not cancelled: Python 3.11's StreamReaderProtocol
            # asks a finished handler task for its exception, which a cancelled one raises
            # (to stderr, from the loop).
            pass

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    chosen: tuple[SessionFactory, bool] | None) -> None:
        if served is not None:
            served.transports.add(writer.transport)
        peername = writer.get_extra_info("peername") or ("?", 0)
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
                writer.write(data)

        async def send_drained(data: bytes) -> None:
            send(data)
            await writer.drain()

        def wake_soon() -> None:  # called from any thread: a delivery, another session
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed: nobody to wake
                pass

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
            while not closed:
                # No new read starts before the reply to the last is all written (bounded memory).
                if unwatch is None:  # nothing but the client can wake it: just read
                    try:
                        async with asyncio.timeout(timeout):
                            data = await reader.read(READ_SIZE)
                    except TimeoutError:  # idle too long: autologout
                        await connection.reply("timed_out", send=send_drained)
                        break
                else:  # one pending read survives wake-ups, so no client bytes are lost
                    read = read or asyncio.ensure_future(reader.read(READ_SIZE))
                    woke = woke or asyncio.ensure_future(wake.wait())
                    done, _ = await asyncio.wait({read, woke}, timeout=timeout,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if not done:  # idle too long: autologout
                        await connection.reply("timed_out", send=send_drained)
                        break
                    if woke in done:
                        wake.clear()
                        woke = None
                        closed = await connection.reply("mailbox_changed", send=send_drained)
                    if read not in done or closed:
                        continue
                    data, read = read.result(), None
                if not data:
                    break
                if lines:
                    lines.feed("C", data)
                closed = await connection.reply("receive", data, send=send_drained)
        except SeamError as error:
            try:
                send(part.failure_reply(error))
                await asyncio.wait_for(writer.drain(), 2)
            except (ConnectionError, OSError, asyncio.TimeoutError):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            if served is not None:
                served.transports.discard(writer.transport)
            for pending in (read, woke):
                if pending is not None:
                    pending.cancel()
            await _end(connection, boundary, part, unwatch, student)
            if part.on_close:
                part.on_close(peername)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (ConnectionError, OSError, asyncio.TimeoutError):
                pass

    return handle


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
    handle = session_handler(part, protocol=protocol, server_name=server_name, tracer=tracer,
                             addresses=addresses, served=served)
    served.server = await asyncio.start_server(handle, host, port)
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

