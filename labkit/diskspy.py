"""Watching a student's code touch the disk: which files it fsyncs and what it renames.

:class:`DiskSpy` wraps ``os.fsync``, ``os.fdatasync``, ``os.rename``, ``os.replace`` and
``os.link`` (in ``os`` and in the module of the function watched, for ``from os import
fsync``) while in a ``with`` block, records each call and still makes it: a spy, not a
mock, the disk really gets the writes. It must run where the student's code runs: in a
notebook that is this process; in a graded notebook it is the kernel, which the judge
asks to watch a call (``labkit.graded``) and which sends back the calls it saw. (The
calls a kernel reports are data from the student's own process: a report could claim
fsync calls that were never made, which takes as much as making them.)

:func:`power_cut` uses the same patching to play a crash for a notebook: a ``deliver``
whose machine loses power at its first rename into ``new/``.
"""

from __future__ import annotations

import functools
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

SYNCS = ("fsync", "fdatasync")
MOVES = ("rename", "replace", "link")


@dataclass(frozen=True)
class Call:
    """One recorded call: what was synced (by inode), or what moved where."""

    name: str
    ino: int
    is_dir: bool = False
    src: str = ""  # rename/replace/link: the real paths
    dst: str = ""
    size: int = -1  # rename/replace/link: how many bytes the file held at that moment

    def text(self, maildir: Path, names: dict[int, str]) -> str:
        """The call as a student reads it: paths inside the Maildir, inodes named."""
        if self.name in SYNCS:
            return f"os.{self.name}({names.get(self.ino, 'another directory' if self.is_dir else 'another file')})"
        root = os.path.realpath(maildir) + os.sep
        src, dst = (path.removeprefix(root) for path in (self.src, self.dst))
        return f"os.{self.name}({src!r}, {dst!r}) of a file of {self.size} bytes"


class DiskSpy:
    """Records the student's fsync and rename calls (in ``os`` and in the module of
    ``impl``, for ``from os import fsync``) while in a ``with`` block.
    :meth:`watching` gives the right one for a part: this one, or a graded kernel's."""

    @staticmethod
    def watching(impl: Any) -> Any:
        """A context manager that records ``impl``'s disk calls, in this process or, for
        a graded notebook's part, in its kernel (the stand-in's own)."""
        watch = getattr(impl, "watch_disk", None)
        return watch() if callable(watch) else DiskSpy(impl)

    def __init__(self, impl: Any) -> None:
        self.calls: list[Call] = []
        self._namespaces = [os.__dict__, getattr(impl, "__globals__", {})]
        self._saved: list[tuple[dict, str, Any]] = []

    def __enter__(self) -> "DiskSpy":
        real = {name: getattr(os, name) for name in (*SYNCS, *MOVES) if hasattr(os, name)}
        spies = [(fn, (self._sync if name in SYNCS else self._move)(name, fn)) for name, fn in real.items()]
        for namespace in self._namespaces:
            for key, value in list(namespace.items()):
                for fn, spy in spies:
                    if value is fn:
                        self._saved.append((namespace, key, value))
                        namespace[key] = spy
        return self

    def __exit__(self, *exc: object) -> None:
        for namespace, key, value in reversed(self._saved):
            namespace[key] = value
        self._saved.clear()

    def _sync(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(real)
        def spy(fd: Any) -> Any:
            st = os.fstat(fd if isinstance(fd, int) else fd.fileno())
            self.calls.append(Call(name, st.st_ino, is_dir=stat.S_ISDIR(st.st_mode)))
            return real(fd)

        return spy

    def _move(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(real)
        def spy(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                st = os.stat(src, dir_fd=kwargs.get("src_dir_fd"))
                call = Call(name, st.st_ino, src=os.path.realpath(src), dst=os.path.realpath(dst), size=st.st_size)
            except (OSError, TypeError):
                call = None
            result = real(src, dst, *args, **kwargs)
            if call is not None:
                self.calls.append(call)
            return result

        return spy

    def synced(self, ino: int) -> list[int]:
        """Where in :attr:`calls` the inode ``ino`` was fsynced."""
        return [i for i, call in enumerate(self.calls) if call.name in SYNCS and call.ino == ino]

    def story(self, maildir: Path, name: str) -> str:
        """Every call, in order, for the message ``name`` delivered into ``maildir``."""
        names = {(maildir / sub).stat().st_ino: f"{sub}/" for sub in ("new", "tmp", "cur")}
        names[(maildir / "new" / name).stat().st_ino] = "the message's file"
        return "\n".join(c.text(maildir, names) for c in self.calls) or "no fsync, rename or link at all"


class PowerCut(Exception):
    """The power went out (as :func:`power_cut` plays it): nothing after this happened."""


class _Outage(DiskSpy):
    """A DiskSpy under which the first rename, replace or link of the thread that
    entered it raises :class:`PowerCut` instead of happening (other threads' go on)."""

    def __enter__(self) -> "_Outage":
        self._thread = threading.get_ident()
        return super().__enter__()  # type: ignore[return-value]

    def _move(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        spy = super()._move(name, real)

        @functools.wraps(real)
        def cut(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self._thread:  # the paths as in the Maildir (tmp/NAME): a reply shows it all
                raise PowerCut(f"the power went out at os.{name}({_in_maildir(src)!r}, {_in_maildir(dst)!r})")
            return spy(src, dst, *args, **kwargs)

        return cut


def _in_maildir(path: Any) -> str:
    """``.../Maildir/tmp/NAME`` as ``tmp/NAME``: its folder and its name."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(os.path.basename(folder), name)


def power_cut(deliver: Callable[[Path, bytes], str]) -> Callable[[Path, bytes], str]:
    """``deliver`` on a machine that loses power in the middle: what it wrote before its
    first rename (or link) stays on the disk, nothing after that happens, and the call
    ends in :class:`PowerCut`, so the MTA never says 250 and the sender keeps the message."""

    def crashing(maildir: Path, message: bytes) -> str:
        with _Outage(deliver):
            return deliver(maildir, message)

    crashing.__name__ = crashing.__qualname__ = f"{getattr(deliver, '__name__', 'deliver')}_in_a_power_cut"
    return crashing
