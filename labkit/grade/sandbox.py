"""The sandbox a submission's kernel runs in.

``python -m labkit.grade.sandbox [limits] -- COMMAND...`` is the launcher the grader puts
in front of the kernel's command. It makes the process the leader of a new session and
process group, sets resource limits (CPU seconds, memory, processes, file size, open
files), and then executes the command, wrapped where possible in bubblewrap (``bwrap``,
Debian's package of that name):

- a network namespace with nothing but its own loopback: the student's code reaches no
  other machine and no other student's servers;
- a PID namespace: when the kernel ends, everything it started ends with it, processes
  that made themselves a new session included;
- a file system view in which the course (the hidden tests, the gradebook, the other
  submissions) is not there at all, the system is read-only, and the working directory
  is a size-limited tmpfs (a submission cannot fill the disk);
- a user namespace: where the grader runs as root, the kernel runs as the unprivileged
  ``nobody`` there, with no capability over the machine.

Where the grader runs as root, resource limits do not bind (root is exempt from
RLIMIT_NPROC), so a control group bounds the processes and memory of the whole
submission instead (:class:`Cgroup`). Without bubblewrap the limits and the process
group still hold, and :func:`isolation_warning` says what is missing, so the grader can
warn.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import shutil
import sys
from dataclasses import asdict, dataclass

NOBODY = 65534  # the unprivileged user's id, inside the sandbox when the grader is root
MARKER = "LABKIT_GRADE_JOB"  # in every sandboxed process's environment: how stray ones are found


@dataclass(frozen=True)
class Limits:
    """What one submission may use."""

    notebook_seconds: float = 300.0  # wall clock for the whole notebook
    cell_seconds: float = 60.0  # wall clock for one cell
    cpu_seconds: int = 300
    memory_bytes: int = 3 << 30  # address space (threads' stacks count too)
    processes: int = 256  # processes and threads: more than the kernel and its worlds need
    file_bytes: int = 64 << 20  # the largest file it may write
    disk_bytes: int = 256 << 20  # its working directory (a tmpfs, with bubblewrap)
    open_files: int = 1024
    output_bytes: int = 2 << 20  # notebook output kept; the rest is dropped (a flood)

    def to_dict(self) -> dict:
        return asdict(self)


def isolation() -> dict[str, bool]:
    """What this machine can isolate: bubblewrap's namespaces, running as another user,
    a control group (root only: resource limits do not bind root, a cgroup does)."""
    root = os.geteuid() == 0
    return {"bwrap": shutil.which("bwrap") is not None, "root": root, "cgroup": root and Cgroup.available()}


class Cgroup:
    """A control group for one submission (root only): at most ``processes`` processes
    and threads (pids), at most ``memory`` bytes in all, whatever it forks; and at the
    end, a list of everything still in it to kill. cgroup v2, or v1's controllers."""

    ROOT = "/sys/fs/cgroup"

    def __init__(self, name: str, *, processes: int, memory: int) -> None:
        self.paths: list[str] = []
        if os.path.exists(f"{self.ROOT}/cgroup.controllers"):  # v2: one tree
            self._make(f"{self.ROOT}/{name}", {"pids.max": processes, "memory.max": memory})
        else:  # v1: a tree per controller
            self._make(f"{self.ROOT}/pids/{name}", {"pids.max": processes})
            self._make(f"{self.ROOT}/memory/{name}", {"memory.limit_in_bytes": memory})

    @classmethod
    def available(cls) -> bool:
        return os.access(f"{cls.ROOT}/cgroup.controllers", os.W_OK) or os.access(f"{cls.ROOT}/pids", os.W_OK)

    def _make(self, path: str, settings: dict[str, int]) -> None:
        try:
            os.mkdir(path)
            for key, value in settings.items():
                with open(f"{path}/{key}", "w") as f:
                    f.write(str(value))
        except OSError:
            return
        self.paths.append(path)

    def join(self, pid: int) -> None:
        for path in self.paths:
            with open(f"{path}/cgroup.procs", "w") as f:
                f.write(str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths:
            try:
                with open(f"{path}/cgroup.procs") as f:
                    found |= {int(line) for line in f if line.strip()}
            except OSError:
                pass
        return found

    def limit_hit(self) -> bool:
        """Whether a fork or a thread was refused because the pids limit was reached."""
        for path in self.paths:
            try:
                with open(f"{path}/pids.events") as f:
                    if any(line.split()[:1] == ["max"] and int(line.split()[1]) > 0 for line in f):
                        return True
            except (OSError, ValueError, IndexError):
                continue
        return False

    def remove(self) -> None:
        """Kill what is left in it, then remove it (bounded: a few rounds)."""
        import signal
        import time

        for _ in range(50):
            left = self.pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)
        for path in self.paths:
            try:
                os.rmdir(path)
            except OSError:
                pass


