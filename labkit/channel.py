"""The channel between a graded notebook's kernel and the grader's judge.

When a lab is graded, the student's kernel holds no part of labkit's answer: the lab
world and the checks run in the judge (:mod:`labkit.grade.judge`), a process beside the
kernel in the kernel's own network namespace. The two talk over one connected Unix
socket, handed to each at start (no path another sandbox could find), with this module:

- **Frames**: a 4-byte length, then a JSON object; file descriptors (a socket the
  student's client must use) ride along with a frame (``SCM_RIGHTS``).
- **Requests and replies**, both ways and interleaved: ``{"id", "op", "args"}`` is
  answered by ``{"re": id, "ok": value}`` or ``{"re": id, "error": {...}}``; a frame
  without an id is a notice (no answer). Each side serves the operations it was given
  (a table of handlers), each request in a thread of its own (bounded), so a call into
  the student's code can ask the world a question (an SMTP session's ``mta.rcpt``)
  while it runs.
- **Values**: JSON, with tagged objects for what JSON lacks (bytes, tuples, maps,
  labkit's own dataclasses from a fixed list, file descriptors, references to objects
  that stay on their side). Nothing is ever evaluated or unpickled: what the kernel
  sends is untrusted data, decoded only into the types listed here and checked by the
  seam's contract after that.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import socket
import struct
import threading
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable

MAX_FRAME = 64 << 20  # bytes of JSON in one frame (a 16 MB message, base64, with room)
MAX_FDS = 4  # file descriptors with one frame
MAX_HANDLERS = 64  # requests served at once; more are refused ("busy")
MAX_DEPTH = 32  # nesting of a decoded value
_HEADER = struct.Struct(">I")


class ChannelClosed(ConnectionError):
    """The other side is gone (its process ended, or it broke the protocol)."""


class RemoteError(Exception):
    """The other side could not serve a request: ``kind`` and its message."""

    def __init__(self, kind: str, message: str, data: dict | None = None) -> None:
        super().__init__(message)
        self.kind, self.data = kind, data or {}


class BadRequest(ValueError):
    """A request whose arguments do not fit the operation (untrusted data, refused)."""


Handler = Callable[[dict, list[int]], Any]


class Channel:
    """One end of the channel: :meth:`request` asks the other side, ``handlers`` serve
    its requests. Call :meth:`start` once the handlers are in place."""

    def __init__(self, sock: socket.socket, handlers: dict[str, Handler] | None = None, *, name: str = "channel",
                 on_close: Callable[[str], None] | None = None) -> None:
        self.sock, self.name = sock, name
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.on_close = on_close
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._pending_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_HANDLERS)
        self._fds: deque[int] = deque()
        self.closed = threading.Event()
        self.why_closed = ""

    def start(self) -> "Channel":
        threading.Thread(target=self._read_loop, name=f"{self.name}-reader", daemon=True).start()
        return self

    # -- asking ------------------------------------------------------------------------------
    def request(self, op: str, args: dict | None = None, *, fds: Iterable[int] = (), timeout: float | None = 60.0
                ) -> Any:
        """Ask the other side; its answer, or :class:`RemoteError`, :class:`ChannelClosed`,
        ``TimeoutError`` (the request is then forgotten; a late answer is dropped)."""
        ident = next(self._ids)
        future: Future = Future()
        with self._pending_lock:
            if self.closed.is_set():
                raise ChannelClosed(self.why_closed or "the channel is closed")
            self._pending[ident] = future
        try:
            self._send({"id": ident, "op": op, "args": args or {}}, list(fds))
            return future.result(timeout)
        except FutureTimeout:
            raise TimeoutError(f"no answer to {op} within {timeout:g}s") from None
        finally:
            with self._pending_lock:
                self._pending.pop(ident, None)

    def notify(self, op: str, args: dict | None = None) -> None:
        """Tell the other side something; no answer."""
        self._send({"op": op, "args": args or {}}, [])

    def close(self, why: str = "closed") -> None:
        if not self.closed.is_set():
            self._closed(why)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # -- the wire ------------------------------------------------------------------------------
    def _send(self, message: dict, fds: list[int]) -> None:
        if fds:
            message = {**message, "fds": len(fds)}
        data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
        if len(data) > MAX_FRAME:
            raise BadRequest(f"a frame of {len(data)} bytes is over the limit of {MAX_FRAME}")
        frame = _HEADER.pack(len(data)) + data
        with self._send_lock:
            if self.closed.is_set():
                raise ChannelClosed(self.why_closed or "the channel is closed")
            try:
                if fds:  # the descriptors go with the first bytes of the frame
                    sent = socket.send_fds(self.sock, [frame], fds)
                    frame = frame[sent:]
                if frame:
                    self.sock.sendall(frame)
            except OSError as error:
                raise ChannelClosed(f"{self.name}: {error}") from None

    def _read_exactly(self, size: int, buffer: bytearray) -> bytes:
        while len(buffer) < size:
            data, fds, _flags, _address = socket.recv_fds(self.sock, max(65536, size - len(buffer)), MAX_FDS)
            for fd in fds:
                self._fds.append(fd)
            if not data:
                raise ChannelClosed("the other side closed the channel")
            buffer += data
        out = bytes(buffer[:size])
        del buffer[:size]
        return out

    def _read_loop(self) -> None:
        buffer = bytearray()
        why = "the other side closed the channel"
        try:
            while True:
                (size,) = _HEADER.unpack(self._read_exactly(_HEADER.size, buffer))
                if size > MAX_FRAME:
                    raise BadRequest(f"a frame of {size} bytes is over the limit")
                message = json.loads(self._read_exactly(size, buffer))
                if not isinstance(message, dict):
                    raise BadRequest("a frame that is not a JSON object")
                count = message.get("fds", 0)
                if not isinstance(count, int) or not 0 <= count <= MAX_FDS or count > len(self._fds):
                    raise BadRequest("a frame claims file descriptors it did not bring")
                fds = [self._fds.popleft() for _ in range(count)]
                self._dispatch(message, fds)
        except ChannelClosed as error:
            why = str(error)
        except (BadRequest, ValueError, RecursionError) as error:
            why = f"the other side broke the protocol: {error}"
        except OSError as error:
            why = f"{type(error).__name__}: {error}"
        self._closed(why)
        try:  # the other side hears it at once (its waiting requests fail, not hang)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _closed(self, why: str) -> None:
        with self._pending_lock:
            if self.closed.is_set():
                return
            self.why_closed = why
            self.closed.set()
            pending = list(self._pending.values())
        for future in pending:
            if not future.done():
                future.set_exception(ChannelClosed(why))
        while self._fds:
            os.close(self._fds.popleft())
        if self.on_close is not None:
            self.on_close(why)

    def _dispatch(self, message: dict, fds: list[int]) -> None:
        if "re" in message:  # an answer to one of ours
            with self._pending_lock:
                future = self._pending.get(message["re"]) if isinstance(message["re"], int) else None
            if future is None or future.done():
                _close_all(fds)
                return
            error = message.get("error")
            if isinstance(error, dict):
                future.set_exception(RemoteError(str(error.get("kind", "error")), str(error.get("message", "")),
                                                 error.get("data") if isinstance(error.get("data"), dict) else None))
            else:
                future.set_result(message.get("ok"))
            return
        op, ident, args = message.get("op"), message.get("id"), message.get("args", {})
        handler = self.handlers.get(op) if isinstance(op, str) else None
        if handler is None or not isinstance(args, dict) or (ident is not None and not isinstance(ident, int)):
            _close_all(fds)
            if isinstance(ident, int):
                self._answer(ident, error=("unknown", f"no operation {op!r} here"))
            return
        if not self._slots.acquire(blocking=False):
            _close_all(fds)
            if ident is not None:
                self._answer(ident, error=("busy", f"over {MAX_HANDLERS} requests at once"))
            return
        threading.Thread(target=self._serve, args=(handler, ident, args, fds), name=f"{self.name}-{op}",
                         daemon=True).start()

    def _serve(self, handler: Handler, ident: int | None, args: dict, fds: list[int]) -> None:
        try:
            try:
                result = handler(args, fds)
            except BadRequest as error:
                if ident is not None:
                    self._answer(ident, error=("bad-request", str(error)))
                return
            except RemoteError as error:
                if ident is not None:
                    self._answer(ident, error=(error.kind, str(error), error.data))
                return
            except Exception as error:  # a bug of ours, said to the asker, never raised into the reader
                if ident is not None:
                    self._answer(ident, error=("failed", f"{type(error).__name__}: {error}"))
                return
            if ident is not None:
                self._answer(ident, ok=result)
        except ChannelClosed:
            pass
        finally:
            self._slots.release()

    def _answer(self, ident: int, *, ok: Any = None, error: tuple | None = None) -> None:
        if error is not None:
            kind, text, *data = error
            self._send({"re": ident, "error": {"kind": kind, "message": text, "data": data[0] if data else {}}}, [])
        else:
            self._send({"re": ident, "ok": ok}, [])


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# -- values ------------------------------------------------------------------------------------
def dataclass_types() -> dict[str, type]:
    """labkit's own types that cross as themselves (by name, from this list only)."""
    from .accounts import Account
    from .diskspy import Call
    from .dns.hops import NextHop
    from .mta.types import Failure, HopInfo, Local, Refuse, Relay, RouteRequest, Transaction
    from .smtp.reply import Reply, SendResult
    from .trace import TraceEvent

    return {cls.__name__: cls for cls in (NextHop, Failure, HopInfo, Local, Refuse, Relay, RouteRequest, Transaction,
                                          Reply, SendResult, TraceEvent, Call, Account)}


