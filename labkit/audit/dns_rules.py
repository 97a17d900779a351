"""The DNS rules: where does mail for the domain go, and is that published right?

Real queries (dnspython) to the server given with ``--dns`` or the system's resolver,
each shown in the row's transcript as ``dig`` would show it. The authority rule asks
the way an auditor does: a non-recursive question (RD clear, ``dig +norec``) for the
zone's SOA, and whether the server asked is one the zone's NS records name (RFC 2181
§6.1); a forwarder or a caching resolver relays the zone's answers, AA bit and all, so
the flags alone cannot tell, and a cache would give another verdict on the next run.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from ..checks.result import Result
from ..dns.mx import NextHop, is_null_mx, lab_resolver
from ..net import Endpoint
from .rows import excerpt
from .rubric import ADDRESS, AUTHORITY, CNAME, DMARC, LITERAL, MX, SPF, after, not_checked
from .target import SMTP_PORT, Line, Target, TimeUp, special_use

DNS_PORT = 53


@dataclass
class Answer:
    """What one query got: records (as text), or NODATA/NXDOMAIN, or a failure."""

    records: list = field(default_factory=list)  # rdata objects of the asked type
    outcome: str = "ok"  # ok | nodata | nxdomain | error
    problem: str = ""
    response: dns.message.Message | None = None


class Lookups:
    """Asks one resolver, keeping a dig-like transcript of every question and answer;
    every wait is cut to the check's time limit."""

    def __init__(self, resolver: dns.resolver.Resolver, target: Target) -> None:
        self.resolver, self.target = resolver, target
        self.transcript: list[Line] = []

    def ask(self, name: str, rdtype: str) -> Answer:
        qname = dns.name.from_text(name)
        self.transcript.append(("C", f"{qname} IN {rdtype}"))
        self.resolver.timeout = self.resolver.lifetime = self.target.budget()
        try:
            answer = self.resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            responses = list(exc.responses().values())
            self.transcript.append(("S", "NXDOMAIN"))
            return Answer(outcome="nxdomain", problem=f"{name} does not exist (NXDOMAIN)",
                          response=responses[0] if responses else None)
        except dns.exception.Timeout:
            if self.target.expired():
                raise TimeUp() from None
            problem = f"no answer within {self.resolver.lifetime:g}s"
        except dns.resolver.NoNameservers as exc:
            problem = f"the server could not answer: {exc}"
        except dns.exception.DNSException as exc:
            problem = f"lookup failed: {exc}"
        else:
            response = answer.response
            self._show(response)
            if answer.rrset is None:
                self.transcript.append(("S", "NODATA"))
                return Answer(outcome="nodata", response=response)
            return Answer(list(answer.rrset), response=response)
        self.transcript.append(("*", problem))
        return Answer(outcome="error", problem=problem)

    def ask_server(self, server: Endpoint, name: str, rdtype: str,
                   called: str = "") -> tuple[dns.message.Message | None, str]:
        """One non-recursive question (RD clear) to ``server`` (``called`` so): its
        response, or why none."""
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD
        to = f"{called} at {server}" if called else str(server)
        self.transcript.append(("C", f"{query.question[0].name} IN {rdtype} (to {to}, no recursion: RD clear)"))
        seconds = self.target.budget()
        try:
            response = dns.query.udp(query, server.host, port=server.port, timeout=seconds)
            if response.flags & dns.flags.TC:  # RFC 7766: too big for UDP, ask again over TCP
                response = dns.query.tcp(query, server.host, port=server.port, timeout=self.target.budget())
        except dns.exception.Timeout:
            if self.target.expired():
                raise TimeUp() from None
            problem = f"no answer within {seconds:g}s"
        except (OSError, dns.exception.DNSException) as exc:
            problem = f"no answer: {exc}"
        else:
            self._show(response)
            return response, ""
        self.transcript.append(("*", problem))
        return None, problem

    def _show(self, response: dns.message.Message) -> None:
        lines = [line for rrset in response.answer for line in rrset.to_text().splitlines()]
        flags = dns.flags.to_text(response.flags).lower()
        rcode = dns.rcode.to_text(response.rcode())
        self.transcript += [("S", line) for line in lines]
        self.transcript.append(("S", f"(flags: {flags}{'' if rcode == 'NOERROR' else ', ' + rcode})"))

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


