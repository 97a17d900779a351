"""A graded notebook's side of the grading: its world is the judge's, its parts are called from there.

When ``labkit grade`` runs a submission, the kernel runs sandboxed with only the
student-facing part of labkit (types, contracts, :mod:`labkit.lab`, :mod:`labkit.notebook`):
no reference implementation of any seam is in its file system. The lab world and the
checks run in the grader's judge (:mod:`labkit.grade.judge`), beside the kernel in the
kernel's own network namespace, reached over the channel handed to the kernel at start
(:mod:`labkit.channel`; ``$LABKIT_CHANNEL_FD`` names it). So:

- ``labkit.notebook.World()`` is a :class:`RemoteWorld`: the same methods, each a request
  to the judge, whose world listens on this namespace's loopback, so a student's own
  sockets (a DNS query, a Telnet to port 25) reach it exactly as in their notebook. The
  trace comes back as it happens, into a local :class:`~labkit.trace.Tracer`.
- The judge calls the student's parts here, through a narrow set of operations:
  ``lookup`` (the object bound to a name), ``call`` (a seam's part, with its arguments:
  a socket arrives as a descriptor, a resolver as its settings), ``session.open`` /
  ``session.step`` (a session object, driven step by step; its ``mta`` is a stand-in that
  asks the judge's MTA). Nothing here evaluates anything the judge sends.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import itertools
import json
import os
import socket
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from .channel import BadRequest, Channel, Decoder, Encoder, Foreign, RemoteError, field
from .contracts import missing_session_methods
from .mta.types import MTA_ATTRIBUTES, MTA_METHODS, Transaction
from .net import AddressMap, Endpoint
from .seams import SEAMS, check_implementation, check_parts
from .session import DEFAULT_TIMEOUT, PeerInfo
from .trace import TraceEvent, Tracer, delivered_to

CHANNEL_VARIABLE = "LABKIT_CHANNEL_FD"
STATE_DIR_VARIABLE = "LABKIT_STATE_DIR"
MAX_REPLY = 16 << 20  # a session's reply, joined from its chunks, at most
REQUEST_TIMEOUT = 120.0


# -- the channel, once per kernel -----------------------------------------------------------------
_lock = threading.Lock()
_channel: Channel | None = None
_parts: "_Parts | None" = None


def channel() -> Channel | None:
    """This kernel's channel to the judge, if this kernel is being graded (started on
    first use), else None."""
    global _channel, _parts
    with _lock:
        if _channel is None and os.environ.get(CHANNEL_VARIABLE):
            fd = int(os.environ[CHANNEL_VARIABLE])
            sock = socket.socket(fileno=fd)
            _channel = Channel(sock, name="labkit-kernel")
            _parts = _Parts(_channel)
            _channel.start()
            sys.meta_path.append(_NotHere())
        return _channel


def active() -> bool:
    """Whether this kernel is being graded."""
    return bool(os.environ.get(CHANNEL_VARIABLE))


class _NotHere(importlib.abc.MetaPathFinder):
    """A labkit module that is not in a graded kernel: say why, not just "not found"."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.startswith("labkit.") and importlib.machinery.PathFinder.find_spec(fullname, path) is None:
            raise ModuleNotFoundError(
                f"{fullname} is part of labkit's running mail system, which is not in your notebook while it is "
                "graded (the grader runs it beside your notebook): import what your code uses from labkit.lab, "
                "and the world from labkit.notebook", name=fullname)
        return None


# -- what the judge may ask ----------------------------------------------------------------------
class _Handles:
    """The student's objects the judge holds a reference to, by number."""

    def __init__(self) -> None:
        self._objects: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, obj: Any) -> int:
        with self._lock:
            ident = next(self._ids)
            self._objects[ident] = obj
            return ident

    def get(self, ident: Any) -> Any:
        with self._lock:
            if not isinstance(ident, int) or ident not in self._objects:
                raise BadRequest("no such reference")
            return self._objects[ident]

    def drop(self, ident: Any) -> None:
        with self._lock:
            self._objects.pop(ident, None)


