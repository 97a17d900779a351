"""The DNS rules: where does mail for the domain go, and is that published right?

Real queries (dnspython) to the server given with ``--dns`` or the system's resolver,
each shown in the row's transcript as ``dig`` would show it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from ..checks.result import Result
from ..dns.mx import NextHop, is_null_mx, lab_resolver
from .rows import excerpt, not_checked
from .target import Line, Target

RULE_MX = "MX records name the mail hosts"
RULE_ADDRESSES = "every MX host has an address (A/AAAA)"
RULE_CNAME = "no MX host is a CNAME"
RULE_LITERAL = "no MX host is an address literal"
RULE_AUTHORITY = "the DNS answers are authoritative"
RULE_SPF = "SPF record (information)"
RULE_DMARC = "DMARC record (information)"


@dataclass
class Answer:
    """What one query got: records (as text), or NODATA/NXDOMAIN, or a failure."""

    records: list = field(default_factory=list)  # rdata objects of the asked type
    outcome: str = "ok"  # ok | nodata | nxdomain | error
    problem: str = ""
    response: dns.message.Message | None = None


class Lookups:
    """Asks one resolver, keeping a dig-like transcript of every question and answer."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver
        self.transcript: list[Line] = []

    def ask(self, name: str, rdtype: str) -> Answer:
        qname = dns.name.from_text(name)
        self.transcript.append(("C", f"{qname} IN {rdtype}"))
        try:
            answer = self.resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            responses = list(exc.responses().values())
            self.transcript.append(("S", "NXDOMAIN"))
            return Answer(outcome="nxdomain", problem=f"{name} does not exist (NXDOMAIN)",
                          response=responses[0] if responses else None)
        except dns.exception.Timeout:
            problem = f"no answer within {self.resolver.lifetime:g}s"
        except dns.resolver.NoNameservers as exc:
            problem = f"the server could not answer: {exc}"
        except dns.exception.DNSException as exc:
            problem = f"lookup failed: {exc}"
        else:
            response = answer.response
            lines = [line for rrset in response.answer for line in rrset.to_text().splitlines()]
            flags = dns.flags.to_text(response.flags).lower()
            self.transcript += [("S", line) for line in lines] + [("S", f"(flags: {flags})")]
            if answer.rrset is None:
                self.transcript.append(("S", "NODATA"))
                return Answer(outcome="nodata", response=response)
            return Answer(list(answer.rrset), response=response)
        self.transcript.append(("*", problem))
        return Answer(outcome="error", problem=problem)

    def mark(self) -> int:
        return len(self.transcript)

    def since(self, mark: int) -> list[Line]:
        return excerpt(self.transcript, mark)


def resolver_for(target: Target) -> dns.resolver.Resolver:
    """The server ``--dns`` names, or the system's resolver, with bounded lookups."""
    if target.dns is not None:
        return lab_resolver(target.dns, timeout=target.timeout)
    resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = target.timeout
    resolver.cache = None
    return resolver


def is_address_literal(name: str) -> bool:
    """``1.2.3.5.`` or ``[1.2.3.5]`` where a host name belongs (RFC 5321 §5.1)."""
    text = name.rstrip(".").strip("[]").removeprefix("IPv6:")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_dns(target: Target, lookups: Lookups) -> tuple[list[Result], list[NextHop]]:
    """The DNS rows, and the mail hosts in preference order (equal preferences by
    name, so runs compare), for the SMTP rules to visit."""
    domain = target.domain
    rows: list[Result] = []
    mark = lookups.mark()
    mx = lookups.ask(domain, "MX")
    hosts: list[NextHop] = []
    if mx.outcome in ("nxdomain", "error"):
        rows.append(Result(
            RULE_MX, "fail", step=f"{domain} IN MX", expected="MX records naming the domain's mail hosts",
            got=mx.problem, rfc="RFC 5321 §5.1", transcript=lookups.since(mark),
            hint="check the domain's spelling, that the zone is loaded and delegated, and that --dns names "
            "a server that knows it" if mx.outcome == "nxdomain" else "is the name server running and reachable?"))
    elif mx.outcome == "nodata":
        rows.append(_implicit_mx(domain, lookups, mark, hosts))
    elif is_null_mx(mx.records):
        rows.append(Result(
            RULE_MX, "fail", step=f"{domain} IN MX", expected="MX records naming the domain's mail hosts",
            got="0 . — a null MX: the domain says it accepts no mail", rfc="RFC 7505 §3",
            transcript=lookups.since(mark),
            hint="a null MX is right for a domain that never receives mail; a mail setup needs MX records "
            "naming its hosts"))
    else:
        records = sorted(mx.records, key=lambda r: (r.preference, r.exchange.to_text().lower()))
        info = ", ".join(f"{r.preference} {r.exchange.to_text(omit_final_dot=True)}" for r in records)
        if any(r.exchange == dns.name.root for r in records):
            rows.append(Result(RULE_MX, "fail", info=info, expected="a null MX alone, or only MX records naming "
                               "hosts", got="a null MX (0 .) among other MX records", rfc="RFC 7505 §3",
                               transcript=lookups.since(mark)))
        else:
            rows.append(Result(RULE_MX, "pass", info=info))
        rows += _mx_hosts([r for r in records if r.exchange != dns.name.root], lookups, hosts)
    rows.append(_authority(mx, target, lookups.transcript[mark:]))
    for rule, name, prefix, rfc in ((RULE_SPF, domain, "v=spf1", "RFC 7208 §4.5"),
                                    (RULE_DMARC, f"_dmarc.{domain}", "v=DMARC1", "RFC 7489 §6.6.3")):
        if mx.outcome == "error":  # the server did not answer: do not wait for it twice more
            rows.append(Result(rule, "skip", got="not asked: DNS did not answer the MX question", points=0))
        else:
            rows.append(_txt_info(lookups, rule, name, prefix, rfc))
    return rows, hosts


