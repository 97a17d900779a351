"""The rubric: one fixed list of rules per assignment, the same maximum for every student.

Each rule is one row of the report, whatever the setup looks like: rules about the mail
hosts judge every MX host in one row (a row names the host that failed), and a rule that
could not run because another failed first is shown as "not checked (because … failed)"
and earns nothing, without being a second failure. Which of IMAP, POP3 and submission
the assignment grades is chosen once for the whole class (``--services``).

Information rows (SPF, DMARC, TLS and certificates) are shown but weigh nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from ..checks.result import Report, Result


@dataclass(frozen=True)
class Rule:
    title: str
    rfc: str
    service: str  # dns, smtp, imap, pop3, submission; "reading": IMAP or POP3
    points: float = 1.0


MX = Rule("MX records name the mail hosts", "RFC 5321 §5.1, RFC 7505 §3", "dns")
LITERAL = Rule("no MX host is an address literal", "RFC 5321 §5.1", "dns")
CNAME = Rule("no MX host is a CNAME", "RFC 2181 §10.3", "dns")
ADDRESS = Rule("every MX host has a public address (A/AAAA)", "RFC 5321 §5.1, RFC 6890", "dns")
AUTHORITY = Rule("the DNS server answers for the zone itself (authoritative)", "RFC 2181 §6.1, RFC 1035 §4.1.1",
                 "dns")
GREETING = Rule("the MX hosts greet with 220 and their own name", "RFC 5321 §4.2, §5.1", "smtp")
EHLO = Rule("the MX hosts accept EHLO", "RFC 5321 §4.1.1.1", "smtp")
POSTMASTER = Rule("mail for postmaster is accepted", "RFC 5321 §4.5.1", "smtp")
UNKNOWN = Rule("an unknown user is refused with 550", "RFC 5321 §3.3", "smtp")
RELAY = Rule("relaying for strangers is refused", "RFC 2505 §2.1, RFC 5321 §3.6", "smtp")
MESSAGE = Rule("the test message is accepted for the user", "RFC 5321 §4.1.1.4", "smtp")
IMAP_FOUND = Rule("IMAP: the test message is in INBOX", "RFC 3501 §6.2.3, §6.3.1, §6.4.4", "imap")
IMAP_WRONG = Rule("IMAP: a wrong password is refused", "RFC 3501 §6.2.3", "imap")
POP3_FOUND = Rule("POP3: the test message is in the maildrop", "RFC 1939 §7", "pop3")
POP3_WRONG = Rule("POP3: a wrong password is refused", "RFC 1939 §7", "pop3")
RECEIVED = Rule("the receiving host added a Received line", "RFC 5321 §4.4", "reading")
SUBMISSION_RELAY = Rule("submission: relaying needs AUTH", "RFC 6409 §4.3", "submission")
SUBMISSION_AUTH = Rule("submission: AUTH with the user's password", "RFC 4954 §4, RFC 8314 §3.3", "submission")
RULES = (MX, LITERAL, CNAME, ADDRESS, AUTHORITY, GREETING, EHLO, POSTMASTER, UNKNOWN, RELAY, MESSAGE,
         IMAP_FOUND, IMAP_WRONG, POP3_FOUND, POP3_WRONG, RECEIVED, SUBMISSION_RELAY, SUBMISSION_AUTH)

SPF = "SPF record (information)"
DMARC = "DMARC record (information)"
TLS = "TLS and certificates (information)"
INFO = (SPF, DMARC, TLS)

# why a rule was not checked
BECAUSE_RULE, BECAUSE_TIME, BECAUSE_ROSTER, BECAUSE_INPUT = "rule", "time limit", "roster", "input"


def rubric(services: tuple[str, ...]) -> tuple[Rule, ...]:
    """The rules an assignment grading ``services`` (of imap, pop3, submission) has."""
    def graded(rule: Rule) -> bool:
        if rule.service == "reading":
            return "imap" in services or "pop3" in services
        return rule.service in ("dns", "smtp") or rule.service in services

    return tuple(rule for rule in RULES if graded(rule))


@dataclass
class Unchecked(Result):
    """A rule that could not run; ``cause`` says why (a rule, the time limit, the roster)."""

    cause: str = BECAUSE_RULE
    waited_for: tuple[str, ...] = ()  # the rules whose failure stopped it


def not_checked(rule: Rule | str, because: str, cause: str = BECAUSE_RULE,
                waited_for: tuple[str, ...] = ()) -> Unchecked:
    title = rule.title if isinstance(rule, Rule) else rule
    return Unchecked(title, "unchecked", info=f"not checked ({because})", cause=cause, waited_for=waited_for)


def after(rule: Rule, *failed: Rule | str) -> Unchecked:
    """``rule`` could not run because ``failed`` failed first."""
    titles = tuple(f.title if isinstance(f, Rule) else f for f in failed)
    quoted = " and ".join(f'"{title}"' for title in titles)
    return not_checked(rule, f"because {quoted} failed", waited_for=titles)


def time_up(rule: Rule | str) -> Unchecked:
    return not_checked(rule, "the time limit ran out", BECAUSE_TIME)


@dataclass
class AuditReport(Report):
    """A :class:`Report` on the fixed rubric, with what the check was run with."""

    rules: tuple[Rule, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)  # DNS server, overrides, user, labkit version …
    checked_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    roster: str = ""  # what the roster (or the command line) got wrong: "" when nothing

    @property
    def unchecked(self) -> list[Result]:
        return [r for r in self.results if r.status == "unchecked"]

    @property
    def timed_out(self) -> bool:
        """Some rule was cut short by the time limit (not: the limit passed afterwards)."""
        return any(getattr(r, "cause", "") == BECAUSE_TIME for r in self.results)

    def to_json(self) -> dict:
        """When, with what, the score, and each row with the points it earned (0 where
        it did not) and its weight (``max_points``)."""
        rows = [{**{k: v for k, v in asdict(row).items() if k != "points"}, "points": earned(row),
                 "max_points": row.points} for row in self.results]
        return {"title": self.title, "checked_at": self.checked_at.isoformat(timespec="seconds"),
                "settings": self.settings, "score": self.score, "max_score": self.max_score, "passed": self.passed,
                "timed_out": self.timed_out, "roster": self.roster, "results": rows}


def earned(row: Result) -> float:
    return row.points if row.status in ("pass", "warn") else 0.0


class Sheet:
    """Collects one row per rule in any order; :meth:`report` puts them in rubric order,
    information rows after the DNS rules (SPF, DMARC) or at the end (TLS)."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self.rows: dict[str, Result] = {}
        self.info: dict[str, Result] = {}

    def put(self, row: Result) -> None:
        """A rule's row (``row.rule`` is its title) or an information row (weight 0)."""
        if row.rule in INFO:
            row.points = 0
            self.info[row.rule] = row
            return
        rule = next((r for r in self.rules if r.title == row.rule), None)
        if rule is not None:  # (a rule of a service the rubric leaves out has no row)
            row.points = rule.points
            self.rows.setdefault(row.rule, row)

    def extend(self, rows: list[Result]) -> None:
        for row in rows:
            self.put(row)

    def fill(self, make: Callable[[Rule], Result]) -> None:
        """``make(rule)`` for every rule that has no row yet."""
        for rule in self.rules:
            if rule.title not in self.rows:
                self.put(make(rule))

    def report(self, report: AuditReport) -> AuditReport:
        dns = [self.rows[r.title] for r in self.rules if r.service == "dns" and r.title in self.rows]
        rest = [self.rows[r.title] for r in self.rules if r.service != "dns" and r.title in self.rows]
        early = [self.info[t] for t in (SPF, DMARC) if t in self.info]
        late = [self.info[t] for t in (TLS,) if t in self.info]
        report.extend(dns + early + rest + late)
        return report
