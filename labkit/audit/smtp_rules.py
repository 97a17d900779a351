"""The SMTP rules for each MX host, and the test message.

One probe session per host asks its questions (greeting, EHLO, postmaster, an unknown
user, a relay attempt), each question ended with RSET before DATA. Then one real
transaction, with labkit's own client, delivers the test message to ``--user``.
"""

from __future__ import annotations

import email.utils
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from ..checks.result import Result
from ..dns.mx import NextHop
from ..smtp.client import ClientTransaction, SMTPError
from ..smtp.send import drive
from .probe import SMTPProbe, helo_name
from .rows import excerpt, not_checked, said, skipped
from .steps import Step, Stop, run_steps
from .target import ConnectFailed, Line, Target

SMTP_PORT = 25
RELAY_DOMAIN = "relay-test.invalid"  # RFC 2606 §2: can never exist, so nothing can be relayed there
RULE_MESSAGE = "the test message is accepted for the user"


def rules_for(host: str, domain: str) -> dict[str, str]:
    """The rule names for one MX host (they name it: a domain may have several)."""
    return {
        "greeting": f"{host}: 220 greeting names the host",
        "ehlo": f"{host}: EHLO accepted",
        "postmaster": f"{host}: accepts mail for postmaster@{domain}",
        "unknown": f"{host}: refuses an unknown user with 550",
        "relay": f"{host}: not an open relay",
    }


def probe_address(domain: str) -> str:
    """An address nobody has: unique, so no real user is hit by accident."""
    return f"labkit-check-{uuid.uuid4().hex[:10]}@{domain}"


@dataclass
class Greeted:
    """What the rules of an MX session learnt, for the later rules."""

    host: NextHop
    name: str  # the name in its 220 greeting
    ok: bool = False  # the session got past EHLO


def check_mx(host: NextHop, target: Target) -> tuple[list[Result], Greeted | None]:
    rules = rules_for(host.host, target.domain)
    transcript: list[Line] = []
    try:
        sock = target.connector().connect(host.host, host.addresses, SMTP_PORT, transcript)
    except ConnectFailed as error:
        row = Result(rules["greeting"], "fail", step=f"connect to {host.host} port {SMTP_PORT}",
                     expected="a TCP connection and a 220 greeting", got=str(error), rfc="RFC 5321 §3.1",
                     transcript=excerpt(transcript), hint="is the MTA running, listening on the public address "
                     "(Postfix: inet_interfaces), and port 25 open in the firewall?")
        return [row, *(not_checked(r, f"no SMTP session with {host.host}") for r in list(rules.values())[1:])], None
    probe = SMTPProbe(sock, timeout=target.timeout, transcript=transcript)
    session = _MXSession(probe, host, target, rules, transcript)
    try:
        rows = run_steps(session.steps(), transcript)
    finally:
        probe.quit()
    return rows, session.greeted


