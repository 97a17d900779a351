"""Durable Maildir delivery, and change notices for readers in the same process.

A Maildir (``cur/``, ``new/``, ``tmp/``) is written the qmail way: the message goes to
``tmp/`` under a unique name, is fsynced, then renamed into ``new/``, and ``new/`` itself
is fsynced so the rename survives a crash. (stdlib ``mailbox.Maildir.add`` fsyncs the
file but not the directory.) Readers in the same process (IMAP IDLE, tests) can
:func:`watch` a Maildir to hear of new mail at once, without polling.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

_counter = itertools.count(1)
_watchers: dict[Path, list[Callable[[Path], None]]] = {}
_watch_lock = threading.Lock()


def fsync_dir(path: Path) -> None:
    """fsync a directory so entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:  # some platforms (Windows) cannot fsync a directory
        pass
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync the dir."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_counter)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def create(maildir: Path) -> Path:
    """Make ``maildir`` a Maildir (idempotent)."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    return maildir


def unique_name() -> str:
    """A Maildir file name unique to this host, process and moment (maildir(5))."""
    now = time.time()
    sec, usec = int(now), int((now % 1) * 1_000_000)
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}.{host}"


def deliver(maildir: Path, message: bytes) -> str:
    """Store ``message`` in ``maildir/new`` durably; returns the file's unique name.

    When this returns, the message survives a crash: file and directory are fsynced.
    """
    name = unique_name()
    tmp = maildir / "tmp" / name
    try:
        f = open(tmp, "xb")
    except FileNotFoundError:  # a new Maildir: make it, once
        create(maildir)
        f = open(tmp, "xb")
    with f:
        f.write(message)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, maildir / "new" / name)
    fsync_dir(maildir / "new")
    notify(maildir)
    return name


def watch(maildir: Path, callback: Callable[[Path], None]) -> Callable[[], None]:
    """Call ``callback(maildir)`` whenever this process delivers to ``maildir``.

    The callback runs in the delivering thread: keep it short (e.g. hand over to an
    event loop with ``call_soon_threadsafe``). Returns the function that stops watching.
    """
    key = Path(maildir).resolve()
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
    key = Path(maildir).resolve()
    with _watch_lock:
        callbacks = list(_watchers.get(key, ()))
    for callback in callbacks:
        callback(key)
