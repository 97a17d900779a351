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
SLOW_TIMEOUT = 0.1  # the resolver's lifetime where DNS is meant not to answer (any time out passes)


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


NAMES = "host names in lower case, without the final dot: record.exchange.to_text(omit_final_dot=True).lower()"


def _expect_hosts(domain: str, hops: list[NextHop], expected: list[str], hint: str) -> None:
    """The hosts, in order; the hint says what differs: the names' spelling, the order,
    or which hosts are there."""
    got = _hosts(hops)
    if got == expected:
        return
    spelled = [str(h).rstrip(".").lower() for h in got]
    if spelled == expected:
        hint = f"the order is right, the names are not: {NAMES}"
    elif spelled != got and sorted(spelled) == sorted(expected):
        hint = f"{hint}; and the names: {NAMES}"
    elif sorted(got) == sorted(expected):
        hint = f"the right hosts, in the wrong order: {hint}"
    raise Broken(f"resolve_mx({domain!r})", f"hosts {expected}", f"{got} ({hops!r})", hint=hint)


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
ORDER = "lowest preference first (RFC 5321 §5.1); DNS returns the records in any order"
SHUFFLE = "RFC 5321 §5.1: hosts of equal preference MUST be tried in random order (random.shuffle)"


def _ordered(probe: Probe, domain: str, hosts: list[str], preferences: list[int]) -> None:
    hops = _hops(probe, domain)
    _expect_hosts(domain, hops, hosts, ORDER)
    if [h.preference for h in hops] != preferences:
        raise Broken("the preferences", repr(preferences), repr([h.preference for h in hops]),
                     hint="NextHop(host, preference, addresses): the MX record's preference, as a number")


def preference_order(probe: Probe) -> None:
    _ordered(probe, "ordered.mx.test", ["first.mx.test", "second.mx.test", "third.mx.test"], [10, 20, 30])


def preference_order_spread(probe: Probe) -> None:
    _ordered(probe, "spread.mx.test", ["second.mx.test", "first.mx.test", "third.mx.test"], [5, 15, 50])


def _shuffled(probe: Probe, domain: str, before: list[str], tied: list[str], after: list[str]) -> None:
    dns = _DNS(probe)
    seen = set()
    span = slice(len(before), len(before) + len(tied))
    for _ in range(SHUFFLE_TRIES):
        hosts = _hosts(_hops(probe, domain, dns=dns))
        if hosts[:span.start] != before or sorted(hosts[span]) != sorted(tied) or hosts[span.stop:] != after:
            raise Broken(f"resolve_mx({domain!r})", f"{before + ['…'] if before else []}{sorted(tied)} (equal "
                         f"preference) in some order{', then ' + str(after) if after else ''}", repr(hosts),
                         hint=ORDER)
        seen.add(tuple(hosts))
        if len(seen) == 2:
            return
    raise Broken(f"{SHUFFLE_TRIES} calls of resolve_mx({domain!r})", "the hosts of equal preference in more than "
                 "one order", f"always {list(seen.pop())}", hint=SHUFFLE)


def ties_shuffled(probe: Probe) -> None:
    _shuffled(probe, "twins.mx.test", [], ["left.mx.test", "right.mx.test"], ["third.mx.test"])


def ties_shuffled_three(probe: Probe) -> None:
    _shuffled(probe, "triplets.mx.test", ["third.mx.test"], ["left.mx.test", "right.mx.test", "first.mx.test"], [])


ADDRESSES = "a host may have several A records, and AAAA records too: ask for both"


def _addresses(probe: Probe, domain: str, host: str, wanted: list[str]) -> None:
    hops = _hops(probe, domain)
    if not hops or hops[0].host != host:
        _expect_hosts(domain, hops, [host, *_hosts(hops)[1:]], "the first MX host")
    if sorted(hops[0].addresses) != sorted(wanted):
        raise Broken(f"the addresses of {host}", f"{', '.join(wanted)} (its A and AAAA records)",
                     repr(hops[0].addresses), hint=ADDRESSES)


def addresses(probe: Probe) -> None:
    _addresses(probe, "multi.mx.test", "multi-host.mx.test", ["127.0.2.6", "127.0.2.7", "::1"])


def addresses_v6(probe: Probe) -> None:
    _addresses(probe, "v6.mx.test", "v6-host.mx.test", ["::1"])


def host_names(probe: Probe) -> None:
    hops = _hops(probe, "Ordered.MX.Test.")
    _expect_hosts("Ordered.MX.Test.", hops, ["first.mx.test", "second.mx.test", "third.mx.test"], NAMES)


def host_names_mixed(probe: Probe) -> None:
    hops = _hops(probe, "MIXED.mx.test")
    _expect_hosts("MIXED.mx.test", hops, ["first.mx.test", "second.mx.test"], NAMES)


IMPLICIT = ("no MX records (NoAnswer): the domain itself is the mail host, preference 0 (RFC 5321 §5.1): "
            "NextHop(domain, 0, addresses, implicit=True)")


