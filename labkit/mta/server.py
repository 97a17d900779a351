"""The MTA's SMTP front ends: aiosmtpd (the default) or a sans-IO ``smtp_session``.

Either way the policy is :class:`labkit.mta.core.MTA`'s. For aiosmtpd, :class:`Hooks`
are its "handler" hooks, translating aiosmtpd's session and envelope into a
:class:`~labkit.mta.core.Transaction`; :class:`TracedSMTP` turns every line into a
trace event and can misbehave on demand (tarpit, drop) for the retry lessons.

The listener picks the front end per connection, so ``world.use(smtp_session=...)``
takes effect for the next client. Two roles per mail host (RFC 6409): ``smtp`` (port
25: mail *for* this host's domains) and ``submission`` (port 587: this host's users,
after AUTH, or clients in its trusted networks, may send anywhere).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from ..aio import heap_sized_reads
from ..serve import SessionPart, SessionServer, failure_line, session_protocol
from ..session import SessionFactory
from ..smtp import replies
from ..smtp.data import DataReader
from ..trace import LineTracer, new_session_id
from .core import MTA, Transaction

if TYPE_CHECKING:
    from .host import MailHost

log = logging.getLogger(__name__)

# aiosmtpd's own replies that the lab words differently: RFC 5321 §4.2.3 wants 501
# for a syntax error in a command's argument, such as an unparsable address.
_REWORDED = {"553 5.1.3 Error: malformed address": replies.BAD_ADDRESS_SYNTAX}
_PATH = re.compile(r"(?i)\s*(FROM|TO)\s*:\s*<")
# A path of plain dot-atoms, <local@domain> (RFC 5321 §4.1.2), then its parameters: what
# nearly every client sends, read without aiosmtpd's full RFC 5322 header parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"\s*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)", re.S)


class TracedSMTP(SMTP):
    """aiosmtpd's SMTP with every line traced, receipts kept, an optional delay, and
    the message after DATA taken in chunks (:class:`labkit.smtp.data.DataReader`), not
    line by line: a 1 MB message is handled once, not ten thousand times."""

    def __init__(self, handler: "Hooks", **kwargs) -> None:
        # aiosmtpd's __init__ looks its handler's hooks up on every connection (dir,
        # getattr, and inspect.signature of handle_EHLO: a third of a connection's
        # protocol); the hooks of one service never change, so they are found once
        # (Hooks.table) and aiosmtpd is shown a handler without any.
        super().__init__(_NO_HOOKS, **kwargs)
        self.event_handler = self.hooks = handler
        self._handle_hooks = handler.table
        self._ehlo_hook_ver = "new"  # handle_EHLO takes the list of responses
        self.lines: LineTracer | None = None
        self.client: tuple = ("", 0)
        self.auth_delay = 0.0  # seconds the next 535 waits (labkit.accounts.LoginPenalty)
        self._deadline = 0.0  # the idle timeout's, on the loop's clock (see _reset_timeout)
        self._message: DataReader | None = None  # while DATA is read: the message's reader (_take)
        self._message_read: asyncio.Future | None = None  # ... done at the end of the message
        self._continued: list[bytes] = []  # the lines so far of a multiline reply (push)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        heap_sized_reads(transport)
        context = self.hooks.mta.host.context
        self.client = transport.get_extra_info("peername") or ("", 0)
        self.hooks.served.transports.add(transport)
        context.receipts.opened(self.client)
        peer = context.addresses.peer_address(self.client)
        self.lines = LineTracer(context.tracer, "smtp", context.name_for(peer), self.hooks.mta.hostname,
                                new_session_id("smtp"), seam=context.addresses.peer_seam(self.client))

    def connection_lost(self, error: Exception | None) -> None:
        transport = self.transport
        super().connection_lost(error)
        self.hooks.served.transports.discard(transport)
        self.hooks.mta.host.context.receipts.closed(self.client)

    def __dir__(self) -> list[str]:
        """aiosmtpd's __init__ finds its ``smtp_``/``auth_`` methods with dir() and
        getattr on every connection: a fifth of the CPU a message costs. They are the
        class's, found once."""
        return _own_names(type(self), ("smtp_", "auth_"))

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd restarts the idle timer after every command (a cancelled timer and a
        new one each time); here the deadline moves and one timer, when it fires, waits
        on for what is left."""
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        timer = self._timeout_handle
        if timer is None or timer.cancelled() or timer.when() > self._deadline:
            if timer is not None:
                timer.cancel()
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_due)

    def _timeout_due(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_due)
        else:
            self._timeout_cb()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """A plain ``<local@domain>`` as it is; anything else as aiosmtpd parses it."""
        plain = _PLAIN_PATH.match(arg)
        if plain is None or (self.local_part_limit and len(plain[1].rpartition("@")[0]) > self.local_part_limit):
            return super()._getaddr(arg)
        return plain[1], plain[2]

    def data_received(self, data: bytes) -> None:
        if self.lines:
            self.lines.feed("C", data)
        if self._message is None:
            super().data_received(data)  # commands: aiosmtpd's line reader
        else:
            self._take(data)

    def _take(self, data: bytes) -> None:
        """Mail data, straight to the message's reader as it arrives: not copied into
        aiosmtpd's line reader first (which would also stop reading the socket at two
        lines' worth, a 2 KB message included, and start again). What follows the end
        goes back to the line reader: the client's next commands."""
        assert self._message is not None and self._message_read is not None
        rest = self._message.feed(data)
        if rest is None:
            return
        self._message = None
        if not self._message_read.done():
            self._message_read.set_result(None)
        if rest:  # a client that did not wait for our reply (no PIPELINING offered): keep its bytes
            super().data_received(rest)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self._bracketed(arg, "FROM"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self._bracketed(arg, "TO"):
            await super().smtp_RCPT(arg)

    async def _bracketed(self, arg: str | None, keyword: str) -> bool:
        """RFC 5321 §4.1.2: the path is in angle brackets (``MAIL FROM:<a@b>``);
        aiosmtpd, like Postfix by default, would take a bare address too. The lab is
        strict, as its sans-IO session is. Sequence errors still come first."""
        if self.session is None or not self.session.host_name or arg is None or _PATH.match(arg):
            return True
        if keyword == "TO" and not (self.envelope and self.envelope.mail_from):
            return True  # aiosmtpd answers 503 for RCPT before MAIL
        if keyword == "FROM" and self.envelope and self.envelope.mail_from:
            return True  # ... and 503 for a nested MAIL
        head = arg.split(":", 1)[0].strip().upper()
        if head != keyword:
            return True  # aiosmtpd's own 501 syntax reply
        await self.push(f"501 5.5.4 Syntax: {'MAIL FROM' if keyword == 'FROM' else 'RCPT TO'}:<address>"
                        " (RFC 5321 4.1.2: the address goes in angle brackets)")
        return False

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the same replies, reading chunks as they come."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reader = DataReader(self.data_size_limit or 0, self.line_length_limit)
        # What the client sent before the 354 is in the line reader (read() returns it at
        # once: no other bytes can come in between); the rest goes to _take as it comes.
        buffered = len(self._reader._buffer)  # type: ignore[attr-defined]
        early = await self._reader.read(buffered) if buffered else b""
        self._message, self._message_read = reader, self.loop.create_future()
        try:
            if early:
                self._take(early)
            await self._message_read  # aiosmtpd cancels this if the client goes away
        finally:
            self._message = self._message_read = None
        if reader.message is None:
            self._set_post_data_state()
            await self.push("552 Error: Too much mail data" if reader.problem == "too much"
                            else "500 Line too long (see RFC5321 4.5.3.1.6)")
            return
        self.envelope.content = self.envelope.original_content = reader.message
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def smtp_AUTH(self, arg: str) -> None:
        # aiosmtpd answers "538 encryption required" on a service without AUTH; say what
        # is true here, as the sans-IO session does (Postfix: "authentication not enabled").
        if not self.hooks.mta.auth_enabled and self.session is not None and self.session.host_name:
            await self.push(replies.AUTH_DISABLED)
            return
        await super().smtp_AUTH(arg)

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = _REWORDED.get(status, status).encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        if status[3:4] == b"-":  # a multiline reply's line before its last (RFC 5321 §4.2.1):
            self._continued.append(status)  # the whole reply goes in one write, as Postfix
            return  # sends it, not a segment (and a wake-up of the client) a line
        delay = self.hooks.mta.host.tarpit_delay  # per reply
        if self.auth_delay and status.startswith(b"535"):
            delay, self.auth_delay = delay + self.auth_delay, 0.0  # on the loop: no thread waits
        if delay:
            await asyncio.sleep(delay)
        if self._continued:
            status = b"\r\n".join((*self._continued, status))
            self._continued.clear()
        if self.lines:  # as the client's lines: kept as they came while no one watches
            self.lines.feed("S", status + b"\r\n")
        await super().push(status)


class Hooks:
    """aiosmtpd handler hooks for one service of a host: each step asks the MTA core."""

    def __init__(self, mta: MTA, served: SessionServer) -> None:
        self.mta, self.served = mta, served
        # aiosmtpd's table of hooks, by command: what its __init__ would build from dir()
        self.table: dict[str, Any] = {name.removeprefix("handle_"): getattr(self, name)
                                      for name in _own_names(type(self), ("handle_",))}

    def _txn(self, session: Session) -> Transaction:
        txn = getattr(session, "labkit_txn", None)
        if txn is None:
            txn = session.labkit_txn = self.mta.transaction(session.peer)
        txn.login = session.auth_data if session.authenticated and isinstance(session.auth_data, str) else ""
        return txn

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str):
        refused = self.mta.hello(self._txn(session), hostname, extended=False)
        if refused:
            return refused
        session.host_name = hostname
        return f"250 {self.mta.hostname}"

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]):
        refused = self.mta.hello(self._txn(session), hostname, extended=True)
        if refused:
            return [refused]
        session.host_name = hostname
        # RFC 2034: we use enhanced status codes in our replies; say so.
        return responses[:-1] + ["250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]):
        # aiosmtpd takes an empty mail_from for "no MAIL yet", so the null
        # reverse-path of a bounce (RFC 5321 §4.5.5) stays "<>" in its envelope.
        reply = self.mta.mail(self._txn(session), "" if address == "<>" else address, options)
        if reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return reply

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]):
        reply = await self.mta.arcpt(self._txn(session), address)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope):
        self._txn(session).reset()
        return replies.OK

    async def handle_VRFY(self, server: SMTP, session: Session, envelope: Envelope, address: str):
        return self.mta.vrfy(address)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope):
        host = self.mta.host
        if host.behaviour == "drop":  # the worst case for a client: no reply at all
            server.transport.close()
            return replies.SHUTTING_DOWN.format(host.name)
        content = envelope.original_content or b""
        message = content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")
        return await self.mta.adata(self._txn(session), message)

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        address, delay = self.mta.login(self._txn(session), auth_data.login.decode("utf-8", "replace"),
                                        auth_data.password.decode("utf-8", "replace"))
        if address is None:
            server.auth_delay = delay  # its 535 waits (TracedSMTP.push)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=address)


