"""A lock-step SMTP client connection: one command, then its one reply.

For the tools that ask a server questions rather than send mail (``labkit check``'s
probes, the ``smtp_session`` checks): a command goes out, the whole reply comes back,
parsed by the client core's :class:`~labkit.smtp.client.ReplyParser`, and every line
lands in a transcript. Every wait is bounded by a deadline for the whole reply, not only
per ``recv``, so a server that drips one byte at a time cannot stall the caller.
"""

from __future__ import annotations

import socket
import time

from .client import MalformedReply, Reply, ReplyParser

RECV_SIZE = 65536
Line = tuple[str, str]  # ("C" | "S" | "*", text)


class SessionBroken(Exception):
    """The session broke: timeout, hang-up or garbage. The message says which."""


class LockstepClient:
    """``command(line)`` sends a line and returns its reply; ``reply()`` reads one more
    (the greeting). After a failed wait :attr:`broken` is set and nothing more is sent."""

    def __init__(self, sock: socket.socket, *, timeout: float, transcript: list[Line]) -> None:
        self.sock, self.timeout, self.transcript = sock, timeout, transcript
        self.parser = ReplyParser(on_line=lambda line: transcript.append(("S", line)))
        self.broken = False
        self._ready: list[Reply] = []

    @property
    def pending(self) -> int:
        """Replies that arrived beyond the ones read (several in one packet)."""
        return len(self._ready)

    def reply(self) -> Reply:
        """The next reply, within ``timeout`` seconds in all."""
        deadline = time.monotonic() + self.timeout
        while not self._ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._broken(f"no reply within {self.timeout:g}s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                raise self._broken(f"no reply within {self.timeout:g}s") from None
            except OSError as error:
                raise self._broken(f"connection failed: {error.strerror or error}") from error
            if not data:
                raise self._broken("the server closed the connection")
            try:
                self._ready.extend(self.parser.feed(data))
            except MalformedReply as error:
                raise self._broken(str(error)) from error
        return self._ready.pop(0)

    def command(self, line: str, *, shown: str | None = None) -> Reply:
        """Send ``line`` (``shown`` in the transcript instead: a secret) and read its reply."""
        self.transcript.append(("C", shown if shown is not None else line))
        try:
            self.sock.sendall(line.encode("utf-8") + b"\r\n")
        except OSError as error:
            raise self._broken(f"cannot send: {error.strerror or error}") from error
        return self.reply()

    def _broken(self, problem: str) -> Exception:
        """The exception a failed wait raises (a subclass may say more)."""
        self.broken = True
        self.transcript.append(("*", problem))
        return SessionBroken(problem)
