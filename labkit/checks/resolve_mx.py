"""Checks for ``resolve_mx``, the MX lookup (the "Where does mail go?" lab).

Every rule asks a real DNS server: the lab's authoritative server serving the zone
``mx.test.`` (``zones/mx.test.zone``, one name per rule), through a dnspython resolver,
exactly as the MTA calls the student's function; the last rule plugs it into the lab
world and sends mail to careful.com (backup MX), nomail.com (null MX) and
typo.brilliant.com (no such domain). ::

    from labkit import checks
    checks.resolve_mx.run(resolve_mx)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dns.hops import MXError, NextHop, NullMXError, PermanentMXError, TemporaryMXError
from ..dns.resolver import lab_resolver
from ..dns.server import DNSServer, serve_in_background
from ..trace import Tracer
from .harness import Broken, Probe, Rule, entry_points

ZONES = Path(__file__).parent / "zones"
SHUFFLE_TRIES = 40  # a fixed order survives 40 tries with probability 2**-39
LOOKUP_TIMEOUT = 2.0
SLOW_TIMEOUT = 0.5  # the resolver's lifetime where DNS is meant not to answer


class _DNS:
    """The checks' DNS server for one rule, with its trace in the transcript."""

    def __init__(self, probe: Probe) -> None:
        tracer = Tracer()
        tracer.subscribe(lambda e: probe.note(e.direction, e.line) if e.protocol == "dns" else None)
        self.server = DNSServer.from_directory(ZONES, name="ns.lab", tracer=tracer)
        self.endpoint = probe.enter(serve_in_background(self.server))

    def resolver(self, timeout: float = LOOKUP_TIMEOUT):
        return lab_resolver(self.endpoint, timeout=timeout)


def _ask(probe: Probe, domain: str, *, timeout: float = LOOKUP_TIMEOUT, dns: _DNS | None = None) -> Any:
    """The student's answer for ``domain``: a list of hops, or the MXError raised."""
    dns = dns or _DNS(probe)
    try:
        return probe(domain, dns.resolver(timeout), step=f"resolve_mx({domain!r})")
    except MXError as error:
        return error


def _hops(probe: Probe, domain: str, **kw: Any) -> list[NextHop]:
    """For rules where ``domain`` has somewhere to deliver."""
    answer = _ask(probe, domain, **kw)
    if isinstance(answer, MXError):
        raise Broken(f"resolve_mx({domain!r})", "a list of NextHop", f"{type(answer).__name__}: {answer}",
                     hint="this domain does receive mail: look at its records in the transcript")
    return answer


def _hosts(hops: list[NextHop]) -> list[str]:
    return [hop.host for hop in hops]


def _expect_hosts(domain: str, hops: list[NextHop], expected: list[str], hint: str) -> None:
    if _hosts(hops) != expected:
        raise Broken(f"resolve_mx({domain!r})", f"hosts {expected}", f"{_hosts(hops)} ({hops!r})", hint=hint)


def _raises(probe: Probe, domain: str, error_class: type[MXError], hint: str, **kw: Any) -> MXError:
    answer = _ask(probe, domain, **kw)
    if isinstance(answer, error_class):
        if answer.domain.rstrip(".").lower() != domain.rstrip(".").lower():
            raise Broken(f"resolve_mx({domain!r})", f"{error_class.__name__} naming the domain {domain!r}",
                         f"{type(answer).__name__} with domain {answer.domain!r}",
                         hint="MXError(domain, message): the domain first, then what went wrong")
        return answer
    got = f"{type(answer).__name__}: {answer}" if isinstance(answer, Exception) else repr(answer)
    raise Broken(f"resolve_mx({domain!r})", error_class.__name__, got, hint=hint)


# -- the rules ---------------------------------------------------------------------------
def preference_order(probe: Probe) -> None:
    hops = _hops(probe, "ordered.mx.test")
    _expect_hosts("ordered.mx.test", hops, ["first.mx.test", "second.mx.test", "third.mx.test"],
                  "lowest preference first (RFC 5321 §5.1); DNS returns the records in any order")
    if [h.preference for h in hops] != [10, 20, 30]:
        raise Broken("the preferences", "[10, 20, 30]", repr([h.preference for h in hops]))


