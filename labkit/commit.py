"""Group commit: make files durable in batches, as databases do with their logs.

Two kinds of new file. A file *placed* under its final name at once (the MTA's spool
file) costs one flush: it is created with ``O_EXCL`` (or a spare is linked to that
name), written and fsynced, and a reader tells a complete one from a half-written one
by its own contents (the spool's envelope gives the message's size). One fsync
suffices for its name too, as Postfix relies on for its queue file: on a journaling
file system (ext4, XFS, btrfs) the fsync of a newly created file commits the journal
transaction that holds its directory entry, and so does that of a spare given its name
by a link, which changed the inode in the same transaction (ext4 without a journal
fsyncs the parent of a newly created file itself). A file *renamed* into place (a
Maildir copy, state rewritten atomically) keeps qmail's order and costs two: its data
(fsync the file) before the rename, and the rename (fsync the directory) after.

Under load, many sessions wait for their flushes at the same moment; a writer thread
takes every write that is waiting and makes the whole batch durable with one ``syncfs``
before the renames and one after, so ten messages cost little more than one. A committer
may have two writers (pipelined group commit, as databases do): a write that comes while
one batch is flushing starts the next batch at once rather than waiting for that flush to
end, as Postfix's smtpd processes each fsync their own queue file, side by side.

Creating a file (a new inode) can itself be the slowest step: on NFS home directories
and some virtual disks it takes a millisecond, twenty times longer than writing into a
file that exists (on this project's virtual disk, 0.4 ms against 15 us). So in idle
moments a writer thread makes a few empty *spare* files in the directories written to,
as databases preallocate log segments: :func:`write_new` fills one of those when it can,
and :func:`write_placed` gives one its final name. Under sustained load there are no
idle moments; there a file that is done with (a delivered message's spool file) is
*recycled* as a spare of its directory (:meth:`Spares.recycle`: a rename, where deleting
it and creating the next would each cost an inode, about 0.15 ms apiece here, in the
directory's lock), so a busy spool makes no new files at all.

A batch of one uses plain ``fsync`` calls, as does any platform without ``syncfs`` (it
is Linux's).

    committer = GroupCommit()
    future = committer.submit(stage)   # stage() writes files, returns (result, Staged)
    result = future.result()           # now durable
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import itertools
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_BATCH = 256


@dataclass
class Staged:
    """What a stage wrote: temp files to rename into place, files placed under their
    final names (one flush each, see above), and what to do after."""

    renames: list[tuple[str, str]] = field(default_factory=list)  # (temp path, final path)
    after: list[Callable[[], None]] = field(default_factory=list)  # e.g. tell Maildir watchers
    placed: list[str] = field(default_factory=list)  # final paths, written with O_EXCL

    def extend(self, other: "Staged") -> None:
        self.renames += other.renames
        self.after += other.after
        self.placed += other.placed


Stage = Callable[[], tuple[Any, Staged]]
Waiter = Future | asyncio.Future  # what GroupCommit.submit and asubmit hand out


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


Data = bytes | list[bytes]
"""What a file is to hold: bytes, or pieces written one after the other (no join)."""


def _write_all(fd: int, data: Data) -> None:
    """Write ``data`` to ``fd`` and close it."""
    try:
        _write(fd, data)
    finally:
        os.close(fd)


def _write(fd: int, data: Data) -> None:
    pieces = [memoryview(data)] if isinstance(data, bytes) else [memoryview(p) for p in data if p]
    while pieces:
        written = os.writev(fd, pieces) if len(pieces) > 1 else os.write(fd, pieces[0])
        while pieces and written >= len(pieces[0]):  # a short write: go on where it stopped
            written -= len(pieces.pop(0))
        if pieces:
            pieces[0] = pieces[0][written:]


def write_temp(path: str, data: Data) -> None:
    """Create ``path`` (which must not exist) holding ``data``; not yet durable. Also
    how a file is *placed* under its final name (:attr:`Staged.placed`)."""
    _write_all(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600), data)


class Spares:
    """Files ready for new contents, per directory that :func:`write_new` or
    :func:`write_placed` used lately (one pool per process): a few empty ones made by
    whichever committer is idle, and files recycled (:meth:`recycle`), old bytes and all.
    Their names start with ``.spare.``; spares never used are deleted when a committer
    closes (the next idle committer makes new ones), and :meth:`sweep` removes a dead
    process's."""

    PER_DIRECTORY = 2
    RECYCLED = 256  # per directory: spares from files recycled, enough for a flood's batches
    RECYCLED_SIZE = 64 * 1024  # bytes: a larger file is deleted (a spare keeps its old bytes
    # on disk until written over, so the pool holds at most 16 MiB per directory; and a
    # large message's write costs far more than the inode recycling saves)
    MAX_DIRECTORIES = 32

    def __init__(self) -> None:
        self._ready: collections.OrderedDict[str, list[str]] = collections.OrderedDict()  # most recent last
        self._lock = threading.Lock()
        self._names = itertools.count(1)

    def take(self, directory: str) -> str | None:
        """A spare in ``directory`` (now the caller's), or None; notes the directory
        as one to keep spares in."""
        with self._lock:
            ready = self._ready.get(directory)
            if ready is None:
                self._ready[directory] = ready = []
                while len(self._ready) > self.MAX_DIRECTORIES:
                    _, forgotten = self._ready.popitem(last=False)
                    self._unlink(forgotten)
            else:
                self._ready.move_to_end(directory)
            return ready.pop() if ready else None

    def give_back(self, directory: str, spare: str, *, limit: int = PER_DIRECTORY) -> None:
        """Add a spare to ``directory``'s ready ones (one taken but not used, or just
        made), or delete it if that directory has ``limit`` or is no longer kept."""
        with self._lock:
            ready = self._ready.get(directory)
            if ready is None or len(ready) >= limit:
                self._unlink([spare])
            else:
                ready.append(spare)

    def recycle(self, path: str, size: int) -> None:
        """Done with the file ``path`` of ``size`` bytes: make it a spare of its directory
        if that one is kept and has room, and the file is small (its old bytes stay until
        :func:`write_placed` writes over them), else delete it."""
        directory = os.path.dirname(path)
        with self._lock:
            ready = self._ready.get(directory)
            room = ready is not None and len(ready) < self.RECYCLED and size <= self.RECYCLED_SIZE
        if not room:
            os.unlink(path)
            return
        spare = self._new_name(directory)
        os.rename(path, spare)
        self.give_back(directory, spare, limit=self.RECYCLED)

    def _new_name(self, directory: str) -> str:
        return os.path.join(directory, f".spare.{time.time_ns()}.{os.getpid()}.{next(self._names)}")

    def make_one(self) -> bool:
        """Create one spare where one is missing (most recently used directory first);
        False when every directory has its spares (or none could be made)."""
        with self._lock:
            directory = next((d for d in reversed(self._ready) if len(self._ready[d]) < self.PER_DIRECTORY), None)
            if directory is None:
                return False
            path = self._new_name(directory)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600))
        except OSError:  # the directory is gone (a mailbox removed): stop keeping spares there
            with self._lock:
                self._ready.pop(directory, None)
            return True
        self.give_back(directory, path)
        return True

    def discard(self) -> None:
        """Delete every spare not taken."""
        with self._lock:
            for ready in self._ready.values():
                self._unlink(ready)
            self._ready.clear()

    def sweep(self, directory: str | os.PathLike) -> None:
        """Delete the spares a killed process left in ``directory`` (this process's
        ready ones stay)."""
        with self._lock:
            held = {path for ready in self._ready.values() for path in ready}
        try:
            names = [n for n in os.listdir(directory) if n.startswith(".spare.")]
        except FileNotFoundError:
            return
        self._unlink([p for p in (os.path.join(directory, n) for n in names) if p not in held])

    @staticmethod
    def _unlink(paths: list[str]) -> None:
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        paths.clear()


