"""An SMTP session that asks questions and never sends a message.

:class:`SMTPProbe` speaks lock-step SMTP (:mod:`labkit.smtp.lockstep`) with the client
core's command builders, ``choose_auth`` and ``auth_steps``:
greeting, EHLO, STARTTLS, AUTH, then any number of MAIL/RCPT questions, each ended with
RSET (RFC 5321 §4.1.1.5) so no transaction ever reaches DATA: an open relay learns
nothing it could relay. Every wait is bounded by a deadline, not only per ``recv``, so a
server that drips one byte at a time cannot stall the check, and by what is left of
the check's time limit.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from ..smtp.client import Reply, ReplyParser, auth_steps, choose_auth, mail_command, parse_extensions, rcpt_command
from ..smtp.lockstep import LockstepClient, SessionBroken
from .target import Line
from .tls import TLS

ProbeError = SessionBroken  # what a probe raises when the session broke


class SMTPProbe(LockstepClient):
    """Lock-step questions to one SMTP server: EHLO, AUTH, MAIL/RCPT then RSET."""

    def __init__(self, sock: socket.socket, *, budget: Callable[[], float], transcript: list[Line]) -> None:
        super().__init__(sock, timeout=budget(), transcript=transcript)
        self.budget = budget
        self.extensions: dict[str, str] = {}

    def reply(self) -> Reply:
        self.timeout = self.budget()  # the per-reply timeout, cut to the check's time limit
        return super().reply()

    # -- SMTP -------------------------------------------------------------------------
    def ehlo(self, name: str) -> Reply:
        reply = self.command(f"EHLO {name}")
        if reply.code == 250:
            self.extensions = parse_extensions(reply)
        return reply

    def starttls(self, tls: TLS, host: str, use: str, context: ssl.SSLContext) -> Reply:
        """STARTTLS and the handshake (RFC 3207 §4); afterwards the client forgets what
        it learnt in clear and must say EHLO again (§4.2). The reply when it was refused."""
        reply = self.command("STARTTLS")
        if reply.code != 220:
            return reply
        if self.pending:  # nothing may come before the handshake: injected commands (CVE-2011-0411)
            raise self._broken("the server sent more after 220 to STARTTLS, before the TLS handshake")
        self.sock.settimeout(self.budget())
        self.sock = tls.wrap(self.sock, host, use, context, self.transcript)
        self.extensions = {}
        self.parser = ReplyParser(on_line=lambda line: self.transcript.append(("S", line)))
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
