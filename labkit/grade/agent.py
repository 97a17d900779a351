"""The grading agent: the student's kernel's side of the outside verdict.

The grader starts it in the student's (sandboxed) kernel before the notebook runs. It
does two things there:

- an **audit hook** (``sys.addaudithook``: it cannot be removed) records, as it happens,
  what a submission must not do: open the course's files (the hidden tests, the
  gradebook), touch sqlite, connect anywhere but loopback, start processes;
- a small **RPC server** on a Unix socket lets the grader, after the notebook has run,
  reach the student's objects: evaluate an expression of a (trusted) test cell, call
  a seam's function, drive a session. The student's code runs here, in the student's
  process, behind the reference fence; the checks that judge it run in the grader's
  own process (:mod:`labkit.grade.remote`), which the notebook cannot patch.

Everything crosses the socket as JSON lines (never pickle: the grader must not run what
a submission sends); a socket the student's client must use arrives as a file
descriptor (SCM_RIGHTS). Callbacks go the other way on the same connection: a DNS
question (``resolve``), a policy question of an SMTP session (``mta``).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import sys
import threading
import traceback
from dataclasses import fields, is_dataclass
from typing import Any, Callable

MAX_FRAME = 16 * 1024 * 1024
_LOOPBACK = ("127.", "::1", "localhost")


# -- framing (shared with the grader's side) -----------------------------------------------
class Channel:
    """JSON lines over a stream socket, with file descriptors riding along."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.fds: list[int] = []

    def send(self, message: dict, fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode() + b"\n"
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    def receive(self) -> dict:
        while b"\n" not in self._buffer:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 4)
            self.fds.extend(fds)
            if not data:
                raise ConnectionError("the other side closed the channel")
            self._buffer += data
            if len(self._buffer) > MAX_FRAME:
                raise ConnectionError("a frame over the size limit")
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)


def encode(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a value the grader asked for (labkit's dataclasses by field)."""
    if depth > 8:
        return repr(value)[:200]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v, depth + 1) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": type(value).__name__,
                "fields": {f.name: encode(getattr(value, f.name), depth + 1) for f in fields(value)}}
    return {"repr": repr(value)[:200], "type": type(value).__name__}


def decode_bytes(value: Any) -> Any:
    return base64.b64decode(value["bytes"]) if isinstance(value, dict) and "bytes" in value else value


