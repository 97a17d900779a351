"""How much of what a check sent the program at the other end has not read yet.

A check that sends a command in two pieces must know that the server read the first
before it sends the second, or the two may reach the server as one read and a session
that drops an incomplete line would pass. A fixed pause is outrun by a busy machine, so
the checks ask the kernel about the receiving socket: how many bytes it has received in
all (``tcpi_bytes_received``), and how many of them wait unread in its queue. Both are
needed: on loopback, sent bytes usually reach that queue within ``send``, but on a busy
machine the kernel may leave the delivery to its ksoftirqd thread, and an empty queue
then means "not there yet", not "read" (CI saw a pipelining check pass a session that
drops an incomplete line that way).

Linux's sock_diag netlink interface (what ``ss`` uses) looks up that one socket by its
addresses, atomically. /proc/net/tcp is the fallback; it is a listing, and a read of it
in several pieces can skip a row while connections come and go (the TIME_WAIT sockets of
a test run do), so it is read in one piece and a missing row is looked for again.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_REQUEST = struct.Struct("=BBBxI")  # struct inet_diag_req_v2, up to its inet_diag_sockid
_SOCKID = struct.Struct(">HH16s16s")  # ports and addresses, in network byte order
_SOCKID_TAIL = struct.Struct("=III")  # interface, cookie (two words)
_RQUEUE_AT = _HEADER.size + 4 + 48 + 4  # struct inet_diag_msg: idiag_rqueue
_ATTRIBUTES_AT = _HEADER.size + 72  # after struct inet_diag_msg: its attributes (struct rtattr)
INET_DIAG_INFO = 2  # the attribute that holds struct tcp_info
_BYTES_RECEIVED_AT = 128  # in struct tcp_info (Linux 4.1 and later): tcpi_bytes_received
PROC_TRIES = 3


def other_end(sock: socket.socket) -> tuple[int, int | None] | None:
    """Of the program at the other end of this loopback TCP connection: how many bytes
    wait unread in its receive queue, and how many it has received in all (None where
    only the queue can be told); None where neither can (not Linux, or the connection
    is gone). A queue of 0 with every byte sent received means it has read them all."""
    try:
        peer, local = sock.getpeername()[:2], sock.getsockname()[:2]
    except OSError:
        return None
    told = _by_netlink(sock.family, peer, local)
    if told is not None:
        return told
    queued = _by_proc(sock.family, peer, local)
    return None if queued is None else (queued, None)


def _by_netlink(family: int, peer: tuple[str, int], local: tuple[str, int]) -> tuple[int, int | None] | None:
    """The other end's receive queue and bytes received, asked of sock_diag for that one
    socket: the one whose own address is ``peer`` and whose remote is ``local``."""
    try:
        packed = [socket.inet_pton(family, address).ljust(16, b"\0") for address in (peer[0], local[0])]
        body = (_REQUEST.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0xFFFFFFFF)
                + _SOCKID.pack(peer[1], local[1], *packed)
                + _SOCKID_TAIL.pack(0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
            diag.settimeout(1.0)
            diag.send(_HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + body)
            answer = diag.recv(8192)
    except (OSError, AttributeError, ValueError):  # no netlink here, or no such address family
        return None
    kind = _HEADER.unpack_from(answer)[1] if len(answer) >= _HEADER.size else NLMSG_ERROR
    if kind != SOCK_DIAG_BY_FAMILY or len(answer) < _RQUEUE_AT + 4:
        return None  # an error (no such socket, no tcp_diag module)
    queued = struct.unpack_from("=I", answer, _RQUEUE_AT)[0]
    at, end = _ATTRIBUTES_AT, min(len(answer), _HEADER.unpack_from(answer)[0])
    while at + 4 <= end:  # struct rtattr: length, type, then the value, padded to 4
        length, kind = struct.unpack_from("=HH", answer, at)
        if length < 4:
            break
        if kind == INET_DIAG_INFO and length - 4 >= _BYTES_RECEIVED_AT + 8:
            return queued, struct.unpack_from("=Q", answer, at + 4 + _BYTES_RECEIVED_AT)[0]
        at += (length + 3) & ~3
    return queued, None


def _proc_address(family: int, address: tuple[str, int]) -> str:
    """How /proc/net/tcp{,6} writes a local (address, port): ``0100007F:0019``, the
    address as the kernel's 32-bit words in this machine's byte order."""
    raw = socket.inet_pton(family, address[0])
    words = "".join(f"{int.from_bytes(raw[i:i + 4], 'little'):08X}" for i in range(0, len(raw), 4))
    return f"{words}:{address[1]:04X}"


def _by_proc(family: int, peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    try:
        key = (_proc_address(family, peer), _proc_address(family, local))
        path = "/proc/net/tcp6" if family == socket.AF_INET6 else "/proc/net/tcp"
        for _ in range(PROC_TRIES):
            for row in _read_whole(path).splitlines()[1:]:
                fields = row.split()
                if len(fields) > 4 and (fields[1], fields[2]) == key:
                    return int(fields[4].split(":")[1], 16)  # tx_queue:rx_queue
    except (OSError, ValueError):
        pass
    return None


def _read_whole(path: str) -> str:
    """The file in as few reads as it takes: each read of a /proc listing starts a new
    walk of the kernel's table."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")