def user_namespace() -> dict[str, Any]:
    """The notebook's names (IPython's user namespace, else ``__main__``'s)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return shell.user_ns
    except ImportError:
        pass
    return sys.modules["__main__"].__dict__


class _Parts:
    """Serves the judge's operations on this kernel's objects."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.handles = _Handles()
        channel.handlers.update({"lookup": self.lookup, "call": self.call, "session.open": self.session_open,
                                 "session.step": self.session_step, "release": self.release, "run": self.run,
                                 "world.trace": self.trace})

    # -- decoding the judge's values: sockets, resolvers, the MTA stand-in ---------------------
    def _special(self, value: dict, decoder: Decoder) -> Any:
        tag = value.get("$")
        if tag == "fd":
            return socket.socket(fileno=decoder.fd(value.get("i")))
        if tag == "resolver":
            return _resolver(value)
        if tag == "peer":
            return PeerInfo(str(value["address"]), int(value["port"]), str(value["server_name"]),
                            tuple(value["socket_address"]))
        if tag == "mta":
            return MTAProxy(self.channel, int(value["id"]), value.get("attrs", {}))
        if tag == "accounts":
            return AccountsProxy(self.channel, int(value["id"]))
        return NotImplemented

    def _arguments(self, args: dict, fds: list[int]) -> tuple[list, dict, Decoder]:
        decoder = Decoder(fds, self._special)
        positional = decoder(field(args, "args", list, default=[]))
        keywords = decoder(args.get("kwargs", {"$": "map", "v": []}))
        if not isinstance(keywords, dict):
            raise BadRequest("kwargs must be a map")
        return positional, keywords, decoder

    # -- the operations ----------------------------------------------------------------------------
    def lookup(self, args: dict, fds: list[int]) -> Any:
        """The object bound to a name in the notebook: a reference to a function or class
        (it stays here), a world's number, or the value itself (an answer)."""
        name = field(args, "name", str, limit=200)
        namespace = user_namespace()
        if name not in namespace:
            raise RemoteError("name", f"{name} is not defined in your notebook (did its cell run?)")
        value = namespace[name]
        if isinstance(value, RemoteWorld):
            return {"$": "world", "id": value.id}
        if callable(value):
            return {"$": "ref", "id": self.handles.add(value), "kind": "class" if isinstance(value, type) else
                    "function", "name": getattr(value, "__name__", type(value).__name__)}
        return Encoder()(value)

    def call(self, args: dict, fds: list[int]) -> Any:
        """A seam's part, with the arguments the judge gave: its answer, or what it raised."""
        seam = field(args, "seam", str)
        if seam not in SEAMS:
            raise BadRequest(f"no seam {seam!r}")
        impl = self.handles.get(args.get("part"))
        positional, keywords, decoder = self._arguments(args, fds)
        try:
            if args.get("observe") == "disk":  # its fsync and rename calls, seen here where it runs
                from .diskspy import DiskSpy

                with DiskSpy(impl) as spy:
                    made = _outcome(lambda: impl(*positional, **keywords))
                made["disk"] = Encoder()(spy.calls)
                return made
            return _outcome(lambda: impl(*positional, **keywords))
        finally:
            decoder.close_unused()
            for value in [*positional, *keywords.values()]:
                if isinstance(value, socket.socket):
                    value.close()  # our copy: the judge keeps its own

    def session_open(self, args: dict, fds: list[int]) -> Any:
        factory = self.handles.get(args.get("part"))
        positional, keywords, _ = self._arguments(args, fds)
        made = _outcome(lambda: factory(*positional, **keywords), keep=True)
        if "value" not in made:
            return made
        session = made.pop("value")
        made["ok"] = {"session": self.handles.add(session), "missing": missing_session_methods(session),
                      "timeout": _number(lambda: getattr(session, "timeout", DEFAULT_TIMEOUT), DEFAULT_TIMEOUT)}
        return made

    def session_step(self, args: dict, fds: list[int]) -> Any:
        session = self.handles.get(args.get("session"))
        method = field(args, "method", str)
        if method not in ("start", "receive", "mailbox_changed", "timed_out", "connection_lost"):
            raise BadRequest(f"no session method {method!r}")
        positional, _, _ = self._arguments(args, fds)
        call = getattr(session, method, None)
        if call is None:
            made: dict = {"ok": b"" if method != "connection_lost" else None}
        else:
            made = _outcome(lambda: _whole(call(*positional)))
        state = _outcome(lambda: (bool(getattr(session, "closed", False)), getattr(session, "reply_delay", 0)),
                         keep=True)
        if "value" in state:
            closed, delay = state["value"]
            if delay:
                session.reply_delay = 0
            made["closed"], made["reply_delay"] = closed, Encoder()(delay)
        if method == "connection_lost":
            self.handles.drop(args.get("session"))
        return made

    def run(self, args: dict, fds: list[int]) -> Any:
        """A program of the student's (their sendmail), run here as mutt would run it."""
        from .programs import run_program

        program = field(args, "program", str, limit=4096)
        argv = field(args, "args", list, limit=100)
        stdin = Decoder()(args.get("stdin"))
        env = Decoder()(args.get("env", {"$": "map", "v": []}))
        timeout = field(args, "timeout", (int, float))
        if not all(isinstance(a, str) for a in argv) or not isinstance(stdin, bytes) or not isinstance(env, dict):
            raise BadRequest("run: program, args (strings), stdin (bytes), env (a map)")
        ended = run_program([program, *argv], stdin, {**os.environ, **{str(k): str(v) for k, v in env.items()}},
                            min(float(timeout), 60.0))
        return {"status": ended.status, "stderr": ended.stderr}

    def release(self, args: dict, fds: list[int]) -> None:
        for ident in field(args, "ids", list, limit=10_000):
            self.handles.drop(ident)

    def trace(self, args: dict, fds: list[int]) -> None:
        """Trace events of one of this kernel's worlds, as they happen (a notice)."""
        world = _worlds.get(args.get("world"))
        if world is None:
            return
        for event in Decoder()(field(args, "events", list, limit=100_000)):
            if isinstance(event, TraceEvent):
                world.tracer.emit(event)


