"""The reading rules: the test message is found over IMAP (RFC 3501) and POP3 (RFC
1939), its header shows the receiving host's Received line (RFC 5321 §4.4), and both
services refuse a wrong password.

The clients are the stdlib's imaplib and poplib, instrumented to keep a transcript
(passwords masked), to connect through the :class:`~labkit.audit.target.Connector` and
to cut every wait to the check's time limit. They speak TLS wherever the server offers
it: STARTTLS on 143 and 110 (RFC 2595), else implicit TLS on 993 and 995 (RFC 8314
§3.2, §3.1); a password goes in clear only to a service that offers neither. Both wait
for the test message together, once: then each looks.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import poplib
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..checks.result import Result
from ..dns.mx import NextHop
from ..smtp.client import SECRET
from .rows import excerpt
from .rubric import (BECAUSE_INPUT, IMAP_FOUND, IMAP_WRONG, MESSAGE, POP3_FOUND, POP3_WRONG, RECEIVED, Rule, after,
                     not_checked, time_up)
from .smtp_rules import Greeted
from .target import ConnectFailed, Line, TimeUp
from .tls import IMPLICIT_PORTS, HandshakeFailed
from .visit import Visit

IMAP_PORT, POP3_PORT = 143, 110
POP3_SCAN = 50  # newest messages looked at for the test message
POLL_FIRST, POLL_MOST = 0.05, 1.0  # seconds between looks while waiting for delivery
# response codes that say the login failed for another reason than the password (RFC 5530, RFC 3206)
NOT_THE_PASSWORD = ("PRIVACYREQUIRED", "UNAVAILABLE", "SYS/", "IN-USE", "LOGIN-DELAY", "CONTACTADMIN")

Failure = (imaplib.IMAP4.error, poplib.error_proto, OSError, EOFError)


class LoginRefused(Exception):
    """The server refused the user's password (not: it broke, or wants TLS first)."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").rstrip("\r\n")


