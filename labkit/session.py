"""The sans-IO server session interface: bytes in, bytes out.

A protocol core (SMTP, POP3, IMAP, a student's server) is a plain object that never
touches a socket: it is fed the bytes a client sent and returns the bytes to send back.
That keeps the protocol testable without sockets and replaceable by students. This module
is only the interface (:class:`Session`, :class:`BaseSession`, :class:`PeerInfo`,
:func:`stream`); :mod:`labkit.serve` is the one asyncio adapter that serves any session on
a port.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator, Protocol, runtime_checkable

DEFAULT_TIMEOUT = 600.0
CHUNK_SIZE = 65536  # a streamed reply's chunks: about as much as a socket's send buffer takes


def stream(pieces: Iterable[bytes], size: int = CHUNK_SIZE) -> bytes | Iterator[bytes]:
    """A reply made of ``pieces`` (a generator that does the work as it goes), for a
    session to return: the bytes themselves if they come to less than ``size`` (one call,
    as ever), else an iterator of chunks of about ``size`` bytes, each made only when the
    adapter asks for it, which is when the client has taken the one before."""
    pieces = iter(pieces)
    first = _gather(pieces, size)
    if len(first) < size:
        return first
    return itertools.chain([first], iter(lambda: _gather(pieces, size), b""))


def _gather(pieces: Iterator[bytes], size: int) -> bytes:
    """The next pieces, joined, up to ``size`` bytes or more; less only at the end."""
    out: list[bytes] = []
    total = 0
    for piece in pieces:
        out.append(piece)
        total += len(piece)
        if total >= size:
            break
    return b"".join(out)


@runtime_checkable
class Session(Protocol):
    """The sans-IO server session interface: bytes in, bytes out.

    - :meth:`start` returns the greeting (``+OK POP3 ready``, ``* OK IMAP4rev1``).
    - :meth:`receive` is fed whatever bytes arrived (any split: half a line, three
      lines, a literal) and returns the bytes to send back (``b""`` for none yet), or
      an iterator of bytes chunks to send them as they are made (every method may; the
      adapter takes the last chunk before it calls the session again).
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
    adapter then calls :meth:`mailbox_changed`. No polling. ``unwatch`` (called when
    the connection ends) must be callable: anything else is a broken contract.

    Optional, for labkit's own sessions only: ``in_memory(data) -> bool``, whether
    :meth:`receive` of ``data`` works in memory (no lock, no store write, at most one
    small read); the adapter then calls it on its event loop (a student's session is
    always called in a worker thread, whatever it says).

    Optional: ``reply_delay``, seconds the reply to the call that set it must wait (a
    failed login's, see :class:`labkit.accounts.LoginPenalty`). The adapter reads it
    after each call, sets it back to 0 and waits on the event loop, holding no thread.
    """

    timeout: float
    closed: bool

    def start(self) -> bytes | Iterator[bytes]: ...

    def receive(self, data: bytes) -> bytes | Iterator[bytes]: ...

    def mailbox_changed(self) -> bytes | Iterator[bytes]: ...

    def timed_out(self) -> bytes | Iterator[bytes]: ...

    def connection_lost(self) -> None: ...


class BaseSession:
    """Defaults for everything but :meth:`start` and :meth:`receive`: subclass it and
    write those two (and set ``self.closed = True`` to end the connection)."""

    timeout: float = DEFAULT_TIMEOUT
    closed: bool = False

    def start(self) -> bytes:
        raise NotImplementedError("write start(): it returns the greeting, as bytes ending in b'\\r\\n'")

    def receive(self, data: bytes) -> bytes:
        raise NotImplementedError("write receive(data): it returns the reply bytes (b'' if none yet)")

    def mailbox_changed(self) -> bytes:
        return b""

    def timed_out(self) -> bytes:
        self.closed = True
        return b""

    def connection_lost(self) -> None:
        self.closed = True


class PeerInfo:
    """What a session factory is told about a new connection: the client's address
    (as the lab names it: 1.2.3.4), its port, our name, and its real socket address."""

    def __init__(self, address: str, port: int, server_name: str, socket_address: tuple = ("", 0)) -> None:
        self.address, self.port, self.server_name = address, port, server_name
        self.socket_address = (socket_address[0], socket_address[1]) if socket_address[0] else (address, port)

    def __repr__(self) -> str:
        return f"PeerInfo({self.address!r}, {self.port}, server_name={self.server_name!r})"


SessionFactory = Callable[[PeerInfo], Session]
"""Makes a session for one connection; a bound method or a class both fit."""
