"""One user's mail on disk: a Maildir (INBOX) with Maildir++ folders and IMAP identities.

Shared by the POP3 and IMAP servers; the MTA delivers into INBOX's ``new/`` with
:func:`labkit.maildir.deliver`, and mutt can open the same Maildir side by side.

Layout (Maildir++, as Courier and Dovecot write it)::

    root/                  INBOX: cur/ new/ tmp/
    root/.Sent/            folder "Sent"
    root/.Work.Projects/   folder "Work/Projects" ("/" on the IMAP side, "." on disk)
    root/subscriptions     subscribed folder names, one a line
    */labkit-uidlist       "uidvalidity uidnext recentfrom", then "uid key size internaldate" lines
    */labkit-keywords      "index keyword" lines: keyword i is info letter a+i (Dovecot's format)

Decisions:

- UIDs (RFC 3501 §2.3.1.1) live in each folder's ``labkit-uidlist`` (like Dovecot's
  ``dovecot-uidlist``), rewritten with :func:`labkit.maildir.write_durably` under an
  exclusive lock (``fcntl.flock`` on ``labkit-uidlist.lock`` plus a thread lock), so
  processes and threads agree and UIDs survive restarts. UIDs are never reused.
  Lock order: store lock (folder create/rename/delete, subscriptions) -> folder lock
  -> UIDVALIDITY counter lock; never the other way round.
- Messages are stored exactly as delivered. :meth:`Folder.read` returns them with CRLF
  line endings (a file written with bare LF is converted on the fly) and
  :attr:`MessageInfo.size` is the length of exactly those bytes (RFC 1939 §11,
  RFC 3501 §2.3.4). Counting them means reading the file, so a size is measured when
  first asked for (a SELECT never needs one), then kept in the uidlist ("-" until then).
- Flags are the Maildir info suffix ``:2,<letters>`` (maildir(5)), so mutt agrees:
  capitals for the system flags, ``a``-``z`` for keywords (RFC 3501 §2.3.2), as Dovecot
  does. Which keyword a letter stands for is in the folder's ``labkit-keywords`` (the
  format of Dovecot's ``dovecot-keywords``). That table only grows, and is durable
  before any file name carries a new letter; so one rename changes all of a message's
  flags at once, and a reader that meets a letter it does not know reads the table
  again. 26 keywords per folder at most (:class:`TooManyKeywords` after that); keywords
  compare case-insensitively, the first spelling kept. Letters nobody knows are kept.
- Flag changes (:meth:`Folder.change_flags`) are applied to the file name as it is on
  disk at that moment, under the folder lock, never to a session's older copy: two
  sessions changing different flags of one message both keep their change.
- ``\\Recent`` (RFC 3501 §2.3.2): the uid list keeps ``recentfrom``, the lowest UID no
  read-write IMAP session has claimed yet. A session that claims (SELECT) takes every
  message at or above it and moves it to ``uidnext``, under the lock, so each message
  is recent in exactly one such session; others (EXAMINE, STATUS, POP3) only look. A
  claim is at once in the state every session of this process shares, and reaches the
  disk with the uid list's next durable write (a new UID, an expunge), not with one of
  its own: the sessions it matters to live in this process, and a claim lost in a
  crash only makes a message recent in a session after the restart. (An fsync per
  claim cost a tenth of the throughput of imaptest's stress run.)
- Folder names are plain ``str`` on this API and UTF-8 on disk (the IMAP layer does
  the modified UTF-7 of RFC 3501 §5.1.3). A ``.`` inside a name part is refused: it is
  the on-disk hierarchy separator.
- Each :meth:`MailStore.folder` call returns a new, already refreshed :class:`Folder`
  whose view changes only when its owner calls :meth:`Folder.refresh` (a POP3 session
  keeps its login snapshot; an IMAP session refreshes after each command).
- A writer killed mid-delivery leaves its file in ``tmp/``: a folder's first sync in a
  process, then one an hour, removes those untouched for 36 hours (maildir(5)).
- What a refresh learns is cached once per process and folder, shared by every
  :class:`Folder` of that path: refreshing an unchanged folder of 10,000 messages costs
  a few ``stat`` calls and one read of the uidlist, not a rescan (see :class:`_FolderState`).
  Beside it, a per-message cache of what readers derive from a message's bytes
  (:meth:`Folder.cache`: IMAP's ENVELOPE, body structure, header text): a Maildir file
  never changes its content, so an entry lives as long as its file's name in the folder.
- A folder's state is kept while a :class:`Folder` of it lives, and for
  :data:`KEEP_UNUSED` seconds after the last one went (a client that comes back finds
  it warm), unless the folders kept unused hold more than :data:`KEEP_UNUSED_MESSAGES`
  messages; then it is dropped, and the memory with it.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import os
import shutil
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

from .commit import Staged, flush, install, write_temp
from .imap.wire import not_atom_char
from .maildir import create as create_maildir
from .maildir import fsync_dir, notify, sweep_tmp, unique_name, watch, write_durably

try:  # POSIX: locks across processes; elsewhere the thread locks still hold
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

INBOX = "INBOX"
DELIMITER = "/"  # hierarchy delimiter on the IMAP side
DISK_SEPARATOR = "."  # Maildir++ separator on disk
INFO_SEPARATOR = "!" if os.name == "nt" else ":"  # maildir(5); ':' is not allowed on Windows
INFO_PREFIX = INFO_SEPARATOR + "2,"

UIDLIST = "labkit-uidlist"
KEYWORDS = "labkit-keywords"
UIDLIST_LOCK = "labkit-uidlist.lock"
STORE_LOCK = "labkit-store.lock"
UIDVALIDITY_FILE = "labkit-uidvalidity"
UIDVALIDITY_LOCK = "labkit-uidvalidity.lock"
POP3_LOCK = "labkit-pop3.lock"
SUBSCRIPTIONS = "subscriptions"
MAILDIRFOLDER = "maildirfolder"  # Maildir++ marker file in every subfolder

#: IMAP system flags <-> Maildir info letters (maildir(5); P is Dovecot's $Forwarded).
FLAG_LETTERS: dict[str, str] = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "$Forwarded": "P",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS: dict[str, str] = {letter: flag for flag, letter in FLAG_LETTERS.items()}
_FLAG_BY_LOWER: dict[str, str] = {flag.lower(): flag for flag in FLAG_LETTERS}
SYSTEM_FLAGS: frozenset[str] = frozenset(FLAG_LETTERS)
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # keyword i is letter i (Dovecot's maildir)

MAX_DIR_NAME = 255  # octets in one file name on common file systems
UNMEASURED = "-"  # the uidlist's size of a message not measured yet
_FILE_ATTEMPTS = 5  # looks for a file again when another process renames it under us
_READ_CHUNK = 1 << 16
# A directory whose mtime/ctime is younger than this may change again without its times
# changing (they tick coarsely: a kernel clock tick, 1 s on some file systems, 2 s on FAT).
_SETTLE_NS = 2_000_000_000
COPY_BATCH, COPY_BATCH_BYTES = 256, 8 << 20  # a COPY makes this many messages (or bytes) durable at once
_SWEEP_NS = 3600 * 1_000_000_000  # a folder's tmp/ is swept of stale files at most hourly
KEEP_UNUSED = 30.0  # seconds a folder's state is kept after its last Folder went
KEEP_UNUSED_MESSAGES = 100_000  # ... unless the states kept unused hold more messages than this

T = TypeVar("T")


class StoreError(Exception):
    """Base class; the message names the problem."""


class BadFolderName(StoreError):
    """A folder (or user) name that is empty, malformed or would escape the store."""


class NoSuchFolder(StoreError):
    """The folder does not exist."""


class FolderExists(StoreError):
    """The folder already exists."""


class MailboxLocked(StoreError):
    """Another session holds the exclusive mailbox lock (RFC 1939 §8)."""


class NoSuchMessage(StoreError):
    """No message with that UID, or it vanished (expunged by another session)."""


class TooManyKeywords(StoreError):
    """The folder has a keyword for every letter ``a``-``z`` already."""


class _Sizer(Protocol):
    def size_of(self, info: "MessageInfo") -> int: ...


class MessageInfo:
    """What the store knows about one message. Immutable (shared by every session).

    ``size`` is the octet count of ``read(uid)`` (CRLF line endings); when the store has
    not measured it yet, the first use reads the file (:class:`NoSuchMessage` if it is
    gone). Equality ignores it: a Maildir file, hence its size, never changes."""

    __slots__ = ("uid", "key", "flags", "internaldate", "_size", "_sizer")
    uid: int
    key: str  # Maildir unique name, without the info suffix
    flags: frozenset[str]  # IMAP flags and keywords, e.g. "\\Seen", "$Junk"
    internaldate: float  # epoch seconds

    def __init__(self, uid: int, key: str, size: int | None, flags: frozenset[str], internaldate: float,
                 sizer: _Sizer | None = None) -> None:
        if size is None and sizer is None:
            raise ValueError(f"MessageInfo of {key!r} has no size and nothing to measure it with")
        init = object.__setattr__
        init(self, "uid", uid)
        init(self, "key", key)
        init(self, "flags", flags)
        init(self, "internaldate", internaldate)
        init(self, "_size", size)
        init(self, "_sizer", sizer)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"MessageInfo is immutable: cannot set {name}")

    @property
    def size(self) -> int:
        size = self._size
        if size is None:
            assert self._sizer is not None
            size = self._sizer.size_of(self)
            object.__setattr__(self, "_size", size)
        return size

    def with_flags(self, flags: frozenset[str]) -> "MessageInfo":
        """The same message with other flags."""
        return MessageInfo(self.uid, self.key, self._size, flags, self.internaldate, self._sizer)

    def __reduce__(self) -> tuple[type, tuple]:  # copy.copy(): __init__, not __setattr__
        return MessageInfo, (self.uid, self.key, self._size, self.flags, self.internaldate, self._sizer)

    def _identity(self) -> tuple[int, str, frozenset[str], float]:
        return self.uid, self.key, self.flags, self.internaldate

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MessageInfo):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        size = "unmeasured" if self._size is None else self._size
        return (f"MessageInfo(uid={self.uid}, key={self.key!r}, size={size}, flags={sorted(self.flags)},"
                f" internaldate={self.internaldate!r})")


# ---------------------------------------------------------------- names and flags


def validate_part(part: str, what: str = "folder name") -> str:
    """Check one path component (a folder name part or a user name); returns it."""
    if not part:
        raise BadFolderName(f"{what} has an empty part")
    if part in (".", ".."):
        raise BadFolderName(f"{what} part {part!r} is not allowed (it would escape the store)")
    bad = next((c for c in part if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise BadFolderName(f"{what} {part!r} contains the control character {ord(bad):#04x}")
    if "\\" in part or "/" in part:
        raise BadFolderName(f"{what} part {part!r} contains a path separator")
    return part


def validate_user(user: str) -> str:
    """Check a user name before it becomes a directory name; returns it."""
    validate_part(user, "user name")
    if user.startswith("."):
        raise BadFolderName(f"user name {user!r} may not start with '.'")
    return user


def normalize_folder_name(name: str) -> str:
    """The canonical form of a folder name: INBOX in capitals (RFC 3501 §5.1), else as
    given. Raises :class:`BadFolderName` for anything unsafe or malformed."""
    if not isinstance(name, str) or not name:
        raise BadFolderName("folder name is empty")
    if name.startswith(DELIMITER):
        raise BadFolderName(f"folder name {name!r} is absolute (starts with {DELIMITER!r})")
    parts = [validate_part(part) for part in name.split(DELIMITER)]
    for part in parts:
        if DISK_SEPARATOR in part:
            raise BadFolderName(f"folder name part {part!r} contains '.', the Maildir++ separator on disk")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    canonical = DELIMITER.join(parts)
    if canonical != INBOX and len(_disk_name(canonical).encode()) > MAX_DIR_NAME:
        raise BadFolderName(f"folder name {name!r} is too long")
    return canonical


def _disk_name(canonical: str) -> str:
    return DISK_SEPARATOR + canonical.replace(DELIMITER, DISK_SEPARATOR)


def split_name(filename: str) -> tuple[str, str]:
    """A Maildir file name -> (key, info letters); ``info`` is "" without a ``:2,`` suffix."""
    key, sep, info = filename.partition(INFO_SEPARATOR)
    return key, (info[2:] if sep and info.startswith("2,") else "")


def is_keyword(flag: str) -> bool:
    """Whether ``flag`` can be stored as a keyword: an RFC 3501 §9 atom, not ``\\...``."""
    return bool(flag) and not_atom_char(flag) is None


class _Keywords:
    """A folder's keywords and their info letters ``a``-``z`` (``labkit-keywords``).

    Only grows: a letter, once given, keeps its keyword, and the table is written
    durably before any file name carries the letter. Change it under the folder lock;
    its dicts are replaced, never changed, so :attr:`names` may be read without."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._names: dict[int, str] = {}  # index -> keyword; letter KEYWORD_LETTERS[index]
        self._index: dict[str, int] = {}  # lower-case keyword -> index
        self._raw: bytes | None = None
        self._flags: dict[str, frozenset[str]] = {}  # info letters -> flags (all letters known)

    @property
    def names(self) -> tuple[str, ...]:
        """The keywords, in the order they were first used."""
        names = self._names
        return tuple(names[i] for i in sorted(names))

    def flags(self, letters: str) -> frozenset[str]:
        """The IMAP flags of a file's info letters; a keyword letter not in the table
        sends us to read the table again (another process may have added it)."""
        flags = self._flags.get(letters)
        if flags is not None:
            return flags
        if any(self._keyword_of(c) is None for c in letters if c in KEYWORD_LETTERS):
            self.reload()
        named = [LETTER_FLAGS.get(c) or self._keyword_of(c) for c in letters]
        flags = frozenset(f for f in named if f is not None)
        if None not in named:  # a letter still unknown may be named later: do not remember
            self._flags[letters] = flags
        return flags

    def letters(self, flags: Iterable[str], *, create: bool = False, strict: bool = True) -> set[str]:
        """The info letters of ``flags`` (case-insensitive; ``\\Recent`` and other
        non-flags are left out). With ``create``, keywords new to the folder get the
        next free letters; when none is left, :class:`TooManyKeywords` if ``strict``,
        else those keywords are left out."""
        letters, missing = set(), []
        for flag in flags:
            system = _FLAG_BY_LOWER.get(flag.lower())
            if system is not None:
                letters.add(FLAG_LETTERS[system])
            elif is_keyword(flag):
                index = self._index.get(flag.lower())
                if index is None:
                    missing.append(flag)
                else:
                    letters.add(KEYWORD_LETTERS[index])
        if missing:
            self.reload()
            letters.update(KEYWORD_LETTERS[i] for i in self._indexes(missing, create=create, strict=strict))
        return letters

    def unknown(self, letters: str) -> str:
        """The letters that are neither a system flag nor a known keyword."""
        return "".join(c for c in letters if c not in LETTER_FLAGS and self._keyword_of(c) is None)

    def reload(self) -> None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raw = b""
        if raw == self._raw:
            return
        names: dict[int, str] = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            index, _, name = line.partition(" ")
            if index.isdigit() and int(index) < len(KEYWORD_LETTERS) and is_keyword(name):
                names.setdefault(int(index), name)
        if not self._names.items() <= names.items():
            self._flags.clear()  # not just grown: a new table (the folder was made anew)
        self._set(names)
        self._raw = raw

    def _keyword_of(self, letter: str) -> str | None:
        index = KEYWORD_LETTERS.find(letter)
        return self._names.get(index) if index >= 0 else None

    def _indexes(self, keywords: list[str], *, create: bool, strict: bool) -> list[int]:
        found: list[int] = []
        names = dict(self._names)  # the table with the new keywords, published once saved
        index_of = dict(self._index)
        for keyword in keywords:
            index = index_of.get(keyword.lower())
            if index is None and create:
                index = self._free(names, keyword, strict)
                if index is not None:
                    names[index], index_of[keyword.lower()] = keyword, index
            if index is not None:
                found.append(index)
        if names != self._names:
            data = "".join(f"{i} {name}\n" for i, name in sorted(names.items())).encode("utf-8")
            write_durably(Path(self.path), data)  # before any file name carries a new letter
            self._set(names)
            self._raw = data
        return found

    @staticmethod
    def _free(names: dict[int, str], keyword: str, strict: bool) -> int | None:
        free = next((i for i in range(len(KEYWORD_LETTERS)) if i not in names), None)
        if free is None and strict:
            raise TooManyKeywords(f"no room for keyword {keyword}: this folder has {len(KEYWORD_LETTERS)}"
                                  " keywords already, the most Maildir names can carry (a-z)")
        return free

    def _set(self, names: dict[int, str]) -> None:
        index_of: dict[str, int] = {}
        for index in sorted(names):
            index_of.setdefault(names[index].lower(), index)
        self._names, self._index = names, index_of


