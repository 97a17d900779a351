"""The judge's stand-ins for a graded student's parts: each seam's part, called in the kernel.

The checks and the judge's world call a student's part exactly as they call a local
function (through :class:`labkit.seams.SeamSpec.call_part`, with its deadline and
contract). What they are given for a graded notebook is a stand-in made here from the
seam's registry entry (:func:`stand_in`): calling it sends the call over the kernel's
channel (:mod:`labkit.channel`), where :mod:`labkit.graded` runs the student's object,
and brings back the answer, decoded only into labkit's own types (so the contract judges
it as usual) or the exception it raised (a seam's own errors as themselves, anything
else as :class:`StudentRaised`, with the student's traceback).

How arguments cross is decided by their type, the same for every seam: a socket as a
file descriptor, a dnspython resolver as its settings (the kernel makes its own, asking
the same server on the same loopback), an :class:`~labkit.mta.types.MTAPolicy` as a
reference the kernel's stand-in asks back through (:class:`Policies`: only
:data:`~labkit.mta.types.MTA_METHODS`, every argument checked), the rest as data.
"""

from __future__ import annotations

import dataclasses
import itertools
import socket
import threading
from typing import Any, Callable

import dns.resolver

from ..accounts import Accounts
from ..channel import BadRequest, Channel, Decoder, Encoder, RemoteError, field
from ..mta.types import MTA_ATTRIBUTES, MTA_METHODS, Transaction
from ..seams import SeamSpec
from ..session import PeerInfo

CALL_TIMEOUT = 60.0  # the boundary's deadline is shorter; this only frees a wedged request
SESSION_STEPS = ("start", "receive", "mailbox_changed", "timed_out", "connection_lost")


class StudentRaised(Exception):
    """An exception the student's code raised in the kernel (not one of the seam's own)."""

    def __init__(self, kind: str, message: str, traceback_text: str) -> None:
        super().__init__(message)
        self.remote_type, self.remote_traceback = kind, traceback_text


def exception_from(raised: Any) -> BaseException:
    """The exception a kernel reported: a seam's own error (SMTPError, MXError and their
    kinds, a student's subclass taken as its nearest labkit base) as itself, with its
    facts checked; anything else as :class:`StudentRaised`."""
    from ..dns.hops import MXError, NullMXError, PermanentMXError, TemporaryMXError
    from ..smtp.reply import Reply, SMTPError, SMTPPermanentError, SMTPTransientError

    if not isinstance(raised, dict):
        return StudentRaised("?", "an exception the grader could not read", "")
    kind, bases = str(raised.get("type", "Exception"))[:100], raised.get("bases", [])
    message, facts = str(raised.get("message", ""))[:2000], raised.get("facts", {})
    text = str(raised.get("traceback", ""))[-8000:]
    facts = facts if isinstance(facts, dict) else {}
    known = {cls.__name__: cls for cls in (NullMXError, PermanentMXError, TemporaryMXError, MXError,
                                           SMTPPermanentError, SMTPTransientError, SMTPError)}
    names = [kind, *(b for b in bases if isinstance(b, str))] if isinstance(bases, list) else [kind]
    cls = next((known[n] for n in names if n in known), None)
    if cls is not None and issubclass(cls, SMTPError):
        reply = Decoder()(facts.get("reply")) if facts.get("reply") is not None else None
        return cls(str(facts.get("problem", message)), stage=str(facts.get("stage", "")),
                   reply=reply if isinstance(reply, Reply) else None)
    if cls is not None and isinstance(facts.get("domain"), str):
        return cls(facts["domain"], message)
    return StudentRaised(kind, message, text)


ACCOUNTS_METHODS = {"authenticate": (str, str), "find": (str,), "by_address": (str,), "penalty.outcome": (str, bool)}
"""What a kernel's session may ask of the host's users (labkit.accounts.Accounts), and the argument types."""


