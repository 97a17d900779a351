"""The SMTP rules for the MX hosts, and the test message.

One probe session per MX host asks its questions (greeting, EHLO, postmaster, an unknown
user, a relay attempt), each question ended with RSET before DATA; each rule's row then
judges every host at once, naming the host that failed. A host that does not answer
while another does is what backup MX records are for (RFC 5321 §5.1: senders try the
next one): a warning that names it, not a failure. Where EHLO offers STARTTLS, one more
short session checks the handshake and the certificate (RFC 3207, information only).
Then one real transaction, with labkit's own client, delivers the test message to
``--user`` through the first host that took a session.
"""

from __future__ import annotations

import email.utils
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from ..checks.result import Result
from ..dns.mx import NextHop
from ..smtp.client import ClientTransaction, SMTPError
from ..smtp.send import drive
from .probe import ProbeError, SMTPProbe, helo_name
from .rows import excerpt, said
from .rubric import (BECAUSE_INPUT, EHLO, GREETING, MESSAGE, POSTMASTER, RELAY, UNKNOWN, Rule, after, not_checked,
                     time_up)
from .steps import Step, Stop, run_steps
from .target import SMTP_PORT, ConnectFailed, Line, TimeUp
from .tls import HandshakeFailed
from .visit import Visit

RELAY_DOMAIN = "relay-test.invalid"  # RFC 2606 §2: can never exist, so nothing can be relayed there
HOST_RULES = (GREETING, EHLO, POSTMASTER, UNKNOWN, RELAY)
_ORDER = {"fail": 0, "warn": 1, "pass": 2}


def probe_address(domain: str) -> str:
    """An address nobody has: unique, so no real user is hit by accident."""
    return f"labkit-check-{uuid.uuid4().hex[:10]}@{domain}"


@dataclass
class Greeted:
    """What the rules of an MX session learnt, for the later rules."""

    host: NextHop
    name: str  # the name in its 220 greeting
    ok: bool = False  # the session got past EHLO
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass
class HostVisit:
    """One MX host's rows (each naming the host), and its session if it greeted."""

    host: NextHop
    rows: dict[str, Result]
    greeted: Greeted | None


def check_mx(hosts: list[NextHop], visit: Visit) -> tuple[list[Result], list[Greeted]]:
    """The MX rows, judging every host, and the hosts that took a session."""
    visits = [_visit_host(host, visit) for host in hosts]
    greeted = [v.greeted for v in visits if v.greeted is not None]
    for g in greeted:
        if "STARTTLS" in g.extensions:
            _starttls(g.host, visit)
        else:
            visit.tls.clear.append(f"{g.host.host} SMTP {SMTP_PORT}")
    return [_greeting(visits)] + [_judge(rule, visits) for rule in HOST_RULES[1:]], greeted


def _visit_host(host: NextHop, visit: Visit) -> HostVisit:
    target = visit.target
    transcript: list[Line] = []
    if target.expired():
        return HostVisit(host, {r.title: time_up(r) for r in HOST_RULES}, None)
    try:
        sock = target.connector().connect(host.host, host.addresses, SMTP_PORT, transcript)
    except TimeUp:
        return HostVisit(host, {r.title: time_up(r) for r in HOST_RULES}, None)
    except ConnectFailed as error:
        row = Result(GREETING.title, "fail", step=f"connect to {host.host} port {SMTP_PORT}",
                     expected="a TCP connection and a 220 greeting", got=str(error), rfc="RFC 5321 §3.1",
                     transcript=excerpt(transcript), hint="is the MTA running, listening on the public address "
                     "(Postfix: inet_interfaces), and port 25 open in the firewall?")
        return HostVisit(host, {GREETING.title: row, **{r.title: after(r, GREETING) for r in HOST_RULES[1:]}}, None)
    probe = SMTPProbe(sock, budget=target.budget, transcript=transcript)
    session = _MXSession(probe, host, visit, transcript)
    try:
        rows = run_steps(session.steps(), transcript, target)
    finally:
        probe.quit()
    return HostVisit(host, {row.rule: row for row in rows}, session.greeted)


