"""The lab DNS server, over real UDP and TCP sockets, with dnspython and dig."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

import labkit
from labkit.dns.server import UDP_LIMIT, DNSServer, serve_in_background
from labkit.dns.zones import ZoneError, load_zone, load_zones
from labkit.net import Endpoint
from labkit.trace import Tracer

LECTURE_ZONES = Path(labkit.__file__).parent / "worlds" / "lecture" / "zones"
TEST_ZONES = Path(__file__).parent / "zones"
TIMEOUT = 2.0
BIG_TXT_RECORDS = 10  # big.lab. TXT in lab.zone


@pytest.fixture(scope="module")
def tracer() -> Tracer:
    return Tracer()


@pytest.fixture(scope="module")
def server(tracer: Tracer):
    server = DNSServer(load_zones(LECTURE_ZONES) + load_zones(TEST_ZONES), tracer=tracer)
    with serve_in_background(server):
        yield server


@pytest.fixture(scope="module")
def endpoint(server: DNSServer) -> Endpoint:
    assert server.endpoint is not None
    return server.endpoint


def udp(endpoint: Endpoint, name: str, rdtype: str, **kw) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)
    return dns.query.udp(query, endpoint.host, port=endpoint.port, timeout=TIMEOUT)


def udp_wire(endpoint: Endpoint, *wires: bytes) -> bytes:
    """Send datagrams in order on one socket; return the first reply's bytes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        for wire in wires:
            sock.sendto(wire, (endpoint.host, endpoint.port))
        return sock.recv(65535)


def answer_text(response: dns.message.Message) -> list[str]:
    return [line for rrset in response.answer for line in rrset.to_text().splitlines()]


# -- zone files -----------------------------------------------------------------------
def test_zone_origin_comes_from_origin_directive_or_file_name() -> None:
    assert load_zone(LECTURE_ZONES / "brilliant.com.zone").origin == dns.name.from_text("brilliant.com.")
    assert load_zone(TEST_ZONES / "edge.test.zone").origin == dns.name.from_text("edge.test.")  # no $ORIGIN


def test_zone_errors_name_the_file(tmp_path: Path) -> None:
    zone = "$TTL 300\n@ IN SOA ns.lab. hostmaster.lab. ( 1 3600 600 86400 300 )\n@ IN NS ns.lab.\n"
    (tmp_path / "x.test.zone").write_text(zone)
    (tmp_path / "other.zone").write_text("$ORIGIN x.test.\n" + zone)  # claims x.test. too
    with pytest.raises(ZoneError, match="x.test.zone: zone x.test. is already loaded from .*other.zone"):
        load_zones(tmp_path)
    (tmp_path / "other.zone").write_text("$TTL 300\n@ IN A 1.2.3.4\n")  # no SOA
    with pytest.raises(ZoneError, match="other.zone: bad zone file"):
        load_zone(tmp_path / "other.zone")
    with pytest.raises(ZoneError, match="no \\*.zone files"):
        load_zones(tmp_path / "empty")


# -- record types and header flags ----------------------------------------------------
@pytest.mark.parametrize(
    "name, rdtype, expected",
    [
        ("brilliant.com.", "SOA", "brilliant.com. 300 IN SOA ns.lab. hostmaster.brilliant.com. 2026112501 3600 600 86400 300"),
        ("brilliant.com.", "NS", "brilliant.com. 300 IN NS ns.lab."),
        ("smtp.brilliant.com.", "A", "smtp.brilliant.com. 300 IN A 1.2.3.5"),
        ("host.edge.test.", "AAAA", "host.edge.test. 300 IN AAAA 2001:db8::60"),
        ("brilliant.com.", "MX", "brilliant.com. 300 IN MX 10 smtp.brilliant.com."),
        ("imap.brilliant.com.", "CNAME", "imap.brilliant.com. 300 IN CNAME smtp.brilliant.com."),
        ("awesome.com.", "TXT", 'awesome.com. 300 IN TXT "v=spf1 mx -all"'),
    ],
)
def test_record_types_are_answered_authoritatively(endpoint: Endpoint, name: str, rdtype: str, expected: str) -> None:
    response = udp(endpoint, name, rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert response.flags & dns.flags.RD  # copied from the query
    assert not response.flags & dns.flags.RA  # no recursion here
    assert answer_text(response) == [expected]


def test_rd_is_copied_not_set(endpoint: Endpoint) -> None:
    query = dns.message.make_query("brilliant.com.", "MX")
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, endpoint.host, port=endpoint.port, timeout=TIMEOUT)
    assert response.flags & dns.flags.AA and not response.flags & (dns.flags.RD | dns.flags.RA)


