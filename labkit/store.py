"""One user's mail on disk: a Maildir (INBOX) with Maildir++ folders and IMAP identities.

Shared by the POP3 and IMAP servers; the MTA delivers into INBOX's ``new/`` with
:func:`labkit.maildir.deliver`, and mutt can open the same Maildir side by side.

Layout (Maildir++, as Courier and Dovecot write it)::

    root/                  INBOX: cur/ new/ tmp/
    root/.Sent/            folder "Sent"
    root/.Work.Projects/   folder "Work/Projects" ("/" on the IMAP side, "." on disk)
    root/subscriptions     subscribed folder names, one a line
    */labkit-uidlist       "uidvalidity uidnext", then "uid key size internaldate" lines

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
  RFC 3501 §2.3.4), computed once per message and cached in the uidlist.
- Flags are the Maildir info suffix ``:2,<letters>`` (maildir(5)), so mutt agrees.
  Keywords are not stored; unknown letters already on a file are kept.
- Folder names are plain ``str`` on this API and UTF-8 on disk (the IMAP layer does
  the modified UTF-7 of RFC 3501 §5.1.3). A ``.`` inside a name part is refused: it is
  the on-disk hierarchy separator.
- Each :meth:`MailStore.folder` call returns a new, already refreshed :class:`Folder`
  whose view changes only when its owner calls :meth:`Folder.refresh` (a POP3 session
  keeps its login snapshot; an IMAP session refreshes at NOOP/IDLE).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from .maildir import create as create_maildir
from .maildir import fsync_dir, notify, unique_name, write_durably

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

MAX_DIR_NAME = 255  # octets in one file name on common file systems
_SCAN_ATTEMPTS = 5  # re-lists when another process renames a file while we scan


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


@dataclass(frozen=True)
class MessageInfo:
    """What the store knows about one message."""

    uid: int
    key: str  # Maildir unique name, without the info suffix
    size: int  # octets of read(uid): CRLF line endings
    flags: frozenset[str]  # IMAP system flags, e.g. "\\Seen"
    internaldate: float  # epoch seconds


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


def flags_to_letters(flags: Iterable[str]) -> str:
    """Maildir info letters for IMAP flags (case-insensitive), sorted ASCII; others ignored."""
    letters = {FLAG_LETTERS[_FLAG_BY_LOWER[f.lower()]] for f in flags if f.lower() in _FLAG_BY_LOWER}
    return "".join(sorted(letters))


def split_name(filename: str) -> tuple[str, str]:
    """A Maildir file name -> (key, info letters); ``info`` is "" without a ``:2,`` suffix."""
    key, sep, info = filename.partition(INFO_SEPARATOR)
    return key, (info[2:] if sep and info.startswith("2,") else "")


def letters_to_flags(letters: str) -> frozenset[str]:
    """IMAP flags for Maildir info letters; unknown letters are ignored."""
    return frozenset(LETTER_FLAGS[c] for c in letters if c in LETTER_FLAGS)


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

    def __init__(self, path: Path) -> None:
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


_path_locks: dict[Path, _PathLock] = {}
_path_locks_guard = threading.Lock()


def _lock_for(path: Path) -> _PathLock:
    key = path.resolve()
    with _path_locks_guard:
        lock = _path_locks.get(key)
        if lock is None:
            lock = _path_locks[key] = _PathLock(key)
        return lock


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
    size: int
    internaldate: float


@dataclass
class _UidList:
    uidvalidity: int
    uidnext: int
    entries: dict[str, _Entry]  # by key
    fresh: bool = False  # just started (file missing or damaged): must be saved

    @classmethod
    def parse(cls, text: str) -> "_UidList | None":
        """None if the file is missing or damaged (the caller starts a new list)."""
        lines = text.splitlines()
        try:
            uidvalidity, uidnext = (int(x) for x in lines[0].split())
            entries: dict[str, _Entry] = {}
            for line in lines[1:]:
                uid, key, size, date = line.split(" ")
                entries[key] = _Entry(int(uid), key, int(size), float(date))
        except (IndexError, ValueError):
            return None
        return cls(uidvalidity, uidnext, entries)

    def render(self) -> bytes:
        lines = [f"{self.uidvalidity} {self.uidnext}"]
        for e in sorted(self.entries.values(), key=lambda e: e.uid):
            lines.append(f"{e.uid} {e.key} {e.size} {e.internaldate!r}")
        return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- folders


class Folder:
    """One Maildir folder with persistent UIDs. Not thread-safe itself: one session
    owns a Folder object; the files on disk are shared safely through the locks."""

    def __init__(self, store: "MailStore", name: str, path: Path) -> None:
        self.store, self.name, self.path = store, name, path
        self.uidvalidity = 0
        self.uidnext = 1
        self.recent: frozenset[int] = frozenset()  # UIDs this object moved from new/ (IMAP \Recent)
        self._view: dict[int, MessageInfo] = {}
        self._files: dict[int, str] = {}  # uid -> file name in cur/
        self._lock = _lock_for(path / UIDLIST_LOCK)

    def __repr__(self) -> str:
        return f"<Folder {self.name!r} {len(self._view)} messages>"

    # -- reading

    def refresh(self) -> list[MessageInfo]:
        """Scan the disk: move ``new/`` to ``cur/``, give unseen files UIDs in delivery
        order, forget vanished ones. Returns all messages sorted by UID."""
        self._check_exists()
        with self._lock.hold():
            try:
                moved = self._move_new_to_cur()
                listing, uidlist, changed = self._scan()
            except FileNotFoundError:  # the folder itself went away under us
                self._check_exists()
                raise
            if changed:
                self._save(uidlist)
        self.uidvalidity, self.uidnext = uidlist.uidvalidity, uidlist.uidnext
        view: dict[int, MessageInfo] = {}
        files: dict[int, str] = {}
        for key, filename in listing.items():
            e = uidlist.entries[key]
            view[e.uid] = MessageInfo(e.uid, key, e.size, letters_to_flags(split_name(filename)[1]), e.internaldate)
            files[e.uid] = filename
        self._view = dict(sorted(view.items()))
        self._files = files
        self.recent = self.recent.union(uidlist.entries[k].uid for k in moved if k in listing)
        self.recent = self.recent.intersection(self._view)
        return list(self._view.values())

    def messages(self) -> list[MessageInfo]:
        """The messages as of the last :meth:`refresh`, sorted by UID."""
        return list(self._view.values())

    def get(self, uid: int) -> MessageInfo:
        """The :class:`MessageInfo` of ``uid`` in the current view (NoSuchMessage)."""
        try:
            return self._view[uid]
        except KeyError:
            raise NoSuchMessage(f"no message with UID {uid} in {self.name}") from None

    def read(self, uid: int) -> bytes:
        """The message bytes with CRLF line endings (``len() == size``)."""
        return crlf(self.read_raw(uid))

    def read_raw(self, uid: int) -> bytes:
        """The message file's bytes exactly as stored."""
        info = self.get(uid)
        for _ in range(_SCAN_ATTEMPTS):
            try:
                return (self.path / "cur" / self._files[uid]).read_bytes()
            except FileNotFoundError:
                filename = self._find(info.key)  # renamed (flags changed) by someone else?
                if filename is None:
                    break
                self._files[uid] = filename
        raise self._gone(info)

    # -- changing

    def set_flags(self, uid: int, flags: Iterable[str]) -> MessageInfo:
        """Replace the message's flags (renames to ``key:2,<letters>``); returns the new info.

        Keywords and ``\\Recent`` are ignored; unknown letters on the file are kept."""
        info = self.get(uid)
        wanted = flags_to_letters(flags)
        with self._lock.hold():
            for _ in range(_SCAN_ATTEMPTS):  # mutt may rename the file under us: look again
                old = self._files[uid] if (self.path / "cur" / self._files[uid]).exists() else self._find(info.key)
                if old is None:
                    break
                kept = "".join(c for c in split_name(old)[1] if c not in LETTER_FLAGS)
                new = f"{info.key}{INFO_PREFIX}{''.join(sorted(wanted + kept))}"
                try:
                    if new != old:
                        os.rename(self.path / "cur" / old, self.path / "cur" / new)
                    break
                except FileNotFoundError:
                    self._files[uid] = new  # a name that no longer exists: forces _find
            else:
                old = None
            if old is None:
                raise self._gone(info)
        self._files[uid] = new
        self._view[uid] = replace(info, flags=letters_to_flags(wanted))
        notify(self.path)
        return self._view[uid]

    def append(self, data: bytes, flags: Iterable[str] = (), internaldate: float | None = None) -> int:
        """Store a message durably (file and directory fsynced); returns its new UID.

        The view is not refreshed: call :meth:`refresh` to see the message."""
        self._check_exists()
        key = unique_name()
        date = time.time() if internaldate is None else float(internaldate)
        tmp = self.path / "tmp" / key
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.utime(tmp, (date, date))
        with self._lock.hold():
            uidlist = self._load()
            uid = uidlist.uidnext
            uidlist.uidnext += 1
            uidlist.entries[key] = _Entry(uid, key, crlf_size(data), date)
            os.rename(tmp, self.path / "cur" / f"{key}{INFO_PREFIX}{flags_to_letters(flags)}")
            fsync_dir(self.path / "cur")
            self._save(uidlist)
        notify(self.path)
        return uid

    def expunge(self, uids: Iterable[int]) -> None:
        """Delete those messages' files for good; unknown or vanished UIDs are skipped."""
        wanted = {uid for uid in uids if uid in self._view}
        if not wanted:
            return
        with self._lock.hold():
            for uid in wanted:
                name = self._files[uid]
                try:
                    os.unlink(self.path / "cur" / name)
                except FileNotFoundError:
                    name = self._find(self._view[uid].key)
                    if name is not None:
                        os.unlink(self.path / "cur" / name)
            fsync_dir(self.path / "cur")
            uidlist = self._load()
            keys = {self._view[uid].key for uid in wanted}
            uidlist.entries = {k: e for k, e in uidlist.entries.items() if k not in keys}
            self._save(uidlist)
        for uid in wanted:
            del self._view[uid], self._files[uid]
        self.recent = self.recent.difference(wanted)
        notify(self.path)

    def copy_to(self, uids: Iterable[int], target: "Folder") -> list[int]:
        """Copy messages (bytes, flags, internal date) to ``target``; returns the new
        UIDs in the order given (RFC 4315 COPYUID)."""
        infos = [self.get(uid) for uid in uids]
        return [target.append(self.read_raw(i.uid), i.flags, i.internaldate) for i in infos]

    # -- internals

    def _check_exists(self) -> None:
        if not (self.path / "cur").is_dir():
            raise NoSuchFolder(f"folder {self.name} does not exist (deleted or renamed?)")

    def _gone(self, info: MessageInfo) -> NoSuchMessage:
        return NoSuchMessage(f"message UID {info.uid} ({info.key}) is gone from {self.name}: expunged by another session")

    def _find(self, key: str) -> str | None:
        """The current file name in cur/ of the message ``key``, or None."""
        for filename in os.listdir(self.path / "cur"):
            if split_name(filename)[0] == key:
                return filename
        return None

    def _move_new_to_cur(self) -> list[str]:
        """Move every file in new/ to cur/ with an empty info; returns their keys."""
        moved = []
        for filename in os.listdir(self.path / "new"):
            if filename.startswith("."):
                continue
            key = split_name(filename)[0]
            target = filename if INFO_SEPARATOR in filename else filename + INFO_PREFIX
            try:
                os.rename(self.path / "new" / filename, self.path / "cur" / target)
            except FileNotFoundError:  # moved by another reader (mutt) meanwhile
                continue
            moved.append(key)
        if moved:
            fsync_dir(self.path / "cur")
        return moved

    def _scan(self) -> tuple[dict[str, str], _UidList, bool]:
        """List cur/ and reconcile with the uid list: (key -> file name, list, changed)."""
        uidlist = self._load()
        changed = uidlist.fresh
        for _ in range(_SCAN_ATTEMPTS):
            listing = {
                split_name(f)[0]: f for f in os.listdir(self.path / "cur") if not f.startswith(".")
            }
            new: list[tuple[int, str, _Entry]] = []
            raced = False
            for key in listing.keys() - uidlist.entries.keys():
                try:
                    path = self.path / "cur" / listing[key]
                    stat = path.stat()
                    size = crlf_size(path.read_bytes())
                except FileNotFoundError:  # renamed or deleted meanwhile: list again
                    raced = True
                    break
                new.append((stat.st_mtime_ns, key, _Entry(0, key, size, stat.st_mtime)))
            if not raced:
                break
        for _, key, entry in sorted(new):  # delivery order
            entry.uid, uidlist.uidnext = uidlist.uidnext, uidlist.uidnext + 1
            uidlist.entries[key] = entry
            changed = True
        vanished = uidlist.entries.keys() - listing.keys()
        for key in vanished:
            del uidlist.entries[key]
        return listing, uidlist, changed or bool(vanished)

    def _load(self) -> _UidList:
        try:
            uidlist = _UidList.parse((self.path / UIDLIST).read_text())
        except FileNotFoundError:
            uidlist = None
        if uidlist is None:  # new or damaged: UIDs start over, so UIDVALIDITY must change
            uidlist = _UidList(self.store._new_uidvalidity(), 1, {}, fresh=True)
        return uidlist

    def _save(self, uidlist: _UidList) -> None:
        write_durably(self.path / UIDLIST, uidlist.render())


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

    def folder(self, name: str) -> Folder:
        """A new, refreshed :class:`Folder` for ``name`` ("inbox" in any case is INBOX)."""
        canonical = normalize_folder_name(name)
        path = self.path_of(canonical)
        if not (path / "cur").is_dir():
            raise NoSuchFolder(f"no folder named {canonical}")
        folder = Folder(self, canonical, path)
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
