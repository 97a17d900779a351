"""A running world's control channel: switch a host's behaviour, break or heal DNS,
from a shell (`labkit behave`, `labkit dns-fault`) or the lecture page.

The world listens on a Unix socket, ``STATE_DIR/control.sock`` (world.json names it,
as ``"control": {"socket": PATH}``; a state dir whose path is too long for a socket
name gets one in a private temporary directory instead). Only its owner may use it:
the socket is mode 0600 and, where the OS says who connected (Linux), a peer that is
neither the world's user nor root is turned away. One request per connection, one JSON
object each way, one line each::

    {"op": "behave", "host": "smtp.chaos.com", "behaviour": "greylist"}
    {"ok": true, "said": "smtp.chaos.com now greylists (was normal)", "state": {...}}

    {"op": "dns-fault", "name": "brilliant.com", "fault": "servfail"}    # or "timeout", "clear"
    {"op": "state"}                                                      # behaviours and faults
    {"ok": false, "error": "no mail host named or serving 'nowhere.com'; hosts: ..."}

:func:`perform` is the one place that carries a request out, for the socket and the
lecture page alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.exception

from .config import BEHAVIOURS
from .dns.server import FAULTS

if TYPE_CHECKING:
    from .world import AsyncWorld

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024  # bytes: a request is a few dozen
TIMEOUT = 10.0  # seconds a client may take to send its request
_SOCKET_PATH_MAX = 100  # sun_path holds 104 (BSD) to 108 (Linux) bytes


class ControlError(ValueError):
    """A request the world cannot carry out; the message says why."""


def perform(world: "AsyncWorld", request: dict[str, Any]) -> dict[str, Any]:
    """Carry out ``request`` on ``world`` (on the world's loop); the reply to send.
    Raises ControlError for a bad request."""
    op = request.get("op")
    if op == "behave":
        host, behaviour = _text(request, "host"), _text(request, "behaviour")
        if behaviour not in BEHAVIOURS:
            raise ControlError(f"behaviour {behaviour!r} is not one of {', '.join(BEHAVIOURS)}")
        try:
            name = world.host(host).name
        except KeyError as error:
            raise ControlError(error.args[0]) from None
        before = world.host(name).behaviour
        world.set_behaviour(name, behaviour)
        said = f"{name} now behaves: {behaviour} (was {before})"
    elif op == "dns-fault":
        name, fault = _text(request, "name"), _text(request, "fault")
        if fault not in (*FAULTS, "clear"):
            raise ControlError(f"DNS fault {fault!r} is not one of {', '.join((*FAULTS, 'clear'))}")
        try:
            world.set_dns_fault(name, None if fault == "clear" else fault)  # type: ignore[arg-type]
        except dns.exception.DNSException as error:  # not a DNS name
            raise ControlError(f"{name!r} is not a DNS name: {error}") from None
        said = f"DNS: {name} healed" if fault == "clear" else f"DNS: queries for {name} now get {fault}"
    elif op == "state":
        said = ""
    else:
        raise ControlError(f"unknown operation {op!r}: expected behave, dns-fault or state")
    return {"ok": True, "said": said, "state": state(world)}


def state(world: "AsyncWorld") -> dict[str, Any]:
    """What the controls can change, as it is now."""
    return {"behaviours": {name: host.behaviour for name, host in world.hosts.items()},
            "faults": world.dns.faults(), "choices": {"behaviour": list(BEHAVIOURS), "fault": [*FAULTS, "clear"]}}


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"the request needs {key!r} (a non-empty string)")
    return value


# -- the world's side ------------------------------------------------------------------
def socket_path(state_dir: Path) -> Path:
    """Where a world in ``state_dir`` listens: in it, unless that path is too long for
    a socket's name; then in a new private (0700) temporary directory."""
    path = state_dir / SOCKET_NAME
    if len(os.fsencode(path)) <= _SOCKET_PATH_MAX:
        return path
    return Path(tempfile.mkdtemp(prefix="labkit-control-")) / SOCKET_NAME


def _peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end, where the OS says (Linux)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def _remove_private(directory: Path) -> None:
    """Remove the temporary directory :func:`socket_path` made, if it did."""
    if directory.name.startswith("labkit-control-"):
        try:
            directory.rmdir()
        except OSError:
            pass


class ControlServer:
    """The world's end of the channel, on the world's event loop."""

    def __init__(self, world: "AsyncWorld") -> None:
        self.world = world
        self.path: Path | None = None
        self._server: asyncio.AbstractServer | None = None

    async def start(self, path: Path) -> None:
        """Listen on ``path``. Where Unix sockets cannot be made (Windows, a file system
        without them) the world runs without the channel: world.json says ``null``."""
        if not hasattr(socket, "AF_UNIX"):
            return
        try:
            path.unlink(missing_ok=True)  # a killed world's socket; the state dir's lock is ours
            server = await asyncio.start_unix_server(self._serve, path=str(path), limit=MAX_REQUEST)
        except OSError:
            log.debug("no control channel at %s", path, exc_info=True)
            _remove_private(path.parent)
            return
        self._server, self.path = server, path
        os.chmod(path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            _remove_private(self.path.parent)
            self.path = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = _peer_uid(writer.get_extra_info("socket"))
            if uid is not None and uid not in (os.getuid(), 0):
                reply: dict[str, Any] = {"ok": False, "error": "this world belongs to another user"}
            else:
                reply = self._answer(await asyncio.wait_for(reader.readline(), TIMEOUT))
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError, ConnectionError):
            pass  # a client that said nothing useful in time, or went away: nothing to answer
        finally:
            writer.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("a request is one JSON object")
            return perform(self.world, request)
        except json.JSONDecodeError as error:
            return {"ok": False, "error": f"not JSON: {error}"}
        except ControlError as error:
            return {"ok": False, "error": str(error)}
        except Exception as error:  # a bug of ours: the world goes on, the client hears of it
            log.debug("control request %r failed", line, exc_info=True)
            return {"ok": False, "error": f"internal error: {error!r}"}


# -- the shell's side ------------------------------------------------------------------
def request(info: dict[str, Any], message: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send ``message`` to the world ``info`` (its world.json) describes; its reply.
    OSError (ConnectionRefusedError: the world is gone) if it cannot be reached;
    ControlError if it has no control channel."""
    control = info.get("control") or {}
    if not control.get("socket"):
        raise ControlError(f"the world in {info.get('state_dir')} has no control channel (it could not make its "
                           "socket; see its log at DEBUG)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(control["socket"])
        sock.sendall(json.dumps(message).encode() + b"\n")
        with sock.makefile("rb") as replies:
            line = replies.readline(MAX_REQUEST)
    if not line:
        raise ConnectionResetError("the world closed the control channel without a reply")
    return json.loads(line)