def crlf(data: bytes) -> bytes:
    """``data`` with every line ending made CRLF (bare LF -> CRLF)."""
    if b"\n" not in data or data.count(b"\n") == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_size(data: bytes) -> int:
    """``len(crlf(data))`` without building it."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


# ---------------------------------------------------------------- locks


class _PathLock:
    """An exclusive lock on a file: a thread RLock plus ``flock`` for other processes.

    Re-entrant in the holding thread, so store methods can nest."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._rlock:
            if self._depth == 0 and fcntl is not None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing releases the flock
                    self._fd = None


_path_locks: dict[str, _PathLock] = {}
_registry_guard = threading.RLock()  # re-entrant: making a folder state takes its lock


def _shared(registry: dict[str, T], key: str, make: Callable[[str], T]) -> T:
    """This process's one ``registry[key]``, made on first use."""
    with _registry_guard:
        value = registry.get(key)
        if value is None:
            value = registry[key] = make(key)
        return value


def _lock_for(path: Path | str) -> _PathLock:
    return _shared(_path_locks, os.path.realpath(path), _PathLock)


class MailboxLock:
    """The exclusive POP3 maildrop lock (RFC 1939 §8); release it, or use ``with``."""

    _held: set[Path] = set()  # roots locked in this process (flock alone cannot say)
    _guard = threading.Lock()

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._fd: int | None = None
        with self._guard:
            if self.root in self._held:
                raise MailboxLocked(f"mailbox {self.root} is locked by another session")
            if fcntl is not None:
                fd = os.open(self.root / POP3_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise MailboxLocked(f"mailbox {self.root} is locked by another process") from None
                self._fd = fd
            self._held.add(self.root)
        self.locked = True

    def release(self) -> None:
        """Release the lock (idempotent)."""
        with self._guard:
            if not self.locked:
                return
            self.locked = False
            self._held.discard(self.root)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "MailboxLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------- the uid list


@dataclass
class _Entry:
    uid: int
    key: str
    size: int | None  # None: not measured yet
    internaldate: float


@dataclass
class _UidList:
    uidvalidity: int
    uidnext: int
    entries: dict[str, _Entry]  # by key
    recent_from: int = 1  # the lowest UID no read-write session has claimed as \Recent
    unsaved: bool = False  # differs from the file (new, damaged or repaired): must be saved

    @classmethod
    def parse(cls, data: bytes) -> "_UidList | None":
        """None if the file is damaged (the caller starts a new list)."""
        try:
            lines = data.decode("utf-8", "surrogateescape").splitlines()
            header = [int(x) for x in lines[0].split()]
            uidvalidity, uidnext = header[:2]
            recent_from = header[2] if len(header) > 2 else uidnext  # older files: none recent
            entries: dict[str, _Entry] = {}
            for line in lines[1:]:
                uid, key, size, date = line.split(" ")
                entries[key] = _Entry(int(uid), key, None if size == UNMEASURED else int(size), float(date))
        except (IndexError, ValueError):
            return None
        return cls(uidvalidity, uidnext, entries, recent_from)

    def render(self) -> bytes:
        lines = [f"{self.uidvalidity} {self.uidnext} {self.recent_from}"]
        for e in sorted(self.entries.values(), key=lambda e: e.uid):
            lines.append(f"{e.uid} {e.key} {UNMEASURED if e.size is None else e.size} {e.internaldate!r}")
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")  # any file name round-trips


# ---------------------------------------------------------------- one folder's shared state


def _gone(info: MessageInfo, folder: str) -> NoSuchMessage:
    return NoSuchMessage(f"message UID {info.uid} ({info.key}) is gone from {folder}: expunged by another session")


class _FolderState:
    """A folder as last scanned: its uid list, file names and :class:`MessageInfo`
    objects, shared by every :class:`Folder` of that path in this process. Change it only
    while holding ``lock``; reading a dict entry without it is safe (the GIL).

    :meth:`sync` skips the rescan when nothing changed. The uid list is re-parsed only
    when its bytes differ from those last read or written. Every delivery, rename (flag
    change) or deletion changes the mtime and ctime of ``cur/`` or ``new/``, so identical
    ``stat`` results mean identical names; but those times tick coarsely, so the test is
    trusted only once they are :data:`_SETTLE_NS` old. Until then the names are listed
    and compared (exact; about 10 ms for 10,000 files). Assumes a local file system
    (as ``flock`` does): NFS may cache directory attributes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cur, self.new = os.path.join(path, "cur"), os.path.join(path, "new")
        self._in_cur, self._in_new = self.cur + os.sep, self.new + os.sep  # + file name: a path
        self.lock = _lock_for(os.path.join(path, UIDLIST_LOCK))
        self.name = path  # of the folder, for messages (each Folder sets it)
        self.uidlist: _UidList | None = None
        self.listing: dict[str, str] = {}  # key -> file name in cur/
        self.infos: dict[int, MessageInfo] = {}  # by UID, ascending
        self.generation = 0  # bumped whenever listing or infos change
        self._valid = False  # listing and infos agree with the uid list (else rescan)
        self._uidlist_raw: bytes | None = None  # the file's bytes, as last read or written
        self._signature: tuple[int, ...] = ()  # stat of cur/ and new/ before the last listing
        self._settled = False  # and it was old enough to trust
        self._sizes_unsaved = False
        self._stash: tuple[str, bytes] | None = None  # what size_of() just read, for the read that follows
        self._swept_ns = -_SWEEP_NS  # when tmp/ was last swept (time.monotonic_ns)
        self.keywords = _Keywords(os.path.join(path, KEYWORDS))
        self.cache: dict[str, dict[str, object]] = {}  # Maildir key -> what readers derived from it
        self.users = 0  # live Folder objects (see _acquire)

    def forget(self) -> None:
        """Drop everything learnt (the state is no longer shared): break the cycles
        MessageInfo -> state, so the memory goes at once."""
        self.uidlist, self._uidlist_raw, self._valid = None, None, False
        self.listing, self.infos, self.cache = {}, {}, {}
        self._stash = None

    # -- catching up with the disk (lock held)

    def sync(self, store: "MailStore", *, claim: bool = False) -> list[int]:
        """Move new/ to cur/, give unseen files UIDs in delivery order, forget vanished
        ones, save the uid list if that changed it. With ``claim``, claims the messages
        no session has claimed as \\Recent yet, and returns their UIDs."""
        started = time.time_ns()
        self._stash = None  # kept for one command at most
        if time.monotonic_ns() - self._swept_ns >= _SWEEP_NS:  # as every Maildir reader should
            self._swept_ns = time.monotonic_ns()
            sweep_tmp(Path(self.path))
        cur, new = os.stat(self.cur), os.stat(self.new)
        signature = (cur.st_ino, cur.st_mtime_ns, cur.st_ctime_ns, new.st_ino, new.st_mtime_ns, new.st_ctime_ns)
        uidlist = self.load(store)
        if not (self._valid and self._settled and signature == self._signature):
            moved = self._move_new_to_cur()
            names = [f for f in os.listdir(self.cur) if not f.startswith(".")]
            if moved or not self._valid or set(names) != set(self.listing.values()):
                self._rescan(uidlist, names)
            # After our own moves the times are newer than this: the next sync lists again.
            self._signature = signature
            self._settled = max(signature[1], signature[2], signature[4], signature[5]) < started - _SETTLE_NS
        claimed = self.unclaimed() if claim else []
        if claimed:  # written with the uid list's next save: see the module docstring
            uidlist.recent_from = uidlist.uidnext
        if uidlist.unsaved or self._sizes_unsaved:
            self.save()
        return claimed

    def unclaimed(self) -> list[int]:
        """The UIDs no session has claimed as \\Recent: those at or above the uid list's
        ``recent_from`` (infos are in UID order, so read from the end)."""
        assert self.uidlist is not None
        recent = []
        for uid in reversed(self.infos):
            if uid < self.uidlist.recent_from:
                break
            recent.append(uid)
        return recent

    def load(self, store: "MailStore") -> _UidList:
        """The uid list as on disk, parsed again only if its bytes changed; then the
        listing must be rescanned (another process changed it)."""
        try:
            with open(os.path.join(self.path, UIDLIST), "rb") as f:
                raw: bytes | None = f.read()
        except FileNotFoundError:
            raw = None
        old = self.uidlist
        if old is not None and raw is not None and raw == self._uidlist_raw:
            return old
        uidlist = _UidList.parse(raw) if raw is not None else None
        if uidlist is None:  # new or damaged: UIDs start over, so UIDVALIDITY must change
            uidlist = _UidList(store._new_uidvalidity(), 1, {}, unsaved=True)
        elif old is not None and old.uidvalidity == uidlist.uidvalidity:
            if uidlist.uidnext < old.uidnext:
                uidlist.uidnext, uidlist.unsaved = old.uidnext, True  # an older file came back: never reuse a UID
            uidlist.recent_from = max(uidlist.recent_from, old.recent_from)  # claims not saved yet stay
        if old is not None:  # sizes depend on the file alone: keep those measured
            for key, entry in uidlist.entries.items():
                known = old.entries.get(key)
                if entry.size is None and known is not None and known.size is not None:
                    entry.size = known.size
        self.uidlist, self._uidlist_raw, self._valid = uidlist, raw, False
        self.keywords.reload()  # changed too, perhaps: the folder may even be a new one
        return uidlist

    def save(self) -> None:
        uidlist = self.uidlist
        assert uidlist is not None
        self._sizes_unsaved = False  # first: a size measured while writing marks it again
        data = uidlist.render()
        try:
            write_durably(Path(self.path, UIDLIST), data)
        except BaseException:  # the file may be the old one: start from it next time
            self.uidlist, self._uidlist_raw, self._valid = None, None, False
            raise
        uidlist.unsaved, self._uidlist_raw = False, data

    def _move_new_to_cur(self) -> int:
        """Move every file in new/ to cur/ with an empty info; returns how many moved."""
        moved = 0
        for filename in os.listdir(self.new):
            if filename.startswith("."):
                continue
            target = filename if INFO_SEPARATOR in filename else filename + INFO_PREFIX
            try:
                os.rename(self._in_new + filename, self._in_cur + target)
            except FileNotFoundError:  # moved by another reader (mutt) meanwhile
                continue
            moved += 1
        if moved:
            fsync_dir(self.cur)
        return moved

    def _rescan(self, uidlist: _UidList, names: list[str]) -> None:
        """Reconcile the uid list with the names in cur/; rebuild listing and infos."""
        listing = {f.partition(INFO_SEPARATOR)[0]: f for f in names}
        entries = uidlist.entries
        if entries.keys() - listing.keys():  # readdir may miss a file renamed meanwhile: confirm
            listing.update((f.partition(INFO_SEPARATOR)[0], f) for f in os.listdir(self.cur) if not f.startswith("."))
        found = []
        for key in listing.keys() - entries.keys():
            try:
                stat = os.stat(self._in_cur + listing[key])
            except FileNotFoundError:  # renamed or deleted meanwhile: the next sync sees it
                del listing[key]
                continue
            found.append((stat.st_mtime_ns, key, stat.st_mtime))
        for _, key, mtime in sorted(found):  # delivery order
            entries[key] = _Entry(uidlist.uidnext, key, None, mtime)
            uidlist.uidnext += 1
        vanished = entries.keys() - listing.keys()
        for key in vanished:
            del entries[key]
        uidlist.unsaved |= bool(found or vanished)
        old_listing, old_infos = self.listing, self.infos
        infos = {}
        for key, filename in listing.items():
            entry = entries[key]
            info = old_infos.get(entry.uid)
            if info is None or info.key != key or old_listing.get(key) != filename:
                info = self._info(entry, filename)
            infos[entry.uid] = info
        self.listing, self.infos = listing, dict(sorted(infos.items()))
        if self.cache.keys() - listing.keys():  # a file gone: what was derived from it goes too
            self.cache = {key: value for key, value in self.cache.items() if key in listing}
        self._valid = True
        self.generation += 1

    def _info(self, entry: _Entry, filename: str) -> MessageInfo:
        flags = self.keywords.flags(split_name(filename)[1])
        return MessageInfo(entry.uid, entry.key, entry.size, flags, entry.internaldate, self)

    # -- our own changes (lock held): keep the cache exact, or give it up

    def _knows(self, info: MessageInfo) -> bool:
        mine = self.infos.get(info.uid)
        return self._valid and mine is not None and mine.key == info.key and info.key in self.listing

    def renamed(self, info: MessageInfo, old: str, new: str, updated: MessageInfo) -> None:
        if self._knows(info) and self.listing[info.key] == old:
            self.listing[info.key], self.infos[info.uid] = new, updated
            self.generation += 1
        else:
            self._valid = False

    def added(self, entry: _Entry, filename: str) -> None:
        if self._valid:  # the highest UID yet: infos stay in order
            self.listing[entry.key], self.infos[entry.uid] = filename, self._info(entry, filename)
            self.generation += 1

    def removed(self, infos: Iterable[MessageInfo]) -> None:
        for info in infos:
            self.cache.pop(info.key, None)
            if self._knows(info):
                del self.listing[info.key], self.infos[info.uid]
            else:
                self._valid = False
        self.generation += 1

    # -- files and sizes (no lock needed)

    def on_file(self, key: str, action: Callable[[str], T]) -> T | None:
        """``action(file name)`` for the message ``key`` in cur/, looking for the file again
        if someone renamed it meanwhile (mutt changing flags); None if it is gone."""
        filename = self.listing.get(key)
        for _ in range(_FILE_ATTEMPTS):
            if filename is None:
                filename = self.find(key)
                if filename is None:
                    return None
            try:
                return action(filename)
            except FileNotFoundError:
                filename = None
        return None

    def find(self, key: str) -> str | None:
        """The current file name in cur/ of the message ``key``, or None."""
        for filename in os.listdir(self.cur):
            if split_name(filename)[0] == key:
                return filename
        return None

    def path_of(self, filename: str) -> str:
        return self._in_cur + filename

    def read_raw(self, key: str) -> bytes | None:
        """The message file's bytes, or None if it is gone."""
        return self.on_file(key, self._read_file)

    def read(self, key: str) -> bytes | None:
        """The message with CRLF line endings, or None if it is gone. Notes its size
        if unknown. Sizes are a cache, so no lock: a size lost to a concurrent re-parse
        of the uid list is just measured again."""
        stash = self._stash
        if stash is not None and stash[0] == key:
            self._stash = None
            return stash[1]
        data = self.read_raw(key)
        if data is None:
            return None
        entry = self._entry(key)
        if entry is not None and entry.size == len(data):  # size = length + bare LFs: none here
            return data
        data = crlf(data)
        if entry is not None and entry.size is None:
            entry.size, self._sizes_unsaved = len(data), True  # saved at the next sync
        return data

    def _read_file(self, filename: str) -> bytes:
        # os.read: half the system calls of open().read() (no fstat, no buffer objects)
        fd = os.open(self._in_cur + filename, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, _READ_CHUNK):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def size_of(self, info: MessageInfo) -> int:
        """The message's size, measured now (reading its file) if nobody did yet."""
        entry = self._entry(info.key)
        if entry is not None and entry.size is not None:
            return entry.size
        data = self.read(info.key)
        if data is None:
            raise _gone(info, self.name)
        self._stash = (info.key, data)  # FETCH ENVELOPE RFC822.SIZE: the size comes first, then the read
        return len(data)

    def _entry(self, key: str) -> _Entry | None:
        uidlist = self.uidlist
        return uidlist.entries.get(key) if uidlist is not None else None


_states: dict[str, _FolderState] = {}  # by real path: the states in use, and those kept unused
_unused: collections.OrderedDict[str, float] = collections.OrderedDict()  # path -> when it became unused
_evictor: threading.Condition | None = None  # wakes the thread that drops unused states in time


def _acquire(path: str) -> _FolderState:
    """The shared state of the folder at ``path`` (real path), counted as in use."""
    with _registry_guard:
        state = _states.get(path)
        if state is None:
            state = _states[path] = _FolderState(path)
        state.users += 1
        _unused.pop(path, None)
        return state


def _release(path: str, state: _FolderState) -> None:
    """A Folder of ``state`` went (garbage): when it was the last, the state is kept
    unused for a while (see the module docstring)."""
    global _evictor
    with _registry_guard:
        state.users -= 1
        if state.users or _states.get(path) is not state:
            return
        _unused[path] = time.monotonic()
        _evict(time.monotonic())
        if _evictor is None:
            _evictor = threading.Condition(_registry_guard)
            threading.Thread(target=_evict_in_time, name="labkit-store-evictor", daemon=True).start()
        else:
            _evictor.notify()


_trim_due: float | None = None  # when to hand freed memory back (see _give_back_memory)
_TRIM_AFTER = 1000  # messages' worth of state dropped: worth handing the memory back
_TRIM_DELAY = 1.0  # seconds after: the sessions that used the state are gone by then too


def _evict(now: float) -> None:
    """Drop unused states kept too long, oldest first, then while they hold too many
    messages (``_registry_guard`` held)."""
    global _trim_due
    held = sum(len(state.infos) for state in map(_states.get, _unused) if state is not None)
    while _unused:
        path, since = next(iter(_unused.items()))
        if now - since < KEEP_UNUSED and held <= KEEP_UNUSED_MESSAGES:
            break
        del _unused[path]
        state = _states.pop(path, None)
        if state is not None:  # nobody can reach it now but a stray MessageInfo.size: no lock needed
            held -= len(state.infos)
            if len(state.infos) >= _TRIM_AFTER:
                _trim_due = now + _TRIM_DELAY
            state.forget()


def _evict_in_time() -> None:
    """The evictor thread: asleep (no CPU) until an unused state is due, or the memory
    of dropped ones is to be handed back."""
    global _trim_due
    assert _evictor is not None
    while True:
        with _registry_guard:
            now = time.monotonic()
            _evict(now)
            give_back = _trim_due is not None and _trim_due <= now
            if give_back:
                _trim_due = None
            else:
                due = [t for t in (_trim_due, *(since + KEEP_UNUSED for since in _unused.values())) if t is not None]
                _evictor.wait(max(0.0, min(due) - now) + 0.01 if due else None)
        if give_back:  # without the guard: sessions open folders meanwhile
            _give_back_memory()


_malloc_trim = getattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim", None) if os.name == "posix" else None


def _give_back_memory() -> None:
    """Hand the memory of dropped states back to the system. First Python's free lists
    (of tuples, lists, dicts, ...): thousands of objects freed last, while serving, each
    keeping a 1 MiB pymalloc arena of that time from being unmapped (a world that served
    two 50k mailboxes kept 72-77 MB instead of 54-58). Only a full collection empties
    them; with every object frozen first it looks at none, so it takes microseconds where
    one that walked the objects of the folders still open would hold the GIL, and so the
    whole world, for tens of milliseconds (73 ms for a million objects). (Objects someone
    else froze stay frozen: then the free lists are left.) Then glibc's arenas, which
    keep what every thread freed until asked (malloc_trim; elsewhere a no-op)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        try:
            gc.collect()
        finally:
            gc.unfreeze()
    if _malloc_trim is not None:
        _malloc_trim(0)


class Folder:
    """One Maildir folder with persistent UIDs. Not thread-safe itself: one session
    owns a Folder object; the files on disk are shared safely through the locks."""

    def __init__(self, store: "MailStore", name: str, path: Path, *, claim_recent: bool = False) -> None:
        """``claim_recent``: this view is a read-write IMAP session's, the one session in
        which the messages it is first to see are \\Recent (RFC 3501 §2.3.2)."""
        self.store, self.name, self.path = store, name, path
        self.claim_recent = claim_recent
        self.uidvalidity = 0
        self.uidnext = 1
        self.recent: frozenset[int] = frozenset()  # UIDs \Recent in this view (see claim_recent)
        self._view: dict[int, MessageInfo] = {}
        self._generation = -1  # of the shared state when the view was copied from it
        real = os.path.realpath(path)
        self._state = _acquire(real)
        self._state.name = name
        weakref.finalize(self, _release, real, self._state).atexit = False

    def __repr__(self) -> str:
        return f"<Folder {self.name!r} {len(self._view)} messages>"

    # -- reading

    def refresh(self) -> list[MessageInfo]:
        """Scan the disk: move ``new/`` to ``cur/``, give unseen files UIDs in delivery
        order, forget vanished ones. Returns all messages sorted by UID."""
        self._check_exists()
        state = self._state
        try:
            with state.lock.hold():
                recent = state.sync(self.store, claim=self.claim_recent)
                uidlist = state.uidlist
                assert uidlist is not None
                self.uidvalidity, self.uidnext = uidlist.uidvalidity, uidlist.uidnext
                changed = self._generation != state.generation
                if changed:
                    self._view, self._generation = dict(state.infos), state.generation
                    if not self.claim_recent:  # a view that only looks: recent as first seen
                        recent = state.unclaimed()
        except FileNotFoundError:  # the folder itself went away under us
            self._check_exists()
            raise
        if changed or recent:
            self.recent = frozenset(self.recent.union(recent).intersection(self._view))
        return list(self._view.values())

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever this process changes the folder (a delivery,
        another session's flags or expunge), from the thread that changed it: an IMAP
        session's IDLE (RFC 2177) hands it the adapter's ``wake``. Returns the function
        that stops watching."""
        return watch(self.path, lambda _path: callback())

    @property
    def generation(self) -> int:
        """Changes whenever :meth:`refresh` finds the folder changed."""
        return self._generation

    def messages(self) -> list[MessageInfo]:
        """The messages as of the last :meth:`refresh`, sorted by UID."""
        return list(self._view.values())

    def measure(self) -> list[MessageInfo]:
        """Measure every message's size now, so a snapshot (POP3's) can tell sizes even of
        messages deleted later; any already gone leave the view. Returns :meth:`messages`."""
        for info in list(self._view.values()):
            try:
                info.size
            except NoSuchMessage:
                del self._view[info.uid]
                self._generation = -1  # the next refresh copies the shared view again
        self.recent = self.recent.intersection(self._view)
        return self.messages()

    def get(self, uid: int) -> MessageInfo:
        """The :class:`MessageInfo` of ``uid`` in the current view (NoSuchMessage)."""
        try:
            return self._view[uid]
        except KeyError:
            raise NoSuchMessage(f"no message with UID {uid} in {self.name}") from None

    def cache(self, info: MessageInfo) -> dict[str, object]:
        """What readers derived from this message's bytes (ENVELOPE, a header's text…),
        shared by every session of this folder in the process; kept as long as the file
        (and the folder's state): a Maildir file never changes its content."""
        cache = self._state.cache
        found = cache.get(info.key)
        if found is None:
            found = cache[info.key] = {}
        return found

    def read(self, uid: int) -> bytes:
        """The message bytes with CRLF line endings (``len() == size``)."""
        return self._read(uid, self._state.read)

    def read_raw(self, uid: int) -> bytes:
        """The message file's bytes exactly as stored."""
        return self._read(uid, self._state.read_raw)

    def _read(self, uid: int, reader: Callable[[str], bytes | None]) -> bytes:
        info = self.get(uid)
        data = reader(info.key)
        if data is None:
            raise _gone(info, self.name)
        return data

    # -- changing

    def set_flags(self, uid: int, flags: Iterable[str]) -> MessageInfo:
        """Replace the message's flags and keywords (IMAP ``STORE FLAGS``); returns the
        new info. ``\\Recent`` is ignored; letters nobody knows are kept on the file."""
        return self.change_flags(uid, add=flags, replace=True)

    def change_flags(self, uid: int, add: Iterable[str] = (), remove: Iterable[str] = (), *,
                     replace: bool = False) -> MessageInfo:
        """Add and remove flags (IMAP ``STORE +FLAGS/-FLAGS``): applied to the flags in
        the file name as it is now, under the folder lock, so changes other sessions
        made meanwhile are kept. One rename, ``key:2,<letters>``. Returns the new info
        (with those other changes too). :class:`TooManyKeywords` if a new keyword does
        not fit; nothing is changed then."""
        info = self.get(uid)
        state = self._state
        with state.lock.hold():
            added = state.keywords.letters(add, create=True)
            removed = state.keywords.letters(remove)

            def rename(old: str) -> tuple[str, str]:
                letters = split_name(old)[1]
                kept = set(state.keywords.unknown(letters) if replace else letters) - removed
                new = f"{info.key}{INFO_PREFIX}{''.join(sorted(kept | added))}"
                if new != old:
                    os.rename(state.path_of(old), state.path_of(new))
                else:
                    os.stat(state.path_of(old))  # still there?
                return old, new

            names = state.on_file(info.key, rename)  # mutt may rename the file under us
            if names is None:
                raise _gone(info, self.name)
            updated = info.with_flags(state.keywords.flags(split_name(names[1])[1]))
            state.renamed(info, *names, updated)
        self._view[uid] = updated
        notify(self.path)
        return updated

    @property
    def keywords(self) -> tuple[str, ...]:
        """The keywords this folder has letters for (its ``labkit-keywords``)."""
        return self._state.keywords.names

    def keyword_room(self) -> bool:
        """Whether a new keyword would still get a letter."""
        return len(self.keywords) < len(KEYWORD_LETTERS)

    def append(self, data: bytes, flags: Iterable[str] = (), internaldate: float | None = None) -> int:
        """Store a message durably (file and directory fsynced); returns its new UID.
        Keywords that find no free letter are left out (RFC 3501 §6.3.11: flags SHOULD
        be set).

        The view is not refreshed: call :meth:`refresh` to see the message."""
        return self._add([(data, flags, internaldate)])[0]

    def _add(self, messages: list[tuple[bytes, Iterable[str], float | None]]) -> list[int]:
        """Store ``(data, flags, internaldate)`` messages as one batch, in the qmail order:
        all written to tmp/ and flushed together before the folder lock is taken (other
        sessions' refreshes need it), then under it given UIDs and renamed into cur/,
        cur/ flushed once, the uid list written once. Returns their UIDs."""
        self._check_exists()
        state = self._state
        written = []
        for data, flags, internaldate in messages:
            key = unique_name()
            date = time.time() if internaldate is None else float(internaldate)
            tmp = os.path.join(state.path, "tmp", key)
            write_temp(tmp, data)
            os.utime(tmp, (date, date))
            written.append((key, tmp, flags, date, crlf_size(data)))
        flush([tmp for _, tmp, _, _, _ in written])
        with state.lock.hold():
            uidlist = state.load(self.store)
            added, renames = [], []
            for key, tmp, flags, date, size in written:
                letters = "".join(sorted(state.keywords.letters(flags, create=True, strict=False)))
                filename = f"{key}{INFO_PREFIX}{letters}"
                entry = uidlist.entries[key] = _Entry(uidlist.uidnext, key, size, date)
                uidlist.uidnext += 1
                added.append((entry, filename))
                renames.append((tmp, state.path_of(filename)))
            install([Staged(renames)])
            state.save()
            for entry, filename in added:
                state.added(entry, filename)
        notify(self.path)
        return [entry.uid for entry, _ in added]

    def expunge(self, uids: Iterable[int]) -> None:
        """Delete those messages' files for good; unknown or vanished UIDs are skipped."""
        doomed = [self._view[uid] for uid in set(uids) if uid in self._view]
        if not doomed:
            return
        state = self._state

        def unlink(filename: str) -> str:
            os.unlink(state.path_of(filename))
            return filename

        with state.lock.hold():
            for info in doomed:
                state.on_file(info.key, unlink)  # None: gone already
            fsync_dir(state.cur)
            uidlist = state.load(self.store)
            keys = {info.key for info in doomed}
            uidlist.entries = {k: e for k, e in uidlist.entries.items() if k not in keys}
            state.save()
            state.removed(doomed)
        for info in doomed:
            del self._view[info.uid]
        self.recent = self.recent.difference(info.uid for info in doomed)
        notify(self.path)

    def copy_to(self, uids: Iterable[int], target: "Folder") -> list[int]:
        """Copy messages (bytes, flags, internal date) to ``target``; returns the new
        UIDs in the order given (RFC 4315 COPYUID). All or none: if one of them is gone
        (:class:`NoSuchMessage`), the copies made already are removed again. Written in
        batches of :data:`COPY_BATCH` messages or bytes, each made durable at once."""
        infos = [self.get(uid) for uid in uids]
        copied: list[int] = []
        batch: list[tuple[bytes, Iterable[str], float | None]] = []
        size = 0
        try:
            for info in infos:
                data = self.read_raw(info.uid)
                batch.append((data, info.flags, info.internaldate))
                size += len(data)
                if len(batch) >= COPY_BATCH or size >= COPY_BATCH_BYTES:
                    copied += target._add(batch)
                    batch, size = [], 0
            if batch:  # the rest
                copied += target._add(batch)
        except NoSuchMessage:
            if copied:
                target.refresh()
                target.expunge(copied)
            raise
        return copied

    # -- internals

    def _check_exists(self) -> None:
        if not os.path.isdir(self._state.cur):
            raise NoSuchFolder(f"folder {self.name} does not exist (deleted or renamed?)")


# ---------------------------------------------------------------- the store


class MailStore:
    """One user's mailboxes: the Maildir at ``root`` is INBOX (created if missing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        create_maildir(self.root)
        self._lock = _lock_for(self.root / STORE_LOCK)

    @classmethod
    def for_user(cls, base: Path, user: str) -> "MailStore":
        """The store of ``user`` under ``base`` (``base/user``), the name validated first."""
        return cls(Path(base) / validate_user(user))

    def __repr__(self) -> str:
        return f"<MailStore {self.root}>"

    def path_of(self, name: str) -> Path:
        """The directory of folder ``name`` (validated; it need not exist)."""
        canonical = normalize_folder_name(name)
        return self.root if canonical == INBOX else self.root / _disk_name(canonical)

    def exists(self, name: str) -> bool:
        """Whether folder ``name`` exists."""
        return (self.path_of(name) / "cur").is_dir()

    def folders(self) -> list[str]:
        """All folder names: "INBOX" first, then the others sorted."""
        names = []
        for entry in os.listdir(self.root):
            if not entry.startswith(DISK_SEPARATOR) or not (self.root / entry / "cur").is_dir():
                continue
            name = entry[1:].replace(DISK_SEPARATOR, DELIMITER)
            try:
                if normalize_folder_name(name) == name:
                    names.append(name)
            except BadFolderName:
                continue  # not ours (e.g. a name another program wrote): skip
        return [INBOX] + sorted(names)

    def folder(self, name: str, *, claim_recent: bool = False) -> Folder:
        """A new, refreshed :class:`Folder` for ``name`` ("inbox" in any case is INBOX);
        ``claim_recent`` for a read-write IMAP session (see :class:`Folder`)."""
        canonical = normalize_folder_name(name)
        path = self.path_of(canonical)
        if not (path / "cur").is_dir():
            raise NoSuchFolder(f"no folder named {canonical}")
        folder = Folder(self, canonical, path, claim_recent=claim_recent)
        folder.refresh()
        return folder

    def create(self, name: str) -> Folder:
        """Create folder ``name`` and any missing parents (RFC 3501 §6.3.3: a trailing
        delimiter is ignored)."""
        canonical = normalize_folder_name(name[:-1] if name.endswith(DELIMITER) else name)
        with self._lock.hold():
            if self.exists(canonical):
                raise FolderExists(f"folder {canonical} already exists")
            parts = canonical.split(DELIMITER)
            for i in range(1, len(parts) + 1):
                self._make(DELIMITER.join(parts[:i]))
            fsync_dir(self.root)
        return self.folder(canonical)

    def delete(self, name: str) -> None:
        """Delete folder ``name`` and its messages (not its children; not INBOX)."""
        canonical = normalize_folder_name(name)
        if canonical == INBOX:
            raise StoreError("INBOX cannot be deleted (RFC 3501 §6.3.4)")
        with self._lock.hold():
            if not self.exists(canonical):
                raise NoSuchFolder(f"no folder named {canonical}")
            shutil.rmtree(self.path_of(canonical))
            fsync_dir(self.root)

    def rename(self, old: str, new: str) -> None:
        """Rename ``old`` (and its children) to ``new``, creating parents of ``new``.

        Renaming INBOX moves its messages to ``new`` and leaves INBOX empty (RFC 3501 §6.3.5)."""
        old_c, new_c = normalize_folder_name(old), normalize_folder_name(new)
        with self._lock.hold():
            if not self.exists(old_c):
                raise NoSuchFolder(f"no folder named {old_c}")
            if self.exists(new_c):
                raise FolderExists(f"folder {new_c} already exists")
            if old_c == INBOX:
                inbox = self.folder(INBOX)
                target = self.create(new_c)
                inbox.copy_to([m.uid for m in inbox.messages()], target)
                inbox.expunge([m.uid for m in inbox.messages()])
                return
            prefix = _disk_name(old_c) + DISK_SEPARATOR
            children = [e for e in os.listdir(self.root) if e.startswith(prefix)]
            os.rename(self.path_of(old_c), self.path_of(new_c))
            for child in children:
                os.rename(self.root / child, self.root / (_disk_name(new_c) + child[len(_disk_name(old_c)):]))
            parts = new_c.split(DELIMITER)
            for i in range(1, len(parts)):
                self._make(DELIMITER.join(parts[:i]))
            fsync_dir(self.root)

    # -- subscriptions (Maildir++ / Courier "subscriptions" file)

    @property
    def subscriptions(self) -> set[str]:
        """The subscribed folder names, as persisted."""
        try:
            text = (self.root / SUBSCRIPTIONS).read_text("utf-8")
        except FileNotFoundError:
            return set()
        return {line for line in text.splitlines() if line}

    def subscribe(self, name: str) -> None:
        """Add ``name`` to the subscriptions (it need not exist, RFC 3501 §6.3.6)."""
        self._set_subscribed(normalize_folder_name(name), True)

    def unsubscribe(self, name: str) -> None:
        """Remove ``name`` from the subscriptions (no error if it was not there)."""
        self._set_subscribed(normalize_folder_name(name), False)

    def _set_subscribed(self, name: str, on: bool) -> None:
        with self._lock.hold():
            names = self.subscriptions
            names = names | {name} if on else names - {name}
            write_durably(self.root / SUBSCRIPTIONS, "".join(f"{n}\n" for n in sorted(names)).encode())

    # -- locking

    def lock(self) -> MailboxLock:
        """Take the exclusive maildrop lock (RFC 1939 §8) across threads and processes;
        raises :class:`MailboxLocked` if another session holds it."""
        return MailboxLock(self.root)

    # -- internals

    def _make(self, canonical: str) -> None:
        path = self.path_of(canonical)
        if not (path / "cur").is_dir():
            create_maildir(path)
            (path / MAILDIRFOLDER).touch()

    def _new_uidvalidity(self) -> int:
        """A UIDVALIDITY never used before in this store (RFC 3501 §2.3.1.1): the time,
        and always above the last one handed out, recorded in ``labkit-uidvalidity``."""
        with _lock_for(self.root / UIDVALIDITY_LOCK).hold():  # a leaf lock: takes no other
            path = self.root / UIDVALIDITY_FILE
            try:
                last = int(path.read_text().strip() or 0)
            except (FileNotFoundError, ValueError):
                last = 0
            value = max(int(time.time()), last + 1) % 2**32 or 1
            write_durably(path, f"{value}\n".encode())
            return value
