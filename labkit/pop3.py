"""A sans-IO POP3 server session (RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH PLAIN).

Bytes in, bytes out: :class:`POP3Session` implements :class:`labkit.session.Session` and
never touches a socket; :func:`labkit.serve.serve_session` serves it on a port::

    await serve_session(lambda peer: POP3Session(peer, accounts, hostname="pop.x"),
                        protocol="pop3", server_name="pop.x")

Decisions:

- At login the session takes the exclusive maildrop lock (RFC 1939 §8) and a snapshot of
  INBOX; mail arriving later is seen by the next session.
- DELE only marks; messages are deleted at QUIT, in the UPDATE state. A dropped
  connection or an autologout deletes nothing (RFC 1939 §3, §6).
- RETR marks a message ``\\Seen`` at QUIT together with the deletions (so a dropped
  session changes nothing at all); TOP does not.
- Sizes in STAT/LIST are the octets RETR sends: CRLF line endings, before dot-stuffing
  (RFC 1939 §5, §11). UIDL values are ``<uidvalidity>.<uid>`` from the store: unique
  and persistent (RFC 1939 §7).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from .accounts import Account, Accounts
from .session import PeerInfo, stream
from .store import Folder, MailboxLock, MailboxLocked, MailStore, MessageInfo, StoreError

CRLF = b"\r\n"
MAX_LINE = 1000  # octets without CRLF; RFC 2449 §4 allows commands of 255, we are tolerant
MAX_AUTH_FAILURES = 3
SEEN = "\\Seen"

CAPABILITIES = (
    "TOP",
    "UIDL",
    "USER",
    "SASL PLAIN",
    "RESP-CODES",  # RFC 2449 §6.4
    "AUTH-RESP-CODE",  # RFC 3206
    "PIPELINING",
    "IMPLEMENTATION labkit",
)

# Replies. RFC 2449 §8 response codes go in brackets right after -ERR.
GREETING = "+OK labkit POP3 server {host} ready {banner}"
SIGNING_OFF = "+OK {host} POP3 server signing off"
SIGNING_OFF_UPDATED = "+OK {host} POP3 server signing off ({deleted} messages deleted)"
USER_OK = "+OK send PASS for {user}"
LOGGED_IN = "+OK {user}'s maildrop has {count} messages ({size} octets)"
STAT_OK = "+OK {count} {size}"
LIST_ALL = "+OK {count} messages ({size} octets)"
SCAN_LISTING = "+OK {n} {size}"
UIDL_ALL = "+OK unique-id listing follows"
UIDL_ONE = "+OK {n} {uid}"
RETR_OK = "+OK {size} octets"
TOP_OK = "+OK top of message {n} follows"
DELE_OK = "+OK message {n} deleted"
NOOP_OK = "+OK"
RSET_OK = "+OK maildrop has {count} messages ({size} octets)"
CAPA_OK = "+OK capability list follows"
AUTH_CONTINUE = "+ "

ERR_UNKNOWN = "-ERR unknown command {cmd!r}"
ERR_WRONG_STATE = "-ERR {cmd} is not valid in the {state} state"
ERR_SYNTAX = "-ERR syntax: {syntax}"
ERR_LINE_TOO_LONG = f"-ERR line too long (more than {MAX_LINE} octets)"
ERR_USER_FIRST = "-ERR PASS must follow a successful USER"
ERR_AUTH = "-ERR [AUTH] invalid user name or password"
ERR_AUTH_CLOSING = "-ERR [AUTH] too many failed logins, closing connection"
ERR_IN_USE = "-ERR [IN-USE] mailbox locked by another session"
ERR_SYS = "-ERR [SYS/TEMP] cannot open the maildrop: {reason}"
ERR_MECHANISM = "-ERR unsupported SASL mechanism {mech!r}, only PLAIN"
ERR_AUTH_CANCELLED = "-ERR AUTH cancelled by the client"
ERR_AUTH_MALFORMED = "-ERR [AUTH] malformed AUTH PLAIN response (RFC 4616: base64 of authzid NUL authcid NUL password)"
ERR_AUTHZID = "-ERR [AUTH] cannot act as {authzid!r}: authorization identity must be empty or the login name"
ERR_BAD_NUMBER = "-ERR invalid message number {arg!r}"
ERR_BAD_LINES = "-ERR invalid line count {arg!r}: need a non-negative number"
ERR_NO_SUCH = "-ERR no such message, only {count} messages in maildrop"
ERR_DELETED = "-ERR message {n} already deleted"
ERR_GONE = "-ERR message {n} is no longer in the maildrop: {reason}"
ERR_UPDATE_FAILED = "-ERR some deleted messages not removed: {reason}"
ERR_AUTOLOGOUT = "-ERR autologout: idle for {seconds:g} seconds, nothing deleted"


class State(enum.Enum):
    """RFC 1939 §3 session states."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