def _problem(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no reply in time (timed out)"
    text = str(error.args[0] if error.args else error)
    return text[2:-1] if text.startswith(("b'", 'b"')) else text or type(error).__name__


class _Traced:
    """What both clients share: connect through the Connector (with implicit TLS where
    asked), and cut each wait to the time limit."""

    port: int
    sock: socket.socket

    def _setup(self, visit: Visit, host: NextHop, transcript: list[Line], name: str,
               context: ssl.SSLContext | None) -> None:
        self._visit, self._mail_host, self._transcript, self._name, self._implicit = (visit, host, transcript, name,
                                                                                     context)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        host, visit = self._mail_host, self._visit
        sock = visit.target.connector().connect(host.host, host.addresses, self.port, self._transcript)
        if self._implicit is not None:
            sock.settimeout(visit.target.budget())
            sock = visit.tls.wrap(sock, host.host, f"{self._name} {self.port}", self._implicit, self._transcript)
        return sock

    def _wait(self) -> None:
        self.sock.settimeout(self._visit.target.budget())


class TracedIMAP(_Traced, imaplib.IMAP4):
    """imaplib's client, connecting through a Connector and keeping a transcript."""

    def __init__(self, visit: Visit, host: NextHop, transcript: list[Line], port: int = IMAP_PORT,
                 context: ssl.SSLContext | None = None) -> None:
        self._setup(visit, host, transcript, "IMAP", context)
        imaplib.IMAP4.__init__(self, host.host, port, timeout=visit.target.budget())

    def send(self, data: bytes) -> None:
        words = _text(data).split(" ")
        shown = " ".join(words[:3] + [SECRET]) if len(words) > 3 and words[1].upper() == "LOGIN" else _text(data)
        self._transcript.append(("C", shown))
        self._wait()
        super().send(data)

    def readline(self) -> bytes:
        self._wait()
        line = super().readline()
        self._transcript.append(("S", _text(line)))
        return line

    def read(self, size: int) -> bytes:
        self._wait()
        return super().read(size)


class TracedPOP3(_Traced, poplib.POP3):
    """poplib's client, likewise."""

    def __init__(self, visit: Visit, host: NextHop, transcript: list[Line], port: int = POP3_PORT,
                 context: ssl.SSLContext | None = None) -> None:
        self._setup(visit, host, transcript, "POP3", context)
        poplib.POP3.__init__(self, host.host, port, timeout=visit.target.budget())

    def _putline(self, line: bytes) -> None:
        self._transcript.append(("C", "PASS " + SECRET if line.upper().startswith(b"PASS ") else _text(line)))
        self._wait()
        super()._putline(line)

    def _getline(self) -> tuple[bytes, int]:
        self._wait()
        return super()._getline()

    def _getresp(self) -> bytes:  # status lines only: message lines would swamp the transcript
        line = super()._getresp()
        self._transcript.append(("S", _text(line)))
        return line



@dataclass(frozen=True)
class Mailbox:
    """How to speak to one mailbox service: its ports, its client, its STARTTLS."""

    name: str  # IMAP | POP3
    port: int
    client: Any  # TracedIMAP | TracedPOP3
    offers_tls: Callable[[Any], bool]
    starttls: Callable[[Any, ssl.SSLContext], object]
    found: Rule
    wrong: Rule

    @property
    def tls_port(self) -> int:
        return IMPLICIT_PORTS[self.name.lower()]


def _pop3_offers_tls(pop: TracedPOP3) -> bool:
    try:
        return "STLS" in pop.capa()  # RFC 2449 CAPA, RFC 2595 §4 STLS
    except poplib.error_proto:
        return False


IMAP = Mailbox("IMAP", IMAP_PORT, TracedIMAP, lambda imap: "STARTTLS" in imap.capabilities,
               lambda imap, context: imap.starttls(context), IMAP_FOUND, IMAP_WRONG)
POP3 = Mailbox("POP3", POP3_PORT, TracedPOP3, _pop3_offers_tls, lambda pop, context: pop.stls(context),
               POP3_FOUND, POP3_WRONG)


def connect(service: Mailbox, host: NextHop, visit: Visit, transcript: list[Line]):
    """A session ready to log in, over TLS wherever the server offers it: STARTTLS on
    the plain port, else implicit TLS on its own port; in clear only when neither
    works. The way found is remembered for the check's later sessions."""
    tls, key = visit.tls, (service.name, host.host)
    way = visit.ways.get(key)
    implicit_use = f"{service.name} {service.tls_port}"

    def implicit() -> Any:
        client = tls.attempt(host.host, implicit_use, lambda context: service.client(
            visit, host, transcript, service.tls_port, context))
        visit.ways[key] = "implicit"
        return client

    if way == "implicit":
        return implicit()
    try:
        plain = service.client(visit, host, transcript, service.port)
    except ConnectFailed as error:
        if way is not None:
            raise
        try:
            return implicit()
        except ConnectFailed as other:
            raise ConnectFailed(f"port {service.port}: {error}; port {service.tls_port}: {other}") from other
    if way == "clear":
        return plain
    if service.offers_tls(plain):
        try:
            client = _starttls(service, host, visit, transcript, plain)
        except HandshakeFailed as error:
            try:
                return implicit()
            except (ConnectFailed, HandshakeFailed, *Failure):
                raise HandshakeFailed(f"{error}; the password was not sent in clear") from error
        visit.ways[key] = "starttls"
        return client
    if way is None:
        try:
            client = implicit()
        except (ConnectFailed, HandshakeFailed, *Failure):
            pass
        else:
            _close(plain)
            return client
    visit.ways[key] = "clear"
    tls.clear.append(f"{host.host} {service.name} {service.port}")
    return plain


def _starttls(service: Mailbox, host: NextHop, visit: Visit, transcript: list[Line], first: Any) -> Any:
    use = f"{service.name} {service.port} STARTTLS"
    pending = [first]

    def handshake(context: ssl.SSLContext) -> Any:
        client = pending.pop() if pending else service.client(visit, host, transcript, service.port)
        try:
            service.starttls(client, context)
        except ssl.SSLCertVerificationError:
            _close(client)
            raise
        except (ssl.SSLError, *Failure) as error:
            _close(client)
            raise visit.tls.failure(host.host, use, f"STARTTLS failed: {_problem(error)}", transcript) from error
        visit.tls.handshaken(host.host, use, context, client.sock, transcript)
        return client

    return visit.tls.attempt(host.host, use, handshake)


def log_in(service: Mailbox, client: Any, visit: Visit, password: str) -> None:
    """LOGIN, or USER and PASS; :class:`LoginRefused` when the password is what was wrong."""
    target = visit.target
    if service is IMAP and "LOGINDISABLED" in client.capabilities:  # RFC 3501 §6.2.3
        raise imaplib.IMAP4.error("LOGINDISABLED: the server takes no password in clear, and offers no TLS "
                                  "labkit check could use")
    try:
        if service is IMAP:
            client.login(target.login_name, password)
        else:
            client.user(target.login_name)
            client.pass_(password)
    except (imaplib.IMAP4.error, poplib.error_proto) as error:
        text = _problem(error)
        if isinstance(error, imaplib.IMAP4.abort) or any(code in text.upper() for code in NOT_THE_PASSWORD):
            raise
        raise LoginRefused(text) from error


# -- finding the test message --------------------------------------------------------------
class Reader:
    """One service's look for the test message: open (log in), look, read its header."""

    def __init__(self, service: Mailbox, host: NextHop, visit: Visit, message_id: str) -> None:
        self.service, self.host, self.visit, self.message_id = service, host, visit, message_id
        self.transcript: list[Line] = []
        self.client: Any = None
        self.row: Result | None = None  # set once this reader's verdict is known
        self.found: Any = None
        self.step = "connect"
        self.unreachable = False  # no session at all: the wrong-password rule cannot run either

    def open(self) -> None:
        try:
            self.client = connect(self.service, self.host, self.visit, self.transcript)
            self.step = "LOGIN" if self.service is IMAP else "USER, PASS"
            log_in(self.service, self.client, self.visit, self.visit.target.password or "")
            self.visit.accepted(self.service.name, self.service.found.title)
            if self.service is IMAP:
                self.step = "SELECT INBOX"
                ok(self.client.select("INBOX"))
        except LoginRefused as refused:
            self.visit.refused(self.service.name, self.service.found.title, str(refused))
            self._fail(refused, "are --user/--login and --password right? does the server ask the right user "
                       "database (Dovecot: passdb)?")
        except (ConnectFailed, HandshakeFailed, TimeUp, *Failure) as error:
            self._fail(error, f"is the {self.service.name} server (Dovecot) running, listening on port "
                       f"{self.service.port} or {self.service.tls_port}, and open in the firewall?")

    def look(self) -> None:
        """One look; sets :attr:`found`, or :attr:`row` if the session broke."""
        try:
            self.found = self._look_imap() if self.service is IMAP else self._look_pop3()
        except (ConnectFailed, HandshakeFailed, TimeUp, LoginRefused, *Failure) as error:
            self._fail(error, "")

    def _look_imap(self) -> bytes | None:
        self.step = f"SEARCH HEADER Message-ID {self.message_id}"
        self.client.noop()  # RFC 3501 §6.1.2: lets the server report new mail
        numbers = ok(self.client.search(None, "HEADER", "Message-ID", f'"{self.message_id}"'))[0].split()
        return numbers[-1] if numbers else None

    def _look_pop3(self) -> int | None:
        self.step = "STAT, TOP"
        if self.client is None:  # RFC 1939 §8: a maildrop is a snapshot: log in again for new mail
            self.client = connect(self.service, self.host, self.visit, self.transcript)
            log_in(self.service, self.client, self.visit, self.visit.target.password or "")
        count = self.client.stat()[0]
        for number in range(count, max(0, count - POP3_SCAN), -1):
            if self.message_id.encode() in b"\n".join(self.client.top(number, 0)[1]):
                return number
        _close(self.client)
        self.client = None
        return None

    def header(self) -> bytes:
        """The found message's header (FETCH BODY.PEEK[HEADER], or TOP n 0)."""
        try:
            if self.service is IMAP:
                self.step = "FETCH"
                data = ok(self.client.fetch(self.found.decode(), "(BODY.PEEK[HEADER])"))
                return next((item[1] for item in data if isinstance(item, tuple)), b"")
            return b"\r\n".join(self.client.top(self.found, 0)[1])
        except (TimeUp, *Failure):
            return b""

    def verdict(self, waited: float) -> Result:
        rule = self.service.found
        if self.row is not None:
            return self.row
        if self.found is not None:
            shown = self.found.decode() if isinstance(self.found, bytes) else self.found
            return Result(rule.title, "pass", info=f"message {shown}" + (" in INBOX" if self.service is IMAP else ""))
        if self.visit.target.expired():
            return time_up(rule)
        return Result(rule.title, "fail", step=self.step, expected=f"the message {self.message_id}",
                      got=f"not there after {waited:g}s", rfc=rule.rfc,
                      transcript=excerpt(self.transcript, max(0, len(self.transcript) - 8)),
                      hint="the MTA took it: does it deliver where the IMAP and POP3 server reads (Dovecot: "
                      "mail_location)? the MTA's log says where it went")

    def close(self) -> None:
        _close(self.client)

    def _fail(self, error: BaseException, hint: str) -> None:
        rule = self.service.found
        if isinstance(error, TimeUp) or (isinstance(error, TimeoutError) and self.visit.target.expired()):
            self.row = time_up(rule)
        else:
            self.row = Result(rule.title, "fail", step=self.step, expected=f"{_article(self.service.name)} {self.service.name} "
                              "session that finds the message", got=_problem(error), rfc=rule.rfc,
                              transcript=excerpt(self.transcript, max(0, len(self.transcript) - 8)), hint=hint)
        self.unreachable = self.step == "connect"


def ok(answer: tuple[str, list]) -> list:
    """imaplib returns NO answers instead of raising: make them errors like BAD ones."""
    typ, data = answer
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{typ} {_text(data[0]) if data and isinstance(data[0], bytes) else data}")
    return data


def wait_for(readers: list[Reader], visit: Visit) -> float:
    """Look with every reader until one finds the message or ``--wait`` has passed, then
    let the others look once more: one wait for all. Returns the seconds waited."""
    target = visit.target
    started = time.monotonic()
    deadline = started + target.wait
    if target.deadline is not None:
        deadline = min(deadline, target.deadline)
    pause = POLL_FIRST
    while True:
        looking = [r for r in readers if r.row is None and r.found is None]
        for reader in looking:
            reader.look()
        if any(r.found is not None for r in readers) or not looking or time.monotonic() >= deadline:
            break
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, POLL_MOST)
    if any(r.found is not None for r in readers):
        for reader in readers:
            if reader.row is None and reader.found is None:
                reader.look()
    return round(time.monotonic() - started, 1)


