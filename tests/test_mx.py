"""resolve_mx against the real lab DNS server: every rule of RFC 5321 §5.1 and RFC 7505."""

from __future__ import annotations

from pathlib import Path

import dns.resolver
import pytest

import labkit
from labkit.dns.mx import (
    MXError,
    NextHop,
    NullMXError,
    PermanentMXError,
    TemporaryMXError,
    lab_resolver,
    resolve_mx,
)
from labkit.dns.server import DNSServer, serve_in_background
from labkit.dns.zones import load_zones
from labkit.net import AddressMap
from labkit.trace import Tracer

ZONES = [Path(labkit.__file__).parent / "worlds" / "lecture" / "zones", Path(__file__).parent / "zones"]
FAST_TIMEOUT = 0.3  # for the lookups that are meant to time out
SHUFFLE_TRIES = 60  # P(one order never shows) = 2 * 0.5**60


@pytest.fixture(scope="module")
def server():
    server = DNSServer(zone for path in ZONES for zone in load_zones(path))
    with serve_in_background(server):
        yield server


@pytest.fixture(scope="module")
def resolver(server: DNSServer) -> dns.resolver.Resolver:
    assert server.endpoint is not None
    return lab_resolver(server.endpoint)


@pytest.fixture
def impatient(server: DNSServer) -> dns.resolver.Resolver:
    assert server.endpoint is not None
    return lab_resolver(server.endpoint, timeout=FAST_TIMEOUT)


def test_lab_resolver_asks_only_the_lab_server(server: DNSServer, resolver: dns.resolver.Resolver) -> None:
    assert server.endpoint is not None
    assert resolver.nameservers == [server.endpoint.host]
    assert resolver.port == server.endpoint.port and resolver.cache is None and resolver.search == []


def test_a_hosts_resolver_is_named_in_the_servers_trace_over_udp_and_tcp() -> None:
    """The lab server names the host whose resolver asked (as a real server sees the
    asking host's address), not the loopback address every lab socket has."""
    addresses, tracer = AddressMap(), Tracer()
    server = DNSServer(load_zones(ZONES[0]), tracer=tracer,
                       peer_name=lambda peer: {"1.2.3.4": "smtp.awesome.com"}.get(addresses.peer_address(peer), "?"))
    with serve_in_background(server) as endpoint, tracer.record() as events:
        asking = lab_resolver(endpoint, addresses=addresses, source="1.2.3.4")
        assert resolve_mx("brilliant.com", asking) == [NextHop("smtp.brilliant.com", 10, ("1.2.3.5",))]
        assert asking.resolve("brilliant.com", "MX", tcp=True)[0].exchange.to_text() == "smtp.brilliant.com."
        lab_resolver(endpoint).resolve("brilliant.com", "MX")  # a plain resolver, as dig: unknown here
    clients = [(e.client, e.data["transport"]) for e in events if e.direction == "C"]
    assert clients == [("smtp.awesome.com", "udp")] * 3 + [("smtp.awesome.com", "tcp"), ("?", "udp")]
    # to a program that reads them (a student's own query, the grader's proxy), the same plain address
    assert (asking.nameservers, asking.port) == ([endpoint.host], endpoint.port)


# -- the lecture world's domains --------------------------------------------------------
@pytest.mark.parametrize(
    "domain, hop",
    [
        ("brilliant.com", NextHop("smtp.brilliant.com", 10, ("1.2.3.5",))),
        ("awesome.com", NextHop("smtp.awesome.com", 10, ("1.2.3.4",))),
        ("BRILLIANT.COM.", NextHop("smtp.brilliant.com", 10, ("1.2.3.5",))),  # any case, trailing dot
        ("staff.brilliant.com", NextHop("smtp.brilliant.com", 10, ("1.2.3.5",))),  # the domain is a CNAME
    ],
)
def test_single_mx(resolver: dns.resolver.Resolver, domain: str, hop: NextHop) -> None:
    assert resolve_mx(domain, resolver) == [hop]  # never the domain's own A record


def test_preference_order(resolver: dns.resolver.Resolver) -> None:
    expected = [NextHop("mx1.careful.com", 10, ("1.2.3.10",)), NextHop("mx2.careful.com", 20, ("1.2.3.11",))]
    for _ in range(5):
        assert resolve_mx("careful.com", resolver) == expected


def test_equal_preferences_are_shuffled(resolver: dns.resolver.Resolver) -> None:
    seen: set[tuple[str, ...]] = set()
    for _ in range(SHUFFLE_TRIES):
        hops = resolve_mx("twins.com", resolver)
        assert {hop.preference for hop in hops} == {10}
        seen.add(tuple(hop.host for hop in hops))
        if len(seen) == 2:
            break
    assert seen == {("mx1.twins.com", "mx2.twins.com"), ("mx2.twins.com", "mx1.twins.com")}


