"""The MTA's durable queue: a message is on disk before the MTA answers 250.

Each message a host accepts is one file ``ID`` in its spool directory, its one durable
copy, for local recipients as for remote ones (as Postfix's queue file): a JSON line
with the envelope (and the message's size), then the message bytes. It is written
under its final name at once (a spare file given that name when one is ready) and made
durable by :mod:`labkit.commit` with one fsync before the 250, as Postfix does with its
queue file (the journal commits the name with it), so the 250 "queued as ID" is a
promise kept across a crash. A delivered message's file is not deleted but recycled as
the next one's (:meth:`labkit.commit.Spares.recycle`), so a crash before a flush may
leave a file cut short, or one still holding another message's bytes, whole or in part:
neither was acknowledged, and :meth:`Spool.load` tells both by the envelope (the
message's id, size and CRC-32) and removes them (the client, which got no 250, sends the
message again). Delivery (:mod:`.delivery`) takes it from there after the
250. The envelope names, for each local recipient, the file its Maildir copy will
have, so a delivery repeated after a crash finds the copy it made already. Delivery
progress (recipients left, attempts, next retry, last error) goes to a small
``ID.state`` file, rewritten atomically after each attempt. A restart reads both.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..commit import SPARES, Staged, write_new, write_placed


_states = itertools.count(1)  # temporary names of state files: two writes of one never share one


@dataclass
class QueueEntry:
    """One message in the queue and what is left to do for it."""

    queue_id: str
    mail_from: str  # "" for a bounce (null reverse-path, RFC 5321 §4.5.5)
    recipients: list[str]  # still to deliver
    arrived: float = field(default_factory=time.time)
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: dict[str, str] = field(default_factory=dict)  # recipient -> last reply/reason
    local: dict[str, str] = field(default_factory=dict)  # recipient -> mailbox, when routed Local
    names: dict[str, str] = field(default_factory=dict)  # recipient -> the file name of its Maildir copy
    failed: list[dict] = field(default_factory=list)  # failures whose bounce could not be made yet


def _whole(path: Path) -> dict | None:
    """The envelope of a spool file, or None if a crash came before its one flush (so
    before its 250): an envelope line that does not parse, another message's id (a
    recycled file not yet written over), or message bytes that are not the size and
    CRC-32 it announces (cut short, or new bytes mixed with old ones). (A file from
    before ids and checksums were written was never recycled; one from before sizes were
    written was renamed into place whole.)"""
    with open(path, "rb") as f:
        line = f.readline()
        try:
            header = json.loads(line)
        except ValueError:
            return None
        if not line.endswith(b"\n") or not isinstance(header, dict):
            return None
        if header.get("id", path.name) != path.name:
            return None
        size = header.get("size")
        if size is not None and os.fstat(f.fileno()).st_size != len(line) + size:
            return None
        if "crc" in header and zlib.crc32(f.read()) != header["crc"]:
            return None
    return header


def _scramble(x: int) -> int:
    """A bijection on 32-bit numbers (multiply by odd constants, xor-shift), so
    consecutive counters give ids that look random, as real queue ids do."""
    x = (x * 0x9E3779B1) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    return x ^ (x >> 13)


class Spool:
    """The queue directory of one mail host."""

    def __init__(self, directory: Path, seed: str | None = None) -> None:
        """``seed``: start the queue ids from it, so every run gives the same ids (a
        notebook graded by running it again sees the ids its student saw)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4]) if seed else secrets.randbits(32)
        self._lock = threading.Lock()
        # What an earlier run left: all that load() reads (what this run writes, it knows),
        # and the only messages that can hold an id this run's counter reaches.
        self._left = os.listdir(self.directory)
        self._earlier = {name for name in self._left if not name.startswith(".")}

    def new_queue_id(self) -> str:
        """Eight hex digits, as the lecture's ``FFDC3387``. A counter scrambled by a
        bijection: never the same twice in 2**32 messages of one run, and never the id
        of a message still in the spool (from an earlier run)."""
        with self._lock:
            for _ in range(1000):  # bounded; a clash needs a spool file with that very id
                self._counter = (self._counter + 1) & 0xFFFFFFFF
                qid = f"{_scramble(self._counter):08X}"
                if qid not in self._earlier:
                    return qid
        raise RuntimeError("could not find a free queue id")

    def stage(self, entry: QueueEntry, message: bytes) -> Staged:
        """Write a new message under its final name, for the committer to flush once
        (a file *placed*, see :mod:`labkit.commit`); ``size`` tells a whole one."""
        header = json.dumps({"id": entry.queue_id, "mail_from": entry.mail_from, "recipients": entry.recipients,
                             "arrived": entry.arrived, "local": entry.local, "names": entry.names,
                             "size": len(message), "crc": zlib.crc32(message)})
        path = write_placed(os.fspath(self.directory), entry.queue_id, [header.encode() + b"\n", message])
        return Staged(placed=[path])

    def stage_state(self, entry: QueueEntry) -> Staged:
        """Write delivery progress (after an attempt) under a temporary name, for the
        group committer: many deferrals at once cost one flush."""
        directory = os.fspath(self.directory)
        tmp = write_new(directory, f".{entry.queue_id}.state.{next(_states)}.tmp", json.dumps(asdict(entry)).encode())
        return Staged([(tmp, os.path.join(directory, f"{entry.queue_id}.state"))])

    def message(self, queue_id: str) -> bytes:
        with open(self.directory / queue_id, "rb") as f:
            f.readline()
            return f.read()

    def remove(self, queue_id: str, *, state: bool = True, size: int | None = None) -> None:
        """Forget a message: everything delivered or bounced. State goes first, so a crash
        in between leaves the message with its original envelope, never a state file alone.
        ``state=False``: no progress was ever saved for it (stored at its first attempt),
        so there is no state file to look for; ``size``: its message's, if known.

        Such a file, written by this run and of known size, may be recycled as the next
        message's (its envelope names its id and CRC-32, which tell it apart if a crash
        leaves it half written over). Any other is deleted: after a power loss, a
        message's state file could outlive the recycling of its file, and a restart trusts
        a message with a state file without reading it; a file from an earlier run may
        have no id to check."""
        path = os.path.join(os.fspath(self.directory), queue_id)  # plain str: the hot path after every 250
        recycle = not state and size is not None and queue_id not in self._earlier
        for name in (path + ".state", path) if state else (path,):
            try:
                if recycle:
                    SPARES.recycle(name, size)  # the next message's file
                else:
                    os.unlink(name)
            except FileNotFoundError:
                pass

    def load(self) -> list[QueueEntry]:
        """Everything an earlier run left in the queue, oldest first (what this run has
        queued since it began, it delivers itself, even while this runs). Leftover
        temporary and spare files, and message files a crash cut short or left holding
        other bytes, are from messages never acknowledged with 250: they are removed."""
        entries = []
        left, self._left = self._left, []
        for name in left:
            path = self.directory / name
            if name.startswith("."):
                path.unlink(missing_ok=True)
                continue
            if name.endswith(".state"):
                continue
            state = self.directory / f"{name}.state"
            if state.exists():  # written after the 250: the message file is whole
                entries.append(QueueEntry(**json.loads(state.read_text())))
                continue
            try:
                header = _whole(path)
            except FileNotFoundError:
                continue
            if header is None:
                path.unlink(missing_ok=True)
                continue
            entries.append(QueueEntry(name, header["mail_from"], header["recipients"], header["arrived"],
                                      local=header.get("local", {}), names=header.get("names", {})))
        return sorted(entries, key=lambda e: e.arrived)

    def __len__(self) -> int:
        return sum(1 for p in self.directory.iterdir() if not p.name.startswith(".") and not p.name.endswith(".state"))
