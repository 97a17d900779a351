"""The MTA's SMTP front end: aiosmtpd's protocol with the lab's policy hooks.

aiosmtpd speaks SMTP; :class:`Policy` decides (aiosmtpd "handler" hooks that return
reply strings): who may relay, which recipients exist, loop detection, the Received
stamp, and queueing before the 250. :class:`TracedSMTP` turns every line into a trace
event and can misbehave on demand (tarpit) for the retry lessons.

Two roles per mail host (RFC 6409): ``smtp`` (port 25: mail *for* this host's domains,
never relayed for strangers) and ``submission`` (port 587: this host's users, after
AUTH, or clients in its trusted networks, may send anywhere).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import TYPE_CHECKING

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ..smtp import replies
from ..trace import LineTracer, new_session_id
from .received import HopInfo, count_received
from .spool import QueueEntry

if TYPE_CHECKING:
    from .host import MailHost

MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: at least 100 must be accepted

# aiosmtpd 1.4 itself sets the deprecated Session.login_data on every AUTH and warns
# about it; the warning is about aiosmtpd's own code, so keep it out of students' view.
logging.getLogger("mail.log").addFilter(lambda record: "login_data is deprecated" not in record.getMessage())


def crlf(data: bytes) -> bytes:
    """Normalise line endings to CRLF (RFC 5322 §2.1: bare CR or LF are not allowed)."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


# aiosmtpd's own replies that the lab words differently: RFC 5321 §4.2.3 wants 501
# for a syntax error in a command's argument, such as an unparsable address.
_REWORDED = {"553 5.1.3 Error: malformed address": replies.BAD_ADDRESS_SYNTAX}


class TracedSMTP(SMTP):
    """aiosmtpd's SMTP with every line traced, and an optional delay per reply."""

    def __init__(self, handler: "Policy", **kwargs) -> None:
        super().__init__(handler, **kwargs)
        self.policy = handler
        self.lines: LineTracer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        host = self.policy.host
        peer = host.context.addresses.peer_address(transport.get_extra_info("peername"))
        self.lines = LineTracer(
            host.context.tracer, "smtp", host.context.name_for(peer), host.name, new_session_id("smtp")
        )

    def data_received(self, data: bytes) -> None:
        if self.lines:
            self.lines.feed("C", data)
        super().data_received(data)

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = _REWORDED.get(status, status)
        delay = self.policy.host.tarpit_delay
        if delay:
            await asyncio.sleep(delay)
        if self.lines:
            self.lines.line("S", status if isinstance(status, str) else status.decode("utf-8", "replace"))
        await super().push(status)


