"""A pod's launcher: the process jupyter_client starts as the kernel's command.

It makes a fresh network namespace with nothing but its own loopback, then starts the
judge (a child) and the kernel (this process, exec'd), each in its control groups, with
its limits and only its own descriptors. The worker has made both commands
(:class:`labkit.grade.pod.Pod`); this module needs the standard library only, and is run
as a file, ``python -I -S launch.py SPEC``, without ``site`` or labkit: a pod's start is
not charged the 70 ms of CPU that importing them costs.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys

KERNEL_FD, JUDGE_CONTROL_FD, JUDGE_KERNEL_FD = 3, 3, 4  # where each process finds its channels
MARKER = "LABKIT_GRADE_POD"  # in every pod process's environment
HIGH_FD = 100  # where the launcher parks descriptors before it places them at 3 and 4

# -- Linux calls Python 3.11 does not wrap ------------------------------------------------------
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


def check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def loopback_up() -> None:
    """Bring up ``lo`` in a new network namespace (SIOCSIFFLAGS, IFF_UP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, 0x8913, request))[1]
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))


def _limit(limits: dict, *, judge: bool) -> None:
    """``limits`` (:class:`labkit.grade.pod.Limits`, as a dict) on this process."""
    memory = limits["judge_memory_bytes"] if judge else limits["memory_bytes"]
    processes = limits["judge_processes"] + limits["processes"]  # one user's, the two counted together; each its group
    for limit, value in ((resource.RLIMIT_CPU, limits["cpu_seconds"]), (resource.RLIMIT_AS, memory),
                         (resource.RLIMIT_NPROC, processes), (resource.RLIMIT_FSIZE, limits["file_bytes"]),
                         (resource.RLIMIT_NOFILE, limits["open_files"]), (resource.RLIMIT_CORE, 0)):
        soft, hard = resource.getrlimit(limit)
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard
        resource.setrlimit(limit, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the file limit fails (EFBIG), no kill


def _join(paths: list[str]) -> None:
    for path in paths:
        with open(f"{path}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))


def _place(fd: int, target: int) -> None:
    """Put descriptor ``fd`` at ``target``, inheritable."""
    if fd != target:
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
    else:
        os.set_inheritable(fd, True)


def _only(last: int) -> None:
    """Close every descriptor above ``last``: a process gets its standard streams and
    its channels (0 to ``last``), nothing else this launcher held."""
    os.closerange(last + 1, os.sysconf("SC_OPEN_MAX"))


def launch(spec: dict) -> None:
    """Start the pod ``spec`` describes: its ``judge`` and ``kernel`` commands (made by
    the worker), its ``limits``, ``cgroups``, ``control`` descriptor (the worker's
    channel to the judge) and ``log``."""
    limits = spec["limits"]
    sandboxed = spec["sandboxed"]
    os.environ[MARKER] = spec["marker"]
    os.environ.pop("JPY_PARENT_PID", None)  # in a PID namespace ipykernel would take its parent for dead
    if sandboxed:
        unshare(CLONE_NEWNET)
        loopback_up()
    judge_end, kernel_end = socket.socketpair()
    # Out of the way of the numbers the two processes expect (then into place in each), and
    # the originals closed: the worker's channel to the judge must never reach the kernel.
    originals = [spec["control"], judge_end.detach(), kernel_end.detach(),
                 os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)]
    control, judge_end_fd, kernel_end_fd, log = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD) for fd in originals)
    for fd in originals:
        os.close(fd)
    child = os.fork()
    if child == 0:
        try:
            os.close(kernel_end_fd)
            os.dup2(log, 1)
            os.dup2(log, 2)
            check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
            os.setsid()
            _join(spec["cgroups"].get("judge", []))
            _limit(limits, judge=True)
            _place(control, JUDGE_CONTROL_FD)
            _place(judge_end_fd, JUDGE_KERNEL_FD)
            _only(JUDGE_KERNEL_FD)
            if not sandboxed:  # the same common scratch, at its own path
                os.environ["TMPDIR"] = spec["common"]
            os.execvp(spec["judge"][0], spec["judge"])
        finally:
            os._exit(127)
    os.close(control)
    os.close(judge_end_fd)
    os.close(log)
    _join(spec["cgroups"].get("kernel", []))
    _limit(limits, judge=False)
    _place(kernel_end_fd, KERNEL_FD)
    _only(KERNEL_FD)
    if not sandboxed:
        os.environ.update({"LABKIT_CHANNEL_FD": str(KERNEL_FD), "NBGRADER_EXECUTION": "autograde",
                           "TMPDIR": spec["common"]})  # what it writes goes with the pod
    os.execvp(spec["kernel"][0], spec["kernel"])


if __name__ == "__main__":
    launch(json.loads(sys.argv[1]))
