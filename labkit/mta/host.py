"""One mail host of the lab world: its SMTP, submission, POP3 and IMAP services, its
users' Maildirs, and its queue."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from pathlib import Path
from typing import Any

from .. import maildir
from ..accounts import Account, Accounts, LoginPenalty
from ..config import BEHAVIOURS, AuthConfig, HostConfig, MTAConfig
from ..context import LabContext
from ..net import SERVICE_PORTS, Endpoint
from ..seams import SEAMS
from ..serve import SessionPart, SessionServer, failure_line, serve_session
from .delivery import DeliveryQueue
from .server import serve_smtp
from .spool import QueueEntry, Spool

SERVICES = ("smtp", "submission", "pop3", "imap")


class MailHost:
    def __init__(self, config: HostConfig, mta: MTAConfig, context: LabContext, state_dir: Path,
                 seed: str | None = None, auth: AuthConfig = AuthConfig()) -> None:
        self.config, self.mta, self.context = config, mta, context
        self.name = config.name
        self.addresses = config.addresses
        self.address = config.address
        self.domains = frozenset(config.domains)
        self.trusted_networks = [ipaddress.ip_network(n) for n in config.trusted_networks]
        self.accounts = Accounts(
            [
                Account(f"{user}@{config.domains[0]}", password, state_dir / "mail" / f"{user}@{config.domains[0]}")
                for user, password in config.users.items()
            ],
            LoginPenalty(auth.failure_delay, auth.max_failure_delay),  # shared by SMTP AUTH, POP3 and IMAP
        )
        self.spool = Spool(state_dir / "spool" / self.name, seed=f"{seed}/{self.name}" if seed else None)
        self.queue = DeliveryQueue(self)
        self.services: dict[str, Endpoint] = {}
        self._servers: list[SessionServer] = []
        self._behaviour = config.behaviour
        self._greylist: set[tuple[str, str, str]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        # RFC 5321 §4.5.1: postmaster exists in every domain we receive for.
        self.mailbox_addresses = frozenset(
            f"{local}@{domain}" for domain in self.domains
            for local in [*(a.local_part.lower() for a in self.accounts), "postmaster"])

    # -- routing facts ---------------------------------------------------------------
    def is_local(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self.domains

    def mailbox_for(self, address: str) -> Account | None:
        """The account that receives mail for ``address`` on this host, if any.
        ``postmaster`` always exists (RFC 5321 §4.5.1): it goes to the first user."""
        local, _, domain = address.rpartition("@")
        if not self.is_local(domain):
            return None
        account = self.accounts.find(local)
        if account is None and local.lower() == "postmaster":
            account = next(iter(self.accounts), None)
        return account

    def part(self, seam: str) -> tuple[Any, bool]:
        """``(implementation, is it a student's?)`` of ``seam`` on this host."""
        return self.context.seams.part(seam, self.name)

    def call(self, seam: str, *args: Any, part: tuple[Any, bool] | None = None, **kwargs: Any) -> Any:
        """Call this host's ``seam`` (or the ``part`` already looked up) from a plain
        thread, the one way the world calls a part (:meth:`SeamSpec.call_part`)."""
        return SEAMS[seam].call_part(self.context.boundary, self.name, part or self.part(seam), *args, **kwargs)

    async def acall(self, seam: str, *args: Any, part: tuple[Any, bool] | None = None, **kwargs: Any) -> Any:
        """:meth:`call` from the event loop."""
        return await SEAMS[seam].acall_part(self.context.boundary, self.name, part or self.part(seam), *args,
                                            **kwargs)

    def call_soon(self, fn, *args) -> None:
        """Run ``fn(*args)`` on this host's event loop, from any thread."""
        assert self._loop is not None, "the host has not started"
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    # -- misbehaviour, for the retry and bounce lessons --------------------------------
    def greylist_passed(self, peer: str, mail_from: str, recipient: str) -> bool:
        """RFC 6647: the first try of a (client, sender, recipient) triplet is deferred."""
        triplet = (peer, mail_from, recipient.lower())
        if triplet in self._greylist:
            return True
        self._greylist.add(triplet)
        return False

    @property
    def behaviour(self) -> str:
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: str) -> None:
        if value not in BEHAVIOURS:
            raise ValueError(f"behaviour {value!r} is not one of {', '.join(BEHAVIOURS)}")
        self._behaviour = value
        self._publish_routes()

    @property
    def tarpit_delay(self) -> float:
        return self.mta.tarpit_delay if self._behaviour == "tarpit" else 0.0

    def _publish_routes(self) -> None:
        """Map our virtual addresses to our listeners; a host that is "down" has none,
        so connecting to it is refused as a dead host's would be."""
        for address in self.addresses:
            for service, endpoint in self.services.items():
                if self._behaviour == "down":
                    self.context.addresses.remove(address, SERVICE_PORTS[service])
                else:
                    self.context.addresses.add(address, SERVICE_PORTS[service], endpoint)

    # -- life cycle ----------------------------------------------------------------------
    async def start(self, ports: dict[str, int] | None = None, services: tuple[str, ...] = SERVICES) -> None:
        self._loop = asyncio.get_running_loop()
        ports = ports or {}
        await self.context.boundary.in_thread(self._prepare_maildirs)
        for service in services:
            server = await self._serve(service, ports.get(service, 0))
            self._servers.append(server)
            host, port = server.sockets[0].getsockname()[:2]
            self.services[service] = Endpoint(host, port)
        self._publish_routes()
        await self.queue.start()

    def _prepare_maildirs(self) -> None:
        """Each user's Maildir, made if new, cleared of what a killed run left in tmp/."""
        for account in self.accounts:
            maildir.create(account.maildir)
            maildir.sweep(account.maildir)

    async def _serve(self, service: str, port: int) -> SessionServer:
        if service in ("smtp", "submission"):
            return await serve_smtp(self, service, port=port)
        seam = f"{service}_session"

        def choose():
            impl, student = self.part(seam)
            return (lambda peer: impl(peer, self.accounts, hostname=self.name)), student

        failed = functools.partial(failure_line, _READING_FAILED[service], self.name)
        part = SessionPart(seam, self.name, choose, failed, self.context.boundary, self.context.name_for)
        return await serve_session(part, protocol=service, server_name=self.name, tracer=self.context.tracer,
                                   addresses=self.context.addresses, port=port)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()  # and every live connection, hung sessions too
        for address in self.addresses:
            for service in self.services:
                self.context.addresses.remove(address, SERVICE_PORTS[service])
        await self.queue.stop()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        self._servers.clear()

    async def inject(self, message: bytes, *, mail_from: str, recipients: list[str]) -> str:
        """Queue a message this host writes itself (a bounce); returns its queue id."""
        entry = QueueEntry(self.spool.new_queue_id(), mail_from, list(recipients), arrived=time.time())
        await self.context.committer.asubmit(lambda: (None, self.spool.stage(entry, message)))
        self.note_queued(entry)
        self.queue.enqueue(entry, message=message)
        return entry.queue_id

    def note_queued(self, entry: QueueEntry) -> None:
        self.context.tracer.note(
            "mta", "queued", f"{self.name} queued {entry.queue_id} from <{entry.mail_from}> to "
            + ", ".join(f"<{r}>" for r in entry.recipients),
            server=self.name, queue_id=entry.queue_id, mail_from=entry.mail_from, recipients=entry.recipients,
        )


# What a careful server says when its session broke (then it closes the connection);
# see labkit.serve.failure_line, and labkit.smtp.replies.SESSION_FAILED for SMTP.
_READING_FAILED = {
    # RFC 2449 §8.1.2: SYS/TEMP, a problem on the server's side that may go away
    "pop3": "-ERR [SYS/TEMP] {host}: internal error in the POP3 session ({failure})",
    # RFC 5530 §3: SERVERBUG, the server encountered a bug in itself
    "imap": "* BYE [SERVERBUG] {host}: internal error in the IMAP session ({failure})",
}