class Policy:
    """aiosmtpd handler hooks for one service (``smtp`` or ``submission``) of a host."""

    def __init__(self, host: "MailHost", role: str) -> None:
        self.host = host
        self.role = role
        self._greylist: set[tuple[str, str, str]] = set()

    # -- who is the client? ------------------------------------------------------------
    def _peer(self, session: Session) -> str:
        return self.host.context.addresses.peer_address(session.peer)

    def _trusted(self, session: Session) -> bool:
        try:
            address = ipaddress.ip_address(session.peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        return any(address in net for net in self.host.trusted_networks)

    def may_relay(self, session: Session) -> bool:
        return self.role == "submission" and bool(session.authenticated or self._trusted(session))

    # -- hooks ---------------------------------------------------------------------------
    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]):
        session.host_name = hostname
        # RFC 2034: we use enhanced status codes in our replies; say so.
        return responses[:-1] + ["250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]):
        # aiosmtpd takes an empty mail_from for "no MAIL yet", so the null
        # reverse-path of a bounce (RFC 5321 §4.5.5) stays "<>" until DATA.
        if address != "<>" and "@" not in address:
            return replies.BAD_SENDER_SYNTAX.format(address)
        if self.role == "submission" and not self.may_relay(session):
            return replies.AUTH_REQUIRED
        if session.authenticated and session.auth_data:
            login = session.auth_data
            account = self.host.accounts.find(login)
            if account is None or account.address.lower() != address.lower():
                return replies.SENDER_NOT_OWNED.format(address, login)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return replies.SENDER_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]):
        if "@" not in address or not address.rpartition("@")[0] or not domain_of(address):
            return replies.BAD_RECIPIENT_SYNTAX.format(address)
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return replies.TOO_MANY_RECIPIENTS.format(MAX_RECIPIENTS)
        behaviour = self.host.behaviour
        if behaviour == "refuse":
            return replies.REFUSED.format(address)
        if behaviour == "greylist":
            triplet = (self._peer(session), envelope.mail_from or "", address.lower())
            if triplet not in self._greylist:  # RFC 6647: first try of a triplet is deferred
                self._greylist.add(triplet)
                return replies.GREYLISTED.format(address)
        if self.host.is_local(domain_of(address)):
            if self.host.mailbox_for(address) is None:
                return replies.UNKNOWN_USER.format(address)
        elif not self.may_relay(session):
            return replies.RELAY_DENIED.format(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope):
        host = self.host
        if host.behaviour == "drop":  # the worst case for a client: no reply at all
            server.transport.close()
            return replies.SHUTTING_DOWN.format(host.name)
        content = envelope.original_content or b""
        message = crlf(content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape"))
        hops = count_received(message)
        if hops >= host.mta.max_received:
            return replies.TOO_MANY_HOPS.format(hops, host.mta.max_received)
        queue_id = host.spool.new_queue_id()
        peer = self._peer(session)
        protocol = ("UTF8SMTP" if envelope.smtp_utf8 else "ESMTP" if session.extended_smtp else "SMTP") + (
            "A" if session.authenticated else ""
        )
        hop = HopInfo(
            helo=session.host_name or "unknown",
            peer_address=peer,
            peer_name=host.context.names.get(peer, ""),
            by=host.name,
            protocol=protocol,
            queue_id=queue_id,
            recipients=tuple(envelope.rcpt_tos),
            timestamp=time.time(),
        )
        try:
            stamp = host.context.seams.received_header(hop)
        except Exception as error:  # a student's seam that crashes must not lose mail silently
            return replies.SPOOL_FAILED.format(f"received_header failed: {error!r}")
        mail_from = "" if envelope.mail_from == "<>" else envelope.mail_from or ""
        entry = QueueEntry(queue_id, mail_from, list(envelope.rcpt_tos))
        stamped = stamp.encode("utf-8") + b"\r\n" + message
        try:
            # Local recipients: into their Maildirs now; the rest: the spool. Either
            # way the message is on disk (fsynced) before we say 250.
            outcomes, queued = await asyncio.wrap_future(
                host.context.committer.submit(host.queue.accept(entry, stamped)))
        except OSError as error:
            return replies.SPOOL_FAILED.format(error.strerror or error)
        for rcpt, outcome in outcomes.items():
            if outcome.state == "delivered":
                host.queue.note(entry, rcpt, "delivered", outcome.detail)
        if queued is not None:
            host.note_queued(queued)
            host.queue.enqueue(queued, message=stamped)
        return replies.QUEUED.format(queue_id)

    # -- AUTH (submission only) ---------------------------------------------------------
    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        account = self.host.accounts.authenticate(login, password)
        if account is None:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=account.address)


async def serve_smtp(host: "MailHost", role: str, bind: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start one SMTP service of ``host``; ``role`` is ``smtp`` or ``submission``."""
    policy = Policy(host, role)
    submission = role == "submission"
    loop = asyncio.get_running_loop()

    def factory() -> TracedSMTP:
        return TracedSMTP(
            policy,
            hostname=host.name,
            ident="ESMTP labkit",
            data_size_limit=host.mta.max_message_size,
            enable_SMTPUTF8=True,  # RFC 6531
            decode_data=False,  # keep bytes: 8BITMIME
            auth_require_tls=not submission,  # the lab has no TLS; AUTH only on submission
            authenticator=policy.authenticate if submission else None,
            timeout=300,  # RFC 5321 §4.5.3.2.7: server timeout at least 5 minutes
            loop=loop,
        )

    return await loop.create_server(factory, bind, port)