def _greeting(visits: list[HostVisit]) -> Result:
    """RFC 5321 §5.1: mail goes to the first host, in preference order, that answers;
    a host that does not while a backup does is a warning naming it."""
    live = [v for v in visits if v.greeted is not None]
    dead = [v for v in visits if v.greeted is None and v.rows[GREETING.title].status == "fail"]
    if not live:
        if not dead:  # cut short by the time limit
            return visits[0].rows[GREETING.title]
        first = dead[0].rows[GREETING.title]
        if len(dead) == 1:
            return first
        return replace(first, got="\n".join(f"{v.host.host}: {v.rows[GREETING.title].got}" for v in dead))
    rows = [v.rows[GREETING.title] for v in live]
    warned = [r for r in rows if r.status == "warn"]
    if not dead:
        return warned[0] if warned else _all_passed(GREETING, live)
    backup = live[0].host
    down = "; ".join(f"{v.host.host} (preference {v.host.preference}) did not answer: {v.rows[GREETING.title].got}"
                     for v in dead)
    got = f"{down}; mail goes to {backup.host} (preference {backup.preference}) instead"
    hints = [f"bring {', '.join(v.host.host for v in dead)} back, or remove its MX record: senders try it first "
             "and wait for it with every message"] + [r.hint for r in warned]
    return Result(GREETING.title, "warn", step=dead[0].rows[GREETING.title].step, expected="every MX host answers",
                  got="\n".join([got] + [r.got for r in warned]), rfc="RFC 5321 §5.1, §4.2",
                  transcript=dead[0].rows[GREETING.title].transcript, hint="; ".join(h for h in hints if h))


def _judge(rule: Rule, visits: list[HostVisit]) -> Result:
    """A rule over every host that took a session: the worst row wins (naming its host)."""
    live = [v for v in visits if v.greeted is not None]
    checked = [v for v in live if v.rows[rule.title].status in _ORDER]
    if not checked:
        return next((v.rows[rule.title] for v in live), after(rule, GREETING))
    worst = min((v.rows[rule.title] for v in checked), key=lambda r: _ORDER[r.status])
    return worst if worst.status != "pass" else _all_passed(rule, checked)


def _all_passed(rule: Rule, visits: list[HostVisit]) -> Result:
    if len(visits) == 1:
        return visits[0].rows[rule.title]
    return Result(rule.title, "pass", info="; ".join(f"{v.host.host}: {v.rows[rule.title].info}" for v in visits))