def ties_shuffled(probe: Probe) -> None:
    dns = _DNS(probe)
    seen = set()
    for _ in range(SHUFFLE_TRIES):
        hosts = _hosts(_hops(probe, "twins.mx.test", dns=dns))
        if sorted(hosts[:2]) != ["left.mx.test", "right.mx.test"] or hosts[2:] != ["third.mx.test"]:
            raise Broken("resolve_mx('twins.mx.test')", "left and right (preference 10) in some order, then third",
                         repr(hosts))
        seen.add(tuple(hosts))
        if len(seen) == 2:
            return
    raise Broken(f"{SHUFFLE_TRIES} calls of resolve_mx('twins.mx.test')", "both orders of the two preference-10 "
                 "hosts", f"always {list(seen.pop())}",
                 hint="RFC 5321 §5.1: hosts of equal preference MUST be tried in random order (random.shuffle)")


def addresses(probe: Probe) -> None:
    hops = _hops(probe, "multi.mx.test")
    _expect_hosts("multi.mx.test", hops, ["multi-host.mx.test"], "one MX record, one host")
    if sorted(hops[0].addresses) != ["127.0.2.6", "127.0.2.7", "::1"]:
        raise Broken("the addresses of multi-host.mx.test", "127.0.2.6, 127.0.2.7 (A) and ::1 (AAAA)",
                     repr(hops[0].addresses), hint="a host may have several A records, and AAAA records too")


def host_names(probe: Probe) -> None:
    hops = _hops(probe, "Ordered.MX.Test.")
    _expect_hosts("Ordered.MX.Test.", hops, ["first.mx.test", "second.mx.test", "third.mx.test"],
                  "host names in lower case, without the final dot: to_text(omit_final_dot=True).lower()")


def implicit_mx(probe: Probe) -> None:
    hops = _hops(probe, "plain.mx.test")
    expected = [NextHop("plain.mx.test", 0, ("127.0.2.8",), True)]
    if [(h.host, h.preference, h.addresses) for h in hops] != [(e.host, e.preference, e.addresses) for e in expected]:
        raise Broken("resolve_mx('plain.mx.test')", repr(expected), repr(hops),
                     hint="no MX records (NoAnswer): the domain itself is the mail host, preference 0 (RFC 5321 §5.1)")


def no_implicit_with_mx(probe: Probe) -> None:
    _expect_hosts("both.mx.test", _hops(probe, "both.mx.test"), ["first.mx.test"],
                  "the domain's own A record counts only when it has no MX records at all (RFC 5321 §5.1)")


def cnames(probe: Probe) -> None:
    dns = _DNS(probe)
    _expect_hosts("alias.mx.test", _hops(probe, "alias.mx.test", dns=dns),
                  ["first.mx.test", "second.mx.test", "third.mx.test"], "the domain is a CNAME: follow it")
    hops = _hops(probe, "via-cname.mx.test", dns=dns)
    if len(hops) != 1 or hops[0].addresses != ("127.0.2.1",):
        raise Broken("resolve_mx('via-cname.mx.test')", "one hop with the CNAME target's address 127.0.2.1",
                     repr(hops), hint="the MX target is a CNAME: its address lookup follows it")


def backup_mx(probe: Probe) -> None:
    _expect_hosts("halfdead.mx.test", _hops(probe, "halfdead.mx.test"), ["second.mx.test"],
                  "an MX host without an address cannot be used: skip it, keep the others (RFC 5321 §5.1)")


def no_such_domain(probe: Probe) -> None:
    _raises(probe, "nowhere.mx.test", PermanentMXError,
            "NXDOMAIN: the domain does not exist, and never will by retrying: permanent (bounce)")


def no_mail_host(probe: Probe) -> None:
    dns = _DNS(probe)
    _raises(probe, "nothing.mx.test", PermanentMXError, "neither MX nor A/AAAA records: nowhere to deliver",
            dns=dns)
    _raises(probe, "alldead.mx.test", PermanentMXError,
            "no MX host has an address, and the domain's own address must not be used instead", dns=dns)