def _implicit_mx(domain: str, lookups: Lookups, mark: int, hosts: list[NextHop]) -> Result:
    """No MX: mail goes to the domain's own address (RFC 5321 §5.1), if it has one."""
    addresses = addresses_of(domain, lookups)
    common = dict(step=f"{domain} IN MX", expected="MX records naming the mail hosts", rfc="RFC 5321 §5.1",
                  transcript=lookups.since(mark))
    if not addresses:
        return Result(RULE_MX, "fail", **common, hint=f"add an MX record: {domain}. IN MX 10 mail.{domain}.",
                      got=f"no MX records, and {domain} has no A/AAAA record either: mail cannot be delivered")
    hosts.append(NextHop(domain, 0, addresses, implicit=True))
    return Result(RULE_MX, "warn", **common, hint=f"publish an MX record, even for one host: {domain}. IN MX 10 "
                  f"mail.{domain}.", got=f"no MX records: senders fall back to {domain}'s own address "
                  f"({', '.join(addresses)}), the implicit MX")


def addresses_of(name: str, lookups: Lookups) -> tuple[str, ...]:
    """A then AAAA addresses of ``name`` (after CNAMEs); empty if it has none."""
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        answer = lookups.ask(name, rdtype)
        found += [r.address for r in answer.records]
        if answer.outcome == "nxdomain":
            break
    return tuple(found)


def _mx_hosts(records: list, lookups: Lookups, hosts: list[NextHop]) -> list[Result]:
    """Each MX target: a name (not an address), not an alias, with an address."""
    literal, aliases, homeless = [], [], []
    mark = lookups.mark()
    for record in records:
        name = record.exchange.to_text(omit_final_dot=True).lower()
        if is_address_literal(name):
            literal.append(name)
            continue
        cname = lookups.ask(name, "CNAME")
        if cname.records:
            aliases.append(f"{name} is a CNAME for {cname.records[0].target.to_text(omit_final_dot=True)}")
        addresses = addresses_of(name, lookups)
        if addresses:
            hosts.append(NextHop(name, record.preference, addresses))
        else:
            homeless.append(name)
    shown = lookups.since(mark)
    return [
        _verdict(RULE_ADDRESSES, homeless, "RFC 5321 §5.1", "an A or AAAA record for each MX host",
                 "no address for ", shown, "add an A record for each host an MX names"),
        _verdict(RULE_CNAME, aliases, "RFC 2181 §10.3", "each MX names a host's own (canonical) name",
                 "", shown, "point the MX at the name the CNAME points to, or make that name an A record"),
        _verdict(RULE_LITERAL, literal, "RFC 5321 §5.1", "an MX names a host, never an IP address",
                 "MX names an address: ", shown, "give the host a name with an A record, and name that"),
    ]


def _verdict(rule: str, problems: list[str], rfc: str, expected: str, prefix: str, transcript: list[Line],
             hint: str) -> Result:
    if not problems:
        return Result(rule, "pass")
    return Result(rule, "fail", expected=expected, got="; ".join(prefix + p for p in problems), rfc=rfc,
                  transcript=transcript, hint=hint)


def _authority(mx: Answer, target: Target, transcript: list[Line]) -> Result:
    """RFC 1035 §4.1.1: a server answering from its own zone sets AA. A recursive
    resolver (RA set) answers for others, so only a server that does not recurse, or
    that puts the zone's own records in its answer, is held to it."""
    response = mx.response
    server = str(target.dns) if target.dns else "the system's resolver"
    if response is None:
        return not_checked(RULE_AUTHORITY, f"no answer from {server}", "RFC 1035 §4.1.1")
    if response.flags & dns.flags.AA:
        return Result(RULE_AUTHORITY, "pass", info=f"{server} answers with AA set")
    if response.flags & dns.flags.RA:
        return Result(RULE_AUTHORITY, "skip",
                      got=f"{server} is a recursive resolver (RA set, AA clear): its answers are not the zone's "
                      "own; give --dns the zone's name server to check it")
    return Result(RULE_AUTHORITY, "fail", step=f"{target.domain} IN MX",
                  expected="AA (authoritative answer) set by a server that does not recurse",
                  got=f"{server} answered without AA and without RA: it neither serves the zone nor recurses",
                  rfc="RFC 1035 §4.1.1", transcript=excerpt(transcript),
                  hint="is the zone loaded? (named-checkzone; the server's log says why a zone was not loaded)")


def _txt_info(lookups: Lookups, rule: str, name: str, prefix: str, rfc: str) -> Result:
    """SPF/DMARC are reported, never failed: they matter for mail the domain sends."""
    mark = lookups.mark()
    answer = lookups.ask(name, "TXT")
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer.records]
    found = [t for t in texts if t.lower().startswith(prefix.lower())]
    if len(found) == 1:
        return Result(rule, "pass", info=found[0], points=0)
    if len(found) > 1:
        return Result(rule, "warn", got=f"{len(found)} {prefix} records: receivers treat that as an error",
                      expected=f"one {prefix} record", rfc=rfc, transcript=lookups.since(mark), points=0)
    return Result(rule, "skip", got=f"no {prefix} TXT record at {name}", points=0)