SPARES = Spares()


def write_new(directory: str, name: str, data: Data) -> str:
    """Write ``data`` to a new temporary file in ``directory``, not yet durable, and
    return its path: a spare if one is ready, else ``directory/name``."""
    spare = SPARES.take(directory)
    if spare is not None:
        try:
            _write_all(os.open(spare, os.O_WRONLY | os.O_TRUNC | _CLOEXEC), data)
            return spare
        except FileNotFoundError:  # someone swept the directory: make the file after all
            pass
    path = os.path.join(directory, name)
    write_temp(path, data)
    return path


def write_placed(directory: str, name: str, data: Data) -> str:
    """Write ``data`` to the new file ``directory/name`` (a file *placed*, see above),
    not yet durable, and return its path. A spare, if one is ready, is given the name
    first (a link, never over an existing file, then the spare's name unlinked): a new
    name costs microseconds where a new inode may cost a millisecond. The spare may be a
    recycled file: ``data`` is written over its old bytes, and what is left of them cut
    off. A crash before the flush may leave the spare's old bytes under the new name,
    whole or mixed with new ones, or nothing: its reader must tell these from a file it
    wrote whole (the spool's envelope names the message's id and checksum)."""
    path = os.path.join(directory, name)
    spare = SPARES.take(directory)
    if spare is not None:
        try:
            os.link(spare, path)
        except FileExistsError:
            SPARES.give_back(directory, spare)
            raise
        except OSError:  # swept meanwhile, or a file system without hard links: create the file
            Spares._unlink([spare])  # (if it is still there)
        else:
            os.unlink(spare)
            fd = os.open(path, os.O_WRONLY | _CLOEXEC)
            try:
                _write(fd, data)
                size = len(data) if isinstance(data, bytes) else sum(map(len, data))
                if os.fstat(fd).st_size > size:  # a recycled file that was longer
                    os.ftruncate(fd, size)
            finally:
                os.close(fd)
            return path
    write_temp(path, data)
    return path


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file, or a directory so entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some platforms cannot fsync a directory
        if os.path.isfile(path):
            raise
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        return libc.syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError, TypeError):
        return None


