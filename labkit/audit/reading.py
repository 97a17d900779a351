"""The reading rules: the test message is found over IMAP (RFC 3501) and POP3 (RFC
1939, where offered), its header shows the receiving host's Received line (RFC 5321
§4.4), and both services refuse a wrong password.

The clients are the stdlib's imaplib and poplib, instrumented to keep a transcript
(passwords masked) and to connect through the :class:`~labkit.audit.target.Connector`.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import poplib
import re
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from ..checks.result import Result
from ..dns.mx import NextHop
from ..smtp.client import SECRET
from .rows import excerpt, not_checked, skipped
from .smtp_rules import Greeted
from .target import ConnectFailed, Connector, Line, Target

IMAP_PORT, POP3_PORT = 143, 110
RULE_IMAP_FOUND = "IMAP: the test message is in INBOX"
RULE_IMAP_WRONG = "IMAP: a wrong password is refused"
RULE_POP3_FOUND = "POP3: the test message is in the maildrop"
RULE_POP3_WRONG = "POP3: a wrong password is refused"
RULE_RECEIVED = "the receiving host added a Received line"
RULES = (RULE_IMAP_FOUND, RULE_IMAP_WRONG, RULE_POP3_FOUND, RULE_POP3_WRONG, RULE_RECEIVED)
POP3_SCAN = 50  # newest messages looked at for the test message
POLL_FIRST, POLL_MOST = 0.05, 1.0  # seconds between looks while waiting for delivery

T = TypeVar("T")
Failure = (imaplib.IMAP4.error, poplib.error_proto, OSError, EOFError)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").rstrip("\r\n")


class TracedIMAP(imaplib.IMAP4):
    """imaplib's client, connecting through a Connector and keeping a transcript."""

    def __init__(self, connector: Connector, host: NextHop, transcript: list[Line]) -> None:
        self._connector, self._mail_host, self._transcript = connector, host, transcript
        super().__init__(host.host, IMAP_PORT, timeout=connector.timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return self._connector.connect(self._mail_host.host, self._mail_host.addresses, IMAP_PORT, self._transcript)

    def send(self, data: bytes) -> None:
        words = _text(data).split(" ")
        shown = " ".join(words[:3] + [SECRET]) if len(words) > 3 and words[1].upper() == "LOGIN" else _text(data)
        self._transcript.append(("C", shown))
        super().send(data)

    def readline(self) -> bytes:
        line = super().readline()
        self._transcript.append(("S", _text(line)))
        return line


class TracedPOP3(poplib.POP3):
    """poplib's client, likewise."""

    def __init__(self, connector: Connector, host: NextHop, transcript: list[Line]) -> None:
        self._connector, self._mail_host, self._transcript = connector, host, transcript
        super().__init__(host.host, POP3_PORT, timeout=connector.timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._connector.connect(self._mail_host.host, self._mail_host.addresses, POP3_PORT, self._transcript)

    def _putline(self, line: bytes) -> None:
        self._transcript.append(("C", "PASS " + SECRET if line.upper().startswith(b"PASS ") else _text(line)))
        super()._putline(line)

    def _getresp(self) -> bytes:  # status lines only: message lines would swamp the transcript
        line = super()._getresp()
        self._transcript.append(("S", _text(line)))
        return line


def ok(answer: tuple[str, list]) -> list:
    """imaplib returns NO answers instead of raising: make them errors like BAD ones."""
    typ, data = answer
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{typ} {_text(data[0]) if data and isinstance(data[0], bytes) else data}")
    return data


def _problem(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no reply in time (timed out)"
    text = str(error.args[0] if error.args else error)
    return text[2:-1] if text.startswith(("b'", 'b"')) else text or type(error).__name__


def poll(deadline: float, look: Callable[[], T | None]) -> T | None:
    """``look()`` until it finds something or the deadline passes (bounded, backing off)."""
    pause = POLL_FIRST
    while True:
        found = look()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, POLL_MOST)


# -- IMAP -------------------------------------------------------------------------------
def imap_find(host: NextHop, target: Target, message_id: str) -> tuple[Result, bytes | None]:
    transcript: list[Line] = []
    rfc = "RFC 3501 §6.2.3, §6.3.1, §6.4.4"
    client: TracedIMAP | None = None
    step = "connect"
    try:
        client = TracedIMAP(target.connector(), host, transcript)
        step = "LOGIN"
        client.login(target.login_name, target.password or "")
        step = "SELECT INBOX"
        ok(client.select("INBOX"))
        step = f"SEARCH HEADER Message-ID {message_id}"
        imap = client

        def look() -> bytes | None:
            imap.noop()  # RFC 3501 §6.1.2: lets the server report new mail
            numbers = ok(imap.search(None, "HEADER", "Message-ID", f'"{message_id}"'))[0].split()
            return numbers[-1] if numbers else None

        number = poll(time.monotonic() + target.wait, look)
        if number is None:
            return Result(RULE_IMAP_FOUND, "fail", step=step, expected=f"the message {message_id} in INBOX",
                          got=f"not there after {target.wait:g}s", rfc=rfc, transcript=excerpt(transcript, 0),
                          hint="the MTA took it: does it deliver where the IMAP server reads (mail_location)? "
                          "the MTA's log says where it went"), None
        step = "FETCH"
        data = ok(client.fetch(number.decode(), "(BODY.PEEK[HEADER])"))
        header = next((item[1] for item in data if isinstance(item, tuple)), b"")
        return Result(RULE_IMAP_FOUND, "pass", info=f"message {number.decode()} in INBOX"), header
    except (ConnectFailed, *Failure) as error:
        hint = "are --user/--login and --password right?" if step == "LOGIN" else ""
        return Result(RULE_IMAP_FOUND, "fail", step=step, expected="an IMAP session that finds the message",
                      got=_problem(error), rfc=rfc, transcript=excerpt(transcript, max(0, len(transcript) - 8)),
                      hint=hint or "is the IMAP server (Dovecot) running and listening on port 143?"), None
    finally:
        _close(client)


def imap_refuses(host: NextHop, target: Target) -> Result:
    return _refuses(RULE_IMAP_WRONG, "RFC 3501 §6.2.3", "NO",
                    lambda transcript: TracedIMAP(target.connector(), host, transcript),
                    lambda imap: imap.login(target.login_name, wrong(target.password)), imaplib.IMAP4.error)


# -- POP3 -------------------------------------------------------------------------------
def pop3_find(host: NextHop, target: Target, message_id: str | None) -> list[Result]:
    """Both POP3 rows; skipped when no POP3 service answers (it is optional)."""
    transcript: list[Line] = []
    try:
        client = TracedPOP3(target.connector(), host, transcript)
    except (ConnectFailed, *Failure) as error:
        because = f"no POP3 service on {host.host} port {POP3_PORT} ({_problem(error)})"
        return [skipped(RULE_POP3_FOUND, because), skipped(RULE_POP3_WRONG, because)]
    found = _pop3_found(client, host, target, message_id, transcript)
    return [found, _pop3_refuses(host, target)]


def _pop3_found(client: TracedPOP3, host: NextHop, target: Target, message_id: str | None,
                transcript: list[Line]) -> Result:
    rfc = "RFC 1939 §7"
    if message_id is None:
        _close(client)
        return not_checked(RULE_POP3_FOUND, "the test message was not accepted", rfc)
    step = "USER, PASS, STAT, TOP"
    clients: list[TracedPOP3 | None] = [client]

    def look() -> int | None:
        if clients[0] is None:  # RFC 1939 §8: a maildrop is a snapshot: log in again for new mail
            clients[0] = TracedPOP3(target.connector(), host, transcript)
        pop = clients[0]
        pop.user(target.login_name)
        pop.pass_(target.password or "")
        count = pop.stat()[0]
        for number in range(count, max(0, count - POP3_SCAN), -1):
            if message_id.encode() in b"\n".join(pop.top(number, 0)[1]):
                return number
        _close(pop)
        clients[0] = None
        return None

    try:
        number = poll(time.monotonic() + target.wait, look)
    except (ConnectFailed, *Failure) as error:
        return Result(RULE_POP3_FOUND, "fail", step=step, expected="a POP3 session that finds the message",
                      got=_problem(error), rfc=rfc, transcript=excerpt(transcript, max(0, len(transcript) - 8)))
    finally:
        _close(clients[0])
    if number is None:
        return Result(RULE_POP3_FOUND, "fail", step="TOP", expected=f"the message {message_id}",
                      got=f"not in the newest {POP3_SCAN} messages after {target.wait:g}s", rfc=rfc,
                      transcript=excerpt(transcript, max(0, len(transcript) - 8)))
    return Result(RULE_POP3_FOUND, "pass", info=f"message {number}")


def _pop3_refuses(host: NextHop, target: Target) -> Result:
    def log_in(pop: TracedPOP3) -> None:
        pop.user(target.login_name)
        pop.pass_(wrong(target.password))

    return _refuses(RULE_POP3_WRONG, "RFC 1939 §7", "-ERR",
                    lambda transcript: TracedPOP3(target.connector(), host, transcript), log_in, poplib.error_proto)


Client = TypeVar("Client", TracedIMAP, TracedPOP3)


def _refuses(rule: str, rfc: str, expected: str, connect: Callable[[list[Line]], Client],
             log_in: Callable[[Client], object], refusal: type[Exception]) -> Result:
    """Log in with a wrong password: the server must say no."""
    transcript: list[Line] = []
    client: Client | None = None
    try:
        client = connect(transcript)
        log_in(client)
    except refusal as error:
        return Result(rule, "pass", info=_problem(error))
    except (ConnectFailed, *Failure) as error:
        return Result(rule, "fail", step="connect" if client is None else "log in", got=_problem(error), rfc=rfc,
                      transcript=excerpt(transcript))
    finally:
        _close(client)
    return Result(rule, "fail", step="log in with a wrong password", expected=expected,
                  got="logged in with a wrong password", rfc=rfc, transcript=excerpt(transcript),
                  hint="the server lets anyone in: check its password database (Dovecot: passdb)")


def wrong(password: str | None) -> str:
    return f"{password or ''}-not-the-password"


def _close(client: imaplib.IMAP4 | poplib.POP3 | None) -> None:
    if client is None:
        return
    try:
        client.quit() if isinstance(client, poplib.POP3) else client.logout()  # both also close
    except Failure:
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
            return Result(RULE_RECEIVED, "pass", info=line[:160])
    return Result(RULE_RECEIVED, "fail", step="the test message's header",
                  expected=f"Received: from … by {receiver.host.host} …",
                  got="\n".join(lines) or "no Received line at all", rfc="RFC 5321 §4.4",
                  hint="the MTA must stamp each message it receives; is its host name right?")


def check_reading(host: NextHop, target: Target, message_id: str | None, receiver: Greeted | None) -> list[Result]:
    """The reading rows (the caller makes sure there are credentials)."""
    header = None
    if message_id is None:
        rows = [not_checked(RULE_IMAP_FOUND, "the test message was not accepted", "RFC 3501 §6.4.4")]
    else:
        found, header = imap_find(host, target, message_id)
        rows = [found]
    rows.append(imap_refuses(host, target))
    rows += pop3_find(host, target, message_id)
    if header is None or receiver is None:
        rows.append(not_checked(RULE_RECEIVED, "the test message was not read back", "RFC 5321 §4.4"))
    else:
        rows.append(received_by(header, receiver))
    return rows
