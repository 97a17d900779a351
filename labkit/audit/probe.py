"""An SMTP session that asks questions and never sends a message.

:class:`SMTPProbe` speaks lock-step SMTP over labkit's sans-IO pieces
(:class:`~labkit.smtp.client.ReplyParser`, the command builders, ``auth_steps``):
greeting, EHLO, AUTH, then any number of MAIL/RCPT questions, each ended with RSET
(RFC 5321 §4.1.1.5) so no transaction ever reaches DATA: an open relay learns nothing
it could relay. Every wait is bounded by a deadline, not only per ``recv``, so a
server that drips one byte at a time cannot stall the check.
"""

from __future__ import annotations

import socket
import time

from ..smtp.client import (
    SECRET,
    MalformedReply,
    Reply,
    ReplyParser,
    auth_steps,
    mail_command,
    parse_extensions,
    rcpt_command,
)
from .target import Line

RECV_SIZE = 65536


class ProbeError(Exception):
    """The session broke: timeout, hang-up or garbage. The message says which."""


class SMTPProbe:
    def __init__(self, sock: socket.socket, *, timeout: float, transcript: list[Line]) -> None:
        self.sock, self.timeout, self.transcript = sock, timeout, transcript
        self.parser = ReplyParser(on_line=lambda line: transcript.append(("S", line)))
        self.extensions: dict[str, str] = {}
        self.broken = False  # a wait failed: nothing more is asked, not even QUIT
        self._ready: list[Reply] = []

    # -- IO ---------------------------------------------------------------------------
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
        self.transcript.append(("C", shown if shown is not None else line))
        try:
            self.sock.sendall(line.encode("utf-8") + b"\r\n")
        except OSError as error:
            raise self._broken(f"cannot send: {error.strerror or error}") from error
        return self.reply()

    def _broken(self, problem: str) -> ProbeError:
        self.broken = True
        self.transcript.append(("*", problem))
        return ProbeError(problem)

    # -- SMTP -------------------------------------------------------------------------
    def ehlo(self, name: str) -> Reply:
        reply = self.command(f"EHLO {name}")
        if reply.code == 250:
            self.extensions = parse_extensions(reply)
        return reply

    def auth(self, user: str, password: str) -> Reply | None:
        """AUTH PLAIN or LOGIN (RFC 4954 §4); None when EHLO offered neither."""
        offered = self.extensions.get("AUTH", "").upper().split()
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
        if mechanism is None:
            return None
        command, responses = auth_steps(mechanism, user, password)
        reply = self.command(command, shown=f"AUTH PLAIN {SECRET}" if mechanism == "PLAIN" else None)
        while reply.code == 334 and responses:
            response, shown = responses.pop(0)
            reply = self.command(response, shown=shown)
        return reply

    def ask(self, mail_from: str, recipient: str) -> tuple[Reply, Reply | None]:
        """MAIL FROM then RCPT TO (if MAIL was taken), then RSET: never DATA.
        Returns the MAIL reply and the RCPT reply (None if MAIL was refused)."""
        mail = self.command(mail_command(mail_from))
        rcpt = self.command(rcpt_command(recipient)) if mail.positive else None
        self.command("RSET")
        return mail, rcpt

    def quit(self) -> None:
        """QUIT, then close; a server that is gone (or broke the session) changes nothing."""
        try:
            if not self.broken:
                self.command("QUIT")
        except ProbeError:
            pass
        finally:
            self.sock.close()


def helo_name(sock: socket.socket) -> str:
    """Our EHLO argument: the address literal of our end of the connection, the one
    name a server can check without DNS (RFC 5321 §4.1.3, §4.1.4)."""
    address = sock.getsockname()[0]
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"