def isolation_warning() -> str:
    """A sentence for the TA when the sandbox is weaker than it should be, else ``""``."""
    can = isolation()
    if not can["bwrap"]:
        return ("no bubblewrap (apt install bubblewrap): submissions run with resource limits in their own process "
                "group, but as you, with the network, and able to read the course directory")
    return ""


def kernel_command(argv: list[str], *, limits: Limits, workdir: str, shared: str, hidden: list[str], job: str,
                   use_bwrap: bool | None = None, cgroup: "Cgroup | None" = None) -> list[str]:
    """The command that runs ``argv`` (the kernel) sandboxed. ``workdir``: its working
    directory (a tmpfs inside bubblewrap); ``shared``: a directory both sides see (the
    kernel's connection file and sockets); ``hidden``: directories it must not see."""
    can = isolation()
    use_bwrap = can["bwrap"] if use_bwrap is None else use_bwrap
    launcher = [sys.executable, "-m", "labkit.grade.sandbox", "--job", job, "--cpu", str(limits.cpu_seconds),
                "--memory", str(limits.memory_bytes), "--processes", str(limits.processes),
                "--file-size", str(limits.file_bytes), "--open-files", str(limits.open_files)]
    if cgroup is not None:
        for path in cgroup.paths:
            launcher += ["--cgroup", path]
    if not use_bwrap:
        return [*launcher, "--chdir", workdir, "--", *argv]
    bwrap = ["bwrap", "--die-with-parent", "--new-session", "--unshare-all"]
    if can["root"]:  # inside, the unprivileged user, without a capability over the machine
        bwrap += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    bwrap += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in ["/tmp", *hidden]:  # a directory the kernel itself runs from cannot be hidden
        if not _holds_runtime(path):
            bwrap += ["--tmpfs", path]
    bwrap += ["--bind", shared, shared, "--size", str(limits.disk_bytes), "--tmpfs", workdir, "--chdir", workdir,
              "--setenv", "HOME", workdir, "--setenv", "TMPDIR", workdir, "--setenv", MARKER, job,
              # the kernel's parent, as jupyter_client names it, is not its parent in the PID
              # namespace: without this, ipykernel would take it for dead and quit
              "--unsetenv", "JPY_PARENT_PID"]
    return [*launcher, "--", *bwrap, "--", *argv]


def _holds_runtime(path: str) -> bool:
    """Whether the kernel's Python or labkit itself lives under ``path`` (a clone in /tmp)."""
    real = os.path.realpath(path)
    runtime = (sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return any(os.path.realpath(p) == real or os.path.realpath(p).startswith(real + os.sep) for p in runtime)


def _apply(args: argparse.Namespace) -> None:
    """In the launcher, before it becomes the sandboxed command."""
    try:
        os.setsid()  # its own session and process group: the grader kills them all at once
    except PermissionError:  # already a session leader (jupyter_client starts kernels so)
        pass
    for path in args.cgroup:  # before anything else: all it starts is counted there
        with open(f"{path}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
    # RLIMIT_NPROC counts every process of the user: leave room for the grader's own.
    processes = args.processes + _processes_of(os.getuid())
    for limit, value in ((resource.RLIMIT_CPU, args.cpu), (resource.RLIMIT_AS, args.memory),
                         (resource.RLIMIT_NPROC, processes), (resource.RLIMIT_FSIZE, args.file_size),
                         (resource.RLIMIT_NOFILE, args.open_files), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the file limit fails (EFBIG), no kill
    os.environ[MARKER] = args.job
    if args.chdir:
        os.makedirs(args.chdir, exist_ok=True)
        os.chdir(args.chdir)
        os.environ["HOME"] = args.chdir


def _processes_of(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def strays(job: str) -> list[int]:
    """Processes still carrying ``job``'s marker (started by a submission, escaped)."""
    found = []
    needle = f"{MARKER}={job}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="labkit.grade.sandbox")
    parser.add_argument("--job", required=True)
    parser.add_argument("--cpu", type=int, required=True)
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--file-size", type=int, required=True)
    parser.add_argument("--open-files", type=int, required=True)
    parser.add_argument("--chdir")
    parser.add_argument("--cgroup", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    _apply(args)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