def _number(get: Callable[[], Any], default: float) -> float:
    try:
        value = get()
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
    except Exception:
        return default


def _whole(value: Any) -> Any:
    """A session's reply for the wire: a streamed one (an iterator of chunks) joined."""
    if isinstance(value, (bytes, bytearray, str)) or not isinstance(value, Iterator):
        return value
    chunks, size = [], 0
    for chunk in value:
        if not isinstance(chunk, (bytes, bytearray)):
            return chunk  # the contract on the judge's side says what is wrong
        chunks.append(bytes(chunk))
        size += len(chunk)
        if size > MAX_REPLY:
            break
    return b"".join(chunks)


def _outcome(call: Callable[[], Any], *, keep: bool = False) -> dict:
    """Run the student's code: ``{"ok": encoded value}`` or ``{"raised": ...}``."""
    try:
        value = call()
    except BaseException as error:  # noqa: BLE001 - SystemExit from student code too: judged there
        return {"raised": raised(error)}
    try:
        made = {"ok": Encoder()(value)}
    except Exception as error:  # a value so broken it cannot even be described
        made = {"ok": {"$": "obj", "t": f"{type(value).__name__} ({type(error).__name__})"}}
    if keep:
        made["value"] = value
    return made


def raised(error: BaseException) -> dict:
    """An exception as the judge reads it: its type and bases by name, its message, the
    SMTP or MX facts a seam's own errors carry, and the traceback."""
    try:
        message = str(error)
    except Exception:
        message = "<message unreadable>"
    facts: dict[str, Any] = {}
    for name in ("stage", "problem", "domain"):
        value = getattr(error, name, None)
        if isinstance(value, str):
            facts[name] = value
    reply = getattr(error, "reply", None)
    if reply is not None:
        try:
            facts["reply"] = Encoder()(reply)
        except Exception:
            pass
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return {"type": type(error).__name__, "bases": [c.__name__ for c in type(error).__mro__[1:]],
            "message": message[:2000], "facts": facts, "traceback": "".join(lines)[-8000:]}


