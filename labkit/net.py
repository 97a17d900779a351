"""The virtual address map: lecture addresses on the outside, loopback ports inside.

DNS in the lab world says ``smtp.brilliant.com A 1.2.3.5``, as in the lecture. Nothing
listens on 1.2.3.5, of course: the world records that (1.2.3.5, 25) is really served on
(127.0.0.1, 40123). Every labkit client connects through :class:`AddressMap`, so MX
routing is real while nothing needs root, extra interfaces or fixed ports.

The map also remembers which virtual address a labkit client connected *from*, so the
server on the other end can name its peer as the lecture does (``[1.2.3.4]``) in its
Received header and in the trace, while a real client (swaks, curl) shows as 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from dataclasses import dataclass

#: Well-known ports, so code and traces read like the lecture.
SERVICE_PORTS: dict[str, int] = {"smtp": 25, "submission": 587, "pop3": 110, "imap": 143, "dns": 53}


@dataclass(frozen=True)
class Endpoint:
    """A real (host, port) that something listens on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def close_socket(sock: socket.socket) -> None:
    """Close a socket, waking any thread still blocked on it (a student's client past
    its deadline): shutdown interrupts a blocked recv, close alone does not."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class NoRoute(ConnectionRefusedError):
    """Nothing in the lab world listens on that (virtual) address and port."""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class AddressMap:
    """Maps virtual (address, port) pairs to the loopback endpoints that serve them.

    Thread-safe: the world's event loop, notebook code and delivery threads share it.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str, int], Endpoint] = {}
        self._peers: dict[tuple[str, int], tuple[str, str]] = {}  # socket -> (virtual address, seam)
        self._lock = threading.Lock()

    # -- the world fills the map ------------------------------------------------------
    def add(self, address: str, port: int, endpoint: Endpoint) -> None:
        with self._lock:
            self._routes[(address, port)] = endpoint

    def remove(self, address: str, port: int) -> None:
        with self._lock:
            self._routes.pop((address, port), None)

    def routes(self) -> dict[tuple[str, int], Endpoint]:
        with self._lock:
            return dict(self._routes)

    # -- clients use the map ----------------------------------------------------------
    def route(self, address: str, port: int) -> Endpoint | None:
        """The endpoint mapped to ``address:port``, or None (no loopback pass-through)."""
        with self._lock:
            return self._routes.get((address, port))

    def resolve(self, address: str, port: int) -> Endpoint:
        """Where to really connect for ``address:port``.

        Loopback addresses pass through unchanged (real services, tests); any other
        address must be in the map, or :class:`NoRoute` is raised, just as a TCP
        connect to a host with nothing listening is refused.
        """
        endpoint = self.route(address, port)
        if endpoint is not None:
            return endpoint
        if is_loopback(address):
            return Endpoint(address, port)
        raise NoRoute(f"connection refused: nothing listens on {address}:{port} in the lab world")

    def _socket(self, endpoint: Endpoint, source: str, seam: str = "") -> socket.socket:
        """An unconnected socket for ``endpoint``; with ``source``, bound first so the
        server can look up our virtual address the moment it accepts us."""
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        if source:
            try:
                sock.bind((endpoint.host if is_loopback(endpoint.host) else "", 0))
                self.note_peer(sock.getsockname(), source, seam)
            except OSError:
                sock.close()
                raise
        return sock

    def connect(self, address: str, port: int, *, timeout: float = 10.0, source: str = "",
                seam: str = "") -> socket.socket:
        """Open a TCP connection to virtual ``address:port``; ``source`` is our own
        virtual address, remembered so the server can name us (and ``seam``, the
        student part that will speak on this connection, so its trace is marked)."""
        endpoint = self.resolve(address, port)
        sock = self._socket(endpoint, source, seam)
        try:
            sock.settimeout(timeout)
            sock.connect((endpoint.host, endpoint.port))
        except OSError:
            sock.close()
            raise
        return sock

    async def open_connection(self, address: str, port: int, *, source: str = "", seam: str = "", **kwargs):
        """asyncio version of :meth:`connect`: returns ``(reader, writer)``."""
        endpoint = self.resolve(address, port)
        sock = self._socket(endpoint, source, seam)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (endpoint.host, endpoint.port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, **kwargs)

    # -- servers ask who their peer is ----------------------------------------------
    def note_peer(self, sockname: tuple, virtual: str, seam: str = "") -> None:
        with self._lock:
            if len(self._peers) > 10_000:  # bounded: forget the oldest half
                for key in list(self._peers)[:5_000]:
                    del self._peers[key]
            self._peers[(sockname[0], sockname[1])] = (virtual, seam)

    def forget_peer(self, sockname: tuple) -> None:
        """Forget a socket noted with :meth:`note_peer` (its port may serve another next)."""
        with self._lock:
            self._peers.pop((sockname[0], sockname[1]), None)

    def peer_address(self, peername: tuple | None) -> str:
        """The virtual address of a connected peer, or its real address."""
        if not peername:
            return "unknown"
        with self._lock:
            return self._peers.get((peername[0], peername[1]), (peername[0], ""))[0]

    def peer_seam(self, peername: tuple | None) -> str:
        """The student part speaking for a connected peer, or ``""``."""
        if not peername:
            return ""
        with self._lock:
            return self._peers.get((peername[0], peername[1]), ("", ""))[1]