def relative_slip(name: str, domain: str) -> str:
    """The name meant, when ``name`` is a full name written without its final dot in
    the zone of ``domain`` (``smtp.brilliant.com.brilliant.com``), else ``""``."""
    meant = name.removesuffix(f".{domain}")
    tld = domain.rsplit(".", 1)[-1]
    return meant if meant != name and "." in meant and meant.endswith(f".{tld}") else ""


def check_dns(target: Target, lookups: Lookups) -> tuple[list[Result], list[NextHop]]:
    """The DNS rows, and the mail hosts in preference order (equal preferences by
    name, so runs compare), for the SMTP rules to visit."""
    domain = target.domain
    rows: list[Result] = []
    mark = lookups.mark()
    mx = lookups.ask(domain, "MX")
    hosts: list[NextHop] = []
    names = [LITERAL, CNAME, ADDRESS]
    if mx.outcome in ("nxdomain", "error"):
        rows.append(Result(
            MX.title, "fail", step=f"{domain} IN MX", expected="MX records naming the domain's mail hosts",
            got=mx.problem, rfc="RFC 5321 §5.1", transcript=lookups.since(mark),
            hint="check the domain's spelling, that the zone is loaded and delegated, and that --dns names "
            "a server that knows it" if mx.outcome == "nxdomain" else "is the name server running and reachable?"))
        rows += [after(rule, MX) for rule in names]
    elif mx.outcome == "nodata":
        rows.append(_implicit_mx(domain, lookups, mark, hosts))
        because = "no MX records: nothing to check" if hosts else f'because "{MX.title}" failed'
        rows += [not_checked(LITERAL, because), not_checked(CNAME, because)]
        rows.append(_public(hosts, target) if hosts else after(ADDRESS, MX))
    elif is_null_mx(mx.records):
        rows.append(Result(
            MX.title, "fail", step=f"{domain} IN MX", expected="MX records naming the domain's mail hosts",
            got="0 . — a null MX: the domain says it accepts no mail", rfc="RFC 7505 §3",
            transcript=lookups.since(mark),
            hint="a null MX is right for a domain that never receives mail; a mail setup needs MX records "
            "naming its hosts"))
        rows += [after(rule, MX) for rule in names]
    else:
        records = sorted(mx.records, key=lambda r: (r.preference, r.exchange.to_text().lower()))
        info = ", ".join(f"{r.preference} {r.exchange.to_text(omit_final_dot=True)}" for r in records)
        if any(r.exchange == dns.name.root for r in records):
            rows.append(Result(MX.title, "fail", info=info, expected="a null MX alone, or only MX records naming "
                               "hosts", got="a null MX (0 .) among other MX records", rfc="RFC 7505 §3",
                               transcript=lookups.since(mark)))
        else:
            rows.append(Result(MX.title, "pass", info=info))
        rows += _mx_hosts(domain, [r for r in records if r.exchange != dns.name.root], lookups, hosts, target)
    rows.append(after(AUTHORITY, MX) if mx.outcome == "error" else _authority(target, lookups))
    for rule, name, prefix, rfc in ((SPF, domain, "v=spf1", "RFC 7208 §4.5"),
                                    (DMARC, f"_dmarc.{domain}", "v=DMARC1", "RFC 7489 §6.6.3")):
        if mx.outcome == "error":  # the server did not answer: do not wait for it twice more
            rows.append(Result(rule, "skip", got="not asked: DNS did not answer the MX question"))
        else:
            rows.append(_txt_info(lookups, rule, name, prefix, rfc))
    return rows, hosts


