"""Scripted peers for the checks: real servers and clients on loopback ports.

:class:`SMTPPeer` is an SMTP server for one client connection. Its replies come from a
script (command -> reply, or a function of the command line), so a check can play an
old server that knows no EHLO, one that refuses a recipient, one that hangs up after
RCPT, or one whose replies arrive in pieces. It records the dialogue, and the DATA
bytes exactly as they came over the wire (still dot-stuffed), for the check to judge.

:class:`LineClient` is the other side: a plain client connection for what poplib and
imaplib hide (a command in two pieces, two commands in one packet, the tag of a reply,
whether the server hangs up).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Union

from ..net import close_socket
from .receive_queue import other_end
from .result import Line

Reply = Union[str, None, Callable[[str], "str | None"]]
"""A reply line (several lines joined by CRLF for a multi-line reply), ``None`` to hang
up without a word, :data:`SILENT` to say nothing and wait, a reply ending in
:data:`HANG_UP` to hang up right after it, or a function of the client's command line
giving any of these."""
SILENT = "\0silent"
HANG_UP = "\0hang-up"

IO_TIMEOUT = 10.0  # seconds any wait of a peer may last: every loop here is bounded
SPLIT_WAIT = 0.5  # the longest a piece waits for the other side to read the one before
SPLIT_PAUSE = 0.02  # the wait between pieces where the system cannot tell what was read
MAX_LINE = 8192
MAX_DATA = 4 * 1024 * 1024


def _verb(line: str) -> str:
    """The command word: ``MAIL FROM:<x>`` -> ``MAIL``."""
    return line.split(" ", 1)[0].split(":", 1)[0].upper()


def send_in_pieces(sock: socket.socket, pieces: list[bytes]) -> None:
    """Send ``pieces`` so that the other side reads each one on its own."""
    if len(pieces) > 1:  # each piece goes out at once: Nagle would hold a small one until an ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # that may be delayed 40 ms
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        told = None if last else other_end(sock)  # what it had received before this piece
        sock.sendall(piece)
        if not last:
            _wait_read(sock, None if told is None or told[1] is None else told[1] + len(piece))


def _wait_read(sock: socket.socket, received: int | None) -> None:
    """Wait until the program at the other end has read all that was sent (``received``:
    the bytes it has then received in all, where that can be told): not a fixed pause,
    which a busy machine could outrun and an idle one waits out. At most
    :data:`SPLIT_WAIT`: a program that does not read gets the rest all the same."""
    deadline = time.monotonic() + SPLIT_WAIT
    while time.monotonic() < deadline:
        told = other_end(sock)
        if told is None:  # the system cannot tell
            time.sleep(SPLIT_PAUSE)
            return
        queued, got = told
        if queued == 0 and (received is None or got is None):  # the queue alone: the bytes may
            time.sleep(SPLIT_PAUSE)  # still be on their way
            return
        if queued == 0 and got >= received:
            return
        time.sleep(0.001)


def hangs_up(sock: socket.socket, timeout: float, read: Callable[[], bytes] | None = None) -> bool:
    """Whether the other side closes the connection within ``timeout``, sending nothing
    more: an end of stream, or a reset (a close with SO_LINGER 0, or with data unread);
    a timeout means it is still open. ``read`` reads on (default: one byte of ``sock``),
    for a caller that reads ``sock`` through a buffer."""
    sock.settimeout(timeout)
    try:
        return (read() if read is not None else sock.recv(1)) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


class SMTPPeer:
    """One scripted SMTP server connection on 127.0.0.1 (use it as a context manager)."""

    DEFAULT = {
        "EHLO": "250-peer.example Hello\r\n250-8BITMIME\r\n250-SIZE 10000000\r\n250 ENHANCEDSTATUSCODES",
        "HELO": "250 peer.example",
        "MAIL": "250 2.1.0 Sender OK",
        "RCPT": "250 2.1.5 Recipient OK",
        "DATA": "354 End data with <CR><LF>.<CR><LF>",
        ".": "250 2.0.0 OK queued as PEER1",
        "RSET": "250 2.0.0 OK",
        "NOOP": "250 2.0.0 OK",
        "QUIT": "221 2.0.0 Bye",
    }

    def __init__(self, script: dict[str, Reply] | None = None, *, greeting: str | None = "220 peer.example ESMTP ready",
                 split: bool | str = False, note: Callable[[str, str], None] | None = None) -> None:
        self.replies: dict[str, Reply] = {**self.DEFAULT, **(script or {})}
        self.greeting = greeting
        # send every reply in two pieces, a moment apart: after its first 2 octets (True), or
        # "lines": each line alone, its LF apart from the rest (a reply's lines in separate packets)
        self.split = split
        self._note = note
        self.transcript: list[Line] = []
        self.commands: list[str] = []
        self.data: list[bytes] = []  # each DATA's bytes as received, up to and with the final ".\r\n"
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(IO_TIMEOUT)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="labkit-check-peer", daemon=True)
        self._done = threading.Event()

    def __enter__(self) -> "SMTPPeer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, timeout: float = IO_TIMEOUT) -> socket.socket:
        """A client socket connected to this peer (what send_mail is given)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def wait(self, timeout: float = IO_TIMEOUT) -> bool:
        """Wait until the peer's connection is over; False if it still runs."""
        return self._done.wait(timeout)

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=IO_TIMEOUT)

    @property
    def quit_sent(self) -> bool:
        return bool(self.commands) and self.commands[-1] == "QUIT"

    # -- the server side ---------------------------------------------------------------
    def _log(self, direction: str, line: str) -> None:
        self.transcript.append((direction, line))
        if self._note:
            self._note(direction, line)

    def _serve(self) -> None:
        try:
            conn, _ = self._server.accept()
        except OSError:
            self._done.set()
            return
        with conn:
            conn.settimeout(IO_TIMEOUT)
            try:
                self._dialogue(conn)
            except (OSError, UnicodeError):
                pass
        self._log("*", "connection closed")
        self._done.set()

    def _send(self, conn: socket.socket, reply: str) -> None:
        for line in reply.split("\r\n"):
            self._log("S", line)
        data = reply.encode() + b"\r\n"
        if self.split == "lines":
            pieces = [piece for line in data.split(b"\n")[:-1] for piece in (line, b"\n")]
        elif self.split and len(data) > 2:
            pieces = [data[:2], data[2:]]
        else:
            pieces = [data]
        send_in_pieces(conn, pieces)

    def _silent(self, reader) -> None:
        self._log("*", "(the server says nothing)")
        reader.readline(MAX_LINE)  # until the client gives up (or IO_TIMEOUT)

    def _dialogue(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        if self.greeting is None:  # a server that says nothing at all
            self._silent(reader)
            return
        self._send(conn, self.greeting)
        while True:
            raw = reader.readline(MAX_LINE)
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            self._log("C", line)
            verb = _verb(line)
            self.commands.append(verb)
            reply = self._reply(verb, line)
            if verb == "DATA" and reply is not None and reply.startswith("354"):
                self._send(conn, reply)
                self.data.append(self._read_data(reader))
                reply = self._reply(".", ".")
            if reply is None:
                self._log("*", "(the server hangs up)")
                return
            if reply == SILENT:
                self._silent(reader)
                return
            if reply.endswith(HANG_UP):
                self._send(conn, reply.removesuffix(HANG_UP))
                self._log("*", "(the server hangs up)")
                return
            self._send(conn, reply)
            if verb == "QUIT":
                return

    def _reply(self, key: str, line: str) -> str | None:
        reply = self.replies.get(key, f'500 5.5.2 command "{key}" not recognized')
        return reply(line) if callable(reply) else reply

    def _read_data(self, reader) -> bytes:
        """Everything up to and with CRLF "." CRLF, as sent (a bare LF is not a line end)."""
        data = b""
        while not (data == b".\r\n" or data.endswith(b"\r\n.\r\n")):
            chunk = reader.readline(MAX_LINE)
            if not chunk or len(data) > MAX_DATA:
                raise ConnectionError("the client stopped in the middle of DATA")
            data += chunk
        shown = data.decode("utf-8", "replace").split("\r\n")[:-1]
        for text in shown[:30]:
            self._log("C", text)
        if len(shown) > 30:
            self._log("C", f"... ({len(shown) - 30} more lines)")
        return data


class LineClient:
    """A plain client connection to a line-based server (use it as a context manager)."""

    def __init__(self, host: str, port: int, timeout: float = IO_TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._reader = self.sock.makefile("rb")

    def __enter__(self) -> "LineClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *pieces: bytes) -> None:
        """Send ``pieces`` one by one, each read by the server before the next (:func:`send_in_pieces`)."""
        send_in_pieces(self.sock, list(pieces))

    def line(self) -> str:
        """The next line, without its CRLF; ConnectionError if the server hung up."""
        return self.raw_line().decode("utf-8", "replace")

    def raw_line(self) -> bytes:
        """The next line's octets, without its CRLF; ConnectionError if the server hung up."""
        raw = self._reader.readline(MAX_LINE)
        if not raw:
            raise ConnectionError("the server closed the connection")
        return raw.rstrip(b"\r\n")

    def read(self, size: int) -> bytes:
        """Exactly ``size`` octets (an IMAP literal); ConnectionError if the server hung up first."""
        data = self._reader.read(size)
        if len(data) < size:
            raise ConnectionError(f"the server closed the connection after {len(data)} of {size} octets")
        return data

    def until(self, done: Callable[[str], bool], limit: int = 50) -> list[str]:
        """Lines up to and with the first one ``done`` accepts (at most ``limit``)."""
        lines = [self.line()]
        while not done(lines[-1]) and len(lines) < limit:
            lines.append(self.line())
        return lines

    def hung_up(self, timeout: float) -> bool:
        """Whether the server closes the connection within ``timeout`` (sending nothing more)."""
        return hangs_up(self.sock, timeout, lambda: self._reader.readline(MAX_LINE))

    def close(self) -> None:
        self._reader.close()
        close_socket(self.sock)
