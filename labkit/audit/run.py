"""One whole check of a mail setup: DNS, then SMTP on each MX in preference order,
the test message, reading it back, and submission. Returns a
:class:`~labkit.checks.Report`; nothing here raises for a broken setup."""

from __future__ import annotations

from ..checks.result import Report
from ..dns.mx import NextHop
from . import reading, submission
from .dns_rules import Lookups, addresses_of, check_dns, resolver_for
from .rows import not_checked, skipped
from .smtp_rules import RULE_MESSAGE, Greeted, check_mx, deliver, rules_for, make_test_message
from .target import Target

RULE_NO_HOST = "a mail host to check"
TIME_LIMIT = "the time limit ran out"


def check(target: Target) -> Report:
    """Check the mail setup of ``target.domain`` end to end."""
    report = Report(f"mail setup of {target.domain}")
    lookups = Lookups(resolver_for(target))
    rows, hosts = check_dns(target, lookups)
    report.extend(rows)
    if not hosts:
        report.add(not_checked(RULE_NO_HOST, "DNS names no mail host for the domain", "RFC 5321 §5.1"))
    greeted: list[Greeted] = []
    for host in hosts:
        if target.expired():
            report.extend(not_checked(rule, TIME_LIMIT) for rule in rules_for(host.host, target.domain).values())
            continue
        rows, hello = check_mx(host, target)
        report.extend(rows)
        if hello is not None:
            greeted.append(hello)
    message, message_id = make_test_message(target)
    if target.expired():
        report.add(not_checked(RULE_MESSAGE, TIME_LIMIT))
        receiver = None
    else:
        row, receiver = deliver(target, greeted, message)
        report.add(row)
    mailbox_host = _mailbox_host(target, hosts, greeted, receiver, lookups)
    can_read = bool(target.user and target.password)
    if not can_read:
        report.extend(skipped(rule, "no --user/--password given") for rule in reading.RULES)
    later = [*(reading.RULES if can_read else ()), submission.RULE_NEEDS_AUTH, submission.RULE_AUTH]
    if mailbox_host is None or target.expired():
        because = TIME_LIMIT if mailbox_host else "no host to read mail from"
        report.extend(not_checked(rule, because) for rule in later)
        return report
    if can_read:
        delivered = message_id if receiver is not None else None
        report.extend(reading.check_reading(mailbox_host, target, delivered, receiver))
    report.extend(submission.check_submission(mailbox_host, target))
    return report


def _mailbox_host(target: Target, hosts: list[NextHop], greeted: list[Greeted], receiver: Greeted | None,
                  lookups: Lookups) -> NextHop | None:
    """Where IMAP, POP3 and submission are: ``--host``, else the MX that took the
    test message, else the first MX that answered, else the first MX."""
    if target.host:
        name = target.host.lower().rstrip(".")
        known = next((h for h in hosts if h.host == name), None)
        if known is not None:
            return known
        return NextHop(name, 0, addresses_of(name, lookups) or (name,))
    if receiver is not None:
        return receiver.host
    if greeted:
        return greeted[0].host
    return hosts[0] if hosts else None