def test_any_returns_every_record_set_of_the_name(endpoint: Endpoint) -> None:
    types = {rrset.rdtype for rrset in udp(endpoint, "awesome.com.", "ANY").answer}
    assert types == {dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.MX, dns.rdatatype.A, dns.rdatatype.TXT}


# -- negative answers (RFC 2308) ------------------------------------------------------
def assert_negative(response: dns.message.Message, rcode: int, zone: str, ttl: int) -> None:
    assert response.rcode() == rcode
    assert response.flags & dns.flags.AA
    assert response.answer == []
    [soa] = response.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name == dns.name.from_text(zone) and soa.ttl == ttl


def test_nxdomain_carries_the_zone_soa(endpoint: Endpoint) -> None:
    assert_negative(udp(endpoint, "typo.brilliant.com.", "A"), dns.rcode.NXDOMAIN, "brilliant.com.", 300)


def test_nodata_carries_the_zone_soa(endpoint: Endpoint) -> None:
    assert_negative(udp(endpoint, "plain.com.", "MX"), dns.rcode.NOERROR, "plain.com.", 300)


def test_negative_ttl_is_the_smaller_of_soa_ttl_and_minimum(endpoint: Endpoint) -> None:
    assert_negative(udp(endpoint, "nosuch.edge.test.", "A"), dns.rcode.NXDOMAIN, "edge.test.", 60)


def test_empty_non_terminal_is_nodata_not_nxdomain(endpoint: Endpoint) -> None:
    assert_negative(udp(endpoint, "deep.edge.test.", "A"), dns.rcode.NOERROR, "edge.test.", 60)


# -- CNAME (RFC 1034 §4.3.2) ----------------------------------------------------------
def test_cname_is_chased_within_our_zones(endpoint: Endpoint) -> None:
    response = udp(endpoint, "staff.brilliant.com.", "MX")
    assert response.flags & dns.flags.AA
    assert answer_text(response) == [
        "staff.brilliant.com. 300 IN CNAME brilliant.com.",
        "brilliant.com. 300 IN MX 10 smtp.brilliant.com.",
    ]


