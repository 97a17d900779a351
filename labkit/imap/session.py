"""A sans-IO IMAP4rev1 server session (RFC 3501, with LITERAL+, IDLE, UIDPLUS, UNSELECT,
CHILDREN, SASL-IR, AUTH=PLAIN, MOVE, ID and NAMESPACE).

Bytes in, bytes out: :class:`IMAPSession` implements :class:`labkit.session.Session` and
never touches a socket; :func:`labkit.session.serve_session` serves it::

    await serve_session(lambda peer: IMAPSession(peer, accounts, hostname="imap.x"),
                        protocol="imap", server_name="imap.x")

Decisions:

- Every command is answered, malformed ones with ``BAD`` naming the problem; nothing a
  client sends closes the connection except LOGOUT and repeated failed logins.
- Mailbox changes made elsewhere (the MTA delivering, another session) are reported
  after each command (EXISTS, RECENT, FETCH FLAGS), and EXPUNGE only where RFC 3501
  §7.4.1 allows it: never during FETCH, STORE or SEARCH (their UID forms may).
- During IDLE the session is woken by :func:`labkit.maildir.watch` on the selected
  folder's Maildir, so new mail shows up at once, without polling (RFC 2177).
- Flags and keywords are kept in the Maildir file name (see :mod:`labkit.store`), so
  PERMANENTFLAGS has ``\\*`` while the mailbox has room for new keywords (26). STORE
  applies +FLAGS/-FLAGS to the flags on disk, not to this session's copy, so sessions
  changing the same message keep each other's changes.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass
from functools import partial
from typing import Callable, Generator, Iterable, Iterator

from labkit.accounts import Account, Accounts
from labkit.maildir import watch
from labkit.session import PeerInfo, stream
from labkit.store import (
    INBOX,
    BadFolderName,
    Folder,
    FolderExists,
    MailStore,
    MessageInfo,
    NoSuchFolder,
    NoSuchMessage,
    StoreError,
    TooManyKeywords,
    normalize_folder_name,
)

from . import replies as R
from .fetch import FetchItem, MessageData, info_response, parse_fetch_items, render
from .mailbox import RECENT, SelectedMailbox
from .parser import (
    MAX_APPEND_LITERAL,
    MAX_LITERAL,
    BadMailboxName,
    Command,
    CommandReader,
    Continue,
    Cursor,
    ParseError,
    Refused,
)
from .search import BadCharset, Candidate, parse_search
from .wire import CRLF, astring, encode_mailbox, flag_list

MAX_AUTH_FAILURES = 3
SEEN, DELETED = "\\Seen", "\\Deleted"
DELIMITER = "/"
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN")
_STORE_ITEM = re.compile(r"([+-]?)FLAGS(\.SILENT)?")


class State(enum.Enum):
    """RFC 3501 §3 connection states."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


class Sync(enum.Enum):
    """What news of the selected mailbox may follow a command (RFC 3501 §7.4.1)."""

    NONE = 0
    NO_EXPUNGE = 1
    FULL = 2


@dataclass(frozen=True)
class Spec:
    handler: str  # method name
    states: frozenset[State]
    sync: Sync = Sync.FULL


COMMANDS: dict[str, Spec] = {
    "CAPABILITY": Spec("_do_capability", ANY),
    "NOOP": Spec("_do_noop", ANY),
    "LOGOUT": Spec("_do_logout", ANY, Sync.NONE),
    "LOGIN": Spec("_do_login", NOT_AUTH),
    "AUTHENTICATE": Spec("_do_authenticate", NOT_AUTH),
    "SELECT": Spec("_do_select", AUTH, Sync.NONE),
    "EXAMINE": Spec("_do_examine", AUTH, Sync.NONE),
    "CREATE": Spec("_do_create", AUTH),
    "DELETE": Spec("_do_delete", AUTH),
    "RENAME": Spec("_do_rename", AUTH),
    "SUBSCRIBE": Spec("_do_subscribe", AUTH),
    "UNSUBSCRIBE": Spec("_do_unsubscribe", AUTH),
    "LIST": Spec("_do_list", AUTH),
    "LSUB": Spec("_do_lsub", AUTH),
    "STATUS": Spec("_do_status", AUTH),
    "APPEND": Spec("_do_append", AUTH),
    "IDLE": Spec("_do_idle", AUTH, Sync.NONE),
    "CHECK": Spec("_do_check", SELECTED),
    "CLOSE": Spec("_do_close", SELECTED, Sync.NONE),
    "UNSELECT": Spec("_do_unselect", SELECTED, Sync.NONE),
    "EXPUNGE": Spec("_do_expunge", SELECTED),
    "SEARCH": Spec("_do_search", SELECTED, Sync.NO_EXPUNGE),
    "FETCH": Spec("_do_fetch", SELECTED, Sync.NO_EXPUNGE),
    "STORE": Spec("_do_store", SELECTED, Sync.NO_EXPUNGE),
    "COPY": Spec("_do_copy", SELECTED),
    "MOVE": Spec("_do_move", SELECTED),
    "ID": Spec("_do_id", ANY),
    "NAMESPACE": Spec("_do_namespace", AUTH),
}
UID_COMMANDS = ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE")
"""``UID <command>``: the same handlers with ``uid=True``; they may send EXPUNGE."""


