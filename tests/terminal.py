"""A program on a pseudo-terminal of a given size, as a lecturer's terminal runs it:
its own session with the terminal as its controlling tty, so Ctrl-C is a real SIGINT
from the line discipline, not a signal the test sends."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time

_TAKE_TTY = "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execvp(sys.argv[1], sys.argv[1:])"
# ... started by a parent that ignores SIGINT (nohup, some launchers): the program inherits that
_TAKE_TTY_SIGINT_IGNORED = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); " + _TAKE_TTY
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    def __init__(self, argv: list[str], *, rows: int = 32, columns: int = 100, env: dict[str, str] | None = None,
                 sigint_ignored: bool = False):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

        # In its own session (setsid), the child makes the terminal its controlling tty, then runs argv.
        argv = [sys.executable, "-c", _TAKE_TTY_SIGINT_IGNORED if sigint_ignored else _TAKE_TTY, *argv]
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the program has gone
                chunk = b""
            with self._changed:
                self.output.extend(chunk)
                self._changed.notify_all()
            if not chunk:
                return

    def expect(self, pattern: bytes, start: int = 0, timeout: float = 60) -> int:
        """Wait until ``pattern`` appears in the output after ``start``; its end offset."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := self.output.find(pattern, start)) < 0:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{pattern!r} never came; the screen had:\n{self.text()[-2000:]}")
                self._changed.wait(left)
            return found + len(pattern)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float = 60) -> int:
        try:
            status = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        os.close(self.master)
        return status

    def text(self) -> str:
        """What was written, without colour codes, with the terminal's CRLFs as newlines."""
        return ANSI.sub(b"", bytes(self.output)).replace(b"\r\n", b"\n").decode("utf-8", "replace")
