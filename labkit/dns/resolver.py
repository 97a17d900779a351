"""A dnspython resolver that asks the lab's DNS server and nothing else."""

from __future__ import annotations

import dns.resolver

from ..net import Endpoint


def lab_resolver(nameserver: Endpoint, *, timeout: float = 2.0) -> dns.resolver.Resolver:
    """A dnspython Resolver that asks only the lab DNS server (no /etc/resolv.conf, no
    cache); ``timeout`` bounds each whole lookup."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [nameserver.host]
    resolver.port = nameserver.port
    resolver.timeout = resolver.lifetime = timeout
    resolver.cache = None
    return resolver