_syncfs = _load_syncfs()


def _sync_all(paths: list[str]) -> None:
    """Make ``paths`` durable: one syncfs per file system for a batch, else fsync each."""
    if len(paths) > 1 and _syncfs is not None:
        seen: set[int] = set()
        for path in paths:
            device = os.stat(path).st_dev
            if device in seen:
                continue
            seen.add(device)
            fd = os.open(path, os.O_RDONLY)
            try:
                if _syncfs(fd) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs failed", path)
            finally:
                os.close(fd)
        return
    for path in paths:
        fsync_path(path)


def flush(temps: list[str]) -> None:
    """Make the data of temp files durable: the first step of the qmail order. Nobody
    else sees a file in ``tmp/``, so a caller that must put files in place under a lock
    flushes them before taking it, then :func:`install` under it."""
    _sync_all(temps)


def install(staged: list[Staged]) -> None:
    """Rename files whose data :func:`flush` made durable into place, make the renames
    durable (their directories fsynced), then run the ``after`` callbacks."""
    renames = [pair for s in staged for pair in s.renames]
    for tmp, final in renames:
        os.rename(tmp, final)
    _sync_all(sorted({os.path.dirname(final) for _, final in renames}))  # then the names
    for s in staged:
        for after in s.after:
            after()


def commit(staged: list[Staged]) -> None:
    """Make staged writes durable and put them in place: placed files and the data of
    temp files in one flush, then the renames (the qmail order, in batch)."""
    flush([tmp for s in staged for tmp, _ in s.renames] + [path for s in staged for path in s.placed])
    install(staged)


def run_now(stage: Stage) -> Any:
    """Stage and commit at once in this thread (no batching)."""
    result, staged = stage()
    commit([staged])
    return result


FLOOD_GAP = 0.005  # seconds: jobs closer together than this come in a flood (see GroupCommit)