def _implicit(probe: Probe, domain: str, address: str) -> None:
    hops = _hops(probe, domain)
    expected = [NextHop(domain, 0, (address,), True)]
    if [(h.host, h.preference, h.addresses, h.implicit) for h in hops] != [
            (e.host, e.preference, e.addresses, e.implicit) for e in expected]:
        raise Broken(f"resolve_mx({domain!r})", repr(expected), repr(hops), hint=IMPLICIT)


def implicit_mx(probe: Probe) -> None:
    _implicit(probe, "plain.mx.test", "127.0.2.8")


def implicit_mx_v6(probe: Probe) -> None:
    _implicit(probe, "plain6.mx.test", "::1")


NO_IMPLICIT = "the domain's own A record counts only when it has no MX records at all (RFC 5321 §5.1)"


def no_implicit_with_mx(probe: Probe) -> None:
    _expect_hosts("both.mx.test", _hops(probe, "both.mx.test"), ["first.mx.test"], NO_IMPLICIT)


def no_implicit_with_mx_again(probe: Probe) -> None:
    _expect_hosts("both2.mx.test", _hops(probe, "both2.mx.test"), ["second.mx.test"], NO_IMPLICIT)


def cnames(probe: Probe) -> None:
    dns = _DNS(probe)
    _expect_hosts("alias.mx.test", _hops(probe, "alias.mx.test", dns=dns),
                  ["first.mx.test", "second.mx.test", "third.mx.test"], "the domain is a CNAME: follow it")
    hops = _hops(probe, "via-cname.mx.test", dns=dns)
    if len(hops) != 1 or hops[0].addresses != ("127.0.2.1",):
        raise Broken("resolve_mx('via-cname.mx.test')", "one hop with the CNAME target's address 127.0.2.1",
                     repr(hops), hint="the MX target is a CNAME: its address lookup follows it")


def cnames_chain(probe: Probe) -> None:
    _expect_hosts("alias2.mx.test", _hops(probe, "alias2.mx.test"),
                  ["first.mx.test", "second.mx.test", "third.mx.test"], "a CNAME of a CNAME: follow both")


SKIP = "an MX host without an address cannot be used: skip it, keep the others (RFC 5321 §5.1)"


def backup_mx(probe: Probe) -> None:
    _expect_hosts("halfdead.mx.test", _hops(probe, "halfdead.mx.test"), ["second.mx.test"], SKIP)


def backup_mx_tied(probe: Probe) -> None:
    _expect_hosts("halfdead2.mx.test", _hops(probe, "halfdead2.mx.test"), ["second.mx.test", "third.mx.test"], SKIP)


NXDOMAIN = "NXDOMAIN: the domain does not exist, and never will by retrying: permanent (bounce)"


def no_such_domain(probe: Probe) -> None:
    _raises(probe, "nowhere.mx.test", PermanentMXError, NXDOMAIN)


def no_such_domain_deeper(probe: Probe) -> None:
    _raises(probe, "mail.nowhere.mx.test", PermanentMXError, NXDOMAIN)


def no_mail_host(probe: Probe) -> None:
    dns = _DNS(probe)
    _raises(probe, "nothing.mx.test", PermanentMXError, "neither MX nor A/AAAA records: nowhere to deliver",
            dns=dns)
    _raises(probe, "alldead.mx.test", PermanentMXError,
            "no MX host has an address, and the domain's own address must not be used instead", dns=dns)


def no_mail_host_cname(probe: Probe) -> None:
    _raises(probe, "deadcname.mx.test", PermanentMXError,
            "the only MX host is an alias of a name that does not exist: no address, nowhere to deliver")


NULL_MX = "'MX 0 .' says: this domain accepts no mail (RFC 7505 §3)"


def null_mx(probe: Probe) -> None:
    _raises(probe, "nullmx.mx.test", NullMXError, NULL_MX)


def null_mx_with_address(probe: Probe) -> None:
    _raises(probe, "nullmx-a.mx.test", NullMXError, NULL_MX + ", even when it has an address of its own (§3: "
            "no implicit MX then)")


SERVFAIL = "SERVFAIL is the DNS server's trouble: try again later (RFC 5321 §4.5.4.1), never bounce"


def servfail(probe: Probe) -> None:
    dns = _DNS(probe)
    dns.server.inject_fault("broken.mx.test", "servfail")
    _raises(probe, "broken.mx.test", TemporaryMXError, SERVFAIL, dns=dns)
    dns.server.inject_fault("flaky-host.mx.test", "servfail")
    _raises(probe, "flaky.mx.test", TemporaryMXError, "the only MX host's address lookup failed for now: "
            "temporary, not 'no address'", dns=dns)


def servfail_again(probe: Probe) -> None:
    dns = _DNS(probe)
    dns.server.inject_fault("broken2.mx.test", "servfail")
    _raises(probe, "broken2.mx.test", TemporaryMXError, SERVFAIL, dns=dns)


TIMEOUT = "dns.exception.Timeout: no answer now, maybe later: TemporaryMXError"


def dns_timeout(probe: Probe) -> None:
    dns = _DNS(probe)
    dns.server.inject_fault("slow.mx.test", "timeout")
    _raises(probe, "slow.mx.test", TemporaryMXError, TIMEOUT, timeout=SLOW_TIMEOUT, dns=dns)


