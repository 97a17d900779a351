"""What `labkit check` looks at, and how it reaches it.

A :class:`Target` is one mail setup to audit: the domain, the DNS server to ask, the
user's credentials, and the time limits. Its :class:`Connector` decides where a TCP
connection really goes: DNS names hosts and addresses, and ``--connect`` overrides (or
a lab world's :class:`~labkit.net.AddressMap`) send (name or address, port) to another
endpoint, for setups behind NAT or on loopback.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field

from ..checks.result import Line
from ..net import AddressMap, Endpoint, NoRoute


@dataclass
class Target:
    """One mail setup to check, and how patiently."""

    domain: str
    dns: Endpoint | None = None  # the server to ask; None: the system's resolver
    routes: AddressMap = field(default_factory=AddressMap)  # (name or address, port) -> endpoint
    direct: bool = True  # dial unmapped addresses as they are (False: a lab world, only its map)
    user: str | None = None  # the mailbox that gets the test message
    password: str | None = None
    login: str | None = None  # IMAP/POP3/AUTH login name (default: the user's address)
    host: str | None = None  # where IMAP, POP3 and submission are (default: the MX that took the message)
    mail_from: str = ""  # reverse-path of the probes; "" is the null path <> (RFC 5321 §4.5.5)
    timeout: float = 10.0  # bounds each network wait (connect, each reply, each DNS lookup)
    wait: float = 20.0  # how long to look for the delivered test message
    deadline: float | None = None  # time.monotonic() after which no new step starts

    def __post_init__(self) -> None:
        self.domain = self.domain.strip().rstrip(".").lower()

    @property
    def login_name(self) -> str:
        return self.login or self.user or ""

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def connector(self) -> "Connector":
        return Connector(self.routes, direct=self.direct, timeout=self.timeout)


class ConnectFailed(OSError):
    """No endpoint of a host answered; the message says what each attempt got."""


@dataclass
class Connector:
    routes: AddressMap
    direct: bool = True
    timeout: float = 10.0

    def endpoints(self, host: str, addresses: tuple[str, ...], port: int) -> list[Endpoint]:
        """Where to dial ``host`` (with DNS ``addresses``) on ``port``, in order: an
        override for the name wins; else each address, through its override if any."""
        named = self.routes.route(host.lower(), port)
        if named is not None:
            return [named]
        found = []
        for address in addresses:
            try:
                found.append(self.routes.resolve(address, port))  # mapped, or loopback as it is
            except NoRoute:
                if self.direct:
                    found.append(Endpoint(address, port))
        return found

    def connect(self, host: str, addresses: tuple[str, ...], port: int, transcript: list[Line]) -> socket.socket:
        """A connected socket to the first endpoint of ``host`` that answers."""
        endpoints = self.endpoints(host, addresses, port)
        if not endpoints:
            shown = ", ".join(addresses) or "no address"
            transcript.append(("*", f"nothing to connect to for {host} ({shown}) port {port}"))
            raise ConnectFailed(f"connection refused: nothing listens on {host} port {port}")
        problems = []
        for endpoint in endpoints:
            transcript.append(("*", f"connecting to {host} port {port} at {endpoint}"))
            try:
                return socket.create_connection((endpoint.host, endpoint.port), timeout=self.timeout)
            except OSError as error:
                problem = _reason(error, self.timeout)
                transcript.append(("*", problem))
                problems.append(f"{endpoint}: {problem}")
        raise ConnectFailed("; ".join(problems))


def _reason(error: OSError, timeout: float) -> str:
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