class GroupCommit:
    """Writer threads (``writers``, see above); :meth:`submit` a stage, get a Future that
    resolves once its files are durable and in place (or with the OSError that stopped
    them). ``make_spares``: whether the threads make spare files when idle (one that
    others wait on may leave that to another committer, so no job waits for a spare made).

    ``gather`` (seconds): for a committer nobody waits on to answer a client (the
    deliverer, after the 250). While jobs come in a flood (the last batch held more than
    one, or this job came within :data:`FLOOD_GAP` of the one before), a batch begins no
    sooner than ``gather`` after the one before it began, so that more jobs share its
    flushes; a job after a quiet moment, or in a trickle, begins at once."""

    def __init__(self, name: str = "labkit-commit", *, make_spares: bool = True, writers: int = 1,
                 gather: float = 0.0) -> None:
        self._make_spares = make_spares
        self._gather = gather
        self._jobs: queue.SimpleQueue[tuple[Stage, Waiter] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=name, daemon=True) for _ in range(writers)]
        for thread in self._threads:
            thread.start()

    def submit(self, stage: Stage) -> Future:
        future: Future = Future()
        self._jobs.put((stage, future))
        return future

    def asubmit(self, stage: Stage) -> asyncio.Future:
        """:meth:`submit` from a coroutine: a Future of the running event loop. The waiters
        of one batch on one loop are woken with a single call into it, where a wrapped
        :meth:`submit` Future makes one per message (a wake-up of the loop each)."""
        future = asyncio.get_running_loop().create_future()
        self._jobs.put((stage, future))
        return future

    def close(self) -> None:
        for _ in self._threads:  # one end for each writer (a writer that meets it mid-batch puts it back)
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        SPARES.discard()

    def _run(self) -> None:
        began = came = -self._gather  # when this thread's last batch began, and its first job came
        size = 0  # how many jobs it held
        while True:
            # Idle: make spare files, one at a time, so a new job waits for one at most.
            while self._make_spares and self._jobs.empty() and SPARES.make_one():
                pass
            job = self._jobs.get()
            if job is None:
                return
            if self._gather:
                now = time.monotonic()
                if now < began + self._gather and (size > 1 or now < came + FLOOD_GAP):
                    time.sleep(began + self._gather - now)  # a flood: let more join this batch
                came, began = now, time.monotonic()
            batch = [job]
            while len(batch) < MAX_BATCH:  # everything that queued up meanwhile joins in
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                batch.append(more)
            size = len(batch)
            self._commit_batch(batch)

    @staticmethod
    def _commit_batch(batch: list[tuple[Stage, Waiter]]) -> None:
        done: list[tuple[Waiter, Any, Staged]] = []
        told = _Answers()
        for stage, future in batch:
            if not _claim(future):  # its waiter went (a world stopping): skip it
                continue
            try:
                result, staged = stage()
            except BaseException as error:  # noqa: BLE001 - handed to the waiter
                told.add(future, error=error)
                continue
            done.append((future, result, staged))
        try:
            commit([staged for _, _, staged in done])
        except OSError as error:
            for future, _, staged in done:
                for tmp in [tmp for tmp, _ in staged.renames] + staged.placed:  # never acknowledged
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
                told.add(future, error=error)
        else:
            for future, result, _ in done:
                told.add(future, result)
        told.send()


def _claim(future: Waiter) -> bool:
    """Whether the write for ``future`` is still wanted (its waiter has not given up);
    a :class:`concurrent.futures.Future` is marked running, so it can no longer be cancelled."""
    if isinstance(future, Future):
        return future.set_running_or_notify_cancel()
    return not future.cancelled()  # read from another thread: checked again on its loop


class _Answers:
    """The outcomes of one batch, told to their waiters: a thread's Future at once, an
    event loop's in one call into that loop for all of them."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, BaseException | None]]] = {}

    def add(self, future: Waiter, result: Any = None, *, error: BaseException | None = None) -> None:
        if isinstance(future, Future):
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        else:
            self._by_loop.setdefault(future.get_loop(), []).append((future, result, error))

    def send(self) -> None:
        for loop, answers in self._by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, answers)
            except RuntimeError:  # that loop is closed: no one is left to tell
                pass


def _settle(answers: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    """On the waiters' loop: resolve each future still waited for."""
    for future, result, error in answers:
        if future.done():  # cancelled meanwhile
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