def test_cname_to_a_missing_name_is_nxdomain_with_the_cname(endpoint: Endpoint) -> None:
    response = udp(endpoint, "dangling.edge.test.", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN  # RFC 6604: the rcode of the last name
    assert answer_text(response) == ["dangling.edge.test. 300 IN CNAME missing.edge.test."]
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_cname_out_of_our_zones_or_in_a_loop_stops(endpoint: Endpoint) -> None:
    outside = udp(endpoint, "outside.edge.test.", "A")
    assert outside.rcode() == dns.rcode.NOERROR
    assert answer_text(outside) == ["outside.edge.test. 300 IN CNAME www.example.org."]
    loop = udp(endpoint, "loop1.edge.test.", "A")
    assert answer_text(loop) == [
        "loop1.edge.test. 300 IN CNAME loop2.edge.test.",
        "loop2.edge.test. 300 IN CNAME loop1.edge.test.",
    ]


# -- refusals and errors --------------------------------------------------------------
def test_names_outside_our_zones_are_refused(endpoint: Endpoint) -> None:
    response = udp(endpoint, "www.example.org.", "A")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA and response.answer == []


def test_other_classes_are_refused(endpoint: Endpoint) -> None:
    response = udp(endpoint, "brilliant.com.", "TXT", rdclass=dns.rdataclass.CH)
    assert response.rcode() == dns.rcode.REFUSED


def test_names_are_case_insensitive_and_echo_the_question(endpoint: Endpoint) -> None:
    response = udp(endpoint, "BrIlLiAnT.CoM.", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    [mx] = response.answer
    assert mx.name.to_text() == "BrIlLiAnT.CoM."  # RFC 4343 §4.1: the question's case
    assert [rdata.exchange for rdata in mx] == [dns.name.from_text("smtp.brilliant.com.")]


def test_other_opcodes_are_not_implemented(endpoint: Endpoint) -> None:
    query = dns.message.make_query("brilliant.com.", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    response = dns.query.udp(query, endpoint.host, port=endpoint.port, timeout=TIMEOUT)
    assert response.rcode() == dns.rcode.NOTIMP and response.opcode() == dns.opcode.NOTIFY


def test_malformed_query_gets_formerr_and_garbage_is_dropped(endpoint: Endpoint) -> None:
    query = dns.message.make_query("brilliant.com.", "MX")
    header_and_junk = query.to_wire()[:12] + b"\xff\x01junk"
    reply = dns.message.from_wire(udp_wire(endpoint, header_and_junk))
    assert reply.id == query.id and reply.rcode() == dns.rcode.FORMERR and reply.flags & dns.flags.QR
    # too short for a header: no reply at all, so the first reply is the next query's
    reply = dns.message.from_wire(udp_wire(endpoint, b"\x12\x34junk", query.to_wire()))
    assert reply.id == query.id and reply.rcode() == dns.rcode.NOERROR


def test_sans_io_core_drops_responses_and_rejects_other_edns_versions(server: DNSServer) -> None:
    query = dns.message.make_query("brilliant.com.", "MX", use_edns=1)
    reply = dns.message.from_wire(server.handle(query.to_wire()))
    assert reply.rcode() == dns.rcode.BADVERS  # RFC 6891 §6.1.3
    assert server.handle(reply.to_wire()) is None  # never answer a response
    assert server.handle(b"") is None


# -- truncation and TCP ---------------------------------------------------------------
def test_big_answer_is_truncated_over_udp(endpoint: Endpoint) -> None:
    wire = udp_wire(endpoint, dns.message.make_query("big.lab.", "TXT").to_wire())
    assert len(wire) <= UDP_LIMIT
    response = dns.message.from_wire(wire)
    assert response.flags & dns.flags.TC and response.flags & dns.flags.AA


def test_edns_payload_size_is_honoured(endpoint: Endpoint) -> None:
    def ask(name: str, **edns) -> bytes:
        return udp_wire(endpoint, dns.message.make_query(name, "TXT", **edns).to_wire())

    assert dns.message.from_wire(ask("medium.edge.test.")).flags & dns.flags.TC  # no EDNS: 512
    medium = ask("medium.edge.test.", use_edns=0, payload=1232)
    assert 512 < len(medium) <= 1232 and not dns.message.from_wire(medium).flags & dns.flags.TC
    assert dns.message.from_wire(ask("big.lab.", use_edns=0, payload=1232)).flags & dns.flags.TC
    big = dns.message.from_wire(ask("big.lab.", use_edns=0, payload=4096))
    assert not big.flags & dns.flags.TC and len(big.answer[0]) == BIG_TXT_RECORDS


def test_tcp_gives_the_full_answer(endpoint: Endpoint) -> None:
    query = dns.message.make_query("big.lab.", "TXT")
    response = dns.query.tcp(query, endpoint.host, port=endpoint.port, timeout=TIMEOUT)
    assert not response.flags & dns.flags.TC and len(response.answer[0]) == BIG_TXT_RECORDS


def test_several_queries_on_one_tcp_connection(endpoint: Endpoint) -> None:
    queries = [dns.message.make_query(name, "MX") for name in ("brilliant.com.", "careful.com.", "typo.brilliant.com.")]
    with socket.create_connection((endpoint.host, endpoint.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(q.to_wire(prepend_length=True) for q in queries))  # pipelined
        stream = sock.makefile("rb")
        replies = [dns.message.from_wire(stream.read(int.from_bytes(stream.read(2), "big"))) for _ in queries]
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    assert len(replies[1].answer[0]) == 2


def test_an_explicit_port_whose_tcp_twin_is_taken_fails_cleanly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = DNSServer(load_zones(TEST_ZONES))
        with pytest.raises(OSError):
            with serve_in_background(server, port=port):
                pass
    assert server.endpoint is None


# -- faults ---------------------------------------------------------------------------
def test_servfail_fault_applies_to_case_variants_and_heals(server: DNSServer, endpoint: Endpoint) -> None:
    with server.fault("smtp.chaos.com", "servfail"):
        for name in ("smtp.chaos.com.", "SMTP.Chaos.COM."):
            response = udp(endpoint, name, "A")
            assert response.rcode() == dns.rcode.SERVFAIL and not response.flags & dns.flags.AA
        assert udp(endpoint, "chaos.com.", "MX").rcode() == dns.rcode.NOERROR  # only that name
    assert answer_text(udp(endpoint, "smtp.chaos.com.", "A")) == ["smtp.chaos.com. 300 IN A 1.2.3.13"]


def test_timeout_fault_answers_nothing(server: DNSServer, endpoint: Endpoint, tracer: Tracer) -> None:
    with server.fault("Smtp.Chaos.Com.", "timeout"), tracer.record() as events:
        with pytest.raises(dns.exception.Timeout):
            dns.query.udp(dns.message.make_query("smtp.chaos.com.", "A"), endpoint.host, port=endpoint.port, timeout=0.3)
    assert [e.kind for e in events if e.direction != "C"] == ["dropped"]
    assert udp(endpoint, "smtp.chaos.com.", "A").rcode() == dns.rcode.NOERROR


def test_unknown_fault_is_rejected(server: DNSServer) -> None:
    with pytest.raises(ValueError, match="unknown DNS fault 'slow'"):
        server.inject_fault("chaos.com", "slow")  # type: ignore[arg-type]


# -- trace ----------------------------------------------------------------------------
def test_queries_and_answers_become_trace_events(endpoint: Endpoint, tracer: Tracer) -> None:
    with tracer.record() as events:
        udp(endpoint, "brilliant.com.", "MX")
        udp(endpoint, "typo.brilliant.com.", "MX")
    assert [(e.direction, e.line) for e in events] == [
        ("C", "brilliant.com. IN MX"),
        ("S", "brilliant.com. 300 IN MX 10 smtp.brilliant.com."),
        ("C", "typo.brilliant.com. IN MX"),
        ("S", "NXDOMAIN"),
    ]
    assert {(e.protocol, e.client, e.server) for e in events} == {("dns", "127.0.0.1", "ns.lab")}
    assert events[0].session == events[1].session != events[2].session


# -- dig --------------------------------------------------------------------------------
def dig(endpoint: Endpoint, *args: str) -> str:
    if shutil.which("dig") is None:
        pytest.skip("dig not installed")
    command = ["dig", f"@{endpoint.host}", "-p", str(endpoint.port), "+tries=1", "+time=2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=20, check=True).stdout


def dig_flags(output: str) -> set[str]:
    match = re.search(r";; flags: ([a-z ]+);", output)
    assert match, output
    return set(match.group(1).split())


def test_dig_sees_an_authoritative_mx_answer(endpoint: Endpoint) -> None:
    output = dig(endpoint, "brilliant.com", "MX")
    assert "status: NOERROR" in output and {"qr", "aa", "rd"} <= dig_flags(output)
    assert "ra" not in dig_flags(output)
    assert re.search(r"^brilliant\.com\.\s+300\s+IN\s+MX\s+10 smtp\.brilliant\.com\.$", output, re.M), output


def test_dig_sees_nxdomain_with_soa_and_refused(endpoint: Endpoint) -> None:
    output = dig(endpoint, "typo.brilliant.com", "MX")
    assert "status: NXDOMAIN" in output and "aa" in dig_flags(output)
    assert re.search(r";; AUTHORITY SECTION:\nbrilliant\.com\.\s+300\s+IN\s+SOA\s+ns\.lab\.", output), output
    assert "status: REFUSED" in dig(endpoint, "www.example.org", "A")


def test_dig_sees_tc_and_retries_over_tcp(endpoint: Endpoint) -> None:
    truncated = dig(endpoint, "+ignore", "big.lab", "TXT")
    assert "tc" in dig_flags(truncated)
    full = dig(endpoint, "big.lab", "TXT")
    assert "Truncated, retrying in TCP mode" in full and "tc" not in dig_flags(full)
    assert f"ANSWER: {BIG_TXT_RECORDS}," in full
