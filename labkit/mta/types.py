"""The MTA's data, as a student's part sees it: the types of the ``received_header``,
``route`` and ``make_bounce`` contracts, and :class:`MTAPolicy`, the questions an SMTP
server session asks its host (``mta.rcpt(txn, address)`` ...).

Plain data and one Protocol: no policy lives here (that is :mod:`labkit.mta.core`), so
these are the same objects in a notebook, in the running world and, when a lab is
graded, in the student's sandboxed kernel. ``labkit.lab`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class HopInfo:
    """What a receiving MTA knows about one hop when it stamps the message."""

    helo: str  # the name the client gave in HELO/EHLO
    peer_address: str  # the client's address (virtual in the lab world: 1.2.3.4)
    peer_name: str  # the name DNS gives that address, or "" if unknown
    by: str  # this MTA's name, e.g. smtp.brilliant.com
    protocol: str  # SMTP, ESMTP, ESMTPA (authenticated), … (RFC 3848)
    queue_id: str  # FFDC3387
    recipients: tuple[str, ...]
    timestamp: float


@dataclass(frozen=True)
class RouteRequest:
    """What the MTA knows when a client says ``RCPT TO:<recipient>``."""

    recipient: str  # as the client wrote it: betty@brilliant.com
    domain: str  # its domain, lower case, no trailing dot
    local_domains: frozenset[str]  # the domains this host receives mail for
    mailboxes: frozenset[str]  # every deliverable address here, lower case (postmaster too)
    role: str  # "smtp" (port 25: mail for us) or "submission" (port 587: our users' outgoing mail)
    authenticated: str = ""  # the AUTH login, "" if the client did not log in
    trusted: bool = False  # the client is in this host's trusted networks (Postfix: mynetworks)


@dataclass(frozen=True)
class Local:
    """Deliver into the mailbox ``mailbox`` (an address in ``RouteRequest.mailboxes``)."""

    mailbox: str


@dataclass(frozen=True)
class Relay:
    """Queue it and send it on to the domain's mail exchanger (MX)."""


@dataclass(frozen=True)
class Refuse:
    """Refuse the recipient with this reply, e.g. ``550 5.1.1 <x@y>: user unknown``."""

    reply: str


Route = Local | Relay | Refuse


@dataclass(frozen=True)
class Failure:
    """Why one recipient could not be delivered."""

    recipient: str
    diagnostic: str  # the remote reply ("550 5.1.1 ... user unknown") or our reason
    remote_mta: str = ""  # the host that refused, if one did
    action: str = "failed"  # failed | delayed


@dataclass
class Transaction:
    """One client's session state as the policy sees it (RFC 5321 §3.3: a mail
    transaction is MAIL, one or more RCPT, DATA; :meth:`reset` starts a new one)."""

    peer: str  # the client's address as traces name it (virtual in the lab: 1.2.3.4)
    client: tuple[str, int] = ("", 0)  # the client's socket address, as this server sees it
    helo: str = ""
    extended: bool = False  # EHLO rather than HELO
    login: str = ""  # the account address after AUTH, "" before
    trusted: bool = False  # the client is in the host's trusted networks
    mail_from: str | None = None  # None: no MAIL yet; "": the null reverse-path <> (a bounce)
    smtp_utf8: bool = False
    recipients: list[str] = field(default_factory=list)
    local: dict[str, str] = field(default_factory=dict)  # recipient -> mailbox, for route Local

    def reset(self) -> None:
        """RSET, a new HELO/EHLO, or the end of DATA (RFC 5321 §4.1.1.5)."""
        self.mail_from, self.smtp_utf8 = None, False
        self.recipients, self.local = [], {}


@runtime_checkable
class MTAPolicy(Protocol):
    """What an SMTP server session may ask its host's MTA (RFC 5321 §3.3), and nothing
    else: labkit's :class:`~labkit.mta.core.MTA` implements it, and so does the stand-in
    a graded notebook's session gets. Every answer that is a reply is the line to send
    (``"250 2.1.0 Sender OK"``), without CRLF; ``params`` is a list of the MAIL
    parameters (``["SIZE=150"]``); text is ``str``, the message ``bytes``."""

    hostname: str  # this host's name, for the greeting and EHLO reply
    role: str  # "smtp" (port 25: mail for this host) or "submission" (port 587: its users')
    auth_enabled: bool  # whether AUTH is offered (submission only)
    max_message_size: int  # the SIZE limit, in bytes (RFC 1870)

    def transaction(self, peer: object) -> Transaction:
        """A fresh transaction for a connected client (its PeerInfo)."""

    def greeting(self) -> str:
        """The 220 greeting line."""

    def extensions(self) -> list[str]:
        """The EHLO keywords to announce (``["SIZE 10485760", "8BITMIME", ...]``)."""

    def hello(self, txn: Transaction, name: str, *, extended: bool) -> str | None:
        """HELO/EHLO ``name``: None when it is taken (the transaction is reset), else
        the reply refusing it."""

    def mail(self, txn: Transaction, address: str, params: list[str]) -> str:
        """MAIL FROM:<address> params: starts the mail transaction when it answers 250."""

    def rcpt(self, txn: Transaction, address: str) -> str:
        """RCPT TO:<address>: adds the recipient to ``txn`` when it answers 250."""

    def data(self, txn: Transaction, message: bytes) -> str:
        """The message (dot-unstuffed, CRLF lines): stored, ``250 ... queued as ID``."""

    def vrfy(self, address: str) -> str:
        """VRFY <address>."""

    def authenticate(self, login: str, password: str) -> str | None:
        """The account's address if the password is right, else None."""

    def login(self, txn: Transaction, login: str, password: str) -> tuple[str | None, float]:
        """AUTH: (the account's address, 0), or (None, the seconds a 535 must wait)."""


MTA_ATTRIBUTES = ("hostname", "role", "auth_enabled", "max_message_size")
MTA_METHODS = ("transaction", "greeting", "extensions", "hello", "mail", "rcpt", "data", "vrfy", "authenticate",
               "login")
""":class:`MTAPolicy`'s attributes and methods: all a session's stand-in ever answers."""
