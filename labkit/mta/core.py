"""The MTA's policy, for any SMTP front end: aiosmtpd (the default) or a sans-IO session.

An SMTP server session parses the dialogue (:mod:`labkit.smtp.server`, or aiosmtpd);
:class:`MTA` decides what each step means for this host: who may send, where each
recipient's mail goes (the ``route`` seam), the Received stamp (``received_header``),
and queueing the message durably before the 250: one write, the spool file, from which
local delivery and relaying go on after the 250 (as Postfix's queue file). Both front
ends call the same methods, so both give the same replies for the same dialogue.

Methods come in two flavours: plain (``rcpt``, ``data``: for a session running in a
worker thread, as every sans-IO session does) and ``a``-prefixed coroutines (for
aiosmtpd's handler hooks on the event loop). A student's ``route`` or
``received_header`` always runs through :mod:`labkit.boundary`; a failure there is
answered ``451 4.3.0`` and nothing is queued, so the client keeps the message.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..boundary import SeamError
from ..commit import Stage, Waiter
from ..session import PeerInfo
from ..smtp import replies
from ..smtp.client import has_control
from .received import count_received
from .types import HopInfo, Local, Refuse, Relay, Route, RouteRequest, Transaction
from .spool import QueueEntry

if TYPE_CHECKING:
    from .host import MailHost

MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: at least 100 must be accepted


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def crlf(data: bytes) -> bytes:
    """Normalise line endings to CRLF (RFC 5322 §2.1: bare CR or LF are not allowed).
    Counting first: a message that has only CRLFs (nearly every one) is not copied."""
    pairs = data.count(b"\r\n")
    if pairs == data.count(b"\n") == data.count(b"\r"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


@dataclass
class _Begun:
    """A message between the end of DATA and its 250: checked, not yet durable."""

    hop: HopInfo
    entry: QueueEntry
    message: bytes
    local: dict[str, str]  # recipient -> mailbox
    stamped: bytes = b""


class MTA:
    """One service (``smtp``: port 25, or ``submission``: port 587) of one host."""

    def __init__(self, host: "MailHost", role: str) -> None:
        self.host, self.role = host, role
        self.hostname = host.name
        self.boundary = host.context.boundary

    # -- the client ----------------------------------------------------------------
    def transaction(self, client: "PeerInfo | tuple") -> Transaction:
        """A fresh Transaction for a connected client: its PeerInfo, or its socket
        address (ip, port)."""
        if isinstance(client, PeerInfo):
            client = client.socket_address
        peer = self.host.context.addresses.peer_address(client)
        return Transaction(peer, (client[0], client[1]), trusted=self._trusted(client[0]))

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.host.trusted_networks)

    def may_relay(self, txn: Transaction) -> bool:
        return self.role == "submission" and bool(txn.login or txn.trusted)

    # -- what the server offers ------------------------------------------------------
    @property
    def auth_enabled(self) -> bool:
        """Whether this service offers AUTH (RFC 4954): submission only (RFC 6409); the
        lab has no TLS, and port 25 takes mail for this host from anyone without it."""
        return self.role == "submission"

    @property
    def max_message_size(self) -> int:
        return self.host.mta.max_message_size

    def greeting(self) -> str:
        return f"220 {self.hostname} ESMTP labkit"

    def extensions(self) -> list[str]:
        """EHLO keywords after the greeting line (RFC 5321 §4.1.1.1)."""
        found = [f"SIZE {self.host.mta.max_message_size}", "8BITMIME", "SMTPUTF8"]
        if self.auth_enabled:
            found.append("AUTH LOGIN PLAIN")  # RFC 4954; the lab has no TLS, so no STARTTLS
        return found + ["ENHANCEDSTATUSCODES", "HELP"]  # RFC 2034

    def authenticate(self, login: str, password: str) -> str | None:
        """The account address if the password is right (where AUTH is enabled: a
        student's session may ask on any service, here or from the grader's sandbox)."""
        if not self.auth_enabled:
            return None
        account = self.host.accounts.authenticate(login, password)
        return account.address if account else None

    def login(self, txn: Transaction, login: str, password: str) -> tuple[str | None, float]:
        """AUTH as labkit's front ends do it: (the account address, 0), or (None, the
        seconds the 535 must wait: the client address's login penalty, see
        :class:`labkit.accounts.LoginPenalty`)."""
        address = self.authenticate(login, password)
        return address, self.host.accounts.penalty.outcome(txn.peer, ok=address is not None)

    def vrfy(self, address: str) -> str:
        """RFC 5321 §3.5.3: a server may decline to say; most do, so users stay private."""
        if has_control(address):
            return replies.BAD_ADDRESS_CONTROL.format(address.encode("unicode_escape").decode())
        return replies.CANNOT_VRFY

    # -- HELO/EHLO -----------------------------------------------------------------
    def hello(self, txn: Transaction, name: str, *, extended: bool) -> str | None:
        """The client's name (RFC 5321 §4.1.4: HELO/EHLO may come again; it resets the
        transaction), or the reply refusing it: a domain or address literal has no control
        character (§4.1.1.1), and the name goes into the Received stamp."""
        if has_control(name):
            return replies.BAD_HELLO_CONTROL.format(name.encode("unicode_escape").decode())
        txn.reset()
        txn.helo, txn.extended = name, extended
        return None

    # -- MAIL ----------------------------------------------------------------------
    def mail(self, txn: Transaction, address: str, params: list[str]) -> str:
        """The sender (``""`` for the null reverse-path ``<>``); sets ``txn.mail_from``."""
        if has_control(address):
            return replies.BAD_SENDER_CONTROL.format(address.encode("unicode_escape").decode())
        if address and "@" not in address:
            return replies.BAD_SENDER_SYNTAX.format(address)
        if self.role == "submission" and not self.may_relay(txn):
            return replies.AUTH_REQUIRED
        if txn.login and address.lower() != txn.login.lower():
            return replies.SENDER_NOT_OWNED.format(address, txn.login)
        txn.mail_from = address
        txn.smtp_utf8 = "SMTPUTF8" in (p.upper() for p in params)
        return replies.SENDER_OK

    # -- RCPT ----------------------------------------------------------------------
    def rcpt(self, txn: Transaction, address: str) -> str:
        """One recipient, from a worker thread; adds it to ``txn`` when accepted."""
        return self._rcpt(txn, address, self.host.part("route"))

    def _rcpt(self, txn: Transaction, address: str, route: tuple[Any, bool]) -> str:
        """:meth:`rcpt` with the ``route`` part (implementation, is it a student's?)
        its caller has looked up."""
        request = self._rcpt_request(txn, address)
        if isinstance(request, str):
            return request
        try:
            decision = self.host.call("route", request, part=route)
        except SeamError as error:
            return replies.LOCAL_ERROR.format(f"route failed ({error.failure})")
        return self._rcpt_apply(txn, address, decision)

    async def arcpt(self, txn: Transaction, address: str) -> str:
        """:meth:`rcpt` for the event loop: labkit's own route is pure and quick, so it
        runs right here; a student's runs in a worker thread."""
        route = self.host.part("route")
        if route[1]:
            return await self.boundary.in_thread(self._rcpt, txn, address, route)
        return self._rcpt(txn, address, route)

    def _rcpt_request(self, txn: Transaction, address: str) -> RouteRequest | str:
        """The checks before routing; a reply string if one fails."""
        if has_control(address):
            return replies.BAD_RECIPIENT_CONTROL.format(address.encode("unicode_escape").decode())
        if "@" not in address or not address.rpartition("@")[0] or not domain_of(address):
            return replies.BAD_RECIPIENT_SYNTAX.format(address)
        if len(txn.recipients) >= MAX_RECIPIENTS:
            return replies.TOO_MANY_RECIPIENTS.format(MAX_RECIPIENTS)
        behaviour = self.host.behaviour
        if behaviour == "refuse":
            return replies.REFUSED.format(address)
        if behaviour == "greylist" and not self.host.greylist_passed(txn.peer, txn.mail_from or "", address):
            return replies.GREYLISTED.format(address)
        return RouteRequest(address, domain_of(address), self.host.domains, self.host.mailbox_addresses,
                            self.role, txn.login, txn.trusted)

    def _rcpt_apply(self, txn: Transaction, address: str, decision: Route) -> str:
        if isinstance(decision, Refuse):
            return decision.reply
        if isinstance(decision, Local):
            txn.local[address] = decision.mailbox
        txn.recipients.append(address)
        assert isinstance(decision, (Local, Relay))
        return replies.RECIPIENT_OK

    # -- DATA ----------------------------------------------------------------------
    def data(self, txn: Transaction, message: bytes) -> str:
        """The message after DATA (dot-unstuffed), from a worker thread: stamped,
        durable, then ``250 … queued as ID``. Resets the transaction either way."""
        return self._data(txn, message, self.host.part("received_header"))

    def _data(self, txn: Transaction, message: bytes, stamper: tuple[Any, bool]) -> str:
        """:meth:`data` with the ``received_header`` part its caller has looked up."""
        try:
            prepared = self._prepare(txn, message, stamper)
            if isinstance(prepared, str):
                return prepared
            begun, stage = prepared
            return self._finish(txn, begun, self.host.context.committer.submit(stage))
        finally:
            txn.reset()

    async def adata(self, txn: Transaction, message: bytes) -> str:
        """:meth:`data` for the event loop; the loop never blocks on the disk (the
        committer thread writes) nor on a student's ``received_header``."""
        stamper = self.host.part("received_header")
        if stamper[1]:
            return await self.boundary.in_thread(self._data, txn, message, stamper)
        try:
            prepared = self._prepare(txn, message, stamper)
            if isinstance(prepared, str):
                return prepared
            begun, stage = prepared
            written = self.host.context.committer.asubmit(stage)
            try:
                await written
            except OSError:
                pass  # _finish says so
            return self._finish(txn, begun, written)
        finally:
            txn.reset()

    def _prepare(self, txn: Transaction, message: bytes, stamper: tuple[Any, bool]) -> tuple[_Begun, Stage] | str:
        """Check, stamp (with ``stamper``, the ``received_header`` part) and make the
        stage that writes the spool file, for the committer."""
        begun = self._begin(txn, message)
        if isinstance(begun, str):
            return begun
        try:
            stamp = self.host.call("received_header", begun.hop, part=stamper)
        except SeamError as error:
            return replies.LOCAL_ERROR.format(f"received_header failed ({error.failure})")
        return begun, self._commit(begun, stamp)

    def _begin(self, txn: Transaction, message: bytes) -> _Begun | str:
        if not txn.recipients:
            return replies.NEED_RCPT
        message = crlf(message)
        hops = count_received(message)
        if hops >= self.host.mta.max_received:
            return replies.TOO_MANY_HOPS.format(hops, self.host.mta.max_received)
        if len(message) > self.host.mta.max_message_size:
            return replies.MESSAGE_TOO_BIG.format(self.host.mta.max_message_size)
        queue_id = self.host.spool.new_queue_id()
        protocol = ("UTF8SMTP" if txn.smtp_utf8 else "ESMTP" if txn.extended else "SMTP") + ("A" if txn.login else "")
        hop = HopInfo(helo=txn.helo or "unknown", peer_address=txn.peer,
                      peer_name=self.host.context.names.get(txn.peer, ""), by=self.hostname, protocol=protocol,
                      queue_id=queue_id, recipients=tuple(txn.recipients), timestamp=time.time())
        entry = QueueEntry(queue_id, txn.mail_from or "", list(txn.recipients))
        return _Begun(hop, entry, message, dict(txn.local))

    def _commit(self, begun: _Begun, stamp: str) -> Stage:
        """The stage that writes the stamped message's spool file."""
        begun.stamped = stamp.encode("utf-8") + b"\r\n" + begun.message
        return self.host.queue.accept(begun.entry, begun.stamped, begun.local)

    def _finish(self, txn: Transaction, begun: _Begun, future: Waiter) -> str:
        """The 250 once the spool file is durable; delivery starts after it."""
        try:
            queued = future.result()
        except OSError as error:
            return replies.SPOOL_FAILED.format(error.strerror or error)
        host = self.host
        host.queue.accepted(queued, begun.stamped)
        host.context.receipts.accepted(txn.client, begun.entry.recipients, begun.entry.queue_id)
        return replies.QUEUED.format(begun.entry.queue_id)