AUTH = frozenset({State.AUTHORIZATION})
TRANS = frozenset({State.TRANSACTION})
BOTH = AUTH | TRANS


@dataclass(frozen=True)
class Command:
    """One POP3 command: where it is allowed and how many arguments it takes."""

    handler: str  # method name on POP3Session
    states: frozenset[State]
    syntax: str
    min_args: int = 0
    max_args: int = 0
    rest_is_one_arg: bool = False  # PASS: the password may contain spaces (RFC 1939 §7)


COMMANDS: dict[str, Command] = {
    "USER": Command("_user", AUTH, "USER name", 1, 1),
    "PASS": Command("_pass", AUTH, "PASS password", 1, 1, rest_is_one_arg=True),
    "APOP": Command("_apop", AUTH, "APOP name digest", 2, 2),
    "AUTH": Command("_auth", AUTH, "AUTH PLAIN [initial-response]", 0, 2),
    "CAPA": Command("_capa", BOTH, "CAPA"),
    "QUIT": Command("_quit", BOTH, "QUIT"),
    "STAT": Command("_stat", TRANS, "STAT"),
    "LIST": Command("_list", TRANS, "LIST [msg]", 0, 1),
    "RETR": Command("_retr", TRANS, "RETR msg", 1, 1),
    "DELE": Command("_dele", TRANS, "DELE msg", 1, 1),
    "NOOP": Command("_noop", TRANS, "NOOP"),
    "RSET": Command("_rset", TRANS, "RSET"),
    "TOP": Command("_top", TRANS, "TOP msg n", 2, 2),
    "UIDL": Command("_uidl", TRANS, "UIDL [msg]", 0, 1),
}


class Reply(Exception):
    """Raised by a command handler to answer with a single (usually -ERR) line."""


def dot_stuff(message: bytes) -> bytes:
    """A multi-line response body (RFC 1939 §3): lines starting with "." get another
    one, the body ends with CRLF, then the terminating ".CRLF"."""
    if message.startswith(b"."):
        message = b"." + message
    message = message.replace(b"\r\n.", b"\r\n..")
    if message and not message.endswith(CRLF):
        message += CRLF
    return message + b"." + CRLF


def top_of(message: bytes, lines: int) -> bytes:
    """The header, the blank line, and the first ``lines`` lines of the body (RFC 1939 §7)."""
    head, sep, body = message.partition(CRLF + CRLF)
    if not sep:
        return message
    parts = body.split(CRLF)
    if parts and parts[-1] == b"":
        parts.pop()
    return head + sep + b"".join(p + CRLF for p in parts[:lines])


def apop_banner(hostname: str) -> str:
    """The RFC 1939 §7 timestamp banner, unique per greeting: ``<pid.clock@host>``."""
    return f"<{os.getpid()}.{time.time_ns()}@{hostname}>"


def apop_digest(banner: str, password: str) -> str:
    """The APOP digest a client sends: MD5 of banner + shared secret, in lower-case hex."""
    return hashlib.md5((banner + password).encode()).hexdigest()