class _MXSession:
    def __init__(self, probe: SMTPProbe, host: NextHop, visit: Visit, transcript: list[Line]) -> None:
        self.probe, self.host, self.visit, self.transcript = probe, host, visit, transcript
        self.domain, self.mail_from = visit.target.domain, visit.target.mail_from
        self.greeted: Greeted | None = None

    def steps(self) -> list[Step]:
        name = self.host.host
        return [Step(GREETING, self.greeting, expected=f"a 220 greeting from {name}", step=f"{name}: greeting",
                     hint="the server took the connection but never greeted: is an SMTP server listening there, "
                     "and not a TLS-only port, a port forward to another service or a hung smtpd? (Postfix: "
                     "postfix status, and the mail log)"),
                Step(EHLO, self.ehlo, step=f"{name}: EHLO"),
                Step(POSTMASTER, self.postmaster, step=f"{name}: RCPT TO postmaster"),
                Step(UNKNOWN, self.unknown_user, step=f"{name}: RCPT TO an unknown user"),
                Step(RELAY, self.relay, step=f"{name}: RCPT TO another domain")]

    def greeting(self) -> Result:
        mark = len(self.transcript)
        reply = self.probe.reply()
        words = reply.lines[0].split() if reply.lines else []
        name = words[0].lower().rstrip(".") if words else ""
        shown = excerpt(self.transcript, mark)
        if reply.code != 220:
            # RFC 5321 §3.1: 554 means "no SMTP service here"; 421 "try later".
            raise Stop(Result(GREETING.title, "fail", step=f"{self.host.host}: greeting",
                              expected=f"220 {self.host.host} …", got=reply.one_line(), rfc="RFC 5321 §4.2, §3.1",
                              transcript=shown))
        self.greeted = Greeted(self.host, name)
        if name == self.host.host:
            return Result(GREETING.title, "pass", info=reply.one_line())
        return Result(GREETING.title, "warn", step=f"{self.host.host}: greeting",
                      expected=f"220 {self.host.host} … (the host's own name)", got=reply.one_line(),
                      rfc="RFC 5321 §4.2, §4.3.1", transcript=shown,
                      hint="set the MTA's host name to the name the MX names (Postfix: myhostname)")

    def ehlo(self) -> Result:
        mark = len(self.transcript)
        name = helo_name(self.probe.sock)
        reply = self.probe.ehlo(name)
        if reply.code == 250:
            assert self.greeted is not None
            self.greeted.ok, self.greeted.extensions = True, dict(self.probe.extensions)
            extensions = " ".join(f"{k} {v}".strip() for k, v in self.probe.extensions.items())
            return Result(EHLO.title, "pass", info=f"extensions: {extensions or 'none'}")
        row = Result(EHLO.title, "fail", step=f"{self.host.host}: EHLO {name}", expected="250 and the server's "
                     "extensions", got=reply.one_line(), rfc="RFC 5321 §4.1.1.1",
                     transcript=excerpt(self.transcript, mark), hint="every SMTP server must support EHLO "
                     "(RFC 5321 §4.1.4)")
        if self.probe.command(f"HELO {name}").code != 250:  # §3.2: go on with HELO if it can
            raise Stop(row)
        return row

    def postmaster(self) -> Result:
        mark = len(self.transcript)
        address = f"postmaster@{self.domain}"
        mail, rcpt = self.probe.ask(self.mail_from, address)
        if rcpt is not None and rcpt.code // 100 == 2:
            return Result(POSTMASTER.title, "pass", info=rcpt.one_line())
        return Result(POSTMASTER.title, "fail", step=f"{self.host.host}: " + (f"RCPT TO:<{address}>" if rcpt
                                                                              else "MAIL FROM"),
                      expected="250: every domain that takes mail has a postmaster",
                      got=said(rcpt) if rcpt else f"MAIL FROM refused: {said(mail)}", rfc="RFC 5321 §4.5.1",
                      transcript=excerpt(self.transcript, mark),
                      hint="alias postmaster to a real mailbox (Postfix: virtual_alias_maps or /etc/aliases)")

    def unknown_user(self) -> Result:
        mark = len(self.transcript)
        address = probe_address(self.domain)
        mail, rcpt = self.probe.ask(self.mail_from, address)
        shown = excerpt(self.transcript, mark)
        if rcpt is None:
            return Result(UNKNOWN.title, "fail", step=f"{self.host.host}: MAIL FROM", expected="MAIL accepted, then "
                          "550 at RCPT", got=f"MAIL FROM refused: {said(mail)}", rfc="RFC 5321 §3.3", transcript=shown)
        if rcpt.code == 550:
            return Result(UNKNOWN.title, "pass", info=rcpt.one_line())
        common = dict(step=f"{self.host.host}: RCPT TO:<{address}>", expected="550 (no such user) at RCPT",
                      got=rcpt.one_line(), rfc="RFC 5321 §3.3", transcript=shown)
        if rcpt.permanent:
            return Result(UNKNOWN.title, "warn", **common, hint="refused, but 550 is the code for an unknown mailbox")
        if rcpt.positive:
            return Result(UNKNOWN.title, "fail", **common, hint="a catch-all, or recipients not checked at RCPT: mail "
                          "for mistyped addresses is taken and then lost or bounced to forged senders (backscatter)")
        return Result(UNKNOWN.title, "fail", **common, hint="a temporary refusal makes senders retry for days")

    def relay(self) -> Result:
        mark = len(self.transcript)
        address = probe_address(RELAY_DOMAIN)
        mail, rcpt = self.probe.ask(self.mail_from, address)
        if rcpt is None or not rcpt.positive:
            return Result(RELAY.title, "pass", info=f"refused: {said(rcpt or mail)}")
        return Result(RELAY.title, "fail", step=f"{self.host.host}: RCPT TO:<{address}>",
                      expected="a refusal (Relay access denied)",
                      got=f"{rcpt.one_line()} — an open relay (the check stopped there: RSET, nothing was sent)",
                      rfc="RFC 2505 §2.1, RFC 5321 §3.6", transcript=excerpt(self.transcript, mark),
                      hint="relay only for your own users, after AUTH (Postfix: mynetworks must not include "
                      "other people's addresses; smtpd_relay_restrictions = permit_sasl_authenticated, "
                      "reject_unauth_destination)")


# -- STARTTLS on port 25 (information) -------------------------------------------------------
def _starttls(host: NextHop, visit: Visit) -> None:
    """A short session: greeting, EHLO, STARTTLS, handshake, EHLO again, QUIT. What it
    finds goes to the TLS row; a failure here fails no mail rule."""
    use = f"SMTP {SMTP_PORT} STARTTLS"
    transcript: list[Line] = []
    try:
        probe = visit.tls.attempt(host.host, use, lambda context: smtp_session(
            host, visit, SMTP_PORT, transcript, starttls=(use, context)))
    except (ConnectFailed, ProbeError, HandshakeFailed, TimeUp, Stop):
        return
    probe.quit()


