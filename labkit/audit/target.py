"""What `labkit check` looks at, and how it reaches it.

A :class:`Target` is one mail setup to audit: the domain, the DNS server to ask, the
user's credentials, the rubric's services, and the time limits. Its :class:`Connector`
decides where a TCP connection really goes: DNS names hosts and addresses, and
``--connect`` overrides (or a lab world's :class:`~labkit.net.AddressMap`) send (name or
address, port) to another endpoint, for setups behind NAT or on loopback.

A public mail host's address must be one the world can reach: a loopback, private,
link-local or documentation address (RFC 6890's special-purpose registries) is never
dialled as it is, only where an override sends the check (so a zone that says
127.0.0.1 cannot get the checker's own machine graded).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..checks.result import Line
from ..net import AddressMap, Endpoint

SERVICES = ("imap", "pop3", "submission")  # graded besides DNS and SMTP, unless left out
SMTP_PORT = 25  # where an MX host takes mail
DOCUMENTATION = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                                        "2001:db8::/32"))  # RFC 5737, RFC 3849
PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))  # RFC 1918
UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")  # RFC 4193
SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598: carrier-grade NAT


class TimeUp(TimeoutError):
    """The check's time limit ran out (``--time-limit``): no further network wait."""

    def __init__(self) -> None:
        super().__init__("the time limit ran out")


@dataclass
class Target:
    """One mail setup to check, and how patiently."""

    domain: str
    dns: Endpoint | None = None  # the server to ask; None: the system's resolver
    routes: AddressMap = field(default_factory=AddressMap)  # (name or address, port) -> endpoint
    direct: bool = True  # dial unmapped public addresses as they are (False: a lab world, only its map)
    user: str | None = None  # the mailbox that gets the test message
    password: str | None = None
    login: str | None = None  # IMAP/POP3/AUTH login name (default: the user's address)
    host: str | None = None  # where IMAP, POP3 and submission are (default: the MX that took the message)
    mail_from: str = ""  # reverse-path of the probes; "" is the null path <> (RFC 5321 §4.5.5)
    timeout: float = 10.0  # bounds each network wait (connect, each reply, each DNS lookup)
    wait: float = 20.0  # how long to look for the delivered test message
    deadline: float | None = None  # time.monotonic() after which no network wait goes on
    ca_file: str | None = None  # a course's own CA (PEM), trusted besides the system's
    services: tuple[str, ...] = SERVICES  # which of IMAP, POP3, submission the rubric grades
    roster: bool = False  # the credentials come from a batch's roster (a refused login is its mistake)

    def __post_init__(self) -> None:
        self.domain = self.domain.strip().rstrip(".").lower()
        unknown = set(self.services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service {', '.join(sorted(unknown))}: choose from {', '.join(SERVICES)}")

    @property
    def login_name(self) -> str:
        return self.login or self.user or ""

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def budget(self, seconds: float | None = None) -> float:
        """Seconds for the next network wait: ``seconds`` (default ``timeout``), cut to
        what is left of the time limit; :class:`TimeUp` when nothing is left."""
        wait = self.timeout if seconds is None else seconds
        if self.deadline is None:
            return wait
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeUp()
        return min(wait, left)

    def connector(self) -> "Connector":
        return Connector(self.routes, direct=self.direct, budget=self.budget)


def special_use(address: str) -> str:
    """What kind of special-purpose address (RFC 6890) ``address`` is, or ``""`` for a
    global one (or a name)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").removeprefix("IPv6:"))
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip in network for network in DOCUMENTATION):
        return "a documentation address (RFC 5737, RFC 3849)"
    if ip in SHARED:
        return "a shared (carrier-grade NAT) address (RFC 6598)"
    if any(ip in network for network in PRIVATE):
        return "a private address (RFC 1918)"
    if ip in UNIQUE_LOCAL:
        return "a unique local address (RFC 4193)"
    return "" if ip.is_global else "a special-purpose address"


class ConnectFailed(OSError):
    """No endpoint of a host answered; the message says what each attempt got."""


@dataclass
class Connector:
    routes: AddressMap
    direct: bool = True
    budget: Callable[[], float] = lambda: 10.0  # seconds for a connect: Target.budget

    def routed(self, host: str, address: str, port: int) -> Endpoint | None:
        """Where an override sends ``host`` (by name) or ``address`` on ``port``."""
        return self.routes.route(host.lower(), port) or self.routes.route(address, port)

    def endpoints(self, host: str, addresses: tuple[str, ...], port: int) -> tuple[list[Endpoint], list[str]]:
        """Where to dial ``host`` (with DNS ``addresses``) on ``port``, in order, and why
        any address is not dialled: an override for the name wins; else each address,
        through its override if any, else as it is if it is public (and not a lab world)."""
        named = self.routes.route(host.lower(), port)
        if named is not None:
            return [named], []
        found, refused = [], []
        for address in addresses:
            mapped = self.routes.route(address, port)
            kind = special_use(address)
            if mapped is not None:
                found.append(mapped)
            elif kind:
                refused.append(f"{address} is {kind} (RFC 6890): not dialled; only --connect sends a check there")
            elif self.direct:
                found.append(Endpoint(address, port))
        return found, refused

    def connect(self, host: str, addresses: tuple[str, ...], port: int, transcript: list[Line]) -> socket.socket:
        """A connected socket to the first endpoint of ``host`` that answers."""
        endpoints, refused = self.endpoints(host, addresses, port)
        transcript += [("*", reason) for reason in refused]
        if not endpoints:
            if refused:
                raise ConnectFailed("; ".join(refused))
            shown = ", ".join(addresses) or "no address"
            transcript.append(("*", f"nothing to connect to for {host} ({shown}) port {port}"))
            raise ConnectFailed(f"connection refused: nothing listens on {host} port {port}")
        problems = []
        for endpoint in endpoints:
            transcript.append(("*", f"connecting to {host} port {port} at {endpoint}"))
            seconds = self.budget()
            try:
                return socket.create_connection((endpoint.host, endpoint.port), timeout=seconds)
            except OSError as error:
                problem = reason(error, seconds)
                transcript.append(("*", problem))
                problems.append(f"{endpoint}: {problem}")
        raise ConnectFailed("; ".join(problems))


def reason(error: OSError, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g}s (timed out)"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return error.strerror or str(error) or type(error).__name__


# -- parsing what people type -----------------------------------------------------------
def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """``HOST[:PORT]``, ``[v6]:PORT`` or a bare IPv6 address."""
    text = text.strip()
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port:
        if default_port is None:
            raise ValueError(f"{text!r}: a port is needed (HOST:PORT)")
        return Endpoint(host, default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: bad port {port!r}")
    return Endpoint(host.lower(), int(port))


def parse_connect(text: str) -> tuple[str, int, Endpoint]:
    """``NAME:PORT=HOST:PORT`` -> (name or address, port, endpoint)."""
    left, sep, right = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r}: expected NAME:PORT=HOST:PORT")
    source = parse_endpoint(left)
    return source.host.rstrip("."), source.port, parse_endpoint(right)


def routes_from(overrides: list[str], into: AddressMap | None = None) -> AddressMap:
    """An address map of ``--connect`` overrides."""
    routes = into or AddressMap()
    for text in overrides:
        name, port, endpoint = parse_connect(text)
        routes.add(name, port, endpoint)
    return routes


def nameserver(text: str) -> Endpoint:
    """``--dns SERVER[:PORT]``; a host name is looked up once, here."""
    endpoint = parse_endpoint(text, 53)
    try:
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        address = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_DGRAM)[0][4][0]
        endpoint = Endpoint(address, endpoint.port)
    return endpoint
