"""Durable Maildir delivery, and change notices for readers in the same process.

A Maildir (``cur/``, ``new/``, ``tmp/``) is written the qmail way: the message goes to
``tmp/`` under a unique name, is fsynced, then renamed into ``new/``, and ``new/`` itself
is fsynced so the rename survives a crash. (stdlib ``mailbox.Maildir.add`` fsyncs the
file but not the directory.) Readers in the same process (IMAP IDLE, tests) can
:func:`watch` a Maildir to hear of new mail at once, without polling.

A writer killed between the write and the rename leaves its file in ``tmp/`` for good;
:func:`sweep_tmp` removes such files as Maildir readers do, and :func:`sweep` at a
world's start also removes those of this host's writers that are no longer alive.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from .commit import SPARES, Staged, run_now, write_new, write_temp
from .commit import fsync_path as fsync_dir  # noqa: F401 (the store uses it by this name)

_counter = itertools.count(1)
_watchers: dict[Path, list[Callable[[Path], None]]] = {}
_watch_lock = threading.Lock()


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync the dir."""
    tmp = os.fspath(path.with_name(f".{path.name}.{os.getpid()}.{next(_counter)}.tmp"))
    write_temp(tmp, data)
    run_now(lambda: (None, Staged([(tmp, os.fspath(path))])))


def create(maildir: Path) -> Path:
    """Make ``maildir`` a Maildir (idempotent)."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    return maildir


# maildir(5): "/" and ":" in the host name are written as octal escapes.
_HOST = socket.gethostname().replace("/", r"\057").replace(":", r"\072")


def unique_name() -> str:
    """A Maildir file name unique to this host, process and moment (maildir(5))."""
    now = time.time()
    sec, usec = int(now), int((now % 1) * 1_000_000)
    # zero-padded, so names sort in delivery order within a second
    return f"{sec}.M{usec:06d}P{os.getpid()}Q{next(_counter):06d}.{_HOST}"


STALE_TMP = 36 * 3600  # seconds: maildir(5), "not accessed in 36 hours" (qmail; Dovecot alike)
_WRITER = re.compile(r"^\d+\.M\d+P(\d+)Q\d+\.(.+)$")  # unique_name(): the writer's pid and host


def _writer_gone(name: str) -> bool:
    """Whether ``name`` is a :func:`unique_name` of this host whose process has died
    (a pid taken again since only keeps the file: the safe side)."""
    match = _WRITER.match(name)
    if match is None or match.group(2) != _HOST:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def sweep_tmp(maildir: Path, *, dead_writers: bool = False) -> list[str]:
    """Remove the stale files in ``maildir/tmp``: those untouched for 36 hours (what
    every Maildir reader should do, maildir(5)) and, with ``dead_writers``, this host's
    whose writing process is gone. Spares (``.spare.*``) are the committer's. Returns
    the names removed."""
    tmp = os.path.join(os.fspath(maildir), "tmp")
    try:
        names = os.listdir(tmp)
    except FileNotFoundError:
        return []
    cutoff = time.time() - STALE_TMP
    removed = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(tmp, name)
        try:
            st = os.stat(path)
            if max(st.st_atime, st.st_mtime) < cutoff or (dead_writers and _writer_gone(name)):
                os.unlink(path)
                removed.append(name)
        except FileNotFoundError:  # renamed into new/ meanwhile: not stale at all
            continue
    return removed


def sweep(maildir: Path) -> list[str]:
    """At a start: clear ``tmp/`` of the Maildir and of each Maildir++ folder in it (stale
    files, dead writers' files, spares); returns the names removed."""
    root = os.fspath(maildir)
    folders = [root] + [os.path.join(root, n) for n in os.listdir(root) if n.startswith(".")]
    removed = []
    for folder in folders:
        if os.path.isdir(os.path.join(folder, "tmp")):
            removed += sweep_tmp(Path(folder), dead_writers=True)
            SPARES.sweep(os.path.join(folder, "tmp"))
    return removed


def stage(maildir: Path, message: bytes) -> tuple[str, Staged]:
    """Write ``message`` to ``maildir/tmp`` and say where it goes once durable (for
    :mod:`labkit.commit`, which batches the flushes); returns (unique name, Staged).
    (Plain ``os`` calls on ``str`` paths: this is the MTA's hot path.)"""
    root = os.fspath(maildir)
    name = unique_name()
    tmpdir = os.path.join(root, "tmp")
    try:
        tmp = write_new(tmpdir, name, message)
    except FileNotFoundError:  # a new Maildir: make it, once
        create(Path(root))
        tmp = write_new(tmpdir, name, message)
    return name, Staged([(tmp, os.path.join(root, "new", name))], [lambda: notify(maildir)])


def deliver(maildir: Path, message: bytes) -> str:
    """Store ``message`` in ``maildir/new`` durably; returns the file's unique name.

    When this returns, the message survives a crash: file and directory are fsynced.
    """
    return run_now(lambda: stage(maildir, message))


@functools.lru_cache(maxsize=4096)
def _key(path: str) -> Path:
    """One name per Maildir, however it was spelt (resolved once, then cached)."""
    return Path(path).resolve()


def watch(maildir: Path, callback: Callable[[Path], None]) -> Callable[[], None]:
    """Call ``callback(maildir)`` whenever this process delivers to ``maildir``.

    The callback runs in the delivering thread: keep it short (e.g. hand over to an
    event loop with ``call_soon_threadsafe``). Returns the function that stops watching.
    """
    key = _key(os.fspath(maildir))
    with _watch_lock:
        _watchers.setdefault(key, []).append(callback)

    def unwatch() -> None:
        with _watch_lock:
            callbacks = _watchers.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)

    return unwatch


def notify(maildir: Path) -> None:
    """Tell this process's watchers of ``maildir`` that it changed."""
    if not _watchers:
        return
    key = _key(os.fspath(maildir))
    with _watch_lock:
        callbacks = list(_watchers.get(key, ()))
    for callback in callbacks:
        callback(key)