def test_lower_preference_always_first_among_shuffled(resolver: dns.resolver.Resolver) -> None:
    for _ in range(10):
        hops = resolve_mx("halfdead.edge.test", resolver) + resolve_mx("careful.com", resolver)
        assert [hop.preference for hop in hops] == [20, 10, 20]


def test_implicit_mx_without_mx_records(resolver: dns.resolver.Resolver) -> None:
    assert resolve_mx("plain.com", resolver) == [NextHop("plain.com", 0, ("1.2.3.30",), implicit=True)]
    assert resolve_mx("V6Only.edge.test.", resolver) == [
        NextHop("v6only.edge.test", 0, ("2001:db8::61",), implicit=True)
    ]


def test_null_mx(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(NullMXError, match="nomail.com does not accept mail.*RFC 7505") as caught:
        resolve_mx("nomail.com", resolver)  # it has an A record too: not used
    assert isinstance(caught.value, PermanentMXError) and caught.value.domain == "nomail.com"


def test_nxdomain_is_permanent(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(PermanentMXError, match="typo.brilliant.com does not exist \\(NXDOMAIN") as caught:
        resolve_mx("typo.brilliant.com", resolver)
    assert type(caught.value) is PermanentMXError


# -- MX targets -------------------------------------------------------------------------
def test_addresses_are_a_then_aaaa(resolver: dns.resolver.Resolver) -> None:
    assert resolve_mx("dual.edge.test", resolver) == [NextHop("host.edge.test", 10, ("1.2.3.60", "2001:db8::60"))]


def test_mx_target_cname_is_followed(resolver: dns.resolver.Resolver) -> None:
    assert resolve_mx("aliased.edge.test", resolver) == [
        NextHop("alias.edge.test", 10, ("1.2.3.60", "2001:db8::60"))
    ]


def test_mx_hosts_without_address_are_skipped(resolver: dns.resolver.Resolver) -> None:
    assert [hop.host for hop in resolve_mx("halfdead.edge.test", resolver)] == ["host.edge.test"]
    assert [hop.host for hop in resolve_mx("mixed.edge.test", resolver)] == ["host.edge.test"]  # "." skipped


def test_no_usable_mx_host_is_permanent_and_never_falls_back_to_a(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(PermanentMXError, match="no MX host of alldead.edge.test has an address"):
        resolve_mx("alldead.edge.test", resolver)


def test_no_mx_and_no_address_is_permanent(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(PermanentMXError, match="nothing.edge.test has no MX and no A/AAAA record"):
        resolve_mx("nothing.edge.test", resolver)


@pytest.mark.parametrize("domain", ["", ".", "a..b"])
def test_invalid_domains_are_permanent(resolver: dns.resolver.Resolver, domain: str) -> None:
    with pytest.raises(PermanentMXError, match="not a"):
        resolve_mx(domain, resolver)


# -- temporary failures -----------------------------------------------------------------
def test_refused_is_temporary(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(TemporaryMXError, match="example.org.*REFUSED"):
        resolve_mx("example.org", resolver)
    with pytest.raises(TemporaryMXError, match="no MX host of elsewhere.edge.test has an address yet"):
        resolve_mx("elsewhere.edge.test", resolver)  # its MX host's lookup is refused


@pytest.mark.parametrize("fault", ["servfail", "timeout"])
@pytest.mark.parametrize("name", ["chaos.com", "smtp.chaos.com"])
def test_dns_failures_are_temporary(
    server: DNSServer, impatient: dns.resolver.Resolver, fault: str, name: str
) -> None:
    with server.fault(name, fault):  # type: ignore[arg-type]
        with pytest.raises(TemporaryMXError, match="chaos.com") as caught:
            resolve_mx("chaos.com", impatient)
    assert caught.value.domain == "chaos.com" and not isinstance(caught.value, PermanentMXError)
    assert resolve_mx("chaos.com", impatient) == [NextHop("smtp.chaos.com", 10, ("1.2.3.13",))]


def test_a_failing_mx_host_leaves_the_others(server: DNSServer, resolver: dns.resolver.Resolver) -> None:
    with server.fault("mx1.careful.com", "servfail"):
        assert [hop.host for hop in resolve_mx("careful.com", resolver)] == ["mx2.careful.com"]


def test_errors_share_one_base(resolver: dns.resolver.Resolver) -> None:
    for domain in ("nomail.com", "typo.brilliant.com", "example.org"):
        with pytest.raises(MXError):
            resolve_mx(domain, resolver)
