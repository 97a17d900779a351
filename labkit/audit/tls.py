"""TLS for `labkit check`, with the stdlib :mod:`ssl` module: STARTTLS (SMTP, RFC 3207;
IMAP and POP3, RFC 2595) and implicit TLS on its own port (RFC 8314: POP3 on 995 §3.1,
IMAP on 993 §3.2, submission on 465 §3.3).

Every handshake first tries a verifying context (the system's CAs and ``--ca-file``,
the host's name checked as RFC 7817 says). A certificate it accepts is noted with its expiry;
one it rejects is noted with why (self-signed, expired, issued for another name) and the
handshake is done again without verification: a bad certificate is a warning with the
fix in the report's TLS row, never a failure of the mail rules. Which services offered
TLS is noted too, so a password is never sent in clear where TLS was offered.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

from ..checks.result import Line, Result
from .rubric import TLS as RULE_TLS

IMPLICIT_PORTS = {"submission": 465, "imap": 993, "pop3": 995}
EXPIRY_WARNING_DAYS = 14
T = TypeVar("T")

# OpenSSL's X509_V_ERR_* codes for the mistakes students make, and the fix for each
_SELF_SIGNED, _SELF_SIGNED_CHAIN, _NO_ISSUER, _NO_ISSUER_LEAF, _EXPIRED, _HOSTNAME, _IP = 18, 19, 20, 21, 10, 62, 64
_FIXES = {
    _SELF_SIGNED: "a self-signed certificate is trusted by no client: get one from a CA (Let's Encrypt: "
                  "certbot certonly -d {host}), or, for a course's own CA, give its certificate with --ca-file",
    _NO_ISSUER: "the issuer is not trusted here: serve the whole chain (Postfix: smtpd_tls_chain_files or a "
                "fullchain.pem; Dovecot: ssl_cert = </path/fullchain.pem), or give the course's CA with --ca-file",
    _EXPIRED: "renew the certificate (certbot renew) and reload Postfix and Dovecot",
    _HOSTNAME: "issue the certificate for {host} (a subjectAltName DNS:{host}): clients check the name they dialled",
}
_FIXES[_SELF_SIGNED_CHAIN] = _FIXES[_SELF_SIGNED]
_FIXES[_NO_ISSUER_LEAF] = _FIXES[_NO_ISSUER]
_FIXES[_IP] = _FIXES[_HOSTNAME]
_NO_TLS_FIX = ("offer STARTTLS and implicit TLS (Postfix: smtpd_tls_cert_file, smtpd_tls_key_file, "
               "smtpd_tls_security_level = may, a submissions service on 465; Dovecot: ssl = required, ssl_cert, "
               "ssl_key)")


class HandshakeFailed(OSError):
    """TLS was offered (or is the port's protocol) but the handshake did not complete."""


@dataclass
class Seen:
    """One service's TLS, as the handshake found it."""

    host: str
    use: str  # "SMTP 25 STARTTLS", "IMAP 993"
    problem: str = ""  # why the certificate was not verified ("" when it was)
    fix: str = ""
    expires: datetime | None = None


class TLS:
    """The TLS of one check: a verifying and a lenient context, and what each handshake saw."""

    def __init__(self, ca_file: str | None = None) -> None:
        self.verifying = ssl.create_default_context()
        if ca_file:
            self.verifying.load_verify_locations(cafile=ca_file)
        self.lenient = ssl.create_default_context()
        self.lenient.check_hostname = False
        self.lenient.verify_mode = ssl.CERT_NONE
        self.seen: dict[tuple[str, str], Seen] = {}
        self.failed: list[str] = []  # TLS offered, handshake failed: "mx (SMTP 25 STARTTLS): …"
        self.clear: list[str] = []  # services that offered no TLS at all

    def context(self, host: str, use: str) -> ssl.SSLContext:
        """Verifying, unless this service's certificate already failed verification
        (each is verified once: Postfix and Dovecot may have different ones)."""
        seen = self.seen.get((host, use))
        return self.lenient if seen is not None and seen.problem else self.verifying

    def attempt(self, host: str, use: str, connect: Callable[[ssl.SSLContext], T]) -> T:
        """``connect(context)`` connects and shakes hands; a certificate the verifying
        context rejects is noted, and ``connect`` runs again with the lenient one."""
        context = self.context(host, use)
        try:
            return connect(context)
        except ssl.SSLCertVerificationError as error:
            code = error.verify_code
            self.seen[(host, use)] = Seen(host, use, problem=error.verify_message or str(error),
                                          fix=_FIXES.get(code, "").format(host=host))
            return connect(self.lenient)

    def wrap(self, sock: socket.socket, host: str, use: str, context: ssl.SSLContext,
             transcript: list[Line]) -> ssl.SSLSocket:
        """The handshake on a connected socket (its timeout bounds it)."""
        try:
            tls = context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError:
            raise
        except (ssl.SSLError, OSError) as error:
            raise self.failure(host, use, f"TLS handshake failed: {getattr(error, 'reason', None) or error}",
                               transcript) from error
        self.handshaken(host, use, context, tls, transcript)
        return tls

    def handshaken(self, host: str, use: str, context: ssl.SSLContext, tls: ssl.SSLSocket,
                   transcript: list[Line]) -> None:
        """Note a finished handshake (done here or by imaplib's and poplib's own)."""
        seen = self.seen.setdefault((host, use), Seen(host, use))
        if context is self.verifying:
            seen.problem, seen.fix = "", ""
            not_after = (tls.getpeercert() or {}).get("notAfter")
            if not_after:
                seen.expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), timezone.utc)
        state = f"certificate not verified: {seen.problem}" if seen.problem else "certificate verified"
        transcript.append(("*", f"TLS handshake done: {tls.version()}, {state}"))

    def failure(self, host: str, use: str, problem: str, transcript: list[Line]) -> HandshakeFailed:
        """TLS offered, but it did not work out: noted, and the error to raise."""
        transcript.append(("*", problem))
        self.failed.append(f"{host} ({use}): {problem}")
        return HandshakeFailed(problem)

    def row(self) -> Result:
        """The information row: what spoke TLS, and whether its certificates are good."""
        if not self.seen and not self.failed:
            if not self.clear:
                return Result(RULE_TLS, "skip", got="no service was reached")
            return Result(RULE_TLS, "warn", got=f"no service offered TLS ({', '.join(self.clear)}): passwords and "
                          "mail cross the network in clear", expected="STARTTLS (RFC 3207, RFC 2595) or implicit "
                          "TLS (RFC 8314 §3)", rfc="RFC 8314 §4", hint=_NO_TLS_FIX)
        grouped: dict[tuple[str, str], list[str]] = {}
        for s in self.seen.values():
            if s.problem:
                grouped.setdefault((s.host, s.problem), []).append(s.use)
        problems = [f"{host} ({', '.join(uses)}): {problem}" for (host, problem), uses in grouped.items()]
        problems += self.failed
        now = datetime.now(timezone.utc)
        soon = [f"{s.host} ({s.use}): the certificate expires {s.expires:%Y-%m-%d}" for s in self.seen.values()
                if s.expires and (s.expires - now).days < EXPIRY_WARNING_DAYS]
        used = ", ".join(f"{host} {use}" for host, use in self.seen)
        if problems or soon or self.clear:
            fixes = list(dict.fromkeys(s.fix for s in self.seen.values() if s.fix))
            if soon:
                fixes.append(_FIXES[_EXPIRED])
            if self.clear:
                problems.append(f"no TLS offered by {', '.join(self.clear)}")
                fixes.append(_NO_TLS_FIX)
            return Result(RULE_TLS, "warn", info=f"TLS used: {used}" if used else "",
                          expected="certificates clients verify: issued by a trusted CA for the host's name, "
                          "not expired", got="\n".join(problems + soon), rfc="RFC 8314 §5.3, RFC 7817",
                          hint="\n".join(fixes))
        until = min((s.expires for s in self.seen.values() if s.expires), default=None)
        expiry = f", valid until {until:%Y-%m-%d}" if until else ""
        return Result(RULE_TLS, "pass", info=f"certificates verified{expiry}; TLS used: {used}")
