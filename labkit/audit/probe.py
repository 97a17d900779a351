"""An SMTP session that asks questions and never sends a message.

:class:`SMTPProbe` speaks lock-step SMTP (:mod:`labkit.smtp.lockstep`) with the client
core's command builders, ``choose_auth`` and ``auth_steps``:
greeting, EHLO, AUTH, then any number of MAIL/RCPT questions, each ended with RSET
(RFC 5321 §4.1.1.5) so no transaction ever reaches DATA: an open relay learns nothing
it could relay. Every wait is bounded by a deadline, not only per ``recv``, so a
server that drips one byte at a time cannot stall the check.
"""

from __future__ import annotations

import socket

from ..smtp.client import Reply, auth_steps, choose_auth, mail_command, parse_extensions, rcpt_command
from ..smtp.lockstep import LockstepClient, SessionBroken
from .target import Line

ProbeError = SessionBroken  # what a probe raises when the session broke


class SMTPProbe(LockstepClient):
    """Lock-step questions to one SMTP server: EHLO, AUTH, MAIL/RCPT then RSET."""

    def __init__(self, sock: socket.socket, *, timeout: float, transcript: list[Line]) -> None:
        super().__init__(sock, timeout=timeout, transcript=transcript)
        self.extensions: dict[str, str] = {}

    # -- SMTP -------------------------------------------------------------------------
    def ehlo(self, name: str) -> Reply:
        reply = self.command(f"EHLO {name}")
        if reply.code == 250:
            self.extensions = parse_extensions(reply)
        return reply

    def auth(self, user: str, password: str) -> Reply | None:
        """AUTH PLAIN or LOGIN (RFC 4954 §4); None when EHLO offered neither."""
        mechanism = choose_auth(self.extensions)
        if mechanism is None:
            return None
        (command, shown), responses = auth_steps(mechanism, user, password)
        reply = self.command(command, shown=shown)
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
