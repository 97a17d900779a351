"""Durable Maildir delivery, and change notices for readers in the same process.

A Maildir (``cur/``, ``new/``, ``tmp/``) is written the qmail way: the message goes to
``tmp/`` under a unique name, is fsynced, then renamed into ``new/``, and ``new/`` itself
is fsynced so the rename survives a crash. (stdlib ``mailbox.Maildir.add`` fsyncs the
file but not the directory.) Readers in the same process (IMAP IDLE, tests) can
:func:`watch` a Maildir to hear of new mail at once, without polling.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable
from .boundary import fenced

from .commit import Staged, run_now, write_new, write_temp
from .commit import fsync_path as fsync_dir  # noqa: F401 (the store uses it by this name)

_counter = itertools.count(1)
_watchers: dict[Path, list[Callable[[Path], None]]] = {}
_watch_lock = threading.Lock()


@fenced("deliver")
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


@fenced("deliver")
def unique_name() -> str:
    """A Maildir file name unique to this host, process and moment (maildir(5))."""
    now = time.time()
    sec, usec = int(now), int((now % 1) * 1_000_000)
    # zero-padded, so names sort in delivery order within a second
    return f"{sec}.M{usec:06d}P{os.getpid()}Q{next(_counter):06d}.{_HOST}"


@fenced("deliver")
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


@fenced("deliver")
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
