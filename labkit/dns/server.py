"""The lab's authoritative DNS server, over UDP and TCP on one port number.

The protocol lives in a sans-IO core, :meth:`DNSServer.handle`: query bytes in,
response bytes out (or ``None``: send nothing). The asyncio code around it only moves
datagrams and length-framed TCP messages. It serves BIND zone files loaded with
dnspython (:mod:`labkit.dns.zones`) and answers like a minimal authoritative server:

- answers from its zones carry AA; RD is copied, RA is never set (it does not recurse);
- records go out in zone-file order (rrset-order fixed): shuffling is the client's job;
- NXDOMAIN and NODATA carry the zone's SOA in the authority section (RFC 2308);
- a CNAME is followed while the target is in its zones (RFC 1034 §4.3.2);
- names outside its zones are REFUSED; other opcodes NOTIMP; garbage FORMERR;
- UDP answers that do not fit 512 bytes (or the client's EDNS size) are truncated with
  TC set; TCP (RFC 7766) carries the whole answer, several queries per connection.

No wildcards, delegations, zone transfers or DNSSEC: the lab's zones need none.
Faults are injected per name for lessons and tests (:meth:`DNSServer.inject_fault`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

import dns.flags
import dns.message
import dns.name
import dns.node
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

from ..aio import BackgroundLoop, heap_sized_reads
from ..net import Endpoint
from ..trace import Direction, TraceEvent, Tracer, new_session_id
from .zones import load_zones

log = logging.getLogger(__name__)

UDP_LIMIT = 512  # RFC 1035 §4.2.1: a UDP message without EDNS
EDNS_PAYLOAD = 4096  # the largest UDP answer we send to an EDNS client (RFC 6891 §6.2.5)
TCP_LIMIT = 65535  # RFC 1035 §4.2.2: the 2-byte length prefix
TCP_IDLE_TIMEOUT = 10.0  # seconds; RFC 7766 §6.2.3: servers close idle connections
MAX_CHAIN = 8  # CNAMEs followed in one answer (stops loops)
PORT_ATTEMPTS = 20  # port 0: tries to find a number free for both UDP and TCP
HEADER = struct.Struct("!HHHHHH")  # RFC 1035 §4.1.1: id, flags, four section counts
_OPCODE_BITS = 0x7800  # the opcode field inside the header flags

Fault = Literal["servfail", "timeout"]
FAULTS: tuple[Fault, ...] = ("servfail", "timeout")


class DNSServer:
    """An authoritative server for ``zones``; ``name`` is how traces call it, and
    ``peer_name`` how they call a client (from its (address, port); default: the address)."""

    def __init__(self, zones: Iterable[dns.zone.Zone], *, name: str = "ns.lab", tracer: Tracer | None = None,
                 peer_name: Callable[[tuple], str] | None = None) -> None:
        self.name = name
        self.tracer = tracer
        self.peer_name = peer_name or (lambda peer: peer[0])
        # the most specific zone wins: longest origin first
        self.zones: tuple[dns.zone.Zone, ...] = tuple(sorted(zones, key=lambda z: len(z.origin), reverse=True))
        self.endpoint: Endpoint | None = None
        self._faults: dict[dns.name.Name, Fault] = {}  # Name hashes and compares ignoring case
        self._lock = threading.Lock()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_directory(cls, path: Path | str, **kw: Any) -> "DNSServer":
        """A server for every ``*.zone`` file in ``path``."""
        return cls(load_zones(path), **kw)

    # -- faults (thread-safe, any time) ---------------------------------------------
    def inject_fault(self, name: str, fault: Fault | None) -> None:
        """From now on, answer queries for ``name`` (any case) with SERVFAIL
        (``"servfail"``), or not at all (``"timeout"``); ``None`` heals it."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown DNS fault {fault!r}: expected one of {FAULTS} or None")
        key = dns.name.from_text(name)
        with self._lock:
            if fault is None:
                self._faults.pop(key, None)
            else:
                self._faults[key] = fault

    def faults(self) -> dict[str, Fault]:
        """The faults injected now: name (as DNS writes it, no final dot) -> fault."""
        with self._lock:
            return {name.to_text(omit_final_dot=True): fault for name, fault in self._faults.items()}

    @contextmanager
    def fault(self, name: str, fault: Fault | None) -> Iterator[None]:
        """:meth:`inject_fault` for the ``with`` block, then back to how it was."""
        with self._lock:
            before = self._faults.get(dns.name.from_text(name))
        self.inject_fault(name, fault)
        try:
            yield
        finally:
            self.inject_fault(name, before)

    def _fault_for(self, query: dns.message.Message) -> Fault | None:
        if len(query.question) != 1:
            return None
        with self._lock:
            return self._faults.get(query.question[0].name)

    # -- the sans-IO core -----------------------------------------------------------
    def handle(self, wire: bytes, *, max_udp: int | None = UDP_LIMIT, client: str = "") -> bytes | None:
        """Answer one query message.

        ``max_udp`` is the size limit of a UDP answer to a client without EDNS (512);
        an EDNS client's advertised size replaces it. ``None`` means TCP: no limit
        but 65535. ``client`` names the peer in traces. Returns the response wire, or
        ``None`` when nothing must be sent (a response, unparseable bytes, a timeout
        fault).
        """
        session = new_session_id("dns")
        transport = "tcp" if max_udp is None else "udp"
        try:
            query = dns.message.from_wire(wire)
        except Exception as exc:  # untrusted bytes: every parse failure is the client's
            return self._malformed(wire, exc, client, session, transport)
        if query.flags & dns.flags.QR:
            return None  # a response is never answered (no reflection loops)
        self._trace(client, session, "C", _question_text(query), transport)
        fault = self._fault_for(query)
        if fault == "timeout":
            self._trace(client, session, "*", f"(no answer: fault {fault!r} injected)", transport, kind="dropped")
            return None
        response = self._respond(query, servfail=fault == "servfail")
        # Records go out in zone-file order (BIND's rrset-order fixed), not shuffled as
        # dnspython would: spreading load over equal MX preferences is the sender's
        # job (RFC 5321 §5.1), and a fixed order lets a lab see whether it is done.
        reply = response.to_wire(max_size=_size_limit(query, max_udp), prefer_truncation=True, want_shuffle=False)
        self._trace_response(client, session, reply, transport)
        return reply

    def _respond(self, query: dns.message.Message, *, servfail: bool) -> dns.message.Message:
        response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)  # RFC 6891 §6.1.3: we speak EDNS version 0
        elif query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)  # RFC 9619: exactly one question
        elif servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            question = query.question[0]
            if question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.REFUSED)
            elif dns.rdatatype.is_metatype(question.rdtype) and question.rdtype != dns.rdatatype.ANY:
                response.set_rcode(dns.rcode.NOTIMP)  # AXFR, IXFR, OPT…: not served here
            else:
                self._answer(response, question.name, question.rdtype)
        return response

    def _answer(self, response: dns.message.Message, qname: dns.name.Name, rdtype: int) -> None:
        """Fill in the answer for ``qname``/``rdtype``, following CNAMEs in our zones.

        RFC 1034 §4.3.2 step 3: an exact match answers; a CNAME goes into the answer
        and the search restarts at its target; a missing name is NXDOMAIN, an existing
        name without the type is NODATA. After a CNAME, the rcode is the one of the
        last name (RFC 6604 §3), and the owner names echo the question's case
        (RFC 4343 §4.1) since ``qname`` is the question's own name.
        """
        zone = self._zone_for(qname)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)  # not authoritative, and we do not recurse
            return
        response.flags |= dns.flags.AA
        name, seen = qname, {qname}
        while zone is not None:
            node = zone.get_node(name)
            if node is None:
                if not _has_descendants(zone, name):  # RFC 8020: an empty non-terminal exists
                    response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(_negative_soa(zone))
                return
            rdatasets = _matching(node, rdtype)
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if rdatasets or cname is None:
                response.answer.extend(dns.rrset.from_rdata_list(name, r.ttl, r) for r in rdatasets)
                if not rdatasets:  # NODATA
                    response.authority.append(_negative_soa(zone))
                return
            response.answer.append(dns.rrset.from_rdata_list(name, cname.ttl, cname))
            name = cname[0].target
            if name in seen or len(seen) > MAX_CHAIN:
                return  # a CNAME loop: the client sees it in the answer
            seen.add(name)
            zone = self._zone_for(name)  # outside our zones: the client's resolver goes on

    def _zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        for zone in self.zones:
            if name.is_subdomain(zone.origin):
                return zone
        return None

    def _malformed(self, wire: bytes, exc: Exception, client: str, session: str, transport: str) -> bytes | None:
        """FORMERR if the header can be read (RFC 1035 §4.1.1), else nothing."""
        if len(wire) < HEADER.size:
            return None
        msg_id, flags = struct.unpack_from("!HH", wire)
        if flags & dns.flags.QR:
            return None
        self._trace(client, session, "C", f"(malformed query: {exc})", transport)
        flags = dns.flags.QR | (flags & (_OPCODE_BITS | dns.flags.RD)) | dns.rcode.FORMERR
        reply = HEADER.pack(msg_id, flags, 0, 0, 0, 0)
        self._trace_response(client, session, reply, transport)
        return reply

    # -- tracing ------------------------------------------------------------------
    def _trace(
        self, client: str, session: str, direction: Direction, line: str, transport: str, kind: str = "line"
    ) -> None:
        if self.tracer is not None:
            event = TraceEvent("dns", client, self.name, direction, line, session, kind, {"transport": transport})
            self.tracer.emit(event)

    def _trace_response(self, client: str, session: str, reply: bytes, transport: str) -> None:
        """One "S" event per answer record, then the status if it is not plain
        NOERROR: what went on the wire, so a truncated answer shows as such."""
        if self.tracer is None:
            return
        sent = dns.message.from_wire(reply)
        lines = [line for rrset in sent.answer for line in rrset.to_text().splitlines()]
        truncated = bool(sent.flags & dns.flags.TC)
        if sent.rcode() != dns.rcode.NOERROR:
            lines.append(dns.rcode.to_text(sent.rcode()))
        elif not sent.answer and not truncated:
            lines.append("NODATA")
        if truncated:
            lines.append("TC (truncated: ask again over TCP)")
        for line in lines:
            self._trace(client, session, "S", line, transport)

    # -- IO: UDP and TCP on the same port number ----------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Endpoint:
        """Listen on UDP and TCP ``host:port``; port 0 picks a number free for both."""
        if self.endpoint is not None:
            raise RuntimeError(f"DNS server {self.name} already listens on {self.endpoint}")
        loop = asyncio.get_running_loop()
        for _ in range(PORT_ATTEMPTS if port == 0 else 1):
            udp, _protocol = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), local_addr=(host, port))
            number = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._serve_tcp, host, number)
            except OSError as exc:
                udp.close()
                if port or exc.errno != errno.EADDRINUSE:
                    raise
                continue  # that UDP port's TCP twin is taken: pick another
            self._udp, self._tcp = udp, tcp
            self.endpoint = Endpoint(host, number)
            return self.endpoint
        raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host} in {PORT_ATTEMPTS} tries")

    async def stop(self) -> None:
        """Stop listening and close open TCP connections."""
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
        self._udp = self._tcp = self.endpoint = None

    def _handle_safely(self, wire: bytes, *, max_udp: int | None, client: str) -> bytes | None:
        """:meth:`handle` for the IO code: a bug answers nothing instead of killing
        the listener."""
        try:
            return self.handle(wire, max_udp=max_udp, client=client)
        except Exception:
            log.exception("DNS server %s failed on a query from %s", self.name, client)
            return None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 7766: 2-byte length-prefixed messages, as many as the client sends."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        client = self.peer_name(writer.get_extra_info("peername") or ("?", 0))
        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                wire = await asyncio.wait_for(reader.readexactly(int.from_bytes(prefix, "big")), TCP_IDLE_TIMEOUT)
                reply = self._handle_safely(wire, max_udp=None, client=client)
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client closed, went idle, or vanished
        finally:
            self._connections.discard(task)
            writer.close()


