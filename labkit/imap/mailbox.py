"""The selected mailbox as one IMAP client sees it: message sequence numbers, flags, \\Recent.

The store's :class:`~labkit.store.Folder` follows the disk; this view follows the
*client*. A message expunged by another session stays in the view (with its sequence
number) until the view may tell the client (RFC 3501 §7.4.1: never during FETCH, STORE
or SEARCH); new messages are announced with EXISTS/RECENT; flag changes made elsewhere
with an untagged FETCH.
"""

from __future__ import annotations

from labkit.store import SYSTEM_FLAGS, Folder, MailStore, MessageInfo

from .parser import ParseError, SeqRange, resolve_sequence_set
from .wire import flag_list

RECENT = "\\Recent"


class SelectedMailbox:
    """Sequence numbers <-> UIDs and the flags the client was last told."""

    @classmethod
    def open(cls, store: MailStore, name: str, *, readonly: bool) -> "SelectedMailbox":
        """SELECT/EXAMINE ``name``: a read-write session claims the \\Recent messages."""
        return cls(store.folder(name, claim_recent=not readonly), readonly=readonly)

    def __init__(self, folder: Folder, *, readonly: bool) -> None:
        self.folder, self.readonly = folder, readonly
        messages = folder.messages()
        self.uids: list[int] = [m.uid for m in messages]  # uids[msn - 1]
        self.infos: dict[int, MessageInfo] = {m.uid: m for m in messages}
        self.recent: set[int] = set(folder.recent)
        self._msns: dict[int, int] | None = None
        self._vanished = False  # expunged elsewhere, not yet told
        self.keywords: tuple[str, ...] = ()  # the keywords the client was told of (FLAGS)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def exists(self) -> int:
        return len(self.uids)

    def msn(self, uid: int) -> int:
        if self._msns is None:
            self._msns = {uid: i for i, uid in enumerate(self.uids, 1)}
        return self._msns[uid]

    def flags(self, uid: int) -> frozenset[str]:
        """The flags to report, \\Recent included (RFC 3501 §2.3.2)."""
        flags = self.infos[uid].flags
        return flags | {RECENT} if uid in self.recent else flags

    def update(self, info: MessageInfo) -> None:
        """Record flags this session changed (they were reported already)."""
        if info.uid in self.infos:
            self.infos[info.uid] = info

    def flag_responses(self) -> list[bytes]:
        """FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6, §7.1): the stored flags, this
        mailbox's keywords and, while a new keyword still gets a letter, ``\\*``."""
        self.keywords = self.folder.keywords
        defined = flag_list(SYSTEM_FLAGS.union(self.keywords))  # the flags the store has letters for
        if self.readonly:
            permanent = b"()"
        else:
            permanent = defined[:-1] + b" \\*)" if self.folder.keyword_room() else defined
        return [b"* FLAGS " + defined, b"* OK [PERMANENTFLAGS " + permanent + b"] Flags that are kept"]

    def keyword_news(self) -> list[bytes]:
        """FLAGS again when the mailbox has keywords the client has not been told of: it
        must hear of a keyword before seeing one in a FETCH (RFC 3501 §7.2.6)."""
        return self.flag_responses() if self.folder.keywords != self.keywords else []

    def first_unseen(self) -> int | None:
        return next((i for i, uid in enumerate(self.uids, 1) if "\\Seen" not in self.infos[uid].flags), None)

    # -- sequence sets -------------------------------------------------------------

    def by_sequence(self, ranges: list[SeqRange]) -> list[int]:
        """UIDs for message sequence numbers; a number past the end is an error."""
        wanted: set[int] = set()
        for low, high in resolve_sequence_set(ranges, self.exists):
            if low < 1 or high > self.exists:
                raise ParseError(
                    f"message number {high if high > self.exists else low} is out of range:"
                    f" the mailbox has {self.exists} messages"
                )
            wanted.update(range(low, high + 1))
        return [self.uids[msn - 1] for msn in sorted(wanted)]

    def by_uid(self, ranges: list[SeqRange]) -> list[int]:
        """UIDs in the view within a UID set (absent UIDs are simply skipped)."""
        if not self.uids:
            return []
        spans = resolve_sequence_set(ranges, self.uids[-1])
        return [uid for uid in self.uids if any(low <= uid <= high for low, high in spans)]

    # -- telling the client what changed -------------------------------------------

    def sync(self, *, expunge: bool) -> list[bytes]:
        """Re-read the folder; the untagged responses that bring the client up to date.

        With ``expunge`` false, vanished messages keep their numbers for now. Comparing
        the view is skipped when the refresh found nothing new (the usual case: the
        store's refresh of an unchanged folder is cheap)."""
        seen = self.folder.generation
        messages = self.folder.refresh()
        if self.folder.generation == seen and not (expunge and self._vanished):
            return []
        current = {m.uid: m for m in messages}
        self._vanished = any(uid not in current for uid in self.uids)
        out: list[bytes] = []
        if expunge:
            out += self.remove([uid for uid in self.uids if uid not in current])
        out += self.keyword_news()
        for uid in self.uids:
            info = current.get(uid)
            if info is not None and info.flags != self.infos[uid].flags:
                self.infos[uid] = info
                out.append(b"* %d FETCH (FLAGS %s)" % (self.msn(uid), flag_list(self.flags(uid))))
        last = self.uids[-1] if self.uids else 0
        new = [uid for uid in current if uid > last]
        if new:
            self.uids.extend(new)
            self.infos.update((uid, current[uid]) for uid in new)
            self._msns = None
        added_recent = self.folder.recent.difference(self.recent)
        self.recent.update(added_recent)
        if new or added_recent:
            out += [b"* %d EXISTS" % self.exists, b"* %d RECENT" % len(self.recent)]
        return out

    def remove(self, uids: list[int]) -> list[bytes]:
        """Drop expunged messages; ``* n EXPUNGE`` for each, highest number first so each
        number is right when the client reads it (RFC 3501 §7.4.1)."""
        gone = set(uids)
        if not gone:
            return []
        out = [b"* %d EXPUNGE" % msn for msn in sorted((self.msn(uid) for uid in gone), reverse=True)]
        self.uids = [uid for uid in self.uids if uid not in gone]
        for uid in gone:
            del self.infos[uid]
        self.recent -= gone
        self._msns = None
        return out
