"""The seams: the parts of the mail system a student replaces, one line each.

    world.use(resolve_mx=my_resolve_mx)                           # everywhere
    world.use(host="smtp.brilliant.com", smtp_session=MySession)  # on one host only
    world.use(resolve_mx=None)                                    # labkit's own again

:data:`SEAMS` is the one place each seam's contract lives (:class:`SeamSpec`): its
signature and documentation (a stub function), labkit's own answer and the other names
that are part of it (fenced while a student's part runs, :mod:`labkit.fence`), the check
of what it returns (:mod:`labkit.contracts`), the exceptions that are answers rather
than failures, and where it runs. ``labkit.lab``'s documentation, the world's calls
(:meth:`SeamSpec.call`), ``labkit.checks`` and the grader all read it from here.

The world reads a seam each time it uses it, so a swap takes effect for the next message
or connection. Every call into a student's part crosses :mod:`labkit.boundary` (off the
event loop, a deadline, its answer checked against the contract, failures traced and
answered as a careful server would).

This module is student-facing: it imports no reference implementation (they are named
as ``"module:attribute"`` and loaded only when a world needs one).
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import contracts
from .contracts import missing_session_methods

if TYPE_CHECKING:
    import socket

    import dns.resolver

    from .boundary import Boundary
    from .dns.hops import NextHop
    from .mta.types import Failure, HopInfo, MTAPolicy, Route, RouteRequest
    from .session import PeerInfo, Session
    from .smtp.reply import SendResult

Check = Callable[[Any], Any]


# -- the stubs: each seam's signature and what a student reads about it ---------------------
class Stubs:
    """Each seam's signature and documentation (calling one does nothing)."""

    @staticmethod
    def resolve_mx(domain: str, resolver: dns.resolver.Resolver) -> list[NextHop]:
        """Ask DNS with the dnspython ``resolver`` given (``resolver.resolve(name, "MX")``).
        Return the hosts to try, in order (RFC 5321 §5.1); raise :class:`PermanentMXError`
        (bounce), :class:`TemporaryMXError` (try later) or :class:`NullMXError` (RFC 7505).
        Example: ``[NextHop("smtp.brilliant.com", 10, ("1.2.3.5",))]``."""

    @staticmethod
    def send_mail(sock: socket.socket, *, helo: str, mail_from: str, rcpt_to: list[str], message: bytes,
                  auth: tuple[str, str] | None = None, timeout: float = 30.0) -> SendResult:
        """Speak SMTP over the connected socket ``sock``. Return
        ``SendResult(accepted={rcpt: Reply}, refused={rcpt: Reply}, data_reply=Reply)``
        or raise :class:`SMTPTransientError` / :class:`SMTPPermanentError`.
        You may use :class:`Reply` to hold a reply; parsing replies is yours."""

    @staticmethod
    def received_header(hop: HopInfo) -> str:
        """The ``Received:`` header field for one hop (RFC 5321 §4.4), folded with CRLF + tab."""

    @staticmethod
    def route(request: RouteRequest) -> Route:
        """Where one recipient's mail goes: :class:`Local`, :class:`Relay` or
        :class:`Refuse`; never relay for strangers (RFC 5321 §3.6.2)."""

    @staticmethod
    def deliver(maildir: Path, message: bytes) -> str:
        """Store the message the qmail way (tmp/, fsync, rename into new/, fsync new/);
        return the file's name in ``new/``."""

    @staticmethod
    def next_retry(attempts: int, queued_for: float, *, schedule: tuple[float, ...],
                   max_queue_time: float) -> float | None:
        """Seconds until the next attempt, or None to give up and bounce (RFC 5321 §4.5.4.1)."""

    @staticmethod
    def make_bounce(*, reporting_mta: str, queue_id: str, sender: str, failures: list[Failure], original: bytes,
                    arrived: float) -> bytes:
        """The RFC 3464 delivery status notification to ``sender``, as message bytes."""

    @staticmethod
    def smtp_session(peer: PeerInfo, mta: MTAPolicy, *, hostname: str) -> Session:
        """A sans-IO SMTP server session (subclass :class:`Session`: ``start()`` returns the
        greeting, ``receive(data)`` the replies to what arrived, as bytes; set ``closed``).
        It asks ``mta`` (the host's policy, :class:`MTAPolicy`) at each step:
        ``mta.transaction(peer)``, ``mta.hello(txn, name, extended=...)``,
        ``mta.mail(txn, address, params)``, ``mta.rcpt(txn, address)``,
        ``mta.data(txn, message)``, ``mta.extensions()``; the reply lines they return
        (``str``, no CRLF) are what you send."""

    @staticmethod
    def pop3_session(peer: PeerInfo, accounts: Any, *, hostname: str) -> Session:
        """A sans-IO POP3 server session (RFC 1939): users from
        ``accounts.authenticate(user, password)`` (an Account, or None), their mail in
        its Maildir (``account.maildir``: the files in ``new/`` and ``cur/``)."""

    @staticmethod
    def imap_session(peer: PeerInfo, accounts: Any, *, hostname: str) -> Session:
        """A sans-IO IMAP server session (RFC 3501); :mod:`labkit.imap.parser` may read the
        commands for you, and :class:`MailStore` (``MailStore(account.maildir)``) keeps
        the UIDs and flags."""