# -- a wrong password ------------------------------------------------------------------------
def refuses(service: Mailbox, host: NextHop, visit: Visit) -> Result:
    """Log in with a wrong password: the server must say no."""
    rule, transcript = service.wrong, []
    client = None
    try:
        client = connect(service, host, visit, transcript)
        log_in(service, client, visit, wrong(visit.target.password))
    except LoginRefused as refused:
        return Result(rule.title, "pass", info=str(refused))
    except TimeUp:
        return time_up(rule)
    except (ConnectFailed, HandshakeFailed, *Failure) as error:
        if visit.target.expired():
            return time_up(rule)
        return Result(rule.title, "fail", step="connect" if client is None else "log in", got=_problem(error),
                      rfc=rule.rfc, transcript=excerpt(transcript))
    finally:
        _close(client)
    return Result(rule.title, "fail", step="log in with a wrong password", expected="a refusal (NO, -ERR)",
                  got="logged in with a wrong password", rfc=rule.rfc, transcript=excerpt(transcript),
                  hint="the server lets anyone in: check its password database (Dovecot: passdb)")


def wrong(password: str | None) -> str:
    return f"{password or ''}-not-the-password"


def _close(client: Any) -> None:
    if client is None:
        return
    try:
        client.quit() if isinstance(client, poplib.POP3) else client.logout()  # both also close
    except (TimeUp, *Failure):
        try:
            client.close() if isinstance(client, poplib.POP3) else client.shutdown()
        except OSError:
            pass