def smtp_session(host: NextHop, visit: Visit, port: int, transcript: list[Line], *,
                 starttls: tuple[str, ssl.SSLContext] | None = None,
                 implicit: tuple[str, ssl.SSLContext] | None = None) -> SMTPProbe:
    """Connect, (implicit TLS,) greeting and EHLO, (STARTTLS where offered, EHLO again):
    a probe ready for its questions. A greeting or EHLO refused is a :class:`Stop`
    (its row is for the caller's first rule to fill in)."""
    target = visit.target
    sock = target.connector().connect(host.host, host.addresses, port, transcript)
    if implicit is not None:
        sock.settimeout(target.budget())
        sock = visit.tls.wrap(sock, host.host, implicit[0], implicit[1], transcript)
    probe = SMTPProbe(sock, budget=target.budget, transcript=transcript)
    try:
        greeting = probe.reply()
        ehlo = probe.ehlo(helo_name(sock)) if greeting.code == 220 else greeting
        if ehlo.code != 250:
            raise Stop(Result("", "fail", step=f"{host.host} port {port}: greeting and EHLO", expected="220, then 250",
                              got=ehlo.one_line(), transcript=excerpt(transcript)))
        if starttls is not None and "STARTTLS" in probe.extensions:
            reply = probe.starttls(visit.tls, host.host, starttls[0], starttls[1])
            if reply.code != 220:
                raise visit.tls.failure(host.host, starttls[0], f"STARTTLS refused: {reply.one_line()}", transcript)
            probe.ehlo(helo_name(probe.sock))
    except BaseException:
        probe.quit()
        raise
    return probe


# -- the test message ---------------------------------------------------------------------
def make_test_message(domain: str, user: str) -> tuple[bytes, str]:
    """A small message with a unique Message-ID (RFC 5322 §3.6.4), and that id."""
    message_id = f"<labkit-check.{uuid.uuid4().hex}@labkit-check.invalid>"
    date = email.utils.format_datetime(datetime.now(timezone.utc))
    text = (f"From: labkit check <labkit-check@labkit-check.invalid>\r\nTo: <{user}>\r\n"
            f"Subject: labkit check of {domain}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\n"
            f"\r\nThis message tests the mail setup of {domain}. It can be deleted.\r\n")
    return text.encode(), message_id


class _Budgeted:
    """A socket whose every wait is cut to what is left of the check's time limit
    (:func:`~labkit.smtp.send.drive` sets one timeout for all of them)."""

    def __init__(self, sock: socket.socket, budget: Callable[[], float]) -> None:
        self.sock, self.budget = sock, budget

    def settimeout(self, _seconds: float) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(self.budget())
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        self.sock.settimeout(self.budget())
        return self.sock.recv(size)


def deliver(visit: Visit, hosts: list[Greeted]) -> tuple[Result, Greeted | None, str | None]:
    """Send the test message through the first MX that took a session: its row, the
    host that took it, and its Message-ID."""
    target = visit.target
    if not target.user:
        return not_checked(MESSAGE, visit.no_credentials(), BECAUSE_INPUT), None, None
    usable = [g for g in hosts if g.ok]
    if not usable:
        return after(MESSAGE, EHLO if hosts else GREETING), None, None
    greeted = usable[0]
    host = greeted.host
    message, message_id = make_test_message(target.domain, target.user)
    transcript: list[Line] = []
    try:
        sock = target.connector().connect(host.host, host.addresses, SMTP_PORT, transcript)
        with sock:
            txn = ClientTransaction(helo=helo_name(sock), mail_from=target.mail_from, rcpt_to=[target.user],
                                    message=message, listener=lambda d, line: transcript.append((d, line)))
            result = drive(_Budgeted(sock, target.budget), txn, target.timeout)  # type: ignore[arg-type]
    except TimeUp:
        return time_up(MESSAGE), None, None
    except ConnectFailed as error:
        return Result(MESSAGE.title, "fail", step=f"connect to {host.host}", got=str(error),
                      rfc="RFC 5321 §3.1", transcript=excerpt(transcript)), None, None
    except SMTPError as error:
        if target.expired():
            return time_up(MESSAGE), None, None
        return Result(MESSAGE.title, "fail", step=f"{error.stage} (via {host.host})",
                      expected=f"the message accepted for <{target.user}>", got=str(error), rfc="RFC 5321 §4.1.1.4",
                      transcript=excerpt(transcript), hint=_starttls_required(str(error))), None, None
    if target.user in result.accepted and result.data_reply is not None:
        return (Result(MESSAGE.title, "pass", info=f"via {host.host}: {result.data_reply.one_line()}"), greeted,
                message_id)
    refused = result.refused.get(target.user)
    start = next((i for i, (_, line) in enumerate(transcript) if line.startswith("RCPT")), 0)
    return Result(MESSAGE.title, "fail", step=f"RCPT TO:<{target.user}> (via {host.host})",
                  expected="250 for the user's address", got=said(refused), rfc="RFC 5321 §3.3",
                  transcript=excerpt(transcript, start),
                  hint=_starttls_required(said(refused)) or "is --user the address of a real mailbox?"), None, None


def _starttls_required(text: str) -> str:
    if "STARTTLS" not in text.upper():
        return ""
    return ("RFC 3207 §4: a public MX must not require STARTTLS to take mail for its own users (Postfix: "
            "smtpd_tls_security_level = may on port 25; encrypt only on submission)")