# -- the registry ------------------------------------------------------------------------
@dataclass(frozen=True)
class SeamSpec:
    """One replaceable part: its whole contract."""

    name: str
    kind: str  # "function", "session" (a Session factory) or "program" (a command)
    stub: Callable[..., Any] | None  # the signature and doc (None for a program)
    reference: str  # "module:attribute" of labkit's model answer
    contract: Callable[[dict[str, Any]], Check | None] | None = None  # the result's check, from the call's arguments
    answers: tuple[str, ...] = ()  # more "module:attribute" that are part of labkit's answer (fenced too)
    passes: tuple[str, ...] = ()  # "module:attribute" of exceptions that are legitimate answers
    host_role: str = ""  # which host's part it is, for per-host placement
    default_is_reference: bool = True  # smtp_session: the default is aiosmtpd, not the reference
    usage: str = ""  # a program's usage line

    # -- the signature -------------------------------------------------------------------
    @property
    def signature(self) -> inspect.Signature:
        assert self.stub is not None, f"{self.name} is a program"
        return inspect.signature(self.stub)

    @property
    def call(self) -> str:
        """How the world calls it, for messages: ``send_mail(sock, *, helo, ..., auth=None, timeout=30.0)``."""
        if self.stub is None:
            return self.usage
        params, star = [], False
        for p in self.signature.parameters.values():
            if p.kind is p.KEYWORD_ONLY and not star:
                params.append("*")
                star = True
            params.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
        return f"{self.name}({', '.join(params)})"

    @property
    def returns(self) -> str:
        if self.stub is None:
            return "an exit status (sysexits)"
        annotation = self.signature.return_annotation
        return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))

    @property
    def positional(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD)

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.signature.parameters.values() if p.kind is p.KEYWORD_ONLY)

    @property
    def doc(self) -> str:
        """The seam for ``labkit.lab``'s documentation."""
        text = inspect.getdoc(self.stub) if self.stub is not None else (
            "A program (a path), used like ``/usr/sbin/sendmail`` by mutt and the checks;\n"
            "it finds the running world through ``$LABKIT_STATE_DIR`` (a notebook's world sets it).")
        body = "\n".join("    " + line if line else "" for line in (text or "").splitlines())
        return f"``{self.call} -> {self.returns}``\n{body}"

    # -- the contract --------------------------------------------------------------------
    def result_check(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Check | None:
        """The check of what a student's part returns for this call."""
        if self.contract is None:
            return None
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return self.contract(bound.arguments)

    def passing(self) -> tuple[type[BaseException], ...]:
        """The exceptions that are this seam's answers, not its failures."""
        return tuple(_load(name) for name in self.passes)

    def load_reference(self) -> Any:
        return _load(self.reference)

    # -- the one way the world calls a part ------------------------------------------------
    def call_part(self, boundary: "Boundary", host: str, part: tuple[Any, bool], *args: Any, note: bool = True,
                  **kwargs: Any) -> Any:
        """Call ``part`` (implementation, is it a student's?) from a plain thread,
        through the boundary: a student's gets the deadline, the fence and the contract;
        the seam's own exceptions pass through; any other failure is a SeamError."""
        impl, student = part
        if not student:
            return impl(*args, **kwargs)
        return boundary.call(self.name, host, impl, *args, student=True, check=self.result_check(args, kwargs),
                             passes=self.passing(), note=note, **kwargs)

    async def acall_part(self, boundary: "Boundary", host: str, part: tuple[Any, bool], *args: Any,
                         note: bool = True, **kwargs: Any) -> Any:
        """:meth:`call_part` from the event loop (labkit's own off the loop too)."""
        impl, student = part
        return await boundary.acall(self.name, host, impl, *args, student=student,
                                    check=self.result_check(args, kwargs) if student else None,
                                    passes=self.passing(), note=note, **kwargs)


def _load(name: str) -> Any:
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


_SESSION = dict(kind="session", contract=lambda call: contracts.session_object,
                host_role="the host serving the connection")

SEAMS: dict[str, SeamSpec] = {spec.name: spec for spec in (
    SeamSpec("resolve_mx", "function", Stubs.resolve_mx, "labkit.dns.mx:resolve_mx",
             lambda call: contracts.next_hops, passes=("labkit.dns.hops:MXError",), host_role="the relaying host"),
    SeamSpec("send_mail", "function", Stubs.send_mail, "labkit.smtp.send:send_mail",
             lambda call: contracts.send_result(call["rcpt_to"]),
             answers=("labkit.smtp.send:drive", "labkit.smtp.client:ClientTransaction",
                      "labkit.smtp.client:ReplyParser"),
             passes=("labkit.smtp.reply:SMTPError",), host_role="the relaying host"),
    SeamSpec("received_header", "function", Stubs.received_header, "labkit.mta.received:received_header",
             lambda call: contracts.received_field, host_role="the receiving host"),
    SeamSpec("route", "function", Stubs.route, "labkit.mta.routing:route",
             lambda call: contracts.route(call["request"]), host_role="the receiving host"),
    SeamSpec("deliver", "function", Stubs.deliver, "labkit.maildir:deliver",
             lambda call: contracts.delivered_file(call["maildir"], call["message"]),
             answers=("labkit.maildir:write_durably", "labkit.maildir:unique_name", "labkit.maildir:stage"),
             host_role="the host with the mailbox"),
    SeamSpec("next_retry", "function", Stubs.next_retry, "labkit.mta.retry:next_retry",
             lambda call: contracts.retry_delay, host_role="the host with the queue"),
    SeamSpec("make_bounce", "function", Stubs.make_bounce, "labkit.mta.bounce:make_bounce",
             lambda call: contracts.bounce_message(call["sender"]), answers=("labkit.mta.bounce:status",),
             host_role="the host with the queue"),
    SeamSpec("smtp_session", stub=Stubs.smtp_session, reference="labkit.smtp.server:SMTPServerSession",
             default_is_reference=False, **_SESSION),
    SeamSpec("pop3_session", stub=Stubs.pop3_session, reference="labkit.pop3:POP3Session", **_SESSION),
    SeamSpec("imap_session", stub=Stubs.imap_session, reference="labkit.imap.session:IMAPSession", **_SESSION),
    SeamSpec("sendmail", "program", None, "labkit.sendmail:main", host_role="the user's machine",
             usage="sendmail [-t] [-i] [-f sender] [recipient ...]"),
)}


def fenced_names() -> dict[str, list[tuple[str, str]]]:
    """What the fence guards: module -> [(attribute, seam)], every seam's reference and
    the other names of its answer (a program's ``main`` is fenced by its own process)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for spec in SEAMS.values():
        if spec.kind == "program":
            continue
        for name in (spec.reference, *spec.answers):
            module, _, attribute = name.partition(":")
            found.setdefault(module, []).append((attribute, spec.name))
    return found


def _default(spec: SeamSpec) -> Any:
    if spec.kind == "program":
        return default_sendmail()
    return spec.load_reference() if spec.default_is_reference else None


def default_sendmail() -> str:
    """labkit-sendmail: beside the running Python (a venv's bin), else on PATH."""
    beside = Path(os.path.dirname(os.path.realpath(sys.executable))) / "labkit-sendmail"
    for candidate in (Path(sys.executable).parent / "labkit-sendmail", beside):
        if candidate.exists():
            return str(candidate)
    return shutil.which("labkit-sendmail") or "labkit-sendmail"


def check_implementation(spec: SeamSpec, impl: Any) -> None:
    """Raise a TypeError, in the student's cell, if ``impl`` cannot be this seam."""
    if spec.kind == "program":
        if callable(getattr(impl, "run", None)):  # a program elsewhere (a graded notebook's, run in its kernel)
            return
        path = Path(impl)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise TypeError(f"{spec.name} must be an executable program (chmod +x it); {impl!r} is not one")
        return
    if not callable(impl):
        raise TypeError(f"{spec.name} must be a function or class callable as {spec.call}, "
                        f"got {type(impl).__name__}")
    try:
        signature = inspect.signature(impl)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to inspect
    try:
        signature.bind(*spec.positional, **{k: k for k in spec.keywords})
    except TypeError as error:
        raise TypeError(f"{spec.name} must be callable as {spec.call}; {getattr(impl, '__name__', impl)}"
                        f"{signature} cannot: {error}") from None
    if spec.kind == "session" and isinstance(impl, type):
        missing = missing_session_methods(impl)
        if missing:
            raise TypeError(f"{impl.__name__} is not a session: it has no {' or '.join(missing)}() method "
                            "(subclass labkit.lab.Session and write start() and receive())")


def check_parts(parts: dict[str, Any]) -> None:
    """``world.use(**parts)``'s arguments: known seams, and parts that fit them (``None``
    for labkit's own); a TypeError, in the student's cell, for the first that does not."""
    for name, impl in parts.items():
        spec = SEAMS.get(name)
        if spec is None:
            raise TypeError(f"no seam named {name!r}; the seams are: {', '.join(SEAMS)}")
        if impl is not None:
            check_implementation(spec, impl)


class Seams:
    """Which implementation runs each part, everywhere or on one host."""

    def __init__(self, **parts: Any) -> None:
        self._defaults = {name: _default(spec) for name, spec in SEAMS.items()}
        self._everywhere: dict[str, Any] = dict(self._defaults)
        self._on_host: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        if parts:
            self.use(**parts)

    def use(self, host: str | None = None, **parts: Any) -> list[str]:
        """Swap parts (``None`` restores labkit's own); returns the names swapped.
        Unknown names and implementations that cannot fit raise TypeError at once."""
        check_parts(parts)
        with self._lock:
            for name, impl in parts.items():
                if host is None:
                    self._everywhere[name] = self._defaults[name] if impl is None else impl
                    if impl is None:  # "labkit's own again" means on every host
                        for key in [k for k in self._on_host if k[1] == name]:
                            del self._on_host[key]
                elif impl is None:
                    self._on_host.pop((host, name), None)
                else:
                    self._on_host[(host, name)] = impl
        return list(parts)

    def get(self, name: str, host: str = "") -> Any:
        """The implementation of ``name`` on ``host`` (its own, else everywhere's)."""
        with self._lock:
            return self._on_host.get((host, name), self._everywhere[name])

    def is_student(self, name: str, impl: Any) -> bool:
        """Whether ``impl`` is someone else's code (not labkit's default or reference)."""
        if impl is None or impl is self._defaults[name]:
            return False
        spec = SEAMS[name]
        return not (spec.kind != "program" and impl is spec.load_reference())

    def part(self, name: str, host: str = "") -> tuple[Any, bool]:
        """``(implementation, is it a student's?)`` for ``name`` on ``host``."""
        impl = self.get(name, host)
        return impl, self.is_student(name, impl)

    def students(self) -> dict[str, list[str]]:
        """Which student parts run where: seam -> hosts (``["*"]`` for everywhere)."""
        with self._lock:
            found: dict[str, list[str]] = {}
            for name, impl in self._everywhere.items():
                if self.is_student(name, impl):
                    found.setdefault(name, []).append("*")
            for (host, name), impl in self._on_host.items():
                if self.is_student(name, impl):
                    found.setdefault(name, []).append(host)
            return found

    # attribute access reads the part used everywhere: ``seams.resolve_mx``
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in SEAMS:
            raise AttributeError(name)
        return self.get(name)