def _implicit_mx(domain: str, lookups: Lookups, mark: int, hosts: list[NextHop]) -> Result:
    """No MX: mail goes to the domain's own address (RFC 5321 §5.1), if it has one."""
    addresses = addresses_of(domain, lookups)
    common = dict(step=f"{domain} IN MX", expected="MX records naming the mail hosts", rfc="RFC 5321 §5.1",
                  transcript=lookups.since(mark))
    if not addresses:
        return Result(MX.title, "fail", **common, hint=f"add an MX record: {domain}. IN MX 10 mail.{domain}.",
                      got=f"no MX records, and {domain} has no A/AAAA record either: mail cannot be delivered")
    hosts.append(NextHop(domain, 0, addresses, implicit=True))
    return Result(MX.title, "warn", **common, hint=f"publish an MX record, even for one host: {domain}. IN MX 10 "
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


def _mx_hosts(domain: str, records: list, lookups: Lookups, hosts: list[NextHop], target: Target) -> list[Result]:
    """Each MX target: a name (not an address), not an alias, with a public address."""
    literal, aliases, homeless, slips = [], [], [], []
    named: list[NextHop] = []
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
        named.append(NextHop(name, record.preference, addresses))
        if not addresses:
            homeless.append(name)
            slips += [(name, meant) for meant in [relative_slip(name, domain)] if meant]
    hosts += [h for h in named if h.addresses]
    shown = lookups.since(mark)
    rows = [_verdict(LITERAL, literal, "an MX names a host, never an IP address", "MX names an address: ", shown,
                     "give the host a name with an A record, and name that in the MX record")]
    if not named:  # only address literals: nothing else to check
        return rows + [after(CNAME, LITERAL), after(ADDRESS, LITERAL)]
    rows.append(_verdict(CNAME, aliases, "each MX names a host's own (canonical) name", "", shown,
                         "point the MX at the name the CNAME points to, or make that name an A record"))
    if homeless:
        hint = "add an A record for each host an MX names"
        if slips:
            hint = "; ".join(f"the zone says {name}: a name without the final dot is relative to the zone's origin, "
                             f"so {domain} was appended: write {meant}. (with the final dot) in the MX record"
                             for name, meant in slips)
        rows.append(Result(ADDRESS.title, "fail", expected="an A or AAAA record for each MX host",
                           got="; ".join(f"no address for {name}" for name in homeless), rfc="RFC 5321 §5.1",
                           transcript=shown, hint=hint))
    else:
        rows.append(_public(named, target, shown))
    return rows


def _verdict(rule, problems: list[str], expected: str, prefix: str, transcript: list[Line], hint: str) -> Result:
    if not problems:
        return Result(rule.title, "pass")
    return Result(rule.title, "fail", expected=expected, got="; ".join(prefix + p for p in problems), rfc=rule.rfc,
                  transcript=transcript, hint=hint)


_FIX_ADDRESS = {
    "a loopback address": "publish the address other mail servers reach the host at, not its loopback address",
    "a private address (RFC 1918)": "publish the public address (behind NAT: the router's, with port 25 "
                                    "forwarded to the mail host)",
}


def _public(hosts: list[NextHop], target: Target, transcript: list[Line] | None = None) -> Result:
    """RFC 6890: a special-purpose address cannot be a public mail host's. Where an
    override sends the check anyway, the TA knows the setup is behind it: a warning."""
    connector = target.connector()
    problems, fixes, overridden = [], [], True
    for host in hosts:
        for address in host.addresses:
            kind = special_use(address)
            if not kind:
                continue
            problems.append(f"{host.host} has {address}, {kind}")
            fixes.append(_FIX_ADDRESS.get(kind, f"publish the host's real public address, not {kind}"))
            overridden = overridden and connector.routed(host.host, address, SMTP_PORT) is not None
    if not problems:
        shown = "; ".join(f"{h.host} {', '.join(h.addresses)}" for h in hosts)
        return Result(ADDRESS.title, "pass", info=shown)
    got = "; ".join(problems) + (": checked where --connect sends it" if overridden else
                                 ": other mail servers cannot reach it; not dialled (only --connect sends a check "
                                 "to such an address), not graded")
    return Result(ADDRESS.title, "warn" if overridden else "fail", expected="a public address for each MX host",
                  got=got, rfc="RFC 5321 §5.1, RFC 6890", transcript=transcript or [],
                  hint="; ".join(dict.fromkeys(fixes)))


# -- authority -----------------------------------------------------------------------------
def _authority(target: Target, lookups: Lookups) -> Result:
    """RFC 2181 §6.1: the zone's authoritative servers are the ones its NS records name,
    and they answer from the zone itself (AA set, RFC 1035 §4.1.1) without recursing."""
    mark = lookups.mark()
    if target.dns is None:
        return _authority_of_zone(target, lookups, mark)
    server = target.dns
    common = dict(step=f"{target.domain} IN SOA, RD clear (dig +norec)", rfc=AUTHORITY.rfc)
    response, problem = lookups.ask_server(server, target.domain, "SOA")
    if response is None:
        return Result(AUTHORITY.title, "fail", **common, expected=f"an answer from {server}", got=problem,
                      transcript=lookups.transcript[mark:])
    zone, serial = _soa(response)
    if not response.flags & dns.flags.AA or zone is None:
        what = "refused it" if response.rcode() == dns.rcode.REFUSED else "answered without AA"
        return Result(AUTHORITY.title, "fail", **common, expected="AA set: an answer from the zone itself",
                      got=f"{server} {what}: it does not serve the zone (a resolver or forwarder answers for others)",
                      transcript=lookups.transcript[mark:], hint="give --dns the zone's own name server (the one "
                      "its NS records name); is the zone loaded there? (named-checkzone; the server's log)")
    servers = _name_servers(zone, lookups)
    connector = target.connector()
    named = [name for name, addresses in servers.items()  # its address, or where an override sends it
             if server in {e for a in addresses for e in (connector.routed(name, a, DNS_PORT), Endpoint(a, DNS_PORT))}]
    if named:
        return Result(AUTHORITY.title, "pass", info=f"{server} is {named[0]} (NS of {zone}), answers with AA; "
                      f"SOA serial {serial}")
    listed = "; ".join(f"{name} {', '.join(addresses) or '(no address)'}" for name, addresses in servers.items())
    compared = _ask_named(zone, servers, lookups, target)
    relayed = f"; {compared[0]} itself says serial {compared[1]}, {server} said {serial}" if compared else ""
    return Result(AUTHORITY.title, "fail", **common, expected=f"{server} among the servers {zone}'s NS records name",
                  got=f"{server} answers for {zone} with AA but is not one of its name servers ({listed or 'no NS'})"
                  f": a forwarder or cache relaying the zone's answers{relayed}",
                  transcript=lookups.transcript[mark:], hint="give --dns the zone's own name server, the one its NS "
                  "records name (a forwarder passes the AA bit on, and a cache answers from memory)")


def _authority_of_zone(target: Target, lookups: Lookups, mark: int) -> Result:
    """No --dns: ask the zone's own name servers, found through the system's resolver."""
    soa = lookups.ask(target.domain, "SOA")
    zone = (_soa(soa.response)[0] if soa.response is not None else None) or target.domain
    servers = _name_servers(zone, lookups)
    compared = _ask_named(zone, servers, lookups, target)
    if compared:
        name, serial = compared
        return Result(AUTHORITY.title, "pass", info=f"{name} (NS of {zone}) answers with AA; SOA serial {serial}")
    return Result(AUTHORITY.title, "fail", step=f"{zone} IN SOA to each NS, RD clear",
                  expected="an authoritative answer (AA) from a server the NS records name",
                  got=f"none of {', '.join(servers) or 'the (missing) NS servers'} answered with AA",
                  rfc=AUTHORITY.rfc, transcript=lookups.transcript[mark:],
                  hint="are the name servers running, reachable on port 53, and is the zone loaded there?")


def _soa(response: dns.message.Message) -> tuple[str | None, int | None]:
    """The zone (SOA owner) an answer comes from, and its serial: the SOA of the answer,
    or of the authority section (a name inside the zone)."""
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset.name.to_text(omit_final_dot=True).lower(), rrset[0].serial
    return None, None


def _name_servers(zone: str, lookups: Lookups) -> dict[str, tuple[str, ...]]:
    """The zone's NS names, each with its addresses."""
    names = [r.target.to_text(omit_final_dot=True).lower() for r in lookups.ask(zone, "NS").records]
    return {name: addresses_of(name, lookups) for name in names}


def _ask_named(zone: str, servers: dict[str, tuple[str, ...]], lookups: Lookups,
               target: Target) -> tuple[str, int] | None:
    """The first NS server that answers the zone's SOA with AA, dialled as any host is
    (its override, else a public address): (its name, the serial)."""
    connector = target.connector()
    for name, addresses in servers.items():
        for endpoint in connector.endpoints(name, addresses, DNS_PORT)[0]:
            response, _ = lookups.ask_server(endpoint, zone, "SOA", called=name)
            serial = _soa(response)[1] if response is not None and response.flags & dns.flags.AA else None
            if serial is not None:
                return name, serial
    return None


def _txt_info(lookups: Lookups, rule: str, name: str, prefix: str, rfc: str) -> Result:
    """SPF/DMARC are reported, never failed: they matter for mail the domain sends."""
    mark = lookups.mark()
    answer = lookups.ask(name, "TXT")
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer.records]
    found = [t for t in texts if t.lower().startswith(prefix.lower())]
    if len(found) == 1:
        return Result(rule, "pass", info=found[0])
    if len(found) > 1:
        return Result(rule, "warn", got=f"{len(found)} {prefix} records: receivers treat that as an error",
                      expected=f"one {prefix} record", rfc=rfc, transcript=lookups.since(mark))
    return Result(rule, "skip", got=f"no {prefix} TXT record at {name}")
