"""Running a program as mutt runs /usr/sbin/sendmail: the message on standard input,
its own session (so a timeout kills it and everything it started), the exit status and
what it said on standard error. The sendmail checks run a student's program this way, in
this process's machine; in a graded notebook the kernel runs it (``labkit.graded``), where
the program is."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass

MAX_STDERR = 64 << 10


@dataclass(frozen=True)
class Exit:
    """How a program ended: its status (None: killed at the deadline) and its stderr."""

    status: int | None
    stderr: str


def run_program(argv: list[str], stdin: bytes, env: dict[str, str], timeout: float) -> Exit:
    """Run ``argv`` with ``stdin``, ``env`` (the whole environment), at most ``timeout`` seconds."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=env, start_new_session=True)
    except OSError as error:
        return Exit(127, f"cannot run {argv[0]}: {error.strerror}")
    try:
        _, err = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the program and anything it started
        process.communicate()
        return Exit(None, "")
    return Exit(process.returncode, err[-MAX_STDERR:].decode("utf-8", "replace"))