def _resolver(value: dict) -> Any:
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [str(n) for n in value.get("nameservers", [])]
    resolver.port = int(value.get("port", 53))
    resolver.timeout = float(value.get("timeout", 2.0))
    resolver.lifetime = float(value.get("lifetime", 2.0))
    resolver.cache = None
    return resolver


# -- the MTA a student's session asks ----------------------------------------------------------------
class RemoteTransaction(Transaction):
    """A :class:`~labkit.mta.types.Transaction` whose truth is the judge's: the session
    may set ``helo`` and ``extended`` and call :meth:`reset`; everything else is
    refreshed from the judge after each question."""

    def __init__(self, ident: int, values: dict) -> None:
        super().__init__(peer="")
        self._ident, self._reset = ident, False
        self._update(values)

    def _update(self, values: dict) -> None:
        for f in fields(Transaction):
            if f.name in values:
                setattr(self, f.name, values[f.name])

    def reset(self) -> None:
        super().reset()
        self._reset = True

    def _sent(self) -> dict:
        out = {"id": self._ident, "helo": self.helo, "extended": self.extended, "reset": self._reset}
        self._reset = False
        return out


class MTAProxy:
    """The judge's MTA, as a student's SMTP session sees it (:class:`~labkit.mta.types.MTAPolicy`)."""

    def __init__(self, channel: Channel, ident: int, attrs: dict) -> None:
        self._channel, self._ident = channel, ident
        for name in MTA_ATTRIBUTES:
            setattr(self, name, attrs.get(name))

    def _ask(self, method: str, *args: Any, txn: Any = None, **kwargs: Any) -> Any:
        if txn is not None and not isinstance(txn, RemoteTransaction):
            raise TypeError(f"mta.{method}: the transaction must be the one mta.transaction(peer) gave you")
        sent = {"mta": self._ident, "method": method, "args": Encoder()(list(args)), "kwargs": Encoder()(kwargs),
                "txn": txn._sent() if txn is not None else None}
        answer = self._channel.request("mta", sent, timeout=REQUEST_TIMEOUT)
        decoded = Decoder()(answer)
        if txn is not None and isinstance(decoded.get("txn"), dict):
            txn._update(decoded["txn"])
        return decoded.get("answer")


def _mta_method(name: str) -> Callable[..., Any]:
    def method(self: MTAProxy, *args: Any, **kwargs: Any) -> Any:
        if name == "transaction":
            peer = args[0] if args else kwargs.get("peer")
            values = self._ask("transaction", {"socket_address": list(getattr(peer, "socket_address", ("", 0)))})
            return RemoteTransaction(values.pop("id"), values)
        txn = args[0] if args and name in ("hello", "mail", "rcpt", "data", "login") else None
        return self._ask(name, *(args[1:] if txn is not None else args), txn=txn, **kwargs)

    method.__name__ = name
    return method


for _name in MTA_METHODS:
    setattr(MTAProxy, _name, _mta_method(_name))


