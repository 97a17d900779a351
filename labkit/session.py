"""One asyncio adapter that serves any sans-IO session on a TCP port.

A protocol core (POP3, IMAP, a student's server) is a plain object that never touches a
socket: the adapter feeds it the bytes a client sent and writes back the bytes it
returns. That keeps the protocol testable without sockets and replaceable by students,
and keeps all IO code here.

A session implements :class:`Session`; a *session factory* makes one per connection.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol, runtime_checkable

from .net import AddressMap
from .trace import LineTracer, Tracer, new_session_id


@runtime_checkable
class Session(Protocol):
    """The sans-IO server session interface: bytes in, bytes out.

    - :meth:`start` returns the greeting (``+OK POP3 ready``, ``* OK IMAP4rev1``).
    - :meth:`receive` is fed whatever bytes arrived (any split: half a line, three
      lines, a literal) and returns the bytes to send back (``b""`` for none yet).
    - :attr:`closed` becomes true when the session wants the connection closed (after
      its last reply has been sent: QUIT, LOGOUT, a fatal error).
    - :meth:`mailbox_changed` is called when new mail may have arrived; it returns
      untagged news to send now (IMAP IDLE's ``* 3 EXISTS``) or ``b""``.
    - :meth:`timed_out` is called after :attr:`timeout` idle seconds (autologout);
      it returns a last word to send, and the connection is closed.
    - :meth:`connection_lost` is called exactly once at the end, however it ended
      (a dropped POP3 connection must delete nothing and release its lock).

    Optional: ``watch(wake) -> unwatch``. If a session has it, the adapter calls it
    once with a thread-safe ``wake()``; the session arranges for ``wake`` to be
    called when its mailbox changes (see :func:`labkit.maildir.watch`), and the
    adapter then calls :meth:`mailbox_changed`. No polling.
    """

    timeout: float
    closed: bool

    def start(self) -> bytes: ...

    def receive(self, data: bytes) -> bytes: ...

    def mailbox_changed(self) -> bytes: ...

    def timed_out(self) -> bytes: ...

    def connection_lost(self) -> None: ...


class PeerInfo:
    """What a session factory is told about a new connection."""

    def __init__(self, address: str, port: int, server_name: str) -> None:
        self.address, self.port, self.server_name = address, port, server_name


SessionFactory = Callable[[PeerInfo], Session]
"""Makes a session for one connection; a bound method or a class both fit."""

async def serve_session(
    factory: SessionFactory,
    *,
    protocol: str,
    server_name: str,
    tracer: Tracer | None = None,
    addresses: AddressMap | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) and serve one session per connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = addresses.peer_address(peername) if addresses else peername[0]
        session = factory(PeerInfo(peer, peername[1], server_name))
        lines = LineTracer(tracer, protocol, peer, server_name, new_session_id(protocol)) if tracer else None
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        watch = getattr(session, "watch", None)
        unwatch = watch(lambda: loop.call_soon_threadsafe(wake.set)) if callable(watch) else None

        def send(data: bytes) -> None:
            if data:
                writer.write(data)
                if lines:
                    lines.feed("S", data)

        read: asyncio.Future[bytes] | None = None
        try:
            send(session.start())
            await writer.drain()
            while not session.closed:
                # One pending read survives wake-ups, so no client bytes are lost.
                read = read or asyncio.ensure_future(reader.read(65536))
                woke = asyncio.ensure_future(wake.wait())
                done, _ = await asyncio.wait({read, woke}, timeout=session.timeout, return_when=asyncio.FIRST_COMPLETED)
                if woke not in done:
                    woke.cancel()
                if not done:  # idle too long: autologout
                    send(session.timed_out())
                    await writer.drain()
                    break
                if woke in done:
                    wake.clear()
                    send(session.mailbox_changed())
                if read in done:
                    data, read = read.result(), None
                    if not data:
                        break
                    if lines:
                        lines.feed("C", data)
                    send(session.receive(data))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if read is not None:
                read.cancel()
            if unwatch:
                unwatch()
            session.connection_lost()
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    return await asyncio.start_server(handle, host, port)

