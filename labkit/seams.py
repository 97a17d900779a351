"""The seams: the parts of the mail system a student replaces, one line each.

    world.use(resolve_mx=my_resolve_mx)                           # everywhere
    world.use(host="smtp.brilliant.com", smtp_session=MySession)  # on one host only
    world.use(resolve_mx=None)                                    # labkit's own again

The world reads a seam each time it uses it, so a swap takes effect for the next message
or connection. Every call into a student's part crosses :mod:`labkit.boundary` (off the
event loop, a deadline, its answer checked against the contract in
:mod:`labkit.contracts`, failures traced and answered as a careful server would).
:data:`SEAMS` describes each seam; ``labkit.lab`` is the student's view of them.
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
from typing import Any

from .contracts import missing_session_methods


@dataclass(frozen=True)
class SeamSpec:
    """One replaceable part: how it is called and what labkit's own answer is."""

    name: str
    kind: str  # "function", "session" (a Session factory) or "program" (a command)
    reference: str  # "module:attribute" of labkit's model answer
    call: str  # how the world calls it, for messages: "resolve_mx(domain, resolver)"
    positional: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    default_is_reference: bool = True  # smtp_session: the default is aiosmtpd, not the reference
    passes: str = ""  # "module:attribute" of the exception class that is a legitimate answer
    host_role: str = ""  # which host's part it is, for per-host placement

    def load_reference(self) -> Any:
        module, _, attribute = self.reference.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def passing(self) -> tuple[type[BaseException], ...]:
        if not self.passes:
            return ()
        module, _, attribute = self.passes.partition(":")
        return (getattr(importlib.import_module(module), attribute),)


_SESSION = dict(kind="session", keywords=("hostname",), host_role="the host serving the connection")

SEAMS: dict[str, SeamSpec] = {spec.name: spec for spec in (
    SeamSpec("resolve_mx", "function", "labkit.dns.mx:resolve_mx", "resolve_mx(domain, resolver)",
             ("domain", "resolver"), passes="labkit.dns.mx:MXError", host_role="the relaying host"),
    SeamSpec("send_mail", "function", "labkit.smtp.send:send_mail",
             "send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0)",
             ("sock",), ("helo", "mail_from", "rcpt_to", "message", "auth", "timeout"),
             passes="labkit.smtp.client:SMTPError", host_role="the relaying host"),
    SeamSpec("received_header", "function", "labkit.mta.received:received_header", "received_header(hop)",
             ("hop",), host_role="the receiving host"),
    SeamSpec("route", "function", "labkit.mta.routing:route", "route(request)", ("request",),
             host_role="the receiving host"),
    SeamSpec("deliver", "function", "labkit.maildir:deliver", "deliver(maildir, message)",
             ("maildir", "message"), host_role="the host with the mailbox"),
    SeamSpec("next_retry", "function", "labkit.mta.retry:next_retry",
             "next_retry(attempts, queued_for, *, schedule, max_queue_time)",
             ("attempts", "queued_for"), ("schedule", "max_queue_time"), host_role="the host with the queue"),
    SeamSpec("make_bounce", "function", "labkit.mta.bounce:make_bounce",
             "make_bounce(*, reporting_mta, queue_id, sender, failures, original, arrived)",
             (), ("reporting_mta", "queue_id", "sender", "failures", "original", "arrived"),
             host_role="the host with the queue"),
    SeamSpec("smtp_session", reference="labkit.smtp.server:SMTPServerSession",
             call="smtp_session(peer, mta, *, hostname)", positional=("peer", "mta"),
             default_is_reference=False, **_SESSION),
    SeamSpec("pop3_session", reference="labkit.pop3:POP3Session", call="pop3_session(peer, accounts, *, hostname)",
             positional=("peer", "accounts"), **_SESSION),
    SeamSpec("imap_session", reference="labkit.imap.session:IMAPSession",
             call="imap_session(peer, accounts, *, hostname)", positional=("peer", "accounts"), **_SESSION),
    SeamSpec("sendmail", "program", "labkit.sendmail:main", "sendmail [-t] [-i] [-f sender] [recipient ...]",
             host_role="the user's machine"),
)}


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
        for name, impl in parts.items():
            spec = SEAMS.get(name)
            if spec is None:
                raise TypeError(f"no seam named {name!r}; the seams are: {', '.join(SEAMS)}")
            if impl is not None:
                check_implementation(spec, impl)
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