class AccountsProxy:
    """The host's users, as a student's POP3 or IMAP session sees them (the judge's
    :class:`~labkit.accounts.Accounts`): ``authenticate``, ``find``, ``by_address`` and
    ``penalty.outcome``; an :class:`~labkit.accounts.Account`'s Maildir is in the pod's
    common scratch, the same path here and there."""

    def __init__(self, channel: Channel, ident: int) -> None:
        self._channel, self._ident = channel, ident
        self.penalty = _Penalty(self)

    def _ask(self, method: str, *args: Any) -> Any:
        answer = self._channel.request("accounts", {"accounts": self._ident, "method": method,
                                                    "args": Encoder()(list(args))}, timeout=REQUEST_TIMEOUT)
        return Decoder()(answer)

    def authenticate(self, login: str, password: str) -> Any:
        return self._ask("authenticate", login, password)

    def find(self, login: str) -> Any:
        return self._ask("find", login)

    def by_address(self, address: str) -> Any:
        return self._ask("by_address", address)


class _Penalty:
    def __init__(self, accounts: AccountsProxy) -> None:
        self._accounts = accounts

    def outcome(self, client: str, ok: bool) -> float:
        return self._accounts._ask("penalty.outcome", client, ok)


# -- the world ---------------------------------------------------------------------------------------
_worlds: dict[Any, "RemoteWorld"] = {}


@dataclass(frozen=True)
class HostView:
    """A mail host of the world, as the notebook sees it."""

    name: str
    address: str
    addresses: tuple[str, ...]
    domains: tuple[str, ...]
    services: dict[str, Endpoint]


class _Addresses(AddressMap):
    """The world's address map, as the judge gave it; a client's lab address is told to
    the judge's world (where its servers look it up)."""

    def __init__(self, world: "RemoteWorld") -> None:
        super().__init__()
        self._world = world

    def note_peer(self, sockname: tuple, virtual: str, seam: str = "") -> None:
        self._world._ask("world.note_peer", {"sockname": list(sockname[:2]), "virtual": str(virtual)})


class _Config:
    """What a notebook reads of the world's topology: its zone files."""

    def __init__(self, zones_dir: Path) -> None:
        self.zones_dir = zones_dir


class _DNS:
    def __init__(self, world: "RemoteWorld") -> None:
        self._world = world

    def inject_fault(self, name: str, fault: str | None) -> None:
        """Make the lab's name server fail for ``name`` (``servfail``, ``timeout``) or not (None)."""
        self._world._ask("world.dns_fault", {"name": str(name), "fault": fault})