class _NoHooks:
    """The handler aiosmtpd's __init__ sees (TracedSMTP.__init__): nothing to look up."""

    def __dir__(self) -> list[str]:
        return []


_NO_HOOKS = _NoHooks()


@functools.cache
def _own_names(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    """The names of ``cls``'s attributes that start with one of ``prefixes``."""
    return [name for name in dir(cls) if name.startswith(prefixes)]


async def serve_smtp(host: "MailHost", role: str, bind: str = "127.0.0.1", port: int = 0) -> SessionServer:
    """Start one SMTP service of ``host``; ``role`` is ``smtp`` or ``submission``."""
    mta = MTA(host, role)
    served = SessionServer()
    hooks = Hooks(mta, served)
    context = host.context
    auth = mta.auth_enabled
    loop = asyncio.get_running_loop()

    def session_for(impl: Any) -> SessionFactory:
        return lambda peer: impl(peer, mta, hostname=host.name)

    def choose() -> tuple[SessionFactory, bool]:
        impl, student = host.part("smtp_session")
        return session_for(impl), student

    failed = functools.partial(failure_line, replies.SESSION_FAILED, host.name)
    part = SessionPart("smtp_session", host.name, choose, failed, context.boundary, context.name_for,
                       on_open=context.receipts.opened, on_close=context.receipts.closed)
    session_connection = session_protocol(part, protocol="smtp", server_name=host.name, tracer=context.tracer,
                                          addresses=context.addresses, served=served)

    def factory() -> asyncio.Protocol:
        # The seam is read once per connection and that answer serves it: a swap in
        # between (world.use) takes effect for the next client, never half for this one.
        impl, student = host.part("smtp_session")
        if impl is not None:  # a sans-IO session serves this client
            return session_connection((session_for(impl), student))
        return TracedSMTP(
            hooks,
            hostname=host.name,
            ident="ESMTP labkit",
            data_size_limit=host.mta.max_message_size,
            enable_SMTPUTF8=True,  # RFC 6531
            decode_data=False,  # keep bytes: 8BITMIME
            auth_require_tls=not auth,  # the lab has no TLS; AUTH only where enabled (submission)
            authenticator=hooks.authenticate if auth else None,
            timeout=300,  # RFC 5321 §4.5.3.2.7: server timeout at least 5 minutes
            loop=loop,
        )

    served.server = await loop.create_server(factory, bind, port)
    sockname = served.server.sockets[0].getsockname()
    context.receipts.endpoints.add((sockname[0], sockname[1]))
    return served