def dns_timeout_host(probe: Probe) -> None:
    dns = _DNS(probe)
    dns.server.inject_fault("slow-host.mx.test", "timeout")
    _raises(probe, "slowhost.mx.test", TemporaryMXError, "the only MX host's address lookup timed out: " + TIMEOUT,
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
    Rule("preference-order-spread", "MX hosts in preference order: 5, 15, 50", "RFC 5321 §5.1",
         preference_order_spread, variant_of="preference-order"),
    Rule("ties-shuffled", "hosts of equal preference in random order", "RFC 5321 §5.1", ties_shuffled, hint=SHUFFLE),
    Rule("ties-shuffled-three", "three hosts of equal preference in random order, after a preferred one",
         "RFC 5321 §5.1", ties_shuffled_three, hint=SHUFFLE, variant_of="ties-shuffled"),
    Rule("addresses", "each host's A and AAAA addresses", "RFC 5321 §5.1", addresses, hint=ADDRESSES),
    Rule("addresses-v6", "a host with an AAAA address only", "RFC 5321 §5.1", addresses_v6, hint=ADDRESSES,
         variant_of="addresses"),
    Rule("host-names", "any case and a final dot in; lower case names out", "RFC 1035 §2.3.3", host_names,
         hint=NAMES),
    Rule("host-names-mixed", "MX targets written in capitals: lower case names out", "RFC 1035 §2.3.3",
         host_names_mixed, hint=NAMES, variant_of="host-names"),
    Rule("implicit-mx", "no MX records: the domain's own address, preference 0", "RFC 5321 §5.1", implicit_mx,
         hint=IMPLICIT),
    Rule("implicit-mx-v6", "no MX records, an IPv6 address only: the implicit MX", "RFC 5321 §5.1", implicit_mx_v6,
         hint=IMPLICIT, variant_of="implicit-mx"),
    Rule("no-implicit-with-mx", "with MX records, the domain's own address is not used", "RFC 5321 §5.1",
         no_implicit_with_mx, hint=NO_IMPLICIT),
    Rule("no-implicit-with-mx-again", "with a backup-only MX record, the domain's own address is not used",
         "RFC 5321 §5.1", no_implicit_with_mx_again, hint=NO_IMPLICIT, variant_of="no-implicit-with-mx"),
    Rule("cnames", "CNAMEs followed, for the domain and for MX targets", "RFC 5321 §5.1, RFC 2181 §10.3", cnames),
    Rule("cnames-chain", "a CNAME of a CNAME followed", "RFC 5321 §5.1, RFC 2181 §10.3", cnames_chain,
         variant_of="cnames"),
    Rule("backup-mx", "an MX host without an address is skipped", "RFC 5321 §5.1", backup_mx, hint=SKIP),
    Rule("backup-mx-tied", "an MX host without an address is skipped among equals", "RFC 5321 §5.1", backup_mx_tied,
         hint=SKIP, variant_of="backup-mx"),
    Rule("no-such-domain", "NXDOMAIN: PermanentMXError", "RFC 5321 §5.1", no_such_domain, hint=NXDOMAIN),
    Rule("no-such-domain-deeper", "NXDOMAIN under a name that exists: PermanentMXError", "RFC 5321 §5.1",
         no_such_domain_deeper, hint=NXDOMAIN, variant_of="no-such-domain"),
    Rule("no-mail-host", "no MX and no address, or no MX host with one: PermanentMXError", "RFC 5321 §5.1",
         no_mail_host),
    Rule("no-mail-host-cname", "the only MX host an alias of nothing: PermanentMXError", "RFC 5321 §5.1",
         no_mail_host_cname, variant_of="no-mail-host"),
    Rule("null-mx", "MX 0 \".\": NullMXError", "RFC 7505 §3", null_mx, hint=NULL_MX),
    Rule("null-mx-with-address", "MX 0 \".\" and an address: still NullMXError", "RFC 7505 §3", null_mx_with_address,
         hint=NULL_MX, variant_of="null-mx"),
    Rule("servfail", "SERVFAIL: TemporaryMXError", "RFC 5321 §4.5.4.1", servfail, hint=SERVFAIL),
    Rule("servfail-again", "SERVFAIL for another domain: TemporaryMXError", "RFC 5321 §4.5.4.1", servfail_again,
         hint=SERVFAIL, variant_of="servfail"),
    Rule("timeout", "no DNS answer in time: TemporaryMXError", "RFC 5321 §4.5.4.1", dns_timeout, hint=TIMEOUT),
    Rule("timeout-host", "no answer in time for the MX host's address: TemporaryMXError", "RFC 5321 §4.5.4.1",
         dns_timeout_host, hint=TIMEOUT, variant_of="timeout"),
    Rule("in-the-world", "as smtp.awesome.com's resolver: careful.com via its backup MX; nomail.com and "
         "typo.brilliant.com bounce", "RFC 5321 §5.1, RFC 7505 §4", in_the_world),
]


run, check = entry_points("resolve_mx", RULES)
