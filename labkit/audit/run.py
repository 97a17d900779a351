"""One whole check of a mail setup: DNS, then SMTP on every MX host, the test message,
reading it back, and submission, into one row per rule of the rubric. Returns an
:class:`~labkit.audit.rubric.AuditReport`; nothing here raises for a broken setup.

The time limit (``Target.deadline``) cuts every network wait; what it stops is "not
checked (the time limit ran out)". A password the servers all refuse is the roster's
(or the command line's) mistake until one of them takes it: the rules it stopped are
"not checked", and the report says to check the roster.
"""

from __future__ import annotations

from dataclasses import replace

import labkit

from ..dns.mx import NextHop
from . import reading, submission
from .dns_rules import Lookups, addresses_of, check_dns, is_address_literal, resolver_for
from .rubric import (ADDRESS, BECAUSE_ROSTER, BECAUSE_RULE, LITERAL, MX, AuditReport, Sheet, Unchecked, after,
                     not_checked, rubric, time_up)
from .smtp_rules import Greeted, check_mx, deliver
from .target import SMTP_PORT, Target, TimeUp
from .visit import Visit


def check(target: Target) -> AuditReport:
    """Check the mail setup of ``target.domain`` end to end."""
    rules = rubric(target.services)
    report = AuditReport(f"mail setup of {target.domain}", rules=rules, settings=settings(target))
    sheet = Sheet(rules)
    visit = Visit.of(target)
    try:
        _run(visit, sheet)
    except TimeUp:
        pass
    sheet.fill(time_up if target.expired() else lambda rule: not_checked(rule, "labkit check did not get to it"))
    sheet.put(visit.tls.row())
    report.roster = _roster(visit, sheet)
    return sheet.report(report)


def _run(visit: Visit, sheet: Sheet) -> None:
    target = visit.target
    lookups = Lookups(resolver_for(target), target)
    rows, hosts = check_dns(target, lookups)
    sheet.extend(rows)
    dialled = _dialled(hosts, target)
    if not dialled:  # the first DNS rule that failed says why
        because = next((r for r in (MX, LITERAL, ADDRESS) if sheet.rows[r.title].status == "fail"), ADDRESS)
        sheet.fill(lambda rule: after(rule, because))
        return
    rows, greeted = check_mx(dialled, visit)
    sheet.extend(rows)
    target.budget()  # each part starts only with time left (TimeUp: the rest is "not checked")
    row, receiver, message_id = deliver(visit, greeted)
    sheet.put(row)
    mailbox = _mailbox_host(target, dialled, greeted, receiver, lookups)
    if "imap" in target.services or "pop3" in target.services:
        target.budget()
        sheet.extend(reading.check_reading(mailbox, visit, message_id, receiver))
    if "submission" in target.services:
        target.budget()
        sheet.extend(submission.check_submission(mailbox, visit))


def _dialled(hosts: list[NextHop], target: Target) -> list[NextHop]:
    """The hosts a check may dial: not those with only special-use addresses (RFC 6890)
    that no override sends elsewhere (the address rule has failed them)."""
    connector = target.connector()
    dialled = []
    for host in hosts:
        endpoints, refused = connector.endpoints(host.host, host.addresses, SMTP_PORT)
        if endpoints or not refused:
            dialled.append(host)
    return dialled


def _mailbox_host(target: Target, hosts: list[NextHop], greeted: list[Greeted], receiver: Greeted | None,
                  lookups: Lookups) -> NextHop:
    """Where IMAP, POP3 and submission are: ``--host``, else the MX that took the
    test message, else the first MX that answered, else the first MX."""
    if target.host:  # its addresses from the check's DNS (a name is never dialled as it is)
        name = target.host.lower().rstrip(".")
        known = next((h for h in hosts if h.host == name), None)
        if known is not None:
            return known
        literal = name.strip("[]").removeprefix("ipv6:")
        return NextHop(name, 0, (literal,) if is_address_literal(name) else addresses_of(name, lookups))
    if receiver is not None:
        return receiver.host
    return greeted[0].host if greeted else hosts[0]


def _roster(visit: Visit, sheet: Sheet) -> str:
    """When every service refused the password (and none took it), the rules it stopped
    are the roster's to fix, not the setup's: "not checked", and what to tell the TA."""
    refused = [login for login in visit.logins if not login.accepted]
    if not visit.credentials:
        return f"{visit.no_credentials()}: the rules that log in were not checked" if visit.target.roster else ""
    if not refused or any(login.accepted for login in visit.logins):
        return ""
    whose = "the roster's" if visit.target.roster else "the given"
    problem = f"could not log in with {whose} password ({refused[0].service}: {refused[0].said})"
    because = f"{problem}: check the {'roster' if visit.target.roster else '--user, --login and --password'}"
    stopped = {login.rule for login in refused}
    for title, row in list(sheet.rows.items()):
        waited = isinstance(row, Unchecked) and row.cause == BECAUSE_RULE and set(row.waited_for) & stopped
        if title in stopped or waited:
            sheet.rows[title] = replace(not_checked(title, because, BECAUSE_ROSTER), points=row.points)
    return because


def settings(target: Target) -> dict[str, str]:
    """What the check was run with, for the report's heading."""
    routes = sorted(target.routes.routes().items())
    overrides = ", ".join(f"{name}:{port}={endpoint}" for (name, port), endpoint in routes)
    return {
        "DNS server": str(target.dns) if target.dns else "the system's resolver",
        "overrides": overrides or "none",
        "dialling": "public addresses as they are" if target.direct else "only the overrides (a lab world)",
        "user": target.user or "(none)",
        "login": target.login_name or "(none)",
        "graded services": ", ".join(["DNS", "SMTP", *target.services]),
        "CA file": target.ca_file or "the system's CAs",
        "timeouts": f"{target.timeout:g}s a wait, {target.wait:g}s for the test message",
        "labkit": labkit.__version__,
    }

