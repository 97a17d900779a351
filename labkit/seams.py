"""The seams: the parts of the mail system a student replaces, one line each.

The lab world reads every seam at the moment it uses it, so swapping one in a running
world takes effect for the next message or connection::

    world.use(resolve_mx=my_resolve_mx)      # the MTA now routes with the student's code
    world.use(send_mail=my_send_mail)        # ... and relays with the student's client

Each seam is a plain synchronous function or class, so notebook code stays simple; the
MTA calls functions in worker threads, so a slow or blocking student function never
stalls the servers.

=================  ===========================================================  ========================
seam               signature                                                    reference
=================  ===========================================================  ========================
resolve_mx         ``(domain: str, resolver: dns.resolver.Resolver)``           :func:`labkit.dns.mx.resolve_mx`
                   ``-> list[NextHop]``; raises Temporary/PermanentMXError
send_mail          ``(sock, *, helo, mail_from, rcpt_to, message, auth=None,``  :func:`labkit.smtp.send.send_mail`
                   ``timeout=30.0) -> SendResult``
received_header    ``(hop: HopInfo) -> str``                                    :func:`labkit.mta.received.received_header`
pop3_session       ``(peer: PeerInfo, accounts: Accounts, *, hostname: str)``   :class:`labkit.pop3.POP3Session`
                   ``-> Session``
imap_session       same shape as pop3_session                                    :class:`labkit.imap.session.IMAPSession`
=================  ===========================================================  ========================
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    import dns.resolver

    from .accounts import Accounts
    from .dns.mx import NextHop
    from .mta.received import HopInfo
    from .session import PeerInfo, Session
    from .smtp.client import SendResult


class ResolveMX(Protocol):
    def __call__(self, domain: str, resolver: "dns.resolver.Resolver") -> "list[NextHop]": ...


class SendMail(Protocol):
    def __call__(
        self,
        sock: socket.socket,
        *,
        helo: str,
        mail_from: str,
        rcpt_to: Sequence[str],
        message: bytes,
        auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
    ) -> "SendResult": ...


class SessionFactory(Protocol):
    def __call__(self, peer: "PeerInfo", accounts: "Accounts", *, hostname: str) -> "Session": ...


ReceivedHeader = Callable[["HopInfo"], str]


def _ref_resolve_mx() -> ResolveMX:
    from .dns.mx import resolve_mx

    return resolve_mx


def _ref_send_mail() -> SendMail:
    from .smtp.send import send_mail

    return send_mail


def _ref_received_header() -> ReceivedHeader:
    from .mta.received import received_header

    return received_header


def _ref_pop3() -> SessionFactory:
    from .pop3 import POP3Session

    return POP3Session


def _ref_imap() -> SessionFactory:
    from .imap.session import IMAPSession

    return IMAPSession


@dataclass
class Seams:
    """Which implementation runs each replaceable part (defaults: labkit's own)."""

    resolve_mx: ResolveMX = field(default_factory=_ref_resolve_mx)
    send_mail: SendMail = field(default_factory=_ref_send_mail)
    received_header: ReceivedHeader = field(default_factory=_ref_received_header)
    pop3_session: SessionFactory = field(default_factory=_ref_pop3)
    imap_session: SessionFactory = field(default_factory=_ref_imap)

    def replace(self, **parts: Any) -> None:
        """Swap parts in place, e.g. ``seams.replace(resolve_mx=my_fn)``. Unknown names
        raise a TypeError listing the seams; ``None`` restores the reference."""
        names = {f.name: f for f in dataclasses.fields(self)}
        for name, impl in parts.items():
            if name not in names:
                raise TypeError(f"no seam named {name!r}; the seams are: {', '.join(names)}")
            if impl is None:
                impl = names[name].default_factory()  # type: ignore[misc]
            elif not callable(impl):
                raise TypeError(f"seam {name!r} needs a function or class, got {type(impl).__name__}")
            setattr(self, name, impl)