# -- the audit hook --------------------------------------------------------------------------
class Audit:
    """Records what a submission must not do, the moment it does it."""

    def __init__(self, log_path: str, protected: list[str]) -> None:
        self.protected = tuple(os.path.realpath(p) + os.sep for p in protected if p)
        self.fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._write = os.write  # bound now: a student's patch of os cannot hide later events

    def record(self, kind: str, detail: str) -> None:
        try:
            self._write(self.fd, (json.dumps({"kind": kind, "detail": detail[:300]}) + "\n").encode())
        except OSError:
            pass

    def __call__(self, event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            if os.path.realpath(path).startswith(self.protected) or "gradebook" in path:
                self.record("course-files", f"open({path!r})")
        elif event == "sqlite3.connect":
            self.record("sqlite", f"sqlite3.connect({args[0]!r})")
        elif event == "socket.connect" and len(args) > 1:
            address = args[1]
            host = str(address[0]) if isinstance(address, tuple) else str(address)
            if isinstance(address, tuple) and not host.startswith(_LOOPBACK):
                self.record("network", f"connect to {address!r}")
        elif event in ("subprocess.Popen", "os.fork", "os.posix_spawn", "os.system"):
            self.record("process", f"{event} {str(args[:2])[:120]}")


# -- the RPC server ----------------------------------------------------------------------------
class Agent:
    """Serves the grader's requests about the student's namespace ``names``."""

    def __init__(self, path: str, names: dict[str, Any]) -> None:
        self.names = names
        self.handles: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(16)
        threading.Thread(target=self._accept, name="labkit-grade-agent", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            try:
                threading.Thread(target=self._serve, args=(Channel(conn),), daemon=True).start()
            except RuntimeError:  # no thread to be had (the sandbox's process limit): say so by closing
                conn.close()

    def _serve(self, channel: Channel) -> None:
        with channel.sock:
            try:
                request = channel.receive()
                op = request.get("op")
                if op == "eval":
                    channel.send(self._eval(request))
                elif op == "call":
                    channel.send(self._call(channel, request))
                elif op == "session":
                    self._session(channel, request)
            except (ConnectionError, OSError, ValueError):
                return

    def _eval(self, request: dict) -> dict:
        try:
            value = eval(request["expr"], self.names)  # noqa: S307 - an expression of a trusted test cell
        except Exception as error:
            return _raised(error)
        if request.get("handle"):
            handle = next(self._ids)
            self.handles[handle] = value
            return {"handle": handle, "type": type(value).__name__}
        return {"ok": encode(value)}

    def _call(self, channel: Channel, request: dict) -> dict:
        from .remote import SEAM_CODECS  # the argument builders for each seam

        codec = SEAM_CODECS[request["seam"]]
        impl = self.handles[request["handle"]]
        args, kwargs = codec.arguments(request["args"], channel)
        try:
            return unpack(_student(request["seam"], impl, args, kwargs, codec.result))
        finally:
            for arg in args:  # our copy of a socket the grader handed over
                if isinstance(arg, socket.socket):
                    arg.close()

    def _session(self, channel: Channel, request: dict) -> None:
        """A student's session object, driven step by step by the grader."""
        from .remote import RemoteMTA, peer_from

        seam, impl = request["seam"], self.handles[request["handle"]]
        mta = RemoteMTA(channel, request.get("mta", {}))
        made = _student(seam, impl, (peer_from(request["peer"]), mta), {"hostname": request["hostname"]},
                        lambda session: None)
        session = made.pop("value", None)
        channel.send(made)
        if "ok" not in made:
            return
        while True:
            step = channel.receive()
            method = getattr(session, step["method"], None)
            args = [decode_bytes(a) for a in step.get("args", [])]
            if method is None:
                channel.send({"ok": None, "closed": bool(getattr(session, "closed", False)), "missing": True})
                continue
            result = unpack(_student(seam, method, tuple(args), {}, _whole))
            result["closed"] = bool(getattr(session, "closed", False))
            channel.send(result)
            if step["method"] == "connection_lost":
                return


MAX_REPLY = 16 * 1024 * 1024


def _whole(value: Any) -> Any:
    """A session's reply for the wire: a streamed one (an iterator of chunks) joined."""
    if not isinstance(value, (bytes, bytearray, str)) and hasattr(value, "__next__"):
        chunks, size = [], 0
        for chunk in value:
            if not isinstance(chunk, (bytes, bytearray)):
                return encode(chunk)  # the contract check on the other side says what is wrong
            chunks.append(bytes(chunk))
            size += len(chunk)
            if size > MAX_REPLY:
                break
        value = b"".join(chunks)
    return encode(value)


def _raised(error: BaseException) -> dict:
    smtp = {}
    reply = getattr(error, "reply", None)
    if reply is not None and hasattr(reply, "code"):
        smtp = {"stage": getattr(error, "stage", ""), "code": reply.code, "lines": list(reply.lines),
                "problem": getattr(error, "problem", str(error))}
    elif hasattr(error, "stage"):
        smtp = {"stage": error.stage, "problem": getattr(error, "problem", str(error))}
    try:
        message = str(error)
    except Exception:
        message = "<message unreadable>"
    return {"raised": {"type": type(error).__name__, "message": message, "smtp": smtp,
                       "domain": getattr(error, "domain", None),
                       "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))}}


def _student(seam: str, impl: Callable, args: tuple, kwargs: dict, encode_result: Callable[[Any], Any]) -> dict:
    """Call the student's ``impl`` with the reference fence up (labkit's own answer for
    ``seam`` raises if called), and say what happened, for the grader to judge."""
    from ..boundary import _run_student

    outcome = _run_student(seam, impl, args, kwargs, None)
    if outcome.fenced:
        return {"fenced": outcome.fenced[0]}
    if outcome.error is not None:
        return _raised(outcome.error)
    try:
        return {"ok": encode_result(outcome.value), "value": outcome.value}
    except Exception as error:  # a value so broken it cannot even be encoded
        return {"ok": {"repr": f"<cannot encode: {type(error).__name__}: {error}>"}, "value": outcome.value}


def bootstrap(socket_path: str, audit_path: str, protected: list[str]) -> None:
    """Install the audit hook and start the agent in this (the student's) kernel;
    ``protected``: the course's directories (sources with hidden tests, gradebook)."""
    audit = Audit(audit_path, protected)
    sys.addaudithook(audit)
    try:
        from IPython import get_ipython

        names = get_ipython().user_ns
    except Exception:  # not in IPython: the __main__ namespace
        names = sys.modules["__main__"].__dict__
    Agent(socket_path, names)


def unpack(result: dict) -> dict:
    """A result as it goes on the wire: the value itself stays in the kernel."""
    result.pop("value", None)
    return result