# -- the Received line ------------------------------------------------------------------
_BY = re.compile(r"\bby\s+([^\s;()]+)", re.IGNORECASE)


def received_by(header: bytes, receiver: Greeted) -> Result:
    """RFC 5321 §4.4: the receiving SMTP server MUST insert a Received line."""
    message = email.message_from_bytes(header, policy=email.policy.compat32)
    lines = [" ".join(str(v).split()) for v in message.get_all("Received") or []]
    names = {receiver.host.host, receiver.name}
    for line in lines:
        match = _BY.search(line)
        if match and match.group(1).lower().rstrip(".") in names:
            return Result(RECEIVED.title, "pass", info=line[:160])
    return Result(RECEIVED.title, "fail", step="the test message's header",
                  expected=f"Received: from … by {receiver.host.host} …",
                  got="\n".join(lines) or "no Received line at all", rfc=RECEIVED.rfc,
                  hint="the MTA must stamp each message it receives; is its host name right?")


def check_reading(host: NextHop, visit: Visit, message_id: str | None, receiver: Greeted | None) -> list[Result]:
    """The reading rows of the services the rubric grades."""
    target = visit.target
    services = [s for s in (IMAP, POP3) if s.name.lower() in target.services]
    if not visit.credentials:
        because = visit.no_credentials()
        return [not_checked(rule, because, BECAUSE_INPUT) for s in services for rule in (s.found, s.wrong)] + [
            not_checked(RECEIVED, because, BECAUSE_INPUT)]
    readers = [Reader(s, host, visit, message_id) for s in services] if message_id else []
    for reader in readers:
        reader.open()
    try:
        waited = wait_for(readers, visit) if readers else 0.0
        found = {r.service.name: r.verdict(waited) for r in readers}
        source = next((r for r in readers if r.found is not None), None)
        header = source.header() if source is not None else b""
    finally:
        for reader in readers:
            reader.close()
    rows: list[Result] = []
    for service in services:
        reader = next((r for r in readers if r.service is service), None)
        rows.append(found[service.name] if reader else after(service.found, MESSAGE))
        if reader is not None and reader.unreachable:
            rows.append(after(service.wrong, service.found))  # the service is down: one failure, not two
        else:
            rows.append(refuses(service, host, visit))
    if receiver is None or message_id is None:
        rows.append(after(RECEIVED, MESSAGE))
    elif source is None:
        rows.append(after(RECEIVED, *(s.found for s in services)))
    elif not header:
        rows.append(time_up(RECEIVED) if target.expired() else Result(
            RECEIVED.title, "fail", step=source.step, expected="the test message's header", got="no header came back",
            rfc=RECEIVED.rfc, transcript=excerpt(source.transcript, max(0, len(source.transcript) - 8))))
    else:
        rows.append(received_by(header, receiver))
    return rows


def _article(word: str) -> str:
    """'an IMAP', 'a POP3'."""
    return "an" if word[:1].upper() in "AEIOU" else "a"
