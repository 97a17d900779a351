"""A dnspython resolver that asks the lab's DNS server and nothing else (and, for a mail
host's own lookups, tells that server which host asks)."""

from __future__ import annotations

import socket

import dns.message
import dns.nameserver
import dns.query
import dns.resolver

from ..net import AddressMap, Endpoint


class _AskingAs(dns.nameserver.Do53Nameserver):
    """The lab DNS server, asked from a socket the address map knows as ``source`` (a
    host's virtual address) before the first byte leaves: the server's trace then names
    the host whose resolver asked (smtp.awesome.com), not 127.0.0.1."""

    def __init__(self, nameserver: Endpoint, addresses: AddressMap, source: str) -> None:
        super().__init__(nameserver.host, nameserver.port)
        self.addresses, self.source = addresses, source

    def query(self, request: dns.message.QueryMessage, timeout: float, source: str | None, source_port: int,
              max_size: bool, one_rr_per_rrset: bool = False, ignore_trailing: bool = False) -> dns.message.Message:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM if max_size else socket.SOCK_DGRAM) as sock:
            sock.bind((source or self.address, source_port))
            sockname = sock.getsockname()
            self.addresses.note_peer(sockname, self.source)
            try:
                if max_size:  # TCP (RFC 7766): dnspython wants it connected and non-blocking
                    sock.settimeout(timeout)
                    sock.connect((self.address, self.port))
                    sock.setblocking(False)
                    return dns.query.tcp(request, self.address, timeout, self.port, sock=sock,
                                         one_rr_per_rrset=one_rr_per_rrset, ignore_trailing=ignore_trailing)
                sock.setblocking(False)
                return dns.query.udp(request, self.address, timeout, self.port, sock=sock, raise_on_truncation=True,
                                     one_rr_per_rrset=one_rr_per_rrset, ignore_trailing=ignore_trailing,
                                     ignore_errors=True, ignore_unexpected=True)
            finally:  # the server traced the query before it answered: the name is no longer needed
                self.addresses.forget_peer(sockname)


class _HostsResolver(dns.resolver.Resolver):
    """A resolver that asks through :class:`_AskingAs`, while ``nameservers`` reads as
    plain addresses, for programs that take them to ask by themselves (a student's own
    query, the grader's proxy resolver, which sends them as JSON)."""

    @property
    def nameservers(self) -> list:
        return [ns.answer_nameserver() if isinstance(ns, _AskingAs) else ns for ns in self._nameservers]

    @nameservers.setter
    def nameservers(self, nameservers: list) -> None:
        dns.resolver.BaseResolver.nameservers.fset(self, nameservers)  # type: ignore[attr-defined]


def lab_resolver(nameserver: Endpoint, *, timeout: float = 2.0, addresses: AddressMap | None = None,
                 source: str = "") -> dns.resolver.Resolver:
    """A dnspython Resolver that asks only the lab DNS server (no /etc/resolv.conf, no
    cache); ``timeout`` bounds each whole lookup. With ``addresses`` and ``source`` (a
    host's virtual address), the lab's server knows who asks, as a real one would."""
    if addresses is not None and source:
        resolver: dns.resolver.Resolver = _HostsResolver(configure=False)
        resolver.nameservers = [_AskingAs(nameserver, addresses, source)]
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [nameserver.host]
    resolver.port = nameserver.port
    resolver.timeout = resolver.lifetime = timeout
    resolver.cache = None
    return resolver