def null_mx(probe: Probe) -> None:
    _raises(probe, "nullmx.mx.test", NullMXError, "'MX 0 .' says: this domain accepts no mail (RFC 7505 §3)")


def servfail(probe: Probe) -> None:
    dns = _DNS(probe)
    dns.server.inject_fault("broken.mx.test", "servfail")
    _raises(probe, "broken.mx.test", TemporaryMXError, "SERVFAIL is the DNS server's trouble: try again later "
            "(RFC 5321 §4.5.4.1), never bounce", dns=dns)
    dns.server.inject_fault("flaky-host.mx.test", "servfail")
    _raises(probe, "flaky.mx.test", TemporaryMXError, "the only MX host's address lookup failed for now: "
            "temporary, not 'no address'", dns=dns)


def dns_timeout(probe: Probe) -> None:
    dns = _DNS(probe)
    dns.server.inject_fault("slow.mx.test", "timeout")
    _raises(probe, "slow.mx.test", TemporaryMXError, "dns.exception.Timeout: no answer now, maybe later",
            timeout=SLOW_TIMEOUT, dns=dns)


def in_the_world(probe: Probe) -> None:
    world = probe.world()
    world.send("albert@awesome.com", ["carol@careful.com", "x@nomail.com", "x@typo.brilliant.com"],
               b"Subject: where does mail go?\r\n\r\nhi\r\n")
    probe.delivered(world, "carol@careful.com", step="mail to carol@careful.com",
                    expected="delivered by the backup MX mx2.careful.com (the primary is down)",
                    hint="try the next host when one cannot be reached")
    probe.delivered(world, "albert@awesome.com", step="mail to x@nomail.com and x@typo.brilliant.com",
                    expected="a bounce back to Albert", hint="null MX and NXDOMAIN are permanent: raise NullMXError "
                    "/ PermanentMXError")
    report = probe.stored(world, "albert@awesome.com").as_string()
    for rcpt in ("x@nomail.com", "x@typo.brilliant.com"):
        if rcpt not in report:
            raise Broken("the bounce to Albert", f"a line for {rcpt}", "it is not in the report",
                         hint="both must fail permanently, at once")


RULES: list[Rule] = [
    Rule("preference-order", "MX hosts in preference order, lowest first", "RFC 5321 §5.1", preference_order),
    Rule("ties-shuffled", "hosts of equal preference in random order", "RFC 5321 §5.1", ties_shuffled),
    Rule("addresses", "each host's A and AAAA addresses", "RFC 5321 §5.1", addresses),
    Rule("host-names", "any case and a final dot in; lower case names out", "RFC 1035 §2.3.3", host_names),
    Rule("implicit-mx", "no MX records: the domain's own address, preference 0", "RFC 5321 §5.1", implicit_mx),
    Rule("no-implicit-with-mx", "with MX records, the domain's own address is not used", "RFC 5321 §5.1",
         no_implicit_with_mx),
    Rule("cnames", "CNAMEs followed, for the domain and for MX targets", "RFC 5321 §5.1, RFC 2181 §10.3", cnames),
    Rule("backup-mx", "an MX host without an address is skipped", "RFC 5321 §5.1", backup_mx),
    Rule("no-such-domain", "NXDOMAIN: PermanentMXError", "RFC 5321 §5.1", no_such_domain),
    Rule("no-mail-host", "no MX and no address, or no MX host with one: PermanentMXError", "RFC 5321 §5.1",
         no_mail_host),
    Rule("null-mx", "MX 0 \".\": NullMXError", "RFC 7505 §3", null_mx),
    Rule("servfail", "SERVFAIL: TemporaryMXError", "RFC 5321 §4.5.4.1", servfail),
    Rule("timeout", "no DNS answer in time: TemporaryMXError", "RFC 5321 §4.5.4.1", dns_timeout),
    Rule("in-the-world", "as smtp.awesome.com's resolver: careful.com via its backup MX; nomail.com and "
         "typo.brilliant.com bounce", "RFC 5321 §5.1, RFC 7505 §4", in_the_world),
]


run, check = entry_points("resolve_mx", RULES)