class RemoteWorld:
    """:class:`labkit.world.World`'s notebook methods, served by the judge's world."""

    def __init__(self, config: Any = None, *, seed: str | None = None, deadline: float | None = None,
                 **unused: Any) -> None:
        if config is not None:
            raise TypeError("a graded notebook's world is the lecture's world: World() takes no topology here")
        self._channel = channel()
        if self._channel is None:
            raise RuntimeError("RemoteWorld is for a graded notebook only")
        self._options = {"seed": seed, "deadline": deadline}
        self.id: int | None = None
        self.tracer = Tracer()
        self.addresses = _Addresses(self)
        self.hosts: dict[str, HostView] = {}
        self.dns = _DNS(self)
        self.config = _Config(Path(__file__).parent / "worlds" / "lecture" / "zones")
        self.state_dir = Path(tempfile.mkdtemp(prefix="labkit-world-"))
        self._info: dict = {}

    def _ask(self, op: str, args: dict | None = None, *, fds: list[int] | None = None) -> Any:
        assert self._channel is not None
        answer = self._channel.request(op, {"world": self.id, **(args or {})}, fds=fds or [], timeout=REQUEST_TIMEOUT)
        return Decoder()(answer)

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self) -> "RemoteWorld":
        options = {k: v for k, v in self._options.items() if v is not None}
        answer = self._ask("world.start", options)
        self.id = answer["id"]
        _worlds[self.id] = self
        self._info = answer["info"]
        for (address, port), (host, real) in answer["routes"]:
            self.addresses.add(address, port, Endpoint(host, real))
        for name, host in self._info["hosts"].items():
            self.hosts[name] = HostView(name, host["address"], tuple(host["addresses"]), tuple(host["domains"]),
                                        {s: Endpoint(e["host"], e["port"]) for s, e in host["services"].items()})
        (self.state_dir / "world.json").write_text(json.dumps(self.info(), indent=1))
        os.environ[STATE_DIR_VARIABLE] = str(self.state_dir)
        return self

    def stop(self) -> None:
        if self.id is not None:
            self._ask("world.stop")

    def __enter__(self) -> "RemoteWorld":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what runs where ------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {**self._info, "state_dir": str(self.state_dir)}

    def host(self, name_or_domain: str) -> HostView:
        key = name_or_domain.lower()
        if key in self.hosts:
            return self.hosts[key]
        for host in self.hosts.values():
            if key in host.domains:
                return host
        raise KeyError(f"no mail host named or serving {name_or_domain!r}; hosts: {', '.join(self.hosts)}")

    def use(self, host: str | None = None, **parts: Any) -> None:
        """Plug parts in (``None``: labkit's own again); checked here, at once."""
        where = self.host(host).name if host is not None else None
        check_parts(parts)
        refs = {name: None if impl is None else {"$": "program", "v": str(impl)} if SEAMS[name].kind == "program"
                else _ref(impl) for name, impl in parts.items()}
        self._ask("world.use", {"parts": refs, **({"host": where} if where else {})})

    def set_behaviour(self, host: str, behaviour: str) -> None:
        self._ask("world.behave", {"host": str(host), "behaviour": str(behaviour)})

    def retry_now(self) -> None:
        self._ask("world.retry_now")

    def resolver(self) -> Any:
        dns_endpoint = self._info["dns"]
        return _resolver({"nameservers": [dns_endpoint["host"]], "port": dns_endpoint["port"],
                          "timeout": 2.0, "lifetime": 2.0})

    def connect(self, address: str, port: int, *, timeout: float = 10.0, source: str = "") -> socket.socket:
        """A blocking socket to a virtual address (``source``: our own lab address, which
        the judge's world is told, so its servers name us by it)."""
        return self.addresses.connect(address, port, timeout=timeout, source=source)

    def messages(self, address: str) -> list[bytes]:
        return self._ask("world.messages", {"address": str(address)})

    def reader(self, address: str, protocol: str = "imap") -> Any:
        from .reader import IMAPReader, POP3Reader

        box = self._info["mailboxes"].get(address.lower()) or self._info["mailboxes"].get(address)
        if box is None:
            raise KeyError(f"no mailbox {address!r}")
        endpoint = self.host(box["host"]).services[protocol]
        cls = POP3Reader if protocol == "pop3" else IMAPReader
        return cls(endpoint.host, endpoint.port, address, box["password"])

    def send(self, mail_from: str, rcpt_to: list[str], message: bytes, *, auth: bool = True, port: int = 587,
             client: Callable[..., Any] | None = None, source: str = "") -> Any:
        args: dict[str, Any] = {"mail_from": str(mail_from), "rcpt_to": [str(r) for r in rcpt_to],
                                "message": Encoder()(bytes(message)), "auth": bool(auth), "port": int(port),
                                "source": str(source)}
        if client is not None:
            check_implementation(SEAMS["send_mail"], client)
            args["client"] = _ref(client)
        return self._ask("world.send", args)

    def muttrc(self, address: str, *, maildir: bool = False) -> str:
        return self._ask("world.muttrc", {"address": str(address), "maildir": bool(maildir)})

    def wait_for(self, predicate: Callable[[TraceEvent], bool], timeout: float = 10.0, since: float | None = None,
                 count: int = 1) -> TraceEvent:
        return self.tracer.wait_for(predicate, timeout, since=since, count=count)

    def wait_for_delivery(self, recipient: str, timeout: float = 10.0, since: float | None = None,
                          count: int = 1) -> TraceEvent:
        return self.tracer.wait_for(delivered_to(recipient), timeout, since=since, count=count)


def _ref(impl: Any) -> dict:
    """A reference the judge's world calls the student's ``impl`` back by."""
    channel()
    assert _parts is not None
    return {"$": "ref", "id": _parts.handles.add(impl)}
