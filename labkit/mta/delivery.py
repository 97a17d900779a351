"""Delivery: from the spool to a Maildir or to the next hop, with retries and bounces.

Event-driven, no polling: a message is handed over the moment it is queued; a deferred
message gets a timer for its next attempt (the retry schedule), and a restart reloads the
spool. Each outcome per recipient is one of:

- delivered: into a local Maildir, or accepted (250 after DATA) by the next hop;
- deferred (4xx, connection failures, DNS trouble): tried again later, bounced when
  the message has been queued longer than ``max_queue_time``;
- failed (5xx, NXDOMAIN, null MX): bounced to the sender at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import maildir
from ..dns.mx import NullMXError, PermanentMXError, TemporaryMXError
from ..smtp.client import SMTPError, SMTPPermanentError
from ..commit import Stage, Staged
from .bounce import Failure, make_bounce
from .server import domain_of
from .spool import QueueEntry

if TYPE_CHECKING:
    from .host import MailHost

MAX_PARALLEL = 16  # deliveries in flight per host


@dataclass(frozen=True)
class Outcome:
    state: str  # delivered | deferred | failed
    detail: str  # where it went, or why not
    remote_mta: str = ""


def _delivered(detail: str, remote: str = "") -> Outcome:
    return Outcome("delivered", detail, remote)


def _deferred(detail: str, remote: str = "") -> Outcome:
    return Outcome("deferred", detail, remote)


def _failed(detail: str, remote: str = "") -> Outcome:
    return Outcome("failed", detail, remote)


_FAILED = _failed("not attempted")


class DeliveryQueue:
    """Runs deliveries for one mail host's spool."""

    def __init__(self, host: "MailHost") -> None:
        self.host = host
        self._timers: dict[str, tuple[asyncio.TimerHandle, QueueEntry]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(MAX_PARALLEL)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # -- scheduling --------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for entry in self.host.spool.load():  # a restart picks up where it stopped
            self.enqueue(entry, at=entry.next_attempt)

    def enqueue(self, entry: QueueEntry, at: float = 0.0, message: bytes | None = None) -> None:
        """Deliver ``entry`` now, or at ``at`` (a ``time.time()`` value). ``message``,
        if given, spares re-reading it from the spool."""
        if self._stopping or self._loop is None:
            return
        delay = at - time.time()
        if delay > 0:
            self._timers[entry.queue_id] = (self._loop.call_later(delay, self._launch, entry), entry)
        else:
            self._launch(entry, message)

    def _launch(self, entry: QueueEntry, message: bytes | None = None) -> None:
        self._timers.pop(entry.queue_id, None)
        task = asyncio.ensure_future(self._attempt(entry, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def retry_now(self) -> None:
        """Flush the queue: try every deferred message now (like ``postqueue -f``)."""
        for timer, entry in list(self._timers.values()):
            timer.cancel()
            self._launch(entry)

    async def stop(self) -> None:
        """Stop scheduling; let deliveries in flight finish (bounded), then cancel."""
        self._stopping = True
        for timer, _ in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=5)
            for task in late:
                task.cancel()

    # -- one attempt -------------------------------------------------------------------
    async def _attempt(self, entry: QueueEntry, message: bytes | None) -> None:
        async with self._slots:
            host = self.host
            if message is None:
                message = await self._in_thread(host.spool.message, entry.queue_id)
            local = [r for r in entry.recipients if host.is_local(domain_of(r))]
            outcomes = await self._deliver_local(entry, local, message) if local else {}
            remote: dict[str, list[str]] = defaultdict(list)
            for rcpt in entry.recipients:
                if rcpt not in outcomes:
                    remote[domain_of(rcpt)].append(rcpt)
            for domain, rcpts in remote.items():
                outcomes.update(await self._relay(entry, domain, rcpts, message))
            await self._settle(entry, outcomes, message)

    async def _in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.host.context.executor, fn, *args)

    def accept(self, entry: QueueEntry, message: bytes) -> Stage:
        """What the SMTP server does with a message before it answers 250, as a stage
        for the group committer: local recipients get it in their Maildir at once (that
        fsynced copy is the durable one); the rest, and any local delivery that failed,
        go to the spool. The stage's result is (local outcomes, spool entry or None)."""

        def stage() -> tuple[tuple[dict[str, Outcome], QueueEntry | None], Staged]:
            local = [r for r in entry.recipients if self.host.is_local(domain_of(r))]
            outcomes, staged = self._stage_local(entry, local, message)
            rest = [r for r in entry.recipients if outcomes.get(r, _FAILED).state != "delivered"]
            queued = QueueEntry(entry.queue_id, entry.mail_from, rest, entry.arrived) if rest else None
            if queued is not None:
                staged.extend(self.host.spool.stage(queued, message))
            return (outcomes, queued), staged

        return stage

    def note(self, entry: QueueEntry, rcpt: str, kind: str, detail: str, remote: str = "", **extra) -> None:
        """Tell the trace what became of one recipient: delivered, deferred or failed."""
        verb = {"delivered": "delivered", "deferred": "deferred", "failed": "could not deliver"}[kind]
        self.host.context.tracer.note(
            "mta", kind, f"{self.host.name} {verb} {entry.queue_id} to <{rcpt}>: {detail}", server=self.host.name,
            queue_id=entry.queue_id, recipient=rcpt, detail=detail, remote=remote, **extra,
        )

    def _stage_local(self, entry: QueueEntry, rcpts: list[str], message: bytes) -> tuple[dict[str, Outcome], Staged]:
        """Write the message for each local recipient's Maildir (runs in the committer)."""
        outcomes: dict[str, Outcome] = {}
        staged = Staged()
        for rcpt in rcpts:
            account = self.host.mailbox_for(rcpt)
            if account is None:
                outcomes[rcpt] = _failed(f"550 5.1.1 <{rcpt}>: user unknown (mailbox removed while queued)")
                continue
            # RFC 5321 §4.4: the final delivery stamps the envelope sender as Return-Path.
            stamped = f"Return-Path: <{entry.mail_from}>\r\nDelivered-To: {account.address}\r\n".encode() + message
            try:
                name, written = maildir.stage(account.maildir, stamped)
            except OSError as error:
                outcomes[rcpt] = _deferred(f"451 4.3.0 cannot write to the Maildir of {account.address}: {error}")
                continue
            staged.extend(written)
            outcomes[rcpt] = _delivered(f"maildir {account.maildir}/new/{name}")
        return outcomes, staged

    async def _deliver_local(self, entry: QueueEntry, rcpts: list[str], message: bytes) -> dict[str, Outcome]:
        committer = self.host.context.committer
        try:
            return await asyncio.wrap_future(committer.submit(lambda: self._stage_local(entry, rcpts, message)))
        except OSError as error:
            return {r: _deferred(f"451 4.3.0 could not make the Maildir copy durable: {error}") for r in rcpts}

    async def _relay(self, entry: QueueEntry, domain: str, rcpts: list[str], message: bytes) -> dict[str, Outcome]:
        host, context = self.host, self.host.context
        context.tracer.note("dns", "lookup", f"{host.name} asks DNS: which hosts receive mail for {domain}?",
                            client=host.name, domain=domain)
        try:
            hops = await self._in_thread(context.seams.resolve_mx, domain, context.resolver())
        except NullMXError as error:  # RFC 7505 §4.2
            return {r: _failed(f"556 5.1.10 {error}") for r in rcpts}
        except PermanentMXError as error:
            return {r: _failed(f"550 5.1.2 {error}") for r in rcpts}
        except TemporaryMXError as error:
            return {r: _deferred(f"451 4.4.3 {error}") for r in rcpts}
        except Exception as error:  # a student's resolver that crashes: keep the mail, retry
            return {r: _deferred(f"451 4.4.3 resolve_mx({domain!r}) raised {error!r}") for r in rcpts}
        context.tracer.note("dns", "mx", f"mail for {domain} goes to: " + ", ".join(
            f"{h.preference} {h.host} [{', '.join(h.addresses)}]" for h in hops), client=host.name, domain=domain,
            hops=[h.host for h in hops])
        hops = self._without_myself(hops)
        if not hops:
            return {r: _failed(f"554 5.4.6 mail for {domain} loops back to myself ({host.name})") for r in rcpts}
        last = f"451 4.4.1 no mail exchanger for {domain} could be reached"
        for hop in hops:
            for address in hop.addresses:
                try:
                    result = await self._in_thread(self._send, address, entry, rcpts, message)
                except SMTPPermanentError as error:
                    if error.stage == "greeting":  # a 5xx greeting: try the next MX
                        last = f"{error}"
                        continue
                    return {r: _failed(str(error), hop.host) for r in rcpts}
                except (SMTPError, OSError) as error:
                    last = f"451 4.4.1 {hop.host} [{address}]: {error}"
                    continue
                except Exception as error:  # a student's send_mail that crashes
                    last = f"451 4.3.0 send_mail to {hop.host} [{address}] raised {error!r}"
                    continue
                return self._outcomes(result, rcpts, hop.host)
        return {r: _deferred(last) for r in rcpts}

    def _send(self, address: str, entry: QueueEntry, rcpts: list[str], message: bytes):
        host = self.host
        with host.context.addresses.connect(address, 25, timeout=10, source=host.address) as sock:
            return host.context.seams.send_mail(
                sock, helo=host.name, mail_from=entry.mail_from, rcpt_to=rcpts, message=message
            )

    @staticmethod
    def _outcomes(result, rcpts: list[str], remote: str) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        data = result.data_reply
        for rcpt in rcpts:
            reply = result.refused.get(rcpt)
            if reply is None and rcpt in result.accepted:
                reply = data
            if reply is None:
                outcomes[rcpt] = _deferred(f"451 4.4.0 {remote} gave no reply for <{rcpt}>", remote)
            elif 200 <= reply.code < 300:
                outcomes[rcpt] = _delivered(f"{remote} said {reply.code} {reply.text}", remote)
            elif 400 <= reply.code < 500:
                outcomes[rcpt] = _deferred(f"{reply.code} {reply.text}", remote)
            else:
                outcomes[rcpt] = _failed(f"{reply.code} {reply.text}", remote)
        return outcomes

    def _without_myself(self, hops):
        """RFC 5321 §5.1: if this host is in the MX list, only MX hosts with a lower
        preference value (more preferred) than ours may be used."""
        mine = [h.preference for h in hops if set(h.addresses) & set(self.host.addresses)]
        if not mine:
            return hops
        return [h for h in hops if h.preference < min(mine)]

    # -- after the attempt -------------------------------------------------------------
    async def _settle(self, entry: QueueEntry, outcomes: dict[str, Outcome], message: bytes) -> None:
        host = self.host
        now = time.time()
        expired = now - entry.arrived >= host.mta.max_queue_time
        failures: list[Failure] = []
        still: list[str] = []
        for rcpt, outcome in outcomes.items():
            if outcome.state == "delivered":
                self.note(entry, rcpt, "delivered", outcome.detail, outcome.remote_mta)
            elif outcome.state == "deferred" and not expired:
                still.append(rcpt)
                entry.last_error[rcpt] = outcome.detail
            else:
                detail = outcome.detail
                if outcome.state == "deferred":
                    detail = f"{detail} (gave up: queued for longer than {host.mta.max_queue_time:g}s)"
                failures.append(Failure(rcpt, detail, outcome.remote_mta))
                self.note(entry, rcpt, "failed", detail, outcome.remote_mta)
        if still:
            entry.recipients = still
            entry.attempts += 1
            schedule = host.mta.retry_schedule
            delay = schedule[min(entry.attempts - 1, len(schedule) - 1)]
            entry.next_attempt = now + delay
            await self._in_thread(host.spool.save_state, entry)
            for rcpt in still:
                self.note(entry, rcpt, "deferred", f"{entry.last_error[rcpt]}; retry in {delay:g}s",
                           outcomes[rcpt].remote_mta, retry_in=delay)
            self.enqueue(entry, at=entry.next_attempt)
        else:
            host.spool.remove(entry.queue_id)  # two unlinks: cheap enough for the loop
        if failures:
            await self._bounce(entry, failures, message)

    async def _bounce(self, entry: QueueEntry, failures: list[Failure], message: bytes) -> None:
        host = self.host
        if not entry.mail_from:  # RFC 5321 §4.5.5: never bounce a bounce
            host.context.tracer.note("mta", "discarded", f"{host.name} discarded undeliverable bounce {entry.queue_id}",
                                     server=host.name, queue_id=entry.queue_id)
            return
        dsn = make_bounce(reporting_mta=host.name, queue_id=entry.queue_id, sender=entry.mail_from,
                          failures=failures, original=message, arrived=entry.arrived)
        await host.inject(dsn, mail_from="", recipients=[entry.mail_from])
