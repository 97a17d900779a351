"""Delivery: from the spool to a Maildir or to the next hop, with retries and bounces.

Event-driven, no polling: a message is handed over the moment it is queued; a deferred
message gets a timer for its next attempt (the ``next_retry`` seam), and a restart
reloads the spool. Each outcome per recipient is one of:

- delivered: into a local Maildir (the ``deliver`` seam), or accepted (250 after DATA)
  by the next hop (``resolve_mx``, then ``send_mail``);
- deferred (4xx, connection failures, DNS trouble, a student's part that failed): tried
  again later, bounced when ``next_retry`` gives up;
- failed (5xx, NXDOMAIN, null MX): bounced to the sender at once (``make_bounce``).

Every message comes from the spool, where the SMTP server made it durable before its
250 (one write, as Postfix's queue file): local recipients get their Maildir copy after
the 250, made durable in batches by the context's ``deliverer`` (a group committer of
its own, so the next message's 250 never waits behind these flushes), then the spool
file goes.
Progress is saved as it is made: once a group of recipients (the local ones, or one
remote domain) is done, the spool forgets them before the next group is tried, so a
crash repeats only a delivery that was in flight at that instant (as Postfix does); a
local copy repeated after a crash finds the one it made, by its name in the envelope.

A destination that cannot be reached (no address of any MX answers) is marked down,
as Postfix's queue manager marks a dead destination: until the first retry delay has
passed, the rest of its queue is deferred without a DNS query or a connection each.
``retry_now()`` forgets the marks and tries again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .. import maildir
from ..boundary import SeamError
from ..commit import Stage, Staged
from ..net import close_socket
from ..dns.hops import NullMXError, PermanentMXError, TemporaryMXError
from ..smtp.reply import SendResult, SMTPError, SMTPPermanentError
from .core import domain_of
from .spool import QueueEntry
from .types import Failure

if TYPE_CHECKING:
    from .host import MailHost

log = logging.getLogger(__name__)
MAX_PARALLEL = 16  # deliveries in flight per host
STOP_GRACE = 1.0  # seconds deliveries in flight get when the world stops


@dataclass(frozen=True)
class Outcome:
    state: str  # delivered | deferred | failed
    detail: str  # where it went, or why not
    remote_mta: str = ""
    seam: str = ""  # the student part that decided it, if any


def _delivered(detail: str, remote: str = "", seam: str = "") -> Outcome:
    return Outcome("delivered", detail, remote, seam)


def _deferred(detail: str, remote: str = "", seam: str = "") -> Outcome:
    return Outcome("deferred", detail, remote, seam)


def _failed(detail: str, remote: str = "", seam: str = "") -> Outcome:
    return Outcome("failed", detail, remote, seam)


class _NextAddress(Exception):
    """This address of this MX could not take the message: try the next one.
    ``unreachable``: no connection could be made at all."""

    def __init__(self, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


class _Body:
    """A queued message's bytes, read from the spool only when an attempt needs them
    (a retry to a destination marked down never does)."""

    def __init__(self, queue: "DeliveryQueue", entry: QueueEntry, data: bytes | None) -> None:
        self.queue, self.entry, self.data = queue, entry, data

    async def get(self) -> bytes:
        if self.data is None:
            self.data = await self.queue._boundary.in_thread(self.queue.host.spool.message, self.entry.queue_id)
        return self.data


class DeliveryQueue:
    """Runs deliveries for one mail host's spool."""

    def __init__(self, host: "MailHost") -> None:
        self.host = host
        self._timers: dict[str, tuple[asyncio.TimerHandle, QueueEntry]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(MAX_PARALLEL)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._down: dict[str, tuple[float, str]] = {}  # domain -> (until, why): marked unreachable
        self._recovered: set[str] = set()  # queue ids loaded at start: a local copy may exist already

    @property
    def _boundary(self):
        return self.host.context.boundary

    # -- scheduling --------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for entry in await self._boundary.in_thread(self.host.spool.load):  # a restart picks up where it stopped
            self._recovered.add(entry.queue_id)
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

    def accepted(self, entry: QueueEntry, message: bytes) -> None:
        """Deliver what the SMTP server has just queued (from any thread). A message
        only for local users (labkit's own ``deliver``) is stored by the deliverer (the
        group committer for after the 250) itself, which then forgets the spool file:
        no task, no hand-off between threads. Anything else, or a copy that could not be made, goes the way of every queued
        message (:meth:`enqueue`)."""
        host = self.host
        if self._stopping or not entry.recipients or set(entry.names) != set(entry.recipients):
            host.note_queued(entry)  # it waits in the queue: the trace says so (a local copy says delivered)
            host.call_soon(self.enqueue, entry, 0.0, message)
            return

        def stage() -> tuple[bool, Staged]:
            outcomes, staged = self._stage_local(entry, entry.local, message)
            if any(o.state != "delivered" for o in outcomes.values()):
                for tmp, _ in staged.renames:
                    os.unlink(tmp)
                return False, Staged()
            staged.after.append(lambda: self._stored(entry, outcomes, len(message)))
            return True, staged

        def done(future: Future) -> None:  # in the deliverer's thread
            if future.exception() is not None or not future.result():
                host.note_queued(entry)
                host.call_soon(self.enqueue, entry, 0.0, message)

        host.context.deliverer.submit(stage).add_done_callback(done)

    def _stored(self, entry: QueueEntry, outcomes: dict[str, Outcome], size: int) -> None:
        """Every local copy of ``entry`` is durable: tell the trace, forget the spool file."""
        for rcpt, outcome in outcomes.items():
            self.note(entry, rcpt, "delivered", outcome.detail)
        try:
            self.host.spool.remove(entry.queue_id, state=False, size=size)  # its first attempt: no progress saved
        except OSError:  # it stays: a restart finds the copies it names, and makes none again
            log.debug("could not remove %s from the spool", entry.queue_id, exc_info=True)

    def _launch(self, entry: QueueEntry, message: bytes | None = None) -> None:
        self._timers.pop(entry.queue_id, None)
        task = asyncio.ensure_future(self._attempt(entry, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def waiting(self) -> list[QueueEntry]:
        """The messages waiting for their next attempt (deferred), soonest first."""
        return sorted((entry for _, entry in self._timers.values()), key=lambda e: e.next_attempt)

    def retry_now(self) -> None:
        """Flush the queue: try every deferred message now (like ``postqueue -f``),
        destinations marked down too."""
        self._down.clear()
        for timer, entry in list(self._timers.values()):
            timer.cancel()
            self._launch(entry)

    async def stop(self) -> None:
        """Stop scheduling; give deliveries in flight a moment, then cancel them (an
        interrupted one stays in the spool and is tried again at the next start)."""
        self._stopping = True
        for timer, _ in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=STOP_GRACE)

    # -- one attempt -------------------------------------------------------------------
    async def _attempt(self, entry: QueueEntry, message: bytes | None) -> None:
        async with self._slots:
            body = _Body(self, entry, message)
            try:
                await self._try(entry, body)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a bug of ours must not strand the message without a timer
                log.debug("delivery of %s failed", entry.queue_id, exc_info=True)
                outcomes = {r: _deferred(f"451 4.3.0 internal error while delivering: {error!r}")
                            for r in entry.recipients}
                try:
                    await self._settle(entry, outcomes, body)
                except Exception:  # not even that: try it all again later
                    log.debug("settling %s failed", entry.queue_id, exc_info=True)
                    self.enqueue(entry, at=time.time() + self.host.mta.retry_schedule[-1])

    async def _try(self, entry: QueueEntry, message: _Body) -> None:
        host = self.host
        local = {r: entry.local.get(r, r) for r in entry.recipients
                 if r in entry.local or host.is_local(domain_of(r))}
        remote: dict[str, list[str]] = defaultdict(list)
        for rcpt in entry.recipients:
            if rcpt not in local:
                remote[domain_of(rcpt)].append(rcpt)
        groups = ([functools.partial(self._deliver_local, entry, local, message)] if local else []) + [
            functools.partial(self._relay, entry, domain, rcpts, message) for domain, rcpts in remote.items()]
        outcomes: dict[str, Outcome] = {}
        for i, group in enumerate(groups):
            done = await group()
            outcomes.update(done)
            if i < len(groups) - 1 and any(o.state == "delivered" for o in done.values()):
                await self._save_progress(entry, outcomes)
        await self._settle(entry, outcomes, message)

    async def _save_progress(self, entry: QueueEntry, outcomes: dict[str, Outcome]) -> None:
        """Forget the recipients delivered so far, durably, before trying the next group."""
        delivered = [r for r, o in outcomes.items() if o.state == "delivered"]
        for rcpt in delivered:
            self.note(entry, rcpt, "delivered", outcomes[rcpt].detail, outcomes[rcpt].remote_mta,
                      seam=outcomes[rcpt].seam)
            del outcomes[rcpt]
        entry.recipients = [r for r in entry.recipients if r not in delivered]
        await self._save_state(entry)

    async def _save_state(self, entry: QueueEntry) -> None:
        """Make ``entry``'s progress durable, with whatever else the deliverer has
        waiting (a pass of many deferrals costs a few flushes, not one each)."""
        spool = self.host.spool
        await self.host.context.deliverer.asubmit(lambda: (None, spool.stage_state(entry)))

    def accept(self, entry: QueueEntry, message: bytes, local: dict[str, str]) -> Stage:
        """What the SMTP server does with a message before it answers 250, as a stage
        for the group committer: the one durable copy, in the spool, whatever the
        recipients (``local``: recipient -> mailbox, for those routed ``Local``, each
        given the name its Maildir copy will have). The stage's result is the entry
        queued, to :meth:`enqueue` once the 250 is said."""
        names = {} if self.host.part("deliver")[1] else {r: maildir.unique_name() for r in local}
        queued = QueueEntry(entry.queue_id, entry.mail_from, list(entry.recipients), entry.arrived,
                            local=dict(local), names=names)
        spool = self.host.spool
        return lambda: (queued, spool.stage(queued, message))

    def note(self, entry: QueueEntry, rcpt: str, kind: str, detail: str, remote: str = "", **extra) -> None:
        """Tell the trace what became of one recipient: delivered, deferred or failed."""
        verb = {"delivered": "delivered", "deferred": "deferred", "failed": "could not deliver"}[kind]
        self.host.context.tracer.note(
            "mta", kind, f"{self.host.name} {verb} {entry.queue_id} to <{rcpt}>: {detail}", server=self.host.name,
            queue_id=entry.queue_id, recipient=rcpt, detail=detail, remote=remote, **extra,
        )

    # -- local delivery ----------------------------------------------------------------
    @staticmethod
    def _stamped(entry: QueueEntry, address: str, message: bytes) -> bytes:
        # RFC 5321 §4.4: the final delivery stamps the envelope sender as Return-Path.
        return f"Return-Path: <{entry.mail_from}>\r\nDelivered-To: {address}\r\n".encode() + message

    def _stage_local(self, entry: QueueEntry, local: dict[str, str], message: bytes) -> tuple[dict[str, Outcome], Staged]:
        """Write the message for each local recipient's Maildir (runs in the deliverer),
        under the name the envelope gave it; after a restart, one already there counts."""
        outcomes: dict[str, Outcome] = {}
        staged = Staged()
        recovered = entry.queue_id in self._recovered
        for rcpt, mailbox in local.items():
            account = self.host.mailbox_for(mailbox)
            if account is None:
                outcomes[rcpt] = _failed(f"550 5.1.1 <{rcpt}>: user unknown (mailbox removed while queued)")
                continue
            name = entry.names.get(rcpt, "")
            if recovered and name and maildir.holds(account.maildir, name):
                outcomes[rcpt] = _delivered(f"maildir {account.maildir}/new/{name}")
                continue
            try:
                name, written = maildir.stage(account.maildir, self._stamped(entry, account.address, message), name)
            except OSError as error:
                outcomes[rcpt] = _deferred(f"451 4.3.0 cannot write to the Maildir of {account.address}: {error}")
                continue
            staged.extend(written)
            outcomes[rcpt] = _delivered(f"maildir {account.maildir}/new/{name}")
        return outcomes, staged

    async def _deliver_local(self, entry: QueueEntry, local: dict[str, str], body: _Body) -> dict[str, Outcome]:
        impl, student = self.host.part("deliver")
        message = await body.get()
        if student:
            return {rcpt: await self._student_deliver(impl, entry, rcpt, mailbox, message)
                    for rcpt, mailbox in local.items()}
        deliverer = self.host.context.deliverer
        try:
            return await deliverer.asubmit(lambda: self._stage_local(entry, local, message))
        except OSError as error:
            return {r: _deferred(f"451 4.3.0 could not make the Maildir copy durable: {error}") for r in local}

    async def _student_deliver(self, impl, entry: QueueEntry, rcpt: str, mailbox: str, message: bytes) -> Outcome:
        account = self.host.mailbox_for(mailbox)
        if account is None:
            return _failed(f"550 5.1.1 <{rcpt}>: user unknown (mailbox removed while queued)")
        stamped = self._stamped(entry, account.address, message)
        try:
            name = await self.host.acall("deliver", account.maildir, stamped, part=(impl, True))
        except SeamError as error:
            return _deferred(f"451 4.3.0 your deliver failed ({error.one_line()}); the message stays queued",
                             seam="deliver")
        maildir.notify(account.maildir)  # readers (IMAP IDLE) hear of it as with labkit's own
        return _delivered(f"maildir {account.maildir}/new/{name}", seam="deliver")

    # -- relaying ----------------------------------------------------------------------
    async def _relay(self, entry: QueueEntry, domain: str, rcpts: list[str], body: _Body) -> dict[str, Outcome]:
        host, context = self.host, self.host.context
        down = self._down.get(domain)
        if down is not None:
            if time.monotonic() < down[0]:
                return {r: _deferred(f"{down[1]} (not tried again yet: {domain} was unreachable just now)")
                        for r in rcpts}
            del self._down[domain]
        part = host.part("resolve_mx")
        seam = "resolve_mx" if part[1] else ""
        context.tracer.note("dns", "lookup", f"{host.name} asks DNS: which hosts receive mail for {domain}?",
                            client=host.name, domain=domain, seam=seam)  # the queries that follow are the seam's
        try:
            hops = await host.acall("resolve_mx", domain, context.resolver(host.address), part=part)
        except NullMXError as error:  # RFC 7505 §4.2
            return {r: _failed(f"556 5.1.10 {error}", seam=seam) for r in rcpts}
        except PermanentMXError as error:
            return {r: _failed(f"550 5.1.2 {error}", seam=seam) for r in rcpts}
        except TemporaryMXError as error:
            return {r: _deferred(f"451 4.4.3 {error}", seam=seam) for r in rcpts}
        except SeamError as error:  # a student's resolver that failed: keep the mail, retry
            return {r: _deferred(f"451 4.4.3 resolve_mx({domain!r}) failed: {error.one_line()}", seam=seam)
                    for r in rcpts}
        context.tracer.note("dns", "mx", f"mail for {domain} goes to: " + ", ".join(
            f"{h.preference} {h.host} [{', '.join(h.addresses)}]" for h in hops), client=host.name, domain=domain,
            hops=[h.host for h in hops], seam=seam)
        hops = self._without_myself(hops)
        if not hops:
            return {r: _failed(f"554 5.4.6 mail for {domain} loops back to myself ({host.name})") for r in rcpts}
        last = f"451 4.4.1 no mail exchanger for {domain} could be reached"
        message = await body.get()
        unreachable = True
        for hop in hops:
            for address in hop.addresses:
                try:
                    return await self._send(address, hop.host, entry, rcpts, message)
                except _NextAddress as reason:
                    last, unreachable = str(reason), unreachable and reason.unreachable
                    context.tracer.note("smtp", "unreachable", f"{host.name}: {reason}: trying the next",
                                        client=host.name, server=hop.host, address=address)
        if unreachable:  # as Postfix's dead destination: the rest of its queue waits
            self._down[domain] = (time.monotonic() + host.mta.retry_schedule[0], last)
        return {r: _deferred(last) for r in rcpts}

    async def _send(self, address: str, mx: str, entry: QueueEntry, rcpts: list[str], message: bytes
                    ) -> dict[str, Outcome]:
        """One SMTP transaction with one address of an MX. A student's client is
        checked against what the receiving world host really accepted."""
        host, context = self.host, self.host.context
        part = host.part("send_mail")
        student = part[1]
        seam = "send_mail" if student else ""
        try:
            endpoint = context.addresses.resolve(address, 25)
            sock = await self._boundary.in_thread(functools.partial(
                context.addresses.connect, address, 25, timeout=10, source=host.address, seam=seam))
        except OSError as error:
            raise _NextAddress(f"451 4.4.1 {mx} [{address}]: {error}", unreachable=True) from None
        client = sock.getsockname()
        result: SendResult | None = None
        error: Exception | None = None
        try:
            result = await host.acall("send_mail", sock, helo=host.name, mail_from=entry.mail_from, rcpt_to=rcpts,
                                      message=message, part=part)
        except (SMTPError, SeamError) as failure:
            error = failure
        finally:
            close_socket(sock)
        where = f"{mx} [{address}]"
        if student and context.receipts.covers(endpoint.host, endpoint.port):
            seen = await self._boundary.in_thread(context.receipts.wait, client)
            if seen or error is None:
                return self._reconcile(result, error, rcpts, seen, mx)
            where = mx  # it failed and the MX took nothing: handled below, as any client's error
        if error is None:
            assert result is not None
            return self._outcomes(result, rcpts, mx)
        if isinstance(error, SMTPPermanentError) and error.stage != "greeting":  # a 5xx greeting: next MX
            return {r: _failed(str(error), mx, seam) for r in rcpts}
        raise _NextAddress(f"451 4.4.1 {where}: {error}")

    @staticmethod
    def _outcomes(result: SendResult, rcpts: list[str], remote: str, seam: str = "") -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        data = result.data_reply
        for rcpt in rcpts:
            reply = result.refused.get(rcpt)
            if reply is None and rcpt in result.accepted:
                reply = data
            if reply is None:
                outcomes[rcpt] = _deferred(f"451 4.4.0 {remote} gave no reply for <{rcpt}>", remote, seam)
            elif 200 <= reply.code < 300:
                outcomes[rcpt] = _delivered(f"{remote} said {reply.code} {reply.text}", remote, seam)
            elif 400 <= reply.code < 500:
                outcomes[rcpt] = _deferred(f"{reply.code} {reply.text}", remote, seam)
            else:
                outcomes[rcpt] = _failed(f"{reply.code} {reply.text}", remote, seam)
        return outcomes

    def _reconcile(self, result: SendResult | None, error: Exception | None, rcpts: list[str],
                   seen: dict[str, str], mx: str) -> dict[str, Outcome]:
        """A student's client's claims against what ``mx`` accepted (``seen``); for a
        client that returned a result, or one whose error came after the MX accepted
        something (an error with nothing accepted is :meth:`_send`'s to handle)."""
        claimed = self._outcomes(result, rcpts, mx, "send_mail") if result is not None else {}
        outcomes: dict[str, Outcome] = {}
        for rcpt in rcpts:
            queue_id = seen.get(rcpt.lower())
            said = claimed.get(rcpt)
            if queue_id:
                note = "" if said is not None and said.state == "delivered" else (
                    f" (though your send_mail said: {said.detail if said else error})")
                outcomes[rcpt] = _delivered(f"{mx} accepted it: 250 queued as {queue_id}{note}", mx, "send_mail")
            elif said is not None and said.state == "delivered":
                outcomes[rcpt] = _deferred(f"451 4.3.0 your send_mail reported '{said.detail}' for <{rcpt}>, but {mx} "
                                           "never accepted it; the message stays queued", mx, "send_mail")
            elif said is not None:
                outcomes[rcpt] = said
            else:
                outcomes[rcpt] = _deferred(f"451 4.3.0 {mx}: {error}", mx, "send_mail")
        return outcomes

    def _without_myself(self, hops):
        """RFC 5321 §5.1: if this host is in the MX list, only MX hosts with a lower
        preference value (more preferred) than ours may be used."""
        mine = [h.preference for h in hops if set(h.addresses) & set(self.host.addresses)]
        if not mine:
            return hops
        return [h for h in hops if h.preference < min(mine)]

    # -- after the attempt -------------------------------------------------------------
    async def _settle(self, entry: QueueEntry, outcomes: dict[str, Outcome], body: _Body) -> None:
        host = self.host
        now = time.time()
        deferred = [r for r, o in outcomes.items() if o.state == "deferred"]
        delay = await self._next_retry(entry, now) if deferred else None
        failures = [Failure(**f) for f in entry.failed]  # earlier failures whose bounce is still owed
        still: list[str] = []
        for rcpt, outcome in outcomes.items():
            if outcome.state == "delivered":
                self.note(entry, rcpt, "delivered", outcome.detail, outcome.remote_mta, seam=outcome.seam)
            elif outcome.state == "deferred" and delay is not None:
                still.append(rcpt)
                entry.last_error[rcpt] = outcome.detail
            else:
                detail = outcome.detail
                if outcome.state == "deferred":
                    detail = f"{detail} (gave up: queued for longer than {host.mta.max_queue_time:g}s)"
                failures.append(Failure(rcpt, detail, outcome.remote_mta))
                self.note(entry, rcpt, "failed", detail, outcome.remote_mta, seam=outcome.seam)
        owed = bool(failures) and not await self._bounce(entry, failures, await body.get())
        entry.failed = [asdict(f) for f in failures] if owed else []
        if still or owed:
            entry.recipients = still
            entry.attempts += 1
            delay = delay if delay is not None else host.mta.retry_schedule[0]
            entry.next_attempt = now + delay
            await self._save_state(entry)
            for rcpt in still:
                self.note(entry, rcpt, "deferred", f"{entry.last_error[rcpt]}; retry in {delay:g}s",
                          outcomes[rcpt].remote_mta, retry_in=delay, seam=outcomes[rcpt].seam)
            self.enqueue(entry, at=entry.next_attempt)
        else:
            self._recovered.discard(entry.queue_id)
            await self._boundary.in_thread(host.spool.remove, entry.queue_id)  # the loop never waits for the disk

    async def _next_retry(self, entry: QueueEntry, now: float) -> float | None:
        """Seconds until the next attempt, or None to give up (the ``next_retry`` seam;
        if a student's fails, the message stays queued for the schedule's first delay)."""
        host = self.host
        part = host.part("next_retry")
        call = host.acall if part[1] else host.call  # labkit's own is pure and quick: no thread
        try:
            delay = call("next_retry", entry.attempts + 1, now - entry.arrived, schedule=host.mta.retry_schedule,
                         max_queue_time=host.mta.max_queue_time, part=part)
            return await delay if part[1] else delay
        except SeamError:
            return host.mta.retry_schedule[0]

    async def _bounce(self, entry: QueueEntry, failures: list[Failure], message: bytes) -> bool:
        """Send the DSN; False if a student's ``make_bounce`` failed (it is owed, then)."""
        host = self.host
        if not entry.mail_from:  # RFC 5321 §4.5.5: never bounce a bounce
            host.context.tracer.note("mta", "discarded", f"{host.name} discarded undeliverable bounce {entry.queue_id}",
                                     server=host.name, queue_id=entry.queue_id)
            return True
        try:
            dsn = await host.acall("make_bounce", reporting_mta=host.name, queue_id=entry.queue_id,
                                   sender=entry.mail_from, failures=failures, original=message, arrived=entry.arrived)
        except SeamError:
            return False
        await host.inject(dsn, mail_from="", recipients=[entry.mail_from])
        return True