class Policies:
    """The judge's objects a kernel's session may ask about, by number: MTAs (and their
    transactions) and a host's users; each only the questions of its protocol."""

    def __init__(self, channel: Channel) -> None:
        self._mtas: dict[int, Any] = {}
        self._txns: dict[int, Transaction] = {}
        self._accounts: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        channel.handlers["mta"] = self.serve
        channel.handlers["accounts"] = self.serve_accounts

    def ref(self, mta: Any) -> dict:
        with self._lock:
            ident = next(self._ids)
            self._mtas[ident] = mta
        return {"$": "mta", "id": ident, "attrs": {name: getattr(mta, name) for name in MTA_ATTRIBUTES}}

    def ref_accounts(self, accounts: Any) -> dict:
        with self._lock:
            ident = next(self._ids)
            self._accounts[ident] = accounts
        return {"$": "accounts", "id": ident}

    def serve_accounts(self, args: dict, fds: list[int]) -> Any:
        """One question of a kernel's session about the host's users."""
        method = field(args, "method", str)
        with self._lock:
            accounts = self._accounts.get(args.get("accounts"))  # type: ignore[arg-type]
        kinds = ACCOUNTS_METHODS.get(method)
        if accounts is None or kinds is None:
            raise BadRequest(f"no such question about the users: {method!r}")
        positional = Decoder()(field(args, "args", list, limit=4))
        if len(positional) != len(kinds) or not all(isinstance(v, k) for v, k in zip(positional, kinds)):
            raise BadRequest(f"accounts.{method} takes ({', '.join(k.__name__ for k in kinds)})")
        target = accounts.penalty if method == "penalty.outcome" else accounts
        return Encoder()(getattr(target, method.rpartition(".")[2])(*positional))

    def serve(self, args: dict, fds: list[int]) -> Any:
        """One question of a kernel's session to its MTA (only MTAPolicy's methods)."""
        method = field(args, "method", str)
        with self._lock:
            mta = self._mtas.get(args.get("mta"))  # type: ignore[arg-type]
        if mta is None or method not in MTA_METHODS:
            raise BadRequest(f"no such MTA question: {method!r}")
        decoder = Decoder()
        positional = decoder(field(args, "args", list, limit=16))
        keywords = decoder(args.get("kwargs", {"$": "map", "v": []}))
        if not isinstance(keywords, dict) or not set(keywords) <= {"extended"}:
            raise BadRequest("unexpected keyword arguments")
        _check_arguments(method, positional, keywords)
        if method == "transaction":
            address = positional[0].get("socket_address") if isinstance(positional[0], dict) else None
            if not (isinstance(address, list) and len(address) == 2):
                raise BadRequest("transaction(peer) needs the peer's socket address")
            txn = mta.transaction((str(address[0]), int(address[1])))
            with self._lock:
                ident = next(self._ids)
                self._txns[ident] = txn
            return Encoder()({"answer": {"id": ident, **dataclasses.asdict(txn)}})
        txn = self._transaction(args.get("txn")) if method in ("hello", "mail", "rcpt", "data", "login") else None
        answer = getattr(mta, method)(*([txn] if txn is not None else []), *positional, **keywords)
        return Encoder()({"answer": answer, "txn": dataclasses.asdict(txn) if txn is not None else None})

    def _transaction(self, sent: Any) -> Transaction:
        """The judge's own transaction, with what the session may change (its HELO name,
        EHLO or not, a reset) taken from the kernel's copy; the rest is the judge's."""
        if not isinstance(sent, dict):
            raise BadRequest("this question needs the transaction")
        with self._lock:
            txn = self._txns.get(sent.get("id"))  # type: ignore[arg-type]
        if txn is None:
            raise BadRequest("no such transaction")
        if sent.get("reset") is True:
            txn.reset()
        helo, extended = sent.get("helo"), sent.get("extended")
        if isinstance(helo, str) and len(helo) <= 1000:
            txn.helo = helo
        if isinstance(extended, bool):
            txn.extended = extended
        return txn


_ARGUMENTS = {"greeting": (), "extensions": (), "hello": (str,), "mail": (str, list), "rcpt": (str,),
              "data": (bytes,), "vrfy": (str,), "authenticate": (str, str), "login": (str, str), "transaction": (dict,)}


def _check_arguments(method: str, positional: list, keywords: dict) -> None:
    kinds = _ARGUMENTS[method]
    if len(positional) != len(kinds) or not all(isinstance(v, k) for v, k in zip(positional, kinds)):
        raise BadRequest(f"mta.{method} takes ({', '.join(k.__name__ for k in kinds)})")
    if method == "mail" and not all(isinstance(p, str) for p in positional[1]):
        raise BadRequest("mta.mail's params are strings")
    if "extended" in keywords and not isinstance(keywords["extended"], bool):
        raise BadRequest("extended is True or False")


class _Calls:
    """What a stand-in needs: the kernel's channel and how to send this side's values."""

    def __init__(self, channel: Channel, policies: Policies) -> None:
        self.channel, self.policies = channel, policies

    def encoder(self) -> Encoder:
        def special(value: Any, encoder: Encoder) -> Any:
            if isinstance(value, socket.socket):
                encoder.fds.append(value.fileno())
                return {"$": "fd", "i": len(encoder.fds) - 1}
            if isinstance(value, dns.resolver.Resolver):  # a host's own one too (it names the asker)
                return {"$": "resolver", "nameservers": [str(n) for n in value.nameservers], "port": value.port,
                        "timeout": value.timeout, "lifetime": value.lifetime}
            if isinstance(value, PeerInfo):
                return {"$": "peer", "address": value.address, "port": value.port,
                        "server_name": value.server_name, "socket_address": list(value.socket_address)}
            if all(hasattr(value, m) for m in MTA_METHODS) and hasattr(value, "hostname"):
                return self.policies.ref(value)
            if isinstance(value, Accounts):
                return self.policies.ref_accounts(value)
            return NotImplemented

        return Encoder(special)

    def request(self, op: str, args: dict, encoder: Encoder) -> Any:
        answer = self.channel.request(op, args, fds=encoder.fds, timeout=CALL_TIMEOUT)
        if not isinstance(answer, dict):
            raise BadRequest("the kernel's answer is not an answer")
        if "raised" in answer:
            raise exception_from(answer["raised"])
        return answer

    def call(self, op: str, part: int, args: tuple, kwargs: dict, **extra: Any) -> Any:
        encoder = self.encoder()
        payload = {"part": part, "args": encoder(list(args)), "kwargs": encoder(kwargs), **extra}
        return self.request(op, payload, encoder)


