"""What an MX lookup answers: the next hops to try, or why there are none.

The types of the ``resolve_mx`` seam's contract (``labkit.lab`` re-exports them), apart
from the lookup itself (:mod:`labkit.dns.mx`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NextHop:
    """One host to try, with the addresses to connect to."""

    host: str  # the MX target ("smtp.brilliant.com"), or the domain itself for an implicit MX
    preference: int  # MX preference (0 for an implicit MX)
    addresses: tuple[str, ...]  # its A then AAAA addresses
    implicit: bool = False  # True when there was no MX and the domain's own address is used


class MXError(Exception):
    """No next hop for ``domain``; the message names the domain and the rule."""

    def __init__(self, domain: str, message: str) -> None:
        super().__init__(message)
        self.domain = domain


class TemporaryMXError(MXError):
    """DNS could not answer now (SERVFAIL, timeout, REFUSED): try again later (4xx)."""


class PermanentMXError(MXError):
    """DNS says there is nowhere to deliver (NXDOMAIN, no MX and no address): bounce (5xx)."""


class NullMXError(PermanentMXError):
    """The domain publishes a null MX (RFC 7505): it does not accept mail."""