class POP3Session:
    """One POP3 connection, sans-IO: feed :meth:`receive` bytes, send what it returns."""

    def __init__(self, peer: PeerInfo, accounts: Accounts, *, hostname: str, timeout: float = 600.0) -> None:
        self.peer, self.accounts, self.hostname = peer, accounts, hostname
        self.timeout = timeout  # RFC 1939 §3: an autologout timer of at least 10 minutes
        self.closed = False
        self.reply_delay = 0.0  # seconds the adapter holds back the reply (a failed login's)
        self.state = State.AUTHORIZATION
        self.banner = apop_banner(hostname)
        self.account: Account | None = None
        self._buffer = b""
        self._discarding = False  # inside an over-long line: drop until its end
        self._pending_user: str | None = None
        self._auth_pending = False  # AUTH PLAIN sent "+ ", the response comes next
        self._failures = 0
        self._lock: MailboxLock | None = None
        self._folder: Folder | None = None
        self._messages: list[MessageInfo] = []  # the snapshot at login; message n is [n-1]
        self._deleted: set[int] = set()
        self._retrieved: set[int] = set()

    # ------------------------------------------------------------ Session protocol

    def start(self) -> bytes:
        """The greeting, with the APOP timestamp banner."""
        return self._line(GREETING.format(host=self.hostname, banner=self.banner))

    def receive(self, data: bytes) -> bytes | Iterator[bytes]:
        """Feed client bytes (any split); returns the replies to all complete lines, in
        order: bytes, or chunks made as the client takes them (pipelined RETRs)."""
        self._buffer += data
        return stream(self._replies())

    def _replies(self) -> Iterator[bytes]:
        while not self.closed:
            line, sep, rest = self._buffer.partition(b"\n")
            if not sep:
                if len(self._buffer) > MAX_LINE and not self._discarding:
                    yield self._line(ERR_LINE_TOO_LONG)
                    self._discarding = True
                if self._discarding:
                    self._buffer = b""
                break
            self._buffer = rest
            if self._discarding:  # the end of an over-long line already answered
                self._discarding = False
                continue
            line = line.removesuffix(b"\r")
            yield self._line(ERR_LINE_TOO_LONG) if len(line) > MAX_LINE else self._handle(line)

    def mailbox_changed(self) -> bytes:
        """POP3 works on its login snapshot: new mail is not announced."""
        return b""

    def timed_out(self) -> bytes:
        """Autologout (RFC 1939 §3): close without entering UPDATE, so nothing is deleted."""
        self.closed = True
        return self._line(ERR_AUTOLOGOUT.format(seconds=self.timeout))

    def connection_lost(self) -> None:
        """The connection ended (QUIT, drop or timeout): release the lock, delete nothing more."""
        self.closed = True
        self._release()

    # ------------------------------------------------------------ dispatch

    def _handle(self, raw: bytes) -> bytes:
        text = raw.decode("utf-8", "replace")
        if self._auth_pending:
            self._auth_pending = False
            return self._line(self._sasl_plain(text.strip()))
        name, _, rest = text.strip().partition(" ")
        command = COMMANDS.get(name.upper())
        if command is None:
            return self._line(ERR_UNKNOWN.format(cmd=name))
        if self.state not in command.states:
            return self._line(ERR_WRONG_STATE.format(cmd=name.upper(), state=self.state.value))
        args = ([rest] if rest else []) if command.rest_is_one_arg else rest.split()
        if not command.min_args <= len(args) <= command.max_args:
            return self._line(ERR_SYNTAX.format(syntax=command.syntax))
        handler: Callable[..., bytes | str] = getattr(self, command.handler)
        try:
            reply = handler(*args)
        except Reply as e:
            reply = str(e)
        return self._line(reply) if isinstance(reply, str) else reply

    @staticmethod
    def _line(text: str) -> bytes:
        return text.encode() + CRLF

    def _multiline(self, first: str, body: bytes) -> bytes:
        return self._line(first) + dot_stuff(body)

    # ------------------------------------------------------------ AUTHORIZATION

    def _user(self, name: str) -> str:
        self._pending_user = name  # whether it exists is told only after PASS, not to leak users
        return USER_OK.format(user=name)

    def _pass(self, password: str) -> str:
        if self._pending_user is None:
            return ERR_USER_FIRST
        user, self._pending_user = self._pending_user, None
        return self._login(self.accounts.authenticate(user, password))

    def _apop(self, name: str, digest: str) -> str:
        account = self.accounts.find(name)
        expected = apop_digest(self.banner, account.password) if account else "x" * 32
        return self._login(account if hmac.compare_digest(digest.lower(), expected) else None)

    def _auth(self, mechanism: str = "", initial: str | None = None) -> bytes | str:
        if not mechanism:  # RFC 1734 style probe: list the mechanisms
            return self._multiline("+OK SASL mechanisms follow", b"PLAIN\r\n")
        if mechanism.upper() != "PLAIN":
            return ERR_MECHANISM.format(mech=mechanism)
        if initial is None:  # RFC 5034 §4: ask for the response with an empty challenge
            self._auth_pending = True
            return AUTH_CONTINUE
        return self._sasl_plain(initial)

    def _sasl_plain(self, response: str) -> str:
        if response == "*":
            return ERR_AUTH_CANCELLED
        try:  # RFC 5034 §4: "=" is an empty initial response
            decoded = base64.b64decode(b"" if response == "=" else response.encode(), validate=True).decode()
            authzid, authcid, password = decoded.split("\0")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return self._failed(ERR_AUTH_MALFORMED)
        if authzid and authzid.lower() != authcid.lower():
            return self._failed(ERR_AUTHZID.format(authzid=authzid))
        return self._login(self.accounts.authenticate(authcid, password))

    def _failed(self, reply: str) -> str:
        self.reply_delay += self.accounts.penalty.outcome(self.peer.address, ok=False)  # the -ERR waits, as Dovecot's
        self._failures += 1
        if self._failures >= MAX_AUTH_FAILURES:
            self.closed = True
            return ERR_AUTH_CLOSING
        return reply

    def _login(self, account: Account | None) -> str:
        """Enter TRANSACTION: lock the maildrop and take the snapshot (RFC 1939 §4)."""
        if account is None:
            return self._failed(ERR_AUTH)
        self.accounts.penalty.outcome(self.peer.address, ok=True)
        store = MailStore(account.maildir)
        try:
            self._lock = store.lock()
        except MailboxLocked:
            return ERR_IN_USE
        try:
            self._folder = store.folder("INBOX")
        except (StoreError, OSError) as e:
            self._release()
            return ERR_SYS.format(reason=e)
        self.account, self.state = account, State.TRANSACTION
        self._messages = self._folder.measure()  # sizes now: they are part of the snapshot
        count, size = self._totals()
        return LOGGED_IN.format(user=account.local_part or account.address, count=count, size=size)

    def _capa(self) -> bytes:
        return self._multiline(CAPA_OK, b"".join(c.encode() + CRLF for c in CAPABILITIES))

    def _quit(self) -> str:
        self.closed = True
        if self.state is State.AUTHORIZATION:
            return SIGNING_OFF.format(host=self.hostname)
        self.state = State.UPDATE
        try:
            return self._update()
        finally:
            self._release()

    # ------------------------------------------------------------ TRANSACTION

    def _stat(self) -> str:
        count, size = self._totals()
        return STAT_OK.format(count=count, size=size)

    def _list(self, arg: str | None = None) -> bytes | str:
        if arg is not None:
            n = self._number(arg)
            return SCAN_LISTING.format(n=n, size=self._message(n).size)
        count, size = self._totals()
        body = b"".join(f"{n} {m.size}\r\n".encode() for n, m in self._live())
        return self._multiline(LIST_ALL.format(count=count, size=size), body)

    def _uidl(self, arg: str | None = None) -> bytes | str:
        if arg is not None:
            n = self._number(arg)
            return UIDL_ONE.format(n=n, uid=self._unique_id(self._message(n)))
        body = b"".join(f"{n} {self._unique_id(m)}\r\n".encode() for n, m in self._live())
        return self._multiline(UIDL_ALL, body)

    def _retr(self, arg: str) -> bytes:
        n = self._number(arg)
        data = self._read(n)
        self._retrieved.add(n)
        return self._multiline(RETR_OK.format(size=len(data)), data)

    def _top(self, arg: str, lines: str) -> bytes:
        n = self._number(arg)
        if not lines.isdigit():
            raise Reply(ERR_BAD_LINES.format(arg=lines))
        return self._multiline(TOP_OK.format(n=n), top_of(self._read(n), int(lines)))

    def _dele(self, arg: str) -> str:
        n = self._number(arg)
        self._message(n)
        self._deleted.add(n)
        return DELE_OK.format(n=n)

    def _noop(self) -> str:
        return NOOP_OK

    def _rset(self) -> str:
        self._deleted.clear()
        count, size = self._totals()
        return RSET_OK.format(count=count, size=size)

    # ------------------------------------------------------------ UPDATE

    def _update(self) -> str:
        """RFC 1939 §6: remove the messages marked as deleted; mark retrieved ones seen."""
        assert self._folder is not None
        doomed = [self._messages[n - 1].uid for n in sorted(self._deleted)]
        try:
            for n in sorted(self._retrieved - self._deleted):
                info = self._messages[n - 1]
                try:
                    self._folder.change_flags(info.uid, add=[SEEN])  # not a stale snapshot: keep others' changes
                except StoreError:
                    pass  # expunged meanwhile by an IMAP client: nothing to mark
            self._folder.expunge(doomed)
        except (StoreError, OSError) as e:
            return ERR_UPDATE_FAILED.format(reason=e)
        return SIGNING_OFF_UPDATED.format(host=self.hostname, deleted=len(doomed))

    # ------------------------------------------------------------ helpers

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _live(self) -> list[tuple[int, MessageInfo]]:
        """(message number, info) of the messages not marked as deleted."""
        return [(n, m) for n, m in enumerate(self._messages, 1) if n not in self._deleted]

    def _totals(self) -> tuple[int, int]:
        live = self._live()
        return len(live), sum(m.size for _, m in live)

    def _number(self, arg: str) -> int:
        if not arg.isdigit():
            raise Reply(ERR_BAD_NUMBER.format(arg=arg))
        return int(arg)

    def _message(self, n: int) -> MessageInfo:
        """Message ``n`` of the snapshot, if it exists and is not marked as deleted."""
        if not 1 <= n <= len(self._messages):
            raise Reply(ERR_NO_SUCH.format(count=len(self._messages)))
        if n in self._deleted:
            raise Reply(ERR_DELETED.format(n=n))
        return self._messages[n - 1]

    def _read(self, n: int) -> bytes:
        info = self._message(n)
        assert self._folder is not None
        try:
            return self._folder.read(info.uid)
        except StoreError as e:
            raise Reply(ERR_GONE.format(n=n, reason=e)) from None

    def _unique_id(self, info: MessageInfo) -> str:
        assert self._folder is not None
        return f"{self._folder.uidvalidity}.{info.uid}"