class RemoteSession:
    """On the judge's side: a student's session object in the kernel, driven step by step
    (the adapter calls it like any session; a method the object lacks is missing here too)."""

    def __init__(self, calls: _Calls, spec: SeamSpec, part: int, args: tuple, kwargs: dict) -> None:
        self._calls = calls
        answer = calls.call("session.open", part, args, kwargs)
        made = answer.get("ok")
        if not isinstance(made, dict) or not isinstance(made.get("session"), int):
            raise BadRequest("the kernel did not open a session")
        self._ident = made["session"]
        self._missing = {str(m) for m in made.get("missing", [])}
        self.timeout = made.get("timeout") if isinstance(made.get("timeout"), (int, float)) else 600.0
        self.closed, self.reply_delay = False, 0

    def __getattr__(self, name: str) -> Any:
        if name in SESSION_STEPS and name not in self.__dict__.get("_missing", {name}):
            return lambda *args: self._step(name, *args)
        raise AttributeError(name)

    def _step(self, method: str, *args: Any) -> Any:
        encoder = self._calls.encoder()
        answer = self._calls.channel.request("session.step", {"session": self._ident, "method": method,
                                                                "args": encoder(list(args))}, timeout=CALL_TIMEOUT)
        if not isinstance(answer, dict):
            raise BadRequest("the kernel's answer is not an answer")
        self.closed = bool(answer.get("closed", self.closed))
        delay = Decoder()(answer.get("reply_delay", 0))
        self.reply_delay = delay
        if "raised" in answer:
            raise exception_from(answer["raised"])
        return Decoder()(answer.get("ok"))


class RemoteFunction:
    """A function seam's part in the kernel: called like the function; :meth:`watch_disk`
    has the kernel record its fsync and rename calls (:class:`~labkit.diskspy.DiskSpy`)."""

    def __init__(self, calls: _Calls, spec: SeamSpec, part: int) -> None:
        self._calls, self._spec, self._part = calls, spec, part
        self._watching: list | None = None
        self.__name__ = self.__qualname__ = f"your_{spec.name}"
        self.__signature__ = spec.signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        extra = {"seam": self._spec.name, **({"observe": "disk"} if self._watching is not None else {})}
        answer = self._calls.call("call", self._part, args, kwargs, **extra)
        if self._watching is not None:
            seen = Decoder()(answer.get("disk", []))
            self._watching += seen if isinstance(seen, list) else []
        return Decoder()(answer.get("ok"))

    def watch_disk(self) -> Any:
        import contextlib

        from ..diskspy import DiskSpy

        @contextlib.contextmanager
        def watching():
            spy = DiskSpy(None)
            self._watching = spy.calls
            try:
                yield spy
            finally:
                self._watching = None

        return watching()


class RemoteProgram:
    """A program seam's part: a program in the kernel's file system, run there
    (:func:`labkit.programs.run_program`); its path is what a muttrc names."""

    def __init__(self, calls: _Calls, path: str) -> None:
        self._calls, self.path = calls, path

    def __str__(self) -> str:
        return self.path

    __fspath__ = __str__

    def run(self, args: list[str], stdin: bytes, env: dict[str, str], timeout: float) -> Any:
        from ..programs import Exit

        answer = self._calls.channel.request("run", {"program": self.path, "args": args, "stdin": Encoder()(stdin),
                                                     "env": Encoder()(env), "timeout": timeout},
                                             timeout=timeout + CALL_TIMEOUT)
        status = answer.get("status") if isinstance(answer, dict) else None
        return Exit(status if isinstance(status, int) and not isinstance(status, bool) else None,
                    str(answer.get("stderr", ""))[-65536:] if isinstance(answer, dict) else "")


def stand_in(spec: SeamSpec, channel: Channel, policies: Policies, part: Any) -> Any:
    """What the judge calls for ``spec``'s part in the kernel, by the registry's kind:
    a function's (``part``: a reference), a session factory's, or a program's (``part``:
    its path in the kernel)."""
    calls = _Calls(channel, policies)
    if spec.kind == "function":
        return RemoteFunction(calls, spec, part)
    if spec.kind == "session":
        def factory(*args: Any, **kwargs: Any) -> RemoteSession:
            return RemoteSession(calls, spec, part, args, kwargs)

        factory.__name__ = factory.__qualname__ = f"your_{spec.name}"
        factory.__signature__ = spec.signature  # type: ignore[attr-defined]
        return factory
    return RemoteProgram(calls, str(part))
