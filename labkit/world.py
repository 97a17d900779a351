"""The lab world: a complete mail internet on 127.0.0.1, from a topology file.

    from labkit.world import World

    with World() as world:                      # the lecture's world, ephemeral ports
        world.use(resolve_mx=my_resolve_mx)     # swap in a student's part (one line)
        world.send("albert@awesome.com", ["betty@brilliant.com"], b"Subject: Hi\\r\\n\\r\\nHello")
        world.wait_for_delivery("betty@brilliant.com")

:class:`AsyncWorld` is the same for asyncio code (the methods that wait are coroutines
there). A running world writes ``STATE_DIR/world.json`` (see :meth:`AsyncWorld.info` and
:mod:`labkit.state`) and sets ``LABKIT_STATE_DIR`` in its process's environment, so
other programs (labkit-sendmail, a student's sendmail, mutt, a TA's script) find it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from .accounts import Account
from .aio import BackgroundLoop
from .boundary import DEFAULT_DEADLINE
from .config import WorldConfig, load_config
from .context import LabContext
from .control import ControlServer, socket_path
from .dns.server import DNSServer, Fault
from .machine import Machine
from .maildir import write_durably
from .mta.host import SERVICES, MailHost
from .seams import Seams
from .smtp.reply import SendResult
from .state import STATE_FILE
from .trace import TraceEvent, Tracer, delivered_to

try:  # POSIX; elsewhere a world's state dir is not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STATE_DIR_VARIABLE = "LABKIT_STATE_DIR"


class WorldBusy(RuntimeError):
    """Another world already runs in this state directory."""


class AsyncWorld:
    """The lab world for asyncio code: ``async with AsyncWorld() as world: ...``."""

    def __init__(
        self,
        config: WorldConfig | Path | str | None = None,
        *,
        state_dir: Path | str | None = None,
        base_port: int | None = None,
        seams: Seams | None = None,
        tracer: Tracer | None = None,
        deadline: float = DEFAULT_DEADLINE,
        seed: str | None = None,
        control: bool = True,
    ) -> None:
        """``deadline``: seconds a student's part may take per call before the world
        gives up on it (the message stays queued, the client gets a 4xx). ``seed``:
        the same queue ids in every run (a lab graded by running it again).
        ``control=False``: no control socket (a check's or a grader's world, which no
        shell and no notebook beside it may steer)."""
        self.config = config if isinstance(config, WorldConfig) else load_config(config)
        self._own_state_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="labkit-world-"))
        self.base_port = base_port
        self.context = LabContext(tracer=tracer or Tracer(), seams=seams or Seams(), deadline=deadline)
        self.context.names.update({a: h.name for h in self.config.hosts for a in h.addresses})
        self.dns = DNSServer.from_directory(self.config.zones_dir, name="ns.lab", tracer=self.context.tracer,
                                            peer_name=self.context.peer_name)
        self.hosts: dict[str, MailHost] = {
            h.name: MailHost(h, self.config.mta, self.context, self.state_dir, seed, self.config.auth)
            for h in self.config.hosts
        }
        self.control = ControlServer(self)
        self._controlled = control
        self.web: Any = None  # the lecture page, once serve_web() has started it
        self._lock_fd: int | None = None
        self._previous_state_variable: str | None = None
        self.machines: dict[str, Machine] = {}
        self.started = False

    @property
    def tracer(self) -> Tracer:
        return self.context.tracer

    @property
    def seams(self) -> Seams:
        return self.context.seams

    # -- life cycle ----------------------------------------------------------------------
    def _ports(self, index: int) -> dict[str, int]:
        """Fixed ports on request: DNS on BASE, host i's services on BASE+10(i+1)+k."""
        if self.base_port is None:
            return {}
        return {service: self.base_port + 10 * (index + 1) + k for k, service in enumerate(SERVICES)}

    def _take_lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return
        fd = os.open(self.state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise WorldBusy(f"a lab world is already running in {self.state_dir}") from None
            raise
        self._lock_fd = fd

    async def start(self) -> "AsyncWorld":
        self._take_lock()
        try:
            dns_port = self.base_port or 0
            self.context.dns = await self.dns.start("127.0.0.1", dns_port)
            self.context.addresses.add(self.config.dns_address, 53, self.context.dns)
            for index, host in enumerate(self.hosts.values()):
                await host.start(self._ports(index))
            if self._controlled:
                await self.control.start(socket_path(self.state_dir))
        except BaseException:
            await self.stop()
            raise
        self.started = True
        await self._publish_info()
        self._previous_state_variable = os.environ.get(STATE_DIR_VARIABLE)
        os.environ[STATE_DIR_VARIABLE] = str(self.state_dir)  # how a student's sendmail finds us
        return self

    async def _publish_info(self) -> None:
        """Write world.json, for other programs (see :meth:`info`)."""
        await self.context.boundary.in_thread(write_durably, self.state_dir / STATE_FILE,
                                              json.dumps(self.info(), indent=1).encode())

    async def serve_web(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> str:
        """Serve the lecture page (:mod:`labkit.lecture`) on ``host:port``; returns its
        URL, which world.json and :meth:`info` then name. Any address but loopback needs
        a ``token`` (it is part of the URL)."""
        from .lecture.server import LecturePage

        if self.web is not None:
            raise RuntimeError(f"the lecture page is already served at {self.web.url}")
        page = LecturePage(self, token=token)
        await page.start(host, port)
        self.web = page
        await self._publish_info()
        return page.url

    async def stop(self) -> None:
        """Stop every server; returns within a couple of seconds even while a
        student's part hangs (its thread is abandoned: a daemon, it cannot keep the
        process alive)."""
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        if self.web is not None:
            await self.web.stop()
            self.web = None
        await self.control.stop()
        for machine in self.machines.values():
            await machine.stop()
        if self.started and os.environ.get(STATE_DIR_VARIABLE) == str(self.state_dir):
            if self._previous_state_variable is None:
                os.environ.pop(STATE_DIR_VARIABLE, None)
            else:
                os.environ[STATE_DIR_VARIABLE] = self._previous_state_variable
        await asyncio.gather(*(host.stop() for host in self.hosts.values()))
        await self.dns.stop()
        self.context.boundary.shutdown()
        self.context.committer.close()
        self.context.deliverer.close()
        self.started = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    async def __aenter__(self) -> "AsyncWorld":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what runs where -----------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The world's contract for other programs (also ``world.json``, and the line
        `labkit world --json` prints)."""
        dns = self.context.dns
        return {
            "dns": {"host": dns.host, "port": dns.port} if dns else None,
            "hosts": {
                name: {
                    "address": host.address,
                    "addresses": list(host.addresses),
                    "domains": sorted(host.domains),
                    "services": {s: {"host": e.host, "port": e.port} for s, e in host.services.items()},
                }
                for name, host in self.hosts.items()
            },
            "mailboxes": {
                account.address: {"password": account.password, "maildir": str(account.maildir), "host": name}
                for name, host in self.hosts.items()
                for account in host.accounts
            },
            "state_dir": str(self.state_dir),
            "control": {"socket": str(self.control.path)} if self.control.path else None,
            **({"web": {"url": self.web.url}} if self.web is not None else {}),
        }

    def host(self, name_or_domain: str) -> MailHost:
        """A mail host by name (``smtp.brilliant.com``) or by a domain it serves."""
        key = name_or_domain.lower()
        if key in self.hosts:
            return self.hosts[key]
        for host in self.hosts.values():
            if host.is_local(key):
                return host
        raise KeyError(f"no mail host named or serving {name_or_domain!r}; hosts: {', '.join(self.hosts)}")

    def mailbox(self, address: str) -> Account:
        """The account (password, Maildir) of a world user."""
        host = self.host(address.rpartition("@")[2])
        account = host.mailbox_for(address)
        if account is None:
            raise KeyError(f"no mailbox {address!r} on {host.name}")
        return account

    def use(self, host: str | None = None, **parts: Any) -> None:
        """Swap seams: ``world.use(resolve_mx=fn)`` everywhere, ``world.use(host=
        "smtp.brilliant.com", smtp_session=MySession)`` on one host; ``None`` restores
        labkit's own. A part that cannot fit raises TypeError here, at once."""
        where = self.host(host).name if host is not None else None
        self.seams.use(where, **parts)
        for name, impl in parts.items():
            yours = self.seams.is_student(name, impl)
            whose = "your" if yours else "labkit's own"
            self.tracer.note("seam", "seam-use", f"{where or 'every host'} now runs {whose} {name}",
                             server=where or "*", host=where or "*", part=name, seam=name if yours else "")

    async def machine(self, address: str) -> Machine:
        """A machine of the lab network at ``address`` (Albert's PC: 1.2.3.100) for
        programs that are not labkit's: run them with its ``env`` and their connections
        come from ``address`` (see :mod:`labkit.machine`). One per address."""
        if address not in self.machines:
            self.machines[address] = await Machine(self, address).start()
        return self.machines[address]

    def set_behaviour(self, host: str, behaviour: str) -> None:
        """Make a host misbehave (refuse, greylist, tarpit, drop, down) or behave (normal).
        (AsyncWorld: call it on the world's loop.)"""
        mail_host = self.host(host)
        mail_host.behaviour = behaviour
        self.tracer.note("mta", "behaviour", f"{mail_host.name} now behaves: {behaviour}", server=mail_host.name,
                         behaviour=behaviour)

    def set_dns_fault(self, name: str, fault: Fault | None) -> None:
        """Answer DNS queries for ``name`` with SERVFAIL (``"servfail"``), or not at all
        (``"timeout"``); ``None`` heals it (see DNSServer.inject_fault)."""
        self.dns.inject_fault(name, fault)
        self.tracer.note("dns", "fault", f"DNS: {name} " + (f"now gets {fault}" if fault else "healed"),
                         server=self.dns.name, name=name, fault=fault or "")

    def retry_now(self) -> None:
        """Try every deferred message now, on every host (like ``postqueue -f``)."""
        for host in self.hosts.values():
            host.queue.retry_now()

    def resolver(self):
        """A dnspython resolver pointed at the lab DNS server."""
        return self.context.resolver()

    def connect(self, address: str, port: int, *, timeout: float = 10.0, source: str = ""):
        """A blocking socket to a virtual address, e.g. ``world.connect("1.2.3.4", 587)``."""
        return self.context.addresses.connect(address, port, timeout=timeout, source=source)

    def messages(self, address: str) -> list[bytes]:
        """The messages in a user's Maildir INBOX (new and cur), oldest first."""
        maildir = self.mailbox(address).maildir
        files = [p for sub in ("new", "cur") for p in (maildir / sub).iterdir()]
        return [p.read_bytes() for p in sorted(files, key=lambda p: (p.stat().st_mtime, p.name))]

    def muttrc(self, address: str, *, maildir: bool = False, machine: Machine | None = None) -> str:
        """A muttrc for a world user; it sends with the ``sendmail`` seam (labkit-sendmail
        unless a student's program is plugged in: ``world.use(sendmail="./my-sendmail")``),
        run on ``machine`` if given (its doors: see :meth:`machine`)."""
        from .muttrc import muttrc

        program, student = self.seams.part("sendmail")
        info = machine.info() if machine is not None else self.info()
        return muttrc(info, address, maildir=maildir, sendmail=str(program) if student else None)

    def reader(self, address: str, protocol: str = "imap"):
        """A logged-in IMAP (or POP3) reader for a world user: ``list()``, ``show(n)``."""
        from .reader import IMAPReader, POP3Reader

        account = self.mailbox(address)
        endpoint = self.host(address.rpartition("@")[2]).services[protocol]
        if protocol == "pop3":
            return POP3Reader(endpoint.host, endpoint.port, account.address, account.password)
        return IMAPReader(endpoint.host, endpoint.port, account.address, account.password)

    def submit(self, mail_from: str, rcpt_to: list[str], message: bytes, *, auth: bool = True, port: int = 587,
               client: Callable[..., SendResult] | None = None, source: str = "") -> SendResult:
        """:meth:`send`, blocking: for a thread that is not the world's loop."""
        host = self.host(mail_from.rpartition("@")[2])
        credentials = None
        if auth:
            account = self.mailbox(mail_from)
            credentials = (account.address, account.password)
        if client is None:
            from .smtp.send import send_mail as client
        with self.connect(host.address, port, source=source) as sock:
            return client(sock, helo="client.lab", mail_from=mail_from, rcpt_to=rcpt_to, message=message,
                          auth=credentials)

    async def send(self, mail_from: str, rcpt_to: list[str], message: bytes, **options: Any) -> SendResult:
        """Submit a message as the sender's mail client would (see :meth:`World.send`)."""
        return await self.context.boundary.in_thread(lambda: self.submit(mail_from, rcpt_to, message, **options))

    async def wait_for(self, predicate: Callable[[TraceEvent], bool], timeout: float = 10.0,
                       since: float | None = None, count: int = 1) -> TraceEvent:
        """Wait until ``count`` trace events match ``predicate`` (see Tracer.wait_for)."""
        return await self.context.boundary.in_thread(
            lambda: self.tracer.wait_for(predicate, timeout, since=since, count=count))

    async def wait_for_delivery(self, recipient: str, timeout: float = 10.0, since: float | None = None,
                                count: int = 1) -> TraceEvent:
        """Wait until ``count`` messages for ``recipient`` were delivered to its Maildir."""
        return await self.wait_for(delivered_to(recipient), timeout, since, count)


class World:
    """The lab world for plain (and notebook) code; runs in a background thread."""

    def __init__(self, config: WorldConfig | Path | str | None = None, **kwargs: Any) -> None:
        self._loop = BackgroundLoop("labkit-world")
        try:
            self.aworld = AsyncWorld(config, **kwargs)
        except BaseException:
            self._loop.close()
            raise

    def start(self) -> "World":
        try:
            self._loop.run(self.aworld.start())
        except BaseException:
            self._loop.close()
            raise
        return self

    def stop(self) -> None:
        try:
            self._loop.run(self.aworld.stop())
        finally:
            self._loop.close()

    def __enter__(self) -> "World":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro, timeout: float | None = 30.0):
        """Run a coroutine on the world's loop (for servers' async APIs)."""
        return self._loop.run(coro, timeout)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the world's loop thread (thread-safe)."""
        self._loop.call(fn, *args)

    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()

        return self._loop.run(call())

    # -- the same methods as AsyncWorld -----------------------------------------------------
    state_dir = property(lambda self: self.aworld.state_dir)
    tracer = property(lambda self: self.aworld.tracer)
    seams = property(lambda self: self.aworld.seams)
    hosts = property(lambda self: self.aworld.hosts)
    dns = property(lambda self: self.aworld.dns)
    context = property(lambda self: self.aworld.context)
    config = property(lambda self: self.aworld.config)

    def set_behaviour(self, host: str, behaviour: str) -> None:
        """Make a host misbehave (refuse, greylist, tarpit, drop, down) or behave (normal)."""
        self._on_loop(lambda: self.aworld.set_behaviour(host, behaviour))

    def serve_web(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> str:
        """Serve the lecture page; returns its URL (see AsyncWorld.serve_web)."""
        return self._loop.run(self.aworld.serve_web(host, port, token))

    def retry_now(self) -> None:
        """Try every deferred message now, on every host (like ``postqueue -f``)."""
        self._on_loop(self.aworld.retry_now)

    def machine(self, address: str) -> Machine:
        """A machine of the lab network for programs that are not labkit's (see
        :meth:`AsyncWorld.machine`)."""
        return self._loop.run(self.aworld.machine(address))

    def send(self, mail_from: str, rcpt_to: list[str], message: bytes, *, auth: bool = True, port: int = 587,
             client: Callable[..., SendResult] | None = None, source: str = "") -> SendResult:
        """Submit a message as a user's mail client would: to the sender's own host's
        submission service, authenticated with the sender's password, with labkit's
        own SMTP client (``client=``: another ``send_mail``-shaped function, such as a
        student's, called here directly)."""
        return self.aworld.submit(mail_from, rcpt_to, message, auth=auth, port=port, client=client, source=source)

    def wait_for(
        self, predicate: Callable[[TraceEvent], bool], timeout: float = 10.0, since: float | None = None, count: int = 1
    ) -> TraceEvent:
        """Block until ``count`` trace events match ``predicate`` (see Tracer.wait_for)."""
        return self.tracer.wait_for(predicate, timeout, since=since, count=count)

    def wait_for_delivery(
        self, recipient: str, timeout: float = 10.0, since: float | None = None, count: int = 1
    ) -> TraceEvent:
        """Block until ``count`` messages for ``recipient`` were delivered to its Maildir."""
        return self.tracer.wait_for(delivered_to(recipient), timeout, since=since, count=count)


def _same_as_async(name: str) -> Callable[..., Any]:
    """A World method that is AsyncWorld's own (one that needs no loop)."""
    def method(self: World, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.aworld, name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(AsyncWorld, name).__doc__
    return method


for _name in ("info", "host", "mailbox", "use", "resolver", "connect", "messages", "reader", "muttrc", "set_dns_fault"):
    setattr(World, _name, _same_as_async(_name))
