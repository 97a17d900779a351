"""Where does mail for a domain go? The MX lookup of RFC 5321 §5.1, with RFC 7505.

:func:`resolve_mx` only asks DNS (through a dnspython resolver): it knows nothing of
the lab world's address map. Its answer is the ordered list of next hops an SMTP
client tries one after the other; its errors say whether to try again later
(:class:`TemporaryMXError`, a 4xx situation) or to bounce (:class:`PermanentMXError`).
Host names come back in lower case and without the trailing dot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from .hops import MXError, NextHop, NullMXError, PermanentMXError, TemporaryMXError
from .resolver import lab_resolver  # noqa: F401 (where it was first)

ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)  # A first, then AAAA


def resolve_mx(domain: str, resolver: dns.resolver.Resolver) -> list[NextHop]:
    """Ordered next hops for mail to ``domain``, per RFC 5321 §5.1.

    - MX records sorted by preference, lowest first; equal preferences in random
      order to spread the load ("the sender-SMTP MUST randomize them").
    - No MX records (NODATA): the domain's own A/AAAA records are an implicit MX with
      preference 0. Never when MX records exist.
    - CNAMEs are followed, for the domain and for MX targets.
    - A single MX "0 ." is a null MX (RFC 7505 §3): :class:`NullMXError`.
    - MX hosts without any address are skipped. If none is left: temporary when some
      host's lookup failed temporarily (it may resolve later), else permanent (every
      host is known not to exist or to have no address; Postfix bounces too).
    """
    name = _absolute(domain)
    shown = name.to_text(omit_final_dot=True).lower()
    try:
        answer = resolver.resolve(name, dns.rdatatype.MX, search=False)
    except dns.resolver.NoAnswer:
        return [_implicit_mx(name, shown, resolver)]
    except dns.exception.DNSException as exc:
        raise _lookup_error(shown, f"{shown} MX", exc) from exc
    assert answer.rrset is not None  # dnspython raises NoAnswer otherwise
    if is_null_mx(answer.rrset):
        raise NullMXError(shown, f"{shown} does not accept mail: it publishes a null MX (RFC 7505)")
    hops: list[NextHop] = []
    temporary: list[MXError] = []
    for mx in answer.rrset.processing_order():  # RFC 5321 §5.1 order, shuffled ties
        if mx.exchange == dns.name.root:
            continue  # "." among other MX records: not a host (RFC 7505 §3 forbids the mix)
        host = mx.exchange.to_text(omit_final_dot=True).lower()
        try:
            addresses = _addresses(mx.exchange, shown, resolver)
        except TemporaryMXError as exc:
            temporary.append(exc)
            continue
        if addresses:
            hops.append(NextHop(host, mx.preference, addresses))
    if hops:
        return hops
    if temporary:
        raise TemporaryMXError(
            shown, f"no MX host of {shown} has an address yet (RFC 5321 §5.1), try again later: {temporary[0]}"
        )
    raise PermanentMXError(shown, f"no MX host of {shown} has an address (RFC 5321 §5.1: MX records unusable)")


def is_null_mx(records: Iterable[Any]) -> bool:
    """A single ``MX 0 .``: the domain accepts no mail (RFC 7505 §3)."""
    records = list(records)
    return len(records) == 1 and records[0].preference == 0 and records[0].exchange == dns.name.root


def _implicit_mx(name: dns.name.Name, shown: str, resolver: dns.resolver.Resolver) -> NextHop:
    """RFC 5321 §5.1: no MX, so the domain itself is the host, with preference 0."""
    addresses = _addresses(name, shown, resolver)
    if not addresses:
        raise PermanentMXError(shown, f"{shown} has no MX and no A/AAAA record (RFC 5321 §5.1): no mail host")
    return NextHop(shown, 0, addresses, implicit=True)


def _addresses(host: dns.name.Name, domain: str, resolver: dns.resolver.Resolver) -> tuple[str, ...]:
    """A then AAAA addresses of ``host`` (after CNAMEs); empty if it has none or does
    not exist; :class:`TemporaryMXError` if DNS failed and no address was found."""
    found: list[str] = []
    failure: MXError | None = None
    for rdtype in ADDRESS_TYPES:
        try:
            found.extend(rdata.address for rdata in resolver.resolve(host, rdtype, search=False))
        except dns.resolver.NoAnswer:
            continue
        except dns.resolver.NXDOMAIN:
            break  # the name does not exist: no other type will
        except dns.exception.DNSException as exc:
            shown = host.to_text(omit_final_dot=True).lower()
            failure = _lookup_error(domain, f"{shown} {dns.rdatatype.to_text(rdtype)}", exc)
    if not found and failure is not None:
        raise failure
    return tuple(found)


def _lookup_error(domain: str, what: str, exc: dns.exception.DNSException) -> MXError:
    """NXDOMAIN is permanent; SERVFAIL, REFUSED (NoNameservers) and timeouts are
    temporary (RFC 5321 §4.5.4.1: retry later)."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return PermanentMXError(
            domain, f"{domain} does not exist (NXDOMAIN for {what}, RFC 5321 §5.1): no mail can be delivered"
        )
    problem = "timed out" if isinstance(exc, dns.exception.Timeout) else f"failed ({exc})"
    return TemporaryMXError(domain, f"{domain}: DNS lookup of {what} {problem}; try again later (RFC 5321 §4.5.4.1)")


def _absolute(domain: str) -> dns.name.Name:
    """``domain`` as an absolute name: a trailing dot and any case are fine."""
    try:
        name = dns.name.from_text(domain.strip())
    except dns.exception.DNSException as exc:
        raise PermanentMXError(domain, f"{domain!r} is not a valid domain name: {exc}") from exc
    if name == dns.name.root:
        raise PermanentMXError(domain, f"{domain!r} is not a mail domain (the DNS root)")
    return name