class Foreign:
    """A value of a type that does not cross (a student's own class): shown by its type's
    name, so a contract says "got Widget"."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


class Encoder:
    """Turns values into the channel's JSON; ``fds`` collects descriptors to send along,
    ``special`` encodes what only this side knows how to (sockets, references)."""

    def __init__(self, special: Callable[[Any, "Encoder"], Any] | None = None) -> None:
        self.fds: list[int] = []
        self.special = special

    def __call__(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise BadRequest("a value nested too deep to send")
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if value == value and value not in (float("inf"), float("-inf")) else {"$": "float",
                                                                                                  "v": repr(value)}
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"$": "bytes", "v": base64.b64encode(bytes(value)).decode()}
        if isinstance(value, PurePath):  # the same path on both sides (a pod's common scratch)
            return {"$": "path", "v": str(value)}
        if self.special is not None:
            done = self.special(value, self)
            if done is not NotImplemented:
                return done
        if isinstance(value, list):
            return [self(v, depth + 1) for v in value]
        if isinstance(value, tuple):
            return {"$": "tuple", "v": [self(v, depth + 1) for v in value]}
        if isinstance(value, (set, frozenset)):
            return {"$": "frozenset", "v": [self(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            return {"$": "map", "v": [[self(k, depth + 1), self(v, depth + 1)] for k, v in value.items()]}
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and type(value).__name__ in _TYPES():
            return {"$": "dc", "t": type(value).__name__,
                    "f": {f.name: self(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}}
        if isinstance(value, Foreign):
            return {"$": "obj", "t": value.type_name}
        return {"$": "obj", "t": type(value).__name__}


_type_cache: dict[str, type] = {}


def _TYPES() -> dict[str, type]:  # noqa: N802 - a cached table
    if not _type_cache:
        _type_cache.update(dataclass_types())
    return _type_cache


class Decoder:
    """Turns the channel's JSON back into values: only JSON, the tags above and the
    dataclasses of :func:`dataclass_types`; ``fds`` are the frame's descriptors;
    ``special`` decodes this side's own tags (references, sockets)."""

    def __init__(self, fds: list[int] | None = None, special: Callable[[dict, "Decoder"], Any] | None = None,
                 max_items: int = 1_000_000) -> None:
        self.fds = list(fds or [])
        self.special = special
        self.budget = max_items

    def __call__(self, value: Any, depth: int = 0) -> Any:
        self.budget -= 1
        if self.budget < 0 or depth > MAX_DEPTH:
            raise BadRequest("a value too large or nested too deep")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            raise BadRequest(f"not a value: {type(value).__name__}")
        tag = value.get("$")
        if tag == "bytes":
            try:
                return base64.b64decode(_str(value.get("v")), validate=True)
            except ValueError:
                raise BadRequest("bytes that are not base64") from None
        if tag == "float":
            return float(_str(value.get("v")))
        if tag == "path":
            return Path(_str(value.get("v")))
        if tag in ("tuple", "frozenset"):
            items = [self(v, depth + 1) for v in _list(value.get("v"))]
            return tuple(items) if tag == "tuple" else frozenset(_hashable(i) for i in items)
        if tag == "map":
            out = {}
            for pair in _list(value.get("v")):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise BadRequest("a map entry that is not a pair")
                out[_hashable(self(pair[0], depth + 1))] = self(pair[1], depth + 1)
            return out
        if tag == "dc":
            cls = _TYPES().get(_str(value.get("t")))
            given = value.get("f")
            if cls is None or not isinstance(given, dict):
                return Foreign(str(value.get("t"))[:80])
            names = {f.name for f in dataclasses.fields(cls) if f.init}
            try:
                return cls(**{k: self(v, depth + 1) for k, v in given.items() if k in names})
            except TypeError as error:  # a field missing: what the student's type lacked
                return Foreign(f"{cls.__name__} ({error})")
        if tag == "obj":
            return Foreign(str(value.get("t", "object"))[:80])
        if self.special is not None:
            done = self.special(value, self)
            if done is not NotImplemented:
                return done
        raise BadRequest(f"an unknown value tag {str(tag)[:40]!r}")

    def fd(self, index: Any) -> int:
        """The frame's ``index``-th descriptor (each taken once)."""
        if not isinstance(index, int) or not 0 <= index < len(self.fds) or self.fds[index] < 0:
            raise BadRequest("a descriptor that did not come with the frame")
        fd, self.fds[index] = self.fds[index], -1
        return fd

    def close_unused(self) -> None:
        _close_all([fd for fd in self.fds if fd >= 0])


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest("expected a string")
    return value


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise BadRequest("expected a list")
    return value


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise BadRequest("an unhashable map key or set item") from None
    return value


# -- what a request's arguments must be ---------------------------------------------------------
def field(args: dict, name: str, kind: type | tuple[type, ...], *, default: Any = ..., limit: int = 1 << 20) -> Any:
    """``args[name]`` if it is a ``kind`` (a string or list at most ``limit`` long), else
    :class:`BadRequest`; ``default`` if absent and one is given."""
    if name not in args:
        if default is ...:
            raise BadRequest(f"missing {name!r}")
        return default
    value = args[name]
    if value is None and default is None:  # an optional field sent as null
        return None
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise BadRequest(f"{name!r} must be {getattr(kind, '__name__', kind)}")
    if isinstance(value, (str, list)) and len(value) > limit:
        raise BadRequest(f"{name!r} is over the limit of {limit}")
    return value