class _MXSession:
    def __init__(self, probe: SMTPProbe, host: NextHop, target: Target, rules: dict[str, str],
                 transcript: list[Line]) -> None:
        self.probe, self.host, self.target, self.rules, self.transcript = probe, host, target, rules, transcript
        self.greeted: Greeted | None = None

    def steps(self) -> list[Step]:
        r = self.rules
        return [Step(r["greeting"], "RFC 5321 §4.2", self.greeting), Step(r["ehlo"], "RFC 5321 §4.1.1.1", self.ehlo),
                Step(r["postmaster"], "RFC 5321 §4.5.1", self.postmaster),
                Step(r["unknown"], "RFC 5321 §3.3", self.unknown_user),
                Step(r["relay"], "RFC 2505 §2.1", self.relay)]

    def greeting(self) -> Result:
        rule, mark = self.rules["greeting"], len(self.transcript)
        reply = self.probe.reply()
        words = reply.lines[0].split() if reply.lines else []
        name = words[0].lower().rstrip(".") if words else ""
        shown = excerpt(self.transcript, mark)
        if reply.code != 220:
            # RFC 5321 §3.1: 554 means "no SMTP service here"; 421 "try later".
            row = Result(rule, "fail", step="greeting", expected=f"220 {self.host.host} …", got=reply.one_line(),
                         rfc="RFC 5321 §4.2, §3.1", transcript=shown)
            raise Stop(row, f"{self.host.host} did not greet with 220")
        self.greeted = Greeted(self.host, name)
        if name == self.host.host:
            return Result(rule, "pass", info=reply.one_line())
        return Result(rule, "warn", step="greeting", expected=f"220 {self.host.host} … (the host's own name)",
                      got=reply.one_line(), rfc="RFC 5321 §4.2, §4.3.1", transcript=shown,
                      hint="set the MTA's host name to the name the MX names (Postfix: myhostname)")

    def ehlo(self) -> Result:
        rule, mark = self.rules["ehlo"], len(self.transcript)
        name = helo_name(self.probe.sock)
        reply = self.probe.ehlo(name)
        if reply.code == 250:
            assert self.greeted is not None
            self.greeted.ok = True
            extensions = " ".join(f"{k} {v}".strip() for k, v in self.probe.extensions.items())
            return Result(rule, "pass", info=f"extensions: {extensions or 'none'}")
        row = Result(rule, "fail", step=f"EHLO {name}", expected="250 and the server's extensions",
                     got=reply.one_line(), rfc="RFC 5321 §4.1.1.1", transcript=excerpt(self.transcript, mark),
                     hint="every SMTP server must support EHLO (RFC 5321 §4.1.4)")
        if self.probe.command(f"HELO {name}").code != 250:  # §3.2: go on with HELO if it can
            raise Stop(row, "neither EHLO nor HELO was accepted")
        return row

    def postmaster(self) -> Result:
        rule, mark = self.rules["postmaster"], len(self.transcript)
        address = f"postmaster@{self.target.domain}"
        mail, rcpt = self.probe.ask(self.target.mail_from, address)
        if rcpt is not None and rcpt.code // 100 == 2:
            return Result(rule, "pass", info=rcpt.one_line())
        return Result(rule, "fail", step=f"RCPT TO:<{address}>" if rcpt else "MAIL FROM",
                      expected="250: every domain that takes mail has a postmaster",
                      got=said(rcpt) if rcpt else f"MAIL FROM refused: {said(mail)}", rfc="RFC 5321 §4.5.1",
                      transcript=excerpt(self.transcript, mark),
                      hint="alias postmaster to a real mailbox (Postfix: virtual_alias_maps or /etc/aliases)")

    def unknown_user(self) -> Result:
        rule, mark = self.rules["unknown"], len(self.transcript)
        address = probe_address(self.target.domain)
        mail, rcpt = self.probe.ask(self.target.mail_from, address)
        shown = excerpt(self.transcript, mark)
        if rcpt is None:
            return Result(rule, "fail", step="MAIL FROM", expected="MAIL accepted, then 550 at RCPT",
                          got=f"MAIL FROM refused: {said(mail)}", rfc="RFC 5321 §3.3", transcript=shown)
        if rcpt.code == 550:
            return Result(rule, "pass", info=rcpt.one_line())
        common = dict(step=f"RCPT TO:<{address}>", expected="550 (no such user) at RCPT", got=rcpt.one_line(),
                      rfc="RFC 5321 §3.3", transcript=shown)
        if rcpt.permanent:
            return Result(rule, "warn", **common, hint="refused, but 550 is the code for an unknown mailbox")
        if rcpt.positive:
            return Result(rule, "fail", **common, hint="a catch-all, or recipients not checked at RCPT: mail for "
                          "mistyped addresses is taken and then lost or bounced to forged senders (backscatter)")
        return Result(rule, "fail", **common, hint="a temporary refusal makes senders retry for days")

    def relay(self) -> Result:
        rule, mark = self.rules["relay"], len(self.transcript)
        address = probe_address(RELAY_DOMAIN)
        mail, rcpt = self.probe.ask(self.target.mail_from, address)
        if rcpt is None or not rcpt.positive:
            return Result(rule, "pass", info=f"refused: {said(rcpt or mail)}")
        return Result(rule, "fail", step=f"RCPT TO:<{address}>", expected="a refusal (Relay access denied)",
                      got=f"{rcpt.one_line()} — an open relay (the check stopped there: RSET, nothing was sent)",
                      rfc="RFC 2505 §2.1, RFC 5321 §3.6", transcript=excerpt(self.transcript, mark),
                      hint="relay only for your own users, after AUTH (Postfix: mynetworks must not include "
                      "other people's addresses; smtpd_relay_restrictions = permit_sasl_authenticated, "
                      "reject_unauth_destination)")


# -- the test message ---------------------------------------------------------------------
def make_test_message(target: Target) -> tuple[bytes, str]:
    """A small message with a unique Message-ID (RFC 5322 §3.6.4), and that id."""
    message_id = f"<labkit-check.{uuid.uuid4().hex}@labkit-check.invalid>"
    date = email.utils.format_datetime(datetime.now(timezone.utc))
    text = (f"From: labkit check <labkit-check@labkit-check.invalid>\r\nTo: <{target.user}>\r\n"
            f"Subject: labkit check of {target.domain}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\n"
            f"\r\nThis message tests the mail setup of {target.domain}. It can be deleted.\r\n")
    return text.encode(), message_id


def deliver(target: Target, hosts: list[Greeted], message: bytes) -> tuple[Result, Greeted | None]:
    """Send the test message through the first MX that greeted properly."""
    if not target.user:
        return skipped(RULE_MESSAGE, "no --user given: no test message sent"), None
    usable = [g for g in hosts if g.ok]
    if not usable:
        return not_checked(RULE_MESSAGE, "no MX host took an SMTP session", "RFC 5321 §4.1.1.4"), None
    greeted = usable[0]
    host = greeted.host
    transcript: list[Line] = []
    try:
        sock = target.connector().connect(host.host, host.addresses, SMTP_PORT, transcript)
    except ConnectFailed as error:
        return Result(RULE_MESSAGE, "fail", step=f"connect to {host.host}", got=str(error),
                      rfc="RFC 5321 §3.1", transcript=excerpt(transcript)), None
    with sock:
        txn = ClientTransaction(helo=helo_name(sock), mail_from=target.mail_from, rcpt_to=[target.user],
                                message=message, listener=lambda d, line: transcript.append((d, line)))
        try:
            result = drive(sock, txn, target.timeout)
        except SMTPError as error:
            return Result(RULE_MESSAGE, "fail", step=f"{error.stage} (via {host.host})",
                          expected=f"the message accepted for <{target.user}>", got=str(error),
                          rfc="RFC 5321 §4.1.1.4", transcript=excerpt(transcript)), None
    if target.user in result.accepted and result.data_reply is not None:
        return Result(RULE_MESSAGE, "pass", info=f"via {host.host}: {result.data_reply.one_line()}"), greeted
    refused = result.refused.get(target.user)
    start = next((i for i, (_, line) in enumerate(transcript) if line.startswith("RCPT")), 0)
    return Result(RULE_MESSAGE, "fail", step=f"RCPT TO:<{target.user}> (via {host.host})",
                  expected="250 for the user's address", got=said(refused), rfc="RFC 5321 §3.3",
                  transcript=excerpt(transcript, start), hint="is --user the address of a real mailbox?"), None