@contextmanager
def serve_in_background(server: DNSServer, host: str = "127.0.0.1", port: int = 0) -> Iterator[Endpoint]:
    """Run ``server`` on its own :class:`BackgroundLoop` for the ``with`` block
    (notebooks, tests); yields where it listens."""
    with BackgroundLoop("labkit-dns") as loop:
        endpoint = loop.run(server.start(host, port))
        try:
            yield endpoint
        finally:
            loop.run(server.stop())


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        heap_sized_reads(transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server._handle_safely(data, max_udp=UDP_LIMIT, client=self.server.peer_name(addr))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS server %s: UDP error %s", self.server.name, exc)  # e.g. ICMP unreachable


def _size_limit(query: dns.message.Message, max_udp: int | None) -> int:
    if max_udp is None:
        return TCP_LIMIT
    if query.edns >= 0:  # RFC 6891 §6.2.5: the requestor's size, at least 512, at most ours
        return max(max_udp, min(query.payload, EDNS_PAYLOAD))
    return max_udp


def _question_text(query: dns.message.Message) -> str:
    if query.opcode() != dns.opcode.QUERY:
        return f"(opcode {dns.opcode.to_text(query.opcode())})"
    if len(query.question) != 1:
        return f"({len(query.question)} questions)"
    return query.question[0].to_text()


def _matching(node: dns.node.Node, rdtype: int) -> list[dns.rdataset.Rdataset]:
    if rdtype == dns.rdatatype.ANY:
        return [r for r in node.rdatasets if r]
    found = node.get_rdataset(dns.rdataclass.IN, rdtype)
    return [found] if found else []


def _has_descendants(zone: dns.zone.Zone, name: dns.name.Name) -> bool:
    return any(other != name and other.is_subdomain(name) for other in zone.nodes)


def _negative_soa(zone: dns.zone.Zone) -> dns.rrset.RRset:
    """The zone's SOA for a negative answer: TTL = min(SOA TTL, SOA MINIMUM),
    RFC 2308 §3."""
    soa = zone.get_rdataset(zone.origin, dns.rdatatype.SOA)
    assert soa is not None  # dnspython checks every zone has one at its origin
    return dns.rrset.from_rdata_list(zone.origin, min(soa.ttl, soa[0].minimum), soa)