class Failed(Exception):
    """Answer the command with ``NO <text>``."""


# FETCH items that may be as big as the message: sent as they are made, not gathered.
_BIG_ITEMS = frozenset({"BODY", "RFC822", "RFC822.HEADER", "RFC822.TEXT"})
_BATCH = 256  # responses made from the store's info alone, sent together


def uid_set(numbers: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``1:3,5`` (order kept: COPYUID pairs the two sets up)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in runs)


def stored(sign: str, flags: frozenset[str], change: set[str]) -> frozenset[str]:
    """``flags`` after ``STORE`` with ``+FLAGS`` (sign ``+``), ``-FLAGS`` or ``FLAGS``,
    as the store does it: flags compare case-insensitively, the spelling in ``flags`` kept."""
    if sign == "":
        return frozenset(change)
    have = {f.lower() for f in flags}
    if sign == "+":
        return flags.union(f for f in change if f.lower() not in have)
    gone = {f.lower() for f in change}
    return frozenset(f for f in flags if f.lower() not in gone)


def same_flags(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two flag sets are equal, compared case-insensitively."""
    return {f.lower() for f in a} == {f.lower() for f in b}


def completed(command: str, gone: bool, what: str) -> str:
    """The OK text of FETCH or STORE; ``gone``: some messages were expunged by another
    session, which the client will hear of later (OK [EXPUNGEISSUED], RFC 5530)."""
    return R.OK_EXPUNGE_ISSUED.format(command=command, what=what) if gone else R.DONE.format(command=command)


def decode_sasl_plain(response: str) -> tuple[str, str, str]:
    """RFC 4616: base64 of ``authzid NUL authcid NUL password`` ("=" is empty, RFC 4959)."""
    decoded = base64.b64decode(b"" if response == "=" else response.encode("ascii"), validate=True).decode("utf-8")
    authzid, authcid, password = decoded.split("\0")
    return authzid, authcid, password


def _or_none(read: Callable[[], str]) -> str | None:
    """A mailbox name or LIST pattern, or None when it is not modified UTF-7."""
    try:
        return read()
    except BadMailboxName:
        return None


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A LIST pattern as a regex: ``*`` matches anything, ``%`` anything but the
    hierarchy delimiter (RFC 3501 §6.3.8); INBOX matches in any case."""
    if pattern[:5].upper() == INBOX and pattern[5:6] in ("", DELIMITER, "*", "%"):
        pattern = INBOX + pattern[5:]
    parts = {"*": ".*", "%": f"[^{re.escape(DELIMITER)}]*"}
    return re.compile("".join(parts.get(ch, re.escape(ch)) for ch in pattern), re.S)


class IMAPSession:
    """One IMAP connection's server side."""

    def __init__(self, peer: PeerInfo, accounts: Accounts, *, hostname: str, timeout: float = 1800.0) -> None:
        self.peer, self.accounts, self.hostname, self.timeout = peer, accounts, hostname, timeout
        self.closed = False
        self.reply_delay = 0.0  # seconds the adapter holds back the reply (a failed login's)
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.store: MailStore | None = None
        self.mailbox: SelectedMailbox | None = None
        # Big APPEND literals only once logged in: before that, every literal is small.
        self._reader = CommandReader(max_append_literal=MAX_LITERAL)
        self._untagged: list[bytes] = []
        self._tag = "*"
        self._failures = 0
        self._idle_tag: str | None = None
        self._auth_tag: str | None = None
        self._wake: Callable[[], None] | None = None
        self._unwatch_folder: Callable[[], None] | None = None

    # -- the Session interface -------------------------------------------------------

    def start(self) -> bytes:
        return self._line(R.GREETING.format(caps=R.CAPABILITIES, host=self.hostname))

    def receive(self, data: bytes) -> bytes | Iterator[bytes]:
        """The responses to what ``data`` completes: bytes, or for a big reply chunks made
        as the client takes them, one command (one FETCH response) at a time."""
        self._reader.feed(data)
        return stream(self._responses())

    def _responses(self) -> Iterator[bytes]:
        while not self.closed and (event := self._reader.next_event()) is not None:
            if isinstance(event, Command):
                yield from self._command(event)
            elif isinstance(event, Continue):
                yield self._line(R.CONTINUE_LITERAL)
            elif isinstance(event, Refused):
                tag = event.tag
                if self._auth_tag is not None:  # the AUTHENTICATE response was refused: end it
                    tag, self._auth_tag, self._reader.raw_lines = self._auth_tag, None, False
                yield self._line(f"{tag} {'NO' if event.no else 'BAD'} {event.text}")
            else:
                yield from self._raw_line(event.line)

    def mailbox_changed(self) -> bytes:
        """New mail or changed flags: told at once only while IDLE (RFC 2177); otherwise
        after the client's next command."""
        if self._idle_tag is None or self.mailbox is None or self.closed:
            return b""
        self._untagged = []
        self._sync(Sync.FULL)
        return self._flush()

    def timed_out(self) -> bytes:
        self.closed = True
        return self._line(R.BYE_AUTOLOGOUT.format(seconds=self.timeout))

    def connection_lost(self) -> None:
        self.closed = True
        self._unwatch()

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Remember the adapter's ``wake``; the selected folder's Maildir will call it."""
        self._wake = wake
        self._rewatch()
        return self._unwatch

    # -- plumbing ----------------------------------------------------------------

    @staticmethod
    def _line(text: str) -> bytes:
        """A response line; its human-readable text kept 7-bit (RFC 3501 §9 TEXT-CHAR)."""
        return text.encode("ascii", "backslashreplace") + CRLF

    def _flush(self) -> bytes:
        out = b"".join(line + CRLF for line in self._untagged)
        self._untagged = []
        return out

    def _rewatch(self) -> None:
        self._unwatch()
        if self._wake is not None and self.mailbox is not None:
            wake = self._wake
            self._unwatch_folder = watch(self.mailbox.folder.path, lambda _path: wake())

    def _unwatch(self) -> None:
        if self._unwatch_folder is not None:
            self._unwatch_folder()
            self._unwatch_folder = None

    def _command(self, command: Command) -> Iterable[bytes]:
        cursor = Cursor(command)
        if cursor.at_end():
            return (self._line(f"* BAD {R.BAD_EMPTY}"),)
        try:
            tag = cursor.tag()
        except ParseError as e:
            return (self._line(f"* BAD {R.BAD_NO_TAG.format(problem=e)}"),)
        self._tag = tag
        try:
            cursor.sp()
            name = cursor.atom("a command name").upper()
            uid = name == "UID"
            if uid:
                cursor.sp()
                name = cursor.atom("a UID command").upper()
                if name not in UID_COMMANDS:
                    raise ParseError(f"UID {name} is not a UID command ({', '.join(UID_COMMANDS)})")
        except ParseError as e:
            return (self._line(f"{tag} BAD {e}"),)
        spec = COMMANDS.get(name)
        label = f"UID {name}" if uid else name
        if spec is None:
            return (self._line(f"{tag} BAD {R.BAD_UNKNOWN.format(command=name)}"),)
        if self.state not in spec.states:
            if spec.states is NOT_AUTH:
                hint = R.HINT_LOGGED_IN
            else:
                hint = R.HINT_LOGIN if self.state is State.NOT_AUTHENTICATED else R.HINT_SELECT
            bad = R.BAD_STATE.format(command=label, state=self.state.value, hint=hint)
            return (self._line(f"{tag} BAD {bad}"),)
        handler = getattr(self, spec.handler)
        run = partial(handler, cursor, uid=True) if uid else partial(handler, cursor)
        sync = Sync.FULL if uid else spec.sync
        return self._run(tag, label, run, sync)

    def _run(self, tag: str, label: str, run: Callable[[], str | None | Iterator[bytes]],
             sync: Sync) -> Iterator[bytes]:
        """Run a command; its untagged responses, any mailbox news, its tagged reply. A
        handler that returns a generator (FETCH) sends its responses as it makes them
        and returns its OK text."""
        self._untagged = []
        try:
            text = run()
            if isinstance(text, Iterator):
                text = yield from text
            status = "OK"
        except BadCharset as e:
            status, text = "NO", R.NO_BADCHARSET.format(reason=e)
        except ParseError as e:
            status, text = "BAD", R.BAD_SYNTAX.format(command=label, problem=e)
        except Failed as e:
            status, text = "NO", str(e)
        except (BadFolderName, BadMailboxName) as e:
            status, text = "NO", R.NO_CANNOT.format(reason=e)
        except NoSuchFolder as e:
            status, text = "NO", R.NO_MAILBOX.format(reason=e)
        except FolderExists as e:
            status, text = "NO", R.NO_EXISTS.format(reason=e)
        except TooManyKeywords as e:
            status, text = "NO", R.NO_LIMIT.format(reason=e)
        except (StoreError, OSError) as e:
            status, text = "NO", R.NO_STORE.format(reason=e)
        except Exception as e:  # a bug must not cost the client its connection
            status, text = "NO", R.NO_INTERNAL.format(command=label, error=f"{type(e).__name__}: {e}")
        if status != "BAD" and not self.closed:
            self._sync(sync)
        if text is None:  # IDLE or AUTHENTICATE: the tagged reply comes later
            yield self._flush()
        else:
            yield self._flush() + self._line(f"{tag} {status} {text}")

    def _sync(self, sync: Sync) -> None:
        if self.mailbox is None or sync is Sync.NONE:
            return
        try:
            self._untagged += self.mailbox.sync(expunge=sync is Sync.FULL)
        except NoSuchFolder as e:  # deleted or renamed by another session
            self._untagged.append(R.BYE_MAILBOX_GONE.format(name=self.mailbox.name, reason=e).encode())
            self.closed = True
        except (StoreError, OSError):  # a passing disk problem: the next command tries again
            pass

    def _raw_line(self, line: bytes) -> Iterable[bytes]:
        """The line after IDLE's ``+`` or AUTHENTICATE's ``+``."""
        self._reader.raw_lines = False
        if self._idle_tag is not None:
            tag, self._idle_tag = self._idle_tag, None
            if line.strip().upper() != b"DONE":
                return (self._line(f"{tag} BAD {R.BAD_EXPECTED_DONE}"),)
            return self._run(tag, "IDLE", lambda: R.IDLE_DONE, Sync.FULL)
        tag, self._auth_tag = self._auth_tag or "*", None
        return self._run(tag, "AUTHENTICATE", lambda: self._sasl_plain(line.decode("ascii", "replace").strip()), Sync.NONE)

    # -- any state ---------------------------------------------------------------

    def _do_capability(self, cursor: Cursor) -> str:
        cursor.end()
        self._untagged.append(f"* CAPABILITY {R.CAPABILITIES}".encode())
        return R.DONE.format(command="CAPABILITY")

    def _do_noop(self, cursor: Cursor) -> str:
        """Nothing to do but report news (done by :meth:`_run`)."""
        cursor.end()
        return R.DONE.format(command="NOOP")

    def _do_id(self, cursor: Cursor) -> str:
        """ID (RFC 2971): the client may say who it is; we say who we are."""
        cursor.sp()
        if not cursor.take_word("NIL"):
            cursor.paren_list(lambda: self._id_pair(cursor))
        cursor.end()
        fields = " ".join(f'"{name}" "{value}"' for name, value in R.ID_FIELDS)
        self._untagged.append(f"* ID ({fields})".encode())
        return R.DONE.format(command="ID")

    @staticmethod
    def _id_pair(cursor: Cursor) -> tuple[bytes, bytes | None]:
        """``string SP nstring`` (RFC 2971 §4); what the client says is not kept."""
        field = cursor.string()
        cursor.sp()
        return field, cursor.nstring()

    def _do_logout(self, cursor: Cursor) -> str:
        cursor.end()
        self._untagged.append(R.BYE_LOGOUT.format(host=self.hostname).encode())
        self._deselect()
        self.state, self.closed = State.LOGOUT, True
        return R.DONE.format(command="LOGOUT")

    # -- not authenticated -------------------------------------------------------

    def _do_login(self, cursor: Cursor) -> str:
        cursor.sp()
        user = cursor.text_astring("a user name")
        cursor.sp()
        password = cursor.text_astring("a password")
        cursor.end()
        return self._logged_in(self.accounts.authenticate(user, password))

    def _do_authenticate(self, cursor: Cursor) -> str | None:
        cursor.sp()
        mechanism = cursor.atom("a SASL mechanism").upper()
        initial = cursor.atom("an initial response") if cursor.take(" ") else None  # SASL-IR, RFC 4959
        cursor.end()
        if mechanism != "PLAIN":
            raise Failed(R.NO_MECHANISM.format(mechanism=mechanism))
        if initial is not None:
            return self._sasl_plain(initial)
        self._auth_tag = self._tag
        self._reader.raw_lines = True
        self._untagged.append(R.CONTINUE_AUTH.encode())
        return None

    def _sasl_plain(self, response: str) -> str:
        if response == "*":
            raise ParseError(R.BAD_AUTH_CANCELLED)
        try:
            authzid, authcid, password = decode_sasl_plain(response)
        except (binascii.Error, UnicodeError, ValueError):
            return self._logged_in(None, R.NO_AUTH_MALFORMED)
        if authzid and authzid.lower() != authcid.lower():
            return self._logged_in(None, R.NO_AUTHZID.format(authzid=authzid))
        return self._logged_in(self.accounts.authenticate(authcid, password))

    def _logged_in(self, account: Account | None, failure: str = R.NO_LOGIN) -> str:
        penalty = self.accounts.penalty
        if account is None:
            self.reply_delay += penalty.outcome(self.peer.address, ok=False)  # the NO waits, as Dovecot's
            self._failures += 1
            if self._failures >= MAX_AUTH_FAILURES:
                self._untagged.append(R.BYE_TOO_MANY_FAILURES.encode())
                self.closed = True
            raise Failed(failure)
        try:
            self.store = MailStore(account.maildir)
        except (StoreError, OSError) as e:
            raise Failed(R.NO_SERVER_BUG.format(reason=e)) from None
        penalty.outcome(self.peer.address, ok=True)  # the count is cleared once the store has opened
        self.account, self.state = account, State.AUTHENTICATED
        self._reader.max_append_literal = MAX_APPEND_LITERAL
        return R.LOGGED_IN.format(caps=R.CAPABILITIES, user=account.address)

    # -- authenticated: mailboxes --------------------------------------------------

    @property
    def _mail(self) -> MailStore:
        assert self.store is not None, "authenticated state without a store"
        return self.store

    def _do_select(self, cursor: Cursor) -> str:
        return self._open(cursor, readonly=False)

    def _do_examine(self, cursor: Cursor) -> str:
        return self._open(cursor, readonly=True)

    def _open(self, cursor: Cursor, *, readonly: bool) -> str:
        """SELECT/EXAMINE (RFC 3501 §6.3.1): a failed SELECT leaves nothing selected."""
        cursor.sp()
        name = cursor.mailbox()
        cursor.end()
        command = "EXAMINE" if readonly else "SELECT"
        self._deselect()
        mailbox = SelectedMailbox.open(self._mail, name, readonly=readonly)
        self.mailbox, self.state = mailbox, State.SELECTED
        self._rewatch()
        self._untagged += mailbox.flag_responses()
        self._untagged += [
            b"* %d EXISTS" % mailbox.exists,
            b"* %d RECENT" % len(mailbox.recent),
        ]
        unseen = mailbox.first_unseen()
        if unseen is not None:
            self._untagged.append(b"* OK [UNSEEN %d] First unseen message" % unseen)
        self._untagged += [
            b"* OK [UIDVALIDITY %d] UIDs valid" % mailbox.folder.uidvalidity,
            b"* OK [UIDNEXT %d] Predicted next UID" % mailbox.folder.uidnext,
        ]
        return R.SELECTED.format(mode="READ-ONLY" if readonly else "READ-WRITE", command=command)

    def _deselect(self) -> None:
        self._unwatch()
        self.mailbox = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def _is_selected(self, name: str, *, or_parent: bool = False) -> bool:
        """Whether ``name`` is the selected mailbox (or, with ``or_parent``, above it)."""
        if self.mailbox is None:
            return False
        canonical = normalize_folder_name(name)
        return canonical == self.mailbox.name or (or_parent and self.mailbox.name.startswith(canonical + DELIMITER))

    def _folder(self, name: str, *, trycreate: bool = False) -> Folder:
        """The selected folder's own object if ``name`` is selected, else a fresh one."""
        if self.mailbox is not None and self._is_selected(name):
            return self.mailbox.folder
        try:
            return self._mail.folder(name)
        except NoSuchFolder as e:
            if trycreate:  # RFC 3501 §6.3.11: tell the client it may CREATE it
                raise Failed(R.NO_TRYCREATE.format(reason=e)) from None
            raise

    def _mailbox_arg(self, cursor: Cursor) -> str:
        cursor.sp()
        name = cursor.mailbox()
        cursor.end()
        return name

    def _do_namespace(self, cursor: Cursor) -> str:
        """NAMESPACE (RFC 2342): one personal namespace, no prefix; no others."""
        cursor.end()
        self._untagged.append(f'* NAMESPACE (("" "{DELIMITER}")) NIL NIL'.encode())
        return R.DONE.format(command="NAMESPACE")

    def _do_create(self, cursor: Cursor) -> str:
        name = self._mailbox_arg(cursor)
        if normalize_folder_name(name.rstrip(DELIMITER) or name) == INBOX:
            raise Failed(R.NO_EXISTS.format(reason="INBOX always exists"))
        self._mail.create(name)
        return R.DONE.format(command="CREATE")

    def _do_delete(self, cursor: Cursor) -> str:
        name = self._mailbox_arg(cursor)
        if self._is_selected(name):
            raise Failed(R.NO_IN_USE.format(name=name))
        self._mail.delete(name)
        return R.DONE.format(command="DELETE")

    def _do_rename(self, cursor: Cursor) -> str:
        cursor.sp()
        old = cursor.mailbox()
        cursor.sp()
        new = cursor.mailbox()
        cursor.end()
        if self._is_selected(old, or_parent=True) and normalize_folder_name(old) != INBOX:
            raise Failed(R.NO_IN_USE.format(name=old))
        self._mail.rename(old, new)
        return R.DONE.format(command="RENAME")

    def _do_subscribe(self, cursor: Cursor) -> str:
        self._mail.subscribe(self._mailbox_arg(cursor))
        return R.DONE.format(command="SUBSCRIBE")

    def _do_unsubscribe(self, cursor: Cursor) -> str:
        self._mail.unsubscribe(self._mailbox_arg(cursor))
        return R.DONE.format(command="UNSUBSCRIBE")

    def _do_list(self, cursor: Cursor) -> str:
        names = self._mail.folders()
        return self._listing("LIST", cursor, names, set(names))

    def _do_lsub(self, cursor: Cursor) -> str:
        subscribed = self._mail.subscriptions
        return self._listing("LSUB", cursor, sorted(subscribed), subscribed)

    def _listing(self, command: str, cursor: Cursor, names: list[str], real: set[str]) -> str:
        """LIST/LSUB reference pattern (RFC 3501 §6.3.8-9). Parents that are not real
        folders (or not subscribed) appear as ``\\Noselect`` when none of their
        descendants matches the pattern themselves."""
        cursor.sp()
        reference = _or_none(cursor.mailbox)
        cursor.sp()
        pattern = _or_none(cursor.list_mailbox)
        cursor.end()
        if reference is None or pattern is None:  # not modified UTF-7: no name can match
            return R.DONE.format(command=command)
        if not pattern:  # the hierarchy delimiter and root (RFC 3501 §6.3.8)
            self._untagged.append(f'* {command} (\\Noselect) "{DELIMITER}" ""'.encode())
            return R.DONE.format(command=command)
        regex = pattern_regex(reference + pattern)
        nodes = set(names)
        for name in names:
            parts = name.split(DELIMITER)
            nodes.update(DELIMITER.join(parts[:i]) for i in range(1, len(parts)))
        matching = {node for node in nodes if regex.fullmatch(node)}
        for node in sorted(matching, key=lambda n: (n != INBOX, n)):
            prefix = node + DELIMITER
            if node not in real and any(m.startswith(prefix) for m in matching):
                continue
            attributes = [] if node in real else ["\\Noselect"]
            if command == "LIST":
                has_children = any(n.startswith(prefix) for n in nodes)
                attributes.append("\\HasChildren" if has_children else "\\HasNoChildren")
            line = f'* {command} ({" ".join(attributes)}) "{DELIMITER}" '.encode()
            self._untagged.append(line + astring(encode_mailbox(node)))
        return R.DONE.format(command=command)

    def _do_status(self, cursor: Cursor) -> str:
        cursor.sp()
        name = cursor.mailbox()
        cursor.sp()
        items = cursor.paren_list(lambda: cursor.atom("a status item").upper(), allow_empty=False)
        cursor.end()
        unknown = [item for item in items if item not in STATUS_ITEMS]
        if unknown:
            raise ParseError(f"unknown status item {unknown[0]}: expected one of {' '.join(STATUS_ITEMS)}")
        folder = self._folder(name)
        if folder is self._mailbox_folder():  # a fresh Folder is refreshed already
            folder.refresh()
        messages = folder.messages()
        values = {
            "MESSAGES": len(messages),
            "RECENT": len(folder.recent),
            "UIDNEXT": folder.uidnext,
            "UIDVALIDITY": folder.uidvalidity,
            "UNSEEN": sum(1 for m in messages if SEEN not in m.flags),
        }
        listing = " ".join(f"{item} {values[item]}" for item in items)
        self._untagged.append(b"* STATUS " + astring(encode_mailbox(folder.name)) + f" ({listing})".encode())
        return R.DONE.format(command="STATUS")

    def _mailbox_folder(self) -> Folder | None:
        return self.mailbox.folder if self.mailbox is not None else None

    def _do_append(self, cursor: Cursor) -> str:
        """APPEND mailbox [flags] [date-time] literal (RFC 3501 §6.3.11, RFC 4315 APPENDUID)."""
        cursor.sp()
        name = cursor.mailbox()
        cursor.sp()
        flags: list[str] = []
        date = None
        if cursor.at("("):
            flags = cursor.flag_list()
            cursor.sp()
        if cursor.at('"'):
            date = cursor.date_time().timestamp()
            cursor.sp()
        message = cursor.literal()
        cursor.end()
        folder = self._folder(name, trycreate=True)
        uid = folder.append(message, [f for f in flags if f != RECENT], date)
        return R.APPENDED.format(uidvalidity=folder.uidvalidity, uid=uid)

    def _do_idle(self, cursor: Cursor) -> None:
        """IDLE (RFC 2177): ``+``, then news as it happens until the client says DONE."""
        cursor.end()
        self._sync(Sync.FULL)
        self._idle_tag = self._tag
        self._reader.raw_lines = True
        self._untagged.append(R.CONTINUE_IDLE.encode())
        return None

    # -- selected ----------------------------------------------------------------

    @property
    def _selected(self) -> SelectedMailbox:
        assert self.mailbox is not None, "selected state without a mailbox"
        return self.mailbox

    def _writable(self) -> SelectedMailbox:
        mailbox = self._selected
        if mailbox.readonly:
            raise Failed(R.NO_READ_ONLY.format(name=mailbox.name))
        return mailbox

    def _do_check(self, cursor: Cursor) -> str:
        """CHECK (RFC 3501 §6.4.1): every change is on disk already; report news."""
        cursor.end()
        return R.DONE.format(command="CHECK")

    def _do_close(self, cursor: Cursor) -> str:
        """CLOSE (RFC 3501 §6.4.2): expunge \\Deleted messages silently, then deselect."""
        cursor.end()
        mailbox = self._selected
        if not mailbox.readonly:
            mailbox.folder.expunge(m.uid for m in mailbox.folder.refresh() if DELETED in m.flags)
        self._deselect()
        return R.DONE.format(command="CLOSE")

    def _do_unselect(self, cursor: Cursor) -> str:
        """UNSELECT (RFC 3691): like CLOSE without expunging."""
        cursor.end()
        self._deselect()
        return R.DONE.format(command="UNSELECT")

    def _do_expunge(self, cursor: Cursor, uid: bool = False) -> str:
        """EXPUNGE, or UID EXPUNGE set (RFC 4315 §2.1): only \\Deleted messages go."""
        allowed = None
        if uid:
            cursor.sp()
            allowed = set(self._selected.by_uid(cursor.sequence_set()))
        cursor.end()
        mailbox = self._writable()
        self._sync(Sync.FULL)  # current flags, and earlier expunges reported first
        doomed = [u for u in mailbox.uids if DELETED in mailbox.infos[u].flags and (allowed is None or u in allowed)]
        mailbox.folder.expunge(doomed)
        self._untagged += mailbox.remove(doomed)
        return R.DONE.format(command="UID EXPUNGE" if uid else "EXPUNGE")

    def _messages(self, cursor: Cursor, uid: bool) -> list[int]:
        ranges = cursor.sequence_set()
        return self._selected.by_uid(ranges) if uid else self._selected.by_sequence(ranges)

    def _message(self, uid: int) -> MessageData:
        mailbox = self._selected
        info = mailbox.infos[uid]
        return MessageData(info, partial(mailbox.folder.read, uid), recent=uid in mailbox.recent,
                           cache=partial(mailbox.folder.cache, info))

    def _do_search(self, cursor: Cursor, uid: bool = False) -> str:
        cursor.sp()
        matches = parse_search(cursor)
        mailbox = self._selected
        last_uid = mailbox.uids[-1] if mailbox.uids else 0
        found = []
        for msn, u in enumerate(mailbox.uids, 1):
            try:
                if matches(Candidate(msn, self._message(u), mailbox.exists, last_uid)):
                    found.append(u if uid else msn)
            except NoSuchMessage:  # expunged meanwhile: it cannot match
                continue
        self._untagged.append(b" ".join([b"* SEARCH"] + [b"%d" % n for n in found]))
        return R.DONE.format(command="UID SEARCH" if uid else "SEARCH")

    def _do_fetch(self, cursor: Cursor, uid: bool = False) -> Iterator[bytes]:
        """FETCH (RFC 3501 §6.4.5). UID FETCH always includes UID; fetching a body
        section (not PEEK) sets \\Seen and reports the new FLAGS."""
        cursor.sp()
        uids = self._messages(cursor, uid)
        cursor.sp()
        items = parse_fetch_items(cursor)
        cursor.end()
        if uid and not any(item.name == "UID" for item in items):
            items.insert(0, FetchItem("UID"))
        return self._fetched(uids, items, uid)

    def _fetched(self, uids: list[int], items: list[FetchItem], uid: bool) -> Generator[bytes, None, str]:
        """The FETCH responses, made one item of one message at a time (a response of
        100 literals of a big message is never built whole); returns the OK text."""
        mailbox = self._selected
        mark_seen = not mailbox.readonly and any(item.sets_seen for item in items)
        with_flags = items + [FetchItem("FLAGS")] if not any(item.name == "FLAGS" for item in items) else items
        respond = None if mark_seen else info_response(items)
        infos, flags_of, msn = mailbox.infos, mailbox.flags, mailbox.msn
        gone = False
        batch = [self._flush()]
        for u in uids:
            if respond is not None:  # told from the store's info: whole responses, sent in batches
                try:
                    batch.append(respond(msn(u), infos[u], flags_of(u)))
                    if len(batch) >= _BATCH:
                        yield b"".join(batch)
                        batch = []
                    continue
                except NoSuchMessage:  # its size never measured, and its file gone: the long way
                    pass
            if batch:
                yield b"".join(batch)
                batch = []
            message = self._message(u)
            chosen = with_flags if mark_seen and self._mark_seen(message) else items
            flags = flags_of(u)
            # Small items go out together, each big one (a body section) on its own.
            out = [self._flush(), b"* %d FETCH (" % msn(u)]  # keyword news first (_mark_seen)
            try:
                for i, item in enumerate(chosen):
                    if i:
                        out.append(b" ")
                    out.append(render(item, message, flags))
                    if item.name in _BIG_ITEMS:
                        yield b"".join(out)
                        out = []
            except Exception:  # a bug: end the response well-formed; the command says NO
                yield b"".join(out) + b")" + CRLF
                raise
            out.append(b")" + CRLF)
            yield b"".join(out)
            gone |= message.gone
        if batch:
            yield b"".join(batch)
        # RFC 3501 §7.4.1: no EXPUNGE now, so a message expunged elsewhere keeps its number
        # and what is still known of it; the rest is NIL (RFC 2180 §4.1.1), as in Dovecot.
        return completed("UID FETCH" if uid else "FETCH", gone, "their contents are NIL")

    def _mark_seen(self, message: MessageData) -> bool:
        """Set \\Seen (a FETCH of a body section); whether the flags changed."""
        mailbox = self._selected
        if SEEN in message.info.flags:
            return False
        try:
            message.info = mailbox.folder.change_flags(message.info.uid, add=[SEEN])
        except NoSuchMessage:  # expunged meanwhile: nothing to mark
            return False
        mailbox.update(message.info)
        self._untagged += mailbox.keyword_news()  # the flags on disk may have a keyword new to us
        return True

    def _do_store(self, cursor: Cursor, uid: bool = False) -> str:
        """STORE set [+|-]FLAGS[.SILENT] flags (RFC 3501 §6.4.6)."""
        cursor.sp()
        uids = self._messages(cursor, uid)
        cursor.sp()
        item = cursor.atom("FLAGS, +FLAGS or -FLAGS").upper()
        match = _STORE_ITEM.fullmatch(item)
        if match is None:
            raise ParseError(f"unknown STORE item {item}: expected [+|-]FLAGS[.SILENT]")
        cursor.sp()
        if cursor.at("("):
            flags = cursor.flag_list()
        else:  # RFC 3501 §9: flags may also come without parentheses
            flags = [cursor.flag()]
            while cursor.take(" "):
                flags.append(cursor.flag())
        cursor.end()
        mailbox = self._writable()
        wanted = [f for f in dict.fromkeys(flags) if f != RECENT]  # \Recent cannot be stored (RFC 3501 §2.3.2)
        change = set(wanted)
        sign, silent = match.group(1), bool(match.group(2))
        folder = mailbox.folder
        apply: Callable[[int], MessageInfo] = {  # keywords get their letters in the order given
            "+": lambda u: folder.change_flags(u, add=wanted),
            "-": lambda u: folder.change_flags(u, remove=wanted),
            "": lambda u: folder.set_flags(u, wanted),
        }[sign]
        changed: list[int] = []
        gone = False
        for u in uids:
            expected = stored(sign, mailbox.infos[u].flags, change)
            try:
                info = apply(u)  # the flags on disk now, with other sessions' changes too
            except NoSuchMessage:  # expunged by another session; we may not say so yet
                gone = True
                continue
            # .SILENT: the client takes its own change as done; anything else is news for the sync
            mailbox.update(info if not silent or same_flags(info.flags, expected) else info.with_flags(expected))
            changed.append(u)
        self._untagged += mailbox.keyword_news()  # before a FETCH shows a new keyword
        if not silent:
            self._untagged += [self._flags_fetch(u, with_uid=uid) for u in changed]
        return completed("UID STORE" if uid else "STORE", gone, "their flags stay as they were")

    def _flags_fetch(self, u: int, *, with_uid: bool) -> bytes:
        mailbox = self._selected
        uid_item = b"UID %d " % u if with_uid else b""
        return b"* %d FETCH (%sFLAGS %s)" % (mailbox.msn(u), uid_item, flag_list(mailbox.flags(u)))

    def _do_copy(self, cursor: Cursor, uid: bool = False) -> str:
        """COPY set mailbox (RFC 3501 §6.4.7) with COPYUID (RFC 4315)."""
        cursor.sp()
        uids = self._messages(cursor, uid)
        name = self._mailbox_arg(cursor)
        code = self._copy(uids, self._folder(name, trycreate=True))
        return f"{code} COPY completed" if code else R.DONE.format(command="COPY")

    def _do_move(self, cursor: Cursor, uid: bool = False) -> str:
        """MOVE set mailbox (RFC 6851): a COPY, then the originals are expunged; the
        COPYUID comes untagged, before the EXPUNGEs (§4.3). Nothing is expunged unless
        every message was copied."""
        cursor.sp()
        uids = self._messages(cursor, uid)
        name = self._mailbox_arg(cursor)
        mailbox = self._writable()
        code = self._copy(uids, self._folder(name, trycreate=True))
        if code:
            self._untagged.append(f"* OK {code} Moved".encode())
        mailbox.folder.expunge(uids)
        self._untagged += mailbox.remove(uids)
        return R.DONE.format(command="UID MOVE" if uid else "MOVE")

    def _copy(self, uids: list[int], target: Folder) -> str:
        """Copy messages to ``target`` (all or none); the COPYUID code, "" if none."""
        try:
            copied = self._selected.folder.copy_to(uids, target)
        except NoSuchMessage:  # RFC 2180 §4.4.1: a COPY of an expunged message fails whole
            raise Failed(R.NO_EXPUNGE_ISSUED) from None
        if not copied:
            return ""
        return R.COPYUID.format(uidvalidity=target.uidvalidity, source=uid_set(uids), target=uid_set(copied))
