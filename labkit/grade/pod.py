"""One submission's pod: its kernel and its judge, each sandboxed, sharing one network namespace.

The grader starts a pod per submission (:class:`Pod`, from a worker process). The pod's
launcher (:mod:`labkit.grade.launch`, which jupyter_client starts as the kernel's
command, given both commands the worker made) makes a fresh network namespace with
nothing but its own loopback, then starts:

- the **judge** (:mod:`labkit.grade.judge`): labkit whole, the lab world and the checks;
- the **kernel**: the student's notebook, with a file system that holds the Python
  runtime, the student-facing part of labkit (:func:`student_package`) and a working
  directory: no reference implementation, no course, no ``notebooks/``, no ``.git``, no
  other kernel's files, no grader's home.

Both run under bubblewrap (their own mount, PID, IPC and UTS namespaces, a read-only
system, size-capped tmpfs for everything they can write) as the pod's unprivileged user
of the host (a fresh uid per pod, dropped to with ``setpriv``, never root mapped into a
user namespace), with resource limits and, where the grader is root, a control group
each. The judge and the kernel share the network namespace (the notebook's sockets reach
the judge's world on loopback), a scratch directory (a world's Maildirs, a check's files)
and one channel, a socket pair handed to both at start (:mod:`labkit.channel`); they see
nothing else of each other. The worker talks to the judge over another pair.

This needs root (or the same capabilities) and bubblewrap (apt: bubblewrap).
``labkit grade --unsafe-no-sandbox`` runs the same pod without them: the kernel as the
grader, with the grader's network and file system, for a course that trusts its students.
"""

from __future__ import annotations

import ast
import compileall
import ctypes
import errno
import functools
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import labkit

from . import launch
from .launch import JUDGE_CONTROL_FD, JUDGE_KERNEL_FD, KERNEL_FD, MARKER, check, libc, unshare

UID_BASE, UID_SPAN = 0x4C4B0000, 0x10000  # the sandboxes' users: a fresh uid per process, never a real user
STUDENT_ROOT = "/opt/labkit"  # where the kernel finds the student-facing labkit
HOME = "/home/student"  # the kernel's working directory and home (a tmpfs)
COMMON = "/run/labkit"  # the judge's scratch (its worlds, its checks' files), the kernel's to use too
MAX_SOCKET_DIR = 100  # bytes: the kernel's sockets ("k-4") must fit a Unix socket's 107
MAX_KERNEL_MESSAGE = 64 << 20  # bytes of one message from a kernel to the worker


@dataclass(frozen=True)
class Limits:
    """What one submission may use."""

    notebook_seconds: float = 300.0  # wall clock for the whole notebook
    cell_seconds: float = 60.0  # wall clock for one cell
    cpu_seconds: int = 300
    memory_bytes: int = 3 << 30  # address space (threads' stacks count too)
    processes: int = 256  # processes and threads: more than the kernel and its worlds need
    file_bytes: int = 64 << 20  # the largest file it may write
    disk_bytes: int = 256 << 20  # each tmpfs it can write (its home, /tmp, /dev/shm)
    shared_bytes: int = 1 << 20  # the directory of its connection file and sockets
    open_files: int = 1024
    output_bytes: int = 2 << 20  # notebook output kept; the rest is dropped (a flood)
    judge_memory_bytes: int = 4 << 30  # the judge: the lab world and the checks
    judge_processes: int = 512

    def to_dict(self) -> dict:
        return asdict(self)


# -- what this machine can do --------------------------------------------------------------------
def isolation() -> dict[str, bool]:
    """bubblewrap and setpriv on PATH, root (for the network namespace, the users and
    the control groups), a control group tree we may write."""
    root = os.geteuid() == 0
    return {"bwrap": shutil.which("bwrap") is not None, "setpriv": shutil.which("setpriv") is not None,
            "root": root, "cgroup": root and Cgroup.available()}


def missing_isolation() -> str:
    """Why the sandbox cannot be had here (a sentence for the TA), or ``""``."""
    can = isolation()
    missing = [what for what, ok in (("bubblewrap (apt install bubblewrap)", can["bwrap"]),
                                     ("setpriv (util-linux)", can["setpriv"]), ("root", can["root"])) if not ok]
    return ("the grading sandbox needs " + " and ".join(missing)) if missing else ""


# -- Linux calls Python 3.11 does not wrap (the rest are the launcher's) -----------------------------
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18


def mount(source: str | None, target: str, kind: str | None, flags: int, options: str | None) -> None:
    enc = (lambda v: v.encode() if v is not None else None)
    check(libc.mount(enc(source), enc(target), enc(kind), ctypes.c_ulong(flags), enc(options)), f"mount {target}")


def private_mounts() -> None:
    """This process (a worker, before it has threads) gets mounts of its own: the small
    tmpfs it makes for each kernel vanish with it, and nothing reaches the host's table."""
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)


# -- the student-facing labkit -------------------------------------------------------------------------
ROOTS = ("labkit.lab", "labkit.notebook", "labkit.checks", "labkit.imap.parser", "labkit.graded", "labkit.reader",
         "labkit.muttrc", "labkit.diskspy", "labkit.programs", "labkit.accounts")


def kernel_modules(helpers: tuple[str, ...] = ()) -> list[str]:
    """The labkit modules a graded kernel holds: the student modules, the lab's own
    ``helpers``, and what they import at module level (lazy imports inside functions are
    the other world's: a notebook's World is the judge's there), found by reading the
    source, not running it."""
    from ..lab import STUDENT_MODULES

    base = Path(labkit.__file__).parent
    todo, found = ["labkit", *STUDENT_MODULES, *ROOTS, *helpers], set()
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _module_path(base, name)
        if path is None:
            continue
        found.add(name)
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        todo += _top_level_imports(path, name)
    return sorted(found)


def _module_path(base: Path, name: str) -> Path | None:
    parts = name.split(".")[1:]
    for candidate in (base.joinpath(*parts).with_suffix(".py") if parts else None,
                      base.joinpath(*parts, "__init__.py")):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _top_level_imports(path: Path, name: str) -> list[str]:
    from .verdict import parse_python

    tree = parse_python(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in tree.body:  # module level only: not in functions, not under TYPE_CHECKING
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("labkit")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                module = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.startswith("labkit"):
                found.append(module)
                found += [f"{module}.{a.name}" for a in node.names]  # a submodule, if it is one
    return found


def lab_kernel(notebook: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a lab's kernel holds beyond the student modules: (the helpers its notebook
    names in ``metadata.labkit.helpers``, the seams its test cells check and whose
    answers must therefore not be there)."""
    from .verdict import NotJudgeable, parse

    helpers = tuple(notebook.get("metadata", {}).get("labkit", {}).get("helpers", []))
    graded: set[str] = set()
    for cell in notebook["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution") and cell["cell_type"] == "code":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            try:
                graded |= {c.module for c in parse(text) if c.module != "story"}
            except NotJudgeable:
                continue
    return helpers, tuple(sorted(graded))


def compile_labkit() -> None:
    """Write labkit's bytecode beside it where it is missing or older than its source (a
    few milliseconds when none is). A judge reads labkit read-only, as the pod's user: it
    cannot save what it compiles, so without this every judge compiled each module it
    imports, 0.1 s of CPU a submission. Where the grader may not write there either
    (labkit installed by another user), the judges compile, as before."""
    compileall.compile_dir(_package(), quiet=2)


def _package() -> str:
    """labkit's package directory, absolute (read at each call: what is imported now)."""
    return os.path.dirname(os.path.abspath(labkit.__file__))


def student_package(dest: Path, helpers: tuple[str, ...] = (), graded: tuple[str, ...] = ()) -> Path:
    """Write the kernel's labkit under ``dest`` (``dest/labkit/...``): the modules of
    :func:`kernel_modules` (with a lab's ``helpers``, such as ``labkit.store`` for the
    IMAP lab), the lecture world's zone files, and for each other labkit module that
    labkit.lab's types live in or are re-exported from, a stand-in that gives those types
    under that name (``from labkit.smtp.client import Reply`` works when graded) and says
    why anything else is not there. A helper that would bring labkit's answer for one of
    the ``graded`` seams is refused (ValueError)."""
    from ..seams import SEAMS
    from .verdict import allowed_names

    base = Path(labkit.__file__).parent
    modules = kernel_modules(tuple(helpers))
    for seam in graded:
        spec = SEAMS[seam]
        held = {name.partition(":")[0] for name in (spec.reference, *spec.answers)} & set(modules)
        if held:
            raise ValueError(f"the helpers {list(helpers)} bring {sorted(held)}, labkit's answer for {seam}, "
                             "which this lab grades")
    for name in modules:
        source = _module_path(base, name)
        assert source is not None
        target = dest / source.relative_to(base.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    shutil.copytree(base / "worlds", dest / "labkit" / "worlds", dirs_exist_ok=True)
    from .. import lab

    shims: dict[str, list[str]] = {}
    for module, name in allowed_names():
        defined = getattr(getattr(lab, name, None), "__module__", "")
        if module not in modules and defined in modules:  # only what the kernel has (a helper stays out)
            shims.setdefault(module, []).append(name)
    shims.setdefault("labkit.world", [])  # the README's `from labkit.world import World`
    for module, names in shims.items():
        target = dest.joinpath(*module.split(".")).with_suffix(".py")
        for package in module.split(".")[1:-1]:  # a shim's packages: empty ones where they are not there
            init = dest.joinpath(*module.split(".")[: module.split(".").index(package) + 1], "__init__.py")
            if not init.exists():
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text('"""Not in a graded notebook: only what labkit.lab offers."""\n')
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_shim(module, sorted(names)))
    compileall.compile_dir(dest, quiet=2)  # once a run: each kernel reads it, read-only, and would compile it again
    return dest


def _shim(module: str, names: list[str]) -> str:
    lines = [f'"""{module} in a graded notebook: only labkit.lab\'s types are here."""', ""]
    if names:
        lines.append(f"from labkit.lab import {', '.join(names)}  # noqa: F401")
    if module == "labkit.world":
        lines.append("from labkit.notebook import World  # noqa: F401")
    lines += ["", "", "def __getattr__(name):",  # ImportError, not AttributeError: `from` keeps its message
              "    if name.startswith('__'):",
              "        raise AttributeError(name)",
              f"    raise ImportError(f\"{module}.{{name}} is part of labkit's own answer, which is not in your "
              "notebook while it is graded: import what your code uses from labkit.lab\")", ""]
    return "\n".join(lines)


# -- control groups ---------------------------------------------------------------------------------------
class Cgroup:
    """A control group for one process tree (root only): at most ``processes``
    processes and threads, at most ``memory`` bytes, whatever it forks; and at the end,
    everything still in it killed and the group removed. cgroup v2, or v1's controllers.
    Named ``labkit-grade-RUN-nNAMESPACE-TOKEN-WHICH`` (:meth:`name`) so that a run removes
    all of its own at the end, and the groups of a run that was killed, but never those of
    a grader in another PID namespace whose pid means nothing here."""

    ROOT = "/sys/fs/cgroup"
    PREFIX = "labkit-grade-"

    def __init__(self, name: str, *, processes: int, memory: int) -> None:
        self.paths: list[str] = []
        for path, settings in self._trees(name, processes, memory):
            try:
                os.mkdir(path)
                for key, value in settings.items():
                    with open(f"{path}/{key}", "w") as f:
                        f.write(str(value))
            except OSError:
                continue
            self.paths.append(path)

    @classmethod
    def _trees(cls, name: str, processes: int, memory: int) -> list[tuple[str, dict[str, int]]]:
        if os.path.exists(f"{cls.ROOT}/cgroup.controllers"):  # v2: one tree
            return [(f"{cls.ROOT}/{name}", {"pids.max": processes, "memory.max": memory})]
        return [(f"{cls.ROOT}/pids/{name}", {"pids.max": processes}),
                (f"{cls.ROOT}/memory/{name}", {"memory.limit_in_bytes": memory})]

    @classmethod
    def available(cls) -> bool:
        return os.access(f"{cls.ROOT}/cgroup.controllers", os.W_OK) or os.access(f"{cls.ROOT}/pids", os.W_OK)

    def pids(self) -> set[int]:
        return set().union(*(_pids_in(path) for path in self.paths)) if self.paths else set()

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

    def pids_left(self) -> int | None:
        """How many more processes and threads the group may start now (None: not known)."""
        for path in self.paths:
            try:
                with open(f"{path}/pids.max") as most, open(f"{path}/pids.current") as now:
                    return int(most.read()) - int(now.read())
            except (OSError, ValueError):  # not the pids controller's directory, or "max"
                continue
        return None

    def remove(self) -> None:
        for path in self.paths:
            _remove_group(path)
        self.paths = []

    @classmethod
    def name(cls, run: str, token: str, which: str) -> str:
        return f"{cls.PREFIX}{run}-n{_pid_namespace()}-{token}-{which}"

    @classmethod
    def sweep(cls, run: str | None = None) -> int:
        """Remove the groups of run ``run`` (default: of every run whose grader is gone),
        of this PID namespace; how many were removed."""
        removed = 0
        for tree in (cls.ROOT, f"{cls.ROOT}/pids", f"{cls.ROOT}/memory"):
            try:
                names = os.listdir(tree)
            except OSError:
                continue
            for name in names:
                owner, _, rest = name.removeprefix(cls.PREFIX).partition("-")
                if not name.startswith(cls.PREFIX) or rest.partition("-")[0] != f"n{_pid_namespace()}":
                    continue
                if (run is not None and owner == run) or (run is None and not _alive(owner)):
                    removed += _remove_group(f"{tree}/{name}")
        return removed


def run_id() -> str:
    """This grading run's name in its control groups: the coordinator's pid."""
    return str(os.getpid())


@functools.cache
def _pid_namespace() -> int:
    """This process's PID namespace (its inode): whose pids a group's name holds."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _alive(owner: str) -> bool:
    return owner.isdigit() and os.path.exists(f"/proc/{owner}")


def _pids_in(path: str) -> set[int]:
    try:
        with open(f"{path}/cgroup.procs") as f:
            return {int(line) for line in f if line.strip()}
    except OSError:
        return set()


def _remove_group(path: str) -> int:
    """Kill what is in it, then remove it (bounded: a few seconds at most)."""
    for _ in range(100):
        left = _pids_in(path)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)
    for _ in range(50):
        try:
            os.rmdir(path)
            return 1
        except FileNotFoundError:
            return 0
        except OSError as error:
            if error.errno != errno.EBUSY:
                return 0
            time.sleep(0.02)
    return 0


# -- the pod's two processes ----------------------------------------------------------------------------
def _system_view() -> list[str]:
    """bubblewrap's read-only system for both: /usr, its top-level links, /etc, the
    Python runtime and the venv (each at its own path)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind", "/etc", "/etc"]
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix}):
        if not prefix.startswith("/usr/"):
            args += bind(prefix, prefix)
    return args


def bind(source: str, dest: str, *, how: str = "--ro-bind") -> list[str]:
    """Mount ``source`` at ``dest``, its parents made first as plain 0755 directories
    (bubblewrap would make them 0700, root's: another user could not get through)."""
    args, parent = [], os.path.dirname(dest)
    parents = []
    while parent not in ("/", ""):
        parents.append(parent)
        parent = os.path.dirname(parent)
    for path in reversed(parents):
        args += ["--perms", "0755", "--dir", path]
    return [*args, how, source, dest]


def _venv_labkit() -> list[str]:
    """labkit installed into the venv (not in editable mode) would be there for the
    kernel to read: hide it."""
    hidden = []
    for entry in sys.path:
        candidate = Path(entry) / "labkit"
        if entry.startswith((sys.prefix, sys.base_prefix)) and (candidate / "__init__.py").is_file():
            hidden += ["--tmpfs", str(candidate)]
    return hidden


def _drop(uid: int) -> list[str]:
    """setpriv to the unprivileged ``uid``: no groups, no capabilities, no new privileges."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]


def kernel_command(kernel_argv: list[str], *, uid: int, shared: str, common: str, student: str,
                   limits: Limits) -> list[str]:
    """The kernel under bubblewrap, as ``uid``."""
    size = str(limits.disk_bytes)
    python = kernel_argv[0]
    return ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", *_scratch_first(size), *_tmpfs(HOME, size), *_system_view(), *_venv_labkit(),
            *bind(student, STUDENT_ROOT), *bind(shared, shared, how="--bind"), *bind(common, COMMON, how="--bind"), "--chdir", HOME, "--clearenv",
            *_env(HOME, {"PYTHONPATH": STUDENT_ROOT, "LABKIT_CHANNEL_FD": str(KERNEL_FD),
                         "NBGRADER_EXECUTION": "autograde"}),
            "--", *_drop(uid), python, *kernel_argv[1:]]


def judge_command(*, uid: int, common: str, limits: Limits) -> list[str]:
    """The judge under bubblewrap, as ``uid``: the labkit package (only it, not the
    repository around it), read-only; its scratch is the pod's common tmpfs, which the
    kernel sees too (a world's Maildirs, a check's files: where a student's deliver
    writes and a student's POP3 session reads). It holds nothing secret: the course's
    cells reach it over the worker's channel, in memory."""
    package = _package()
    binds = bind(package, package) if not package.startswith((sys.prefix, sys.base_prefix)) else []
    return ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", *_scratch_first(str(limits.disk_bytes)), *_system_view(), *binds,
            *bind(common, COMMON, how="--bind"), "--chdir", COMMON,
            "--clearenv", *_env(COMMON, {"PYTHONPATH": os.path.dirname(package)}), "--", *_drop(uid),
            *_judge_argv()]


def _scratch_first(size: str) -> list[str]:
    """/proc, /dev and the empty /tmp and /dev/shm, mounted before anything is bound
    (bubblewrap mounts in order): labkit or its venv under /tmp (a clone there) is bound
    on top of the empty /tmp, never hidden by it."""
    return ["--proc", "/proc", "--dev", "/dev", *_tmpfs("/tmp", size), *_tmpfs("/dev/shm", size)]


def _tmpfs(path: str, size: str) -> list[str]:
    """A size-capped tmpfs any of the sandbox's users may write (it is theirs alone)."""
    parent = os.path.dirname(path)
    return [*(["--perms", "0755", "--dir", parent] if parent != "/" else []),
            "--perms", "1777", "--size", size, "--tmpfs", path]


def _judge_argv() -> list[str]:
    return [sys.executable, "-m", "labkit.grade.judge", "--control", str(JUDGE_CONTROL_FD),
            "--kernel", str(JUDGE_KERNEL_FD)]


def _env(home: str, extra: dict[str, str]) -> list[str]:
    variables = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin", "HOME": home,
                 "TMPDIR": home, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", **extra}
    return [arg for name, value in variables.items() for arg in ("--setenv", name, value)]


SHORT = "lg-"  # a pod's short place in TMPDIR (when the run's own path is too long for its sockets)


def short_places(run: str) -> list[str]:
    """Run ``run``'s short places still there: a worker that was stopped before its exit
    handlers ran (its spare pod) leaves its own; the coordinator removes them at the end."""
    tmp = tempfile.gettempdir()
    return [os.path.join(tmp, name) for name in os.listdir(tmp) if name.startswith(f"{SHORT}{run}-")]


class Pod:
    """One submission's kernel and judge (see the module doc), made by a worker: the
    kernel manager (``km``) for nbclient, and the worker's channel to the judge."""

    def __init__(self, scratch: str, student: str, limits: Limits, *, sandboxed: bool, run: str) -> None:
        self.limits, self.sandboxed = limits, sandboxed
        self.token = uuid.uuid4().hex[:12]
        self.marker = f"{run}-{self.token}"  # in its processes' environment (:func:`strays`)
        # The pod's user: the kernel's and the judge's (one user, so the files of the scratch they
        # share are both's; they see nothing else of each other: two mount and PID namespaces).
        self.uid = UID_BASE + random.randrange(0, UID_SPAN)
        self.root = os.path.join(scratch, f"p{self.token}")
        # The kernel's sockets are files here: a Unix socket's path has at most 107 bytes.
        self.shared = os.path.join(self.root, "s")
        if len(self.shared) > MAX_SOCKET_DIR:
            self.root = os.path.join(tempfile.mkdtemp(prefix=f"{SHORT}{run}-"), f"p{self.token}")
            self.shared = os.path.join(self.root, "s")
        self.common = os.path.join(self.root, "c")
        os.makedirs(self.shared, mode=0o700)
        os.makedirs(self.common, mode=0o1777)
        if sandboxed:  # tmpfs of their own: what the kernel writes here is capped too
            mount("tmpfs", self.shared, "tmpfs", 0, f"size={limits.shared_bytes},mode=0700,uid={self.uid},"
                                                   f"gid={self.uid}")
            mount("tmpfs", self.common, "tmpfs", 0, f"size={limits.disk_bytes},mode=1777")
        self.workdir = HOME if sandboxed else os.path.join(self.root, "home")
        if not sandboxed:
            os.makedirs(self.workdir)
        self.cgroups = {which: Cgroup(Cgroup.name(run, self.token, which), processes=processes, memory=memory)
                        for which, processes, memory in (("kernel", limits.processes, limits.memory_bytes),
                                                         ("judge", limits.judge_processes, limits.judge_memory_bytes))
                        } if sandboxed and Cgroup.available() else {}
        self._control, judge_end = socket.socketpair()
        self._judge_end = judge_end
        self.log_path = os.path.join(self.root, "pod.log")
        spec = {"sandboxed": sandboxed, "uid": self.uid, "student": student, "shared": self.shared,
                "common": self.common,
                "limits": limits.to_dict(), "cgroups": {k: g.paths for k, g in self.cgroups.items()},
                "control": judge_end.fileno(), "log": self.log_path, "marker": self.marker}
        self.km = kernel_manager(spec, kernel_name="python3", transport="ipc", ip=os.path.join(self.shared, "k"),
                                 connection_file=os.path.join(self.shared, "kernel.json"))
        import zmq  # the worker's sockets to the kernel take no message over the limit (a kernel that floods is
        self.km.context.setsockopt(zmq.MAXMSGSIZE, MAX_KERNEL_MESSAGE)  # cut off, not held in memory)
        self._error: BaseException | None = None
        self._ready, self._killed = threading.Event(), threading.Event()
        # The kernel's parent is this thread, not the worker: bubblewrap's --die-with-parent
        # (PR_SET_PDEATHSIG) kills it when the thread that started it ends, so the thread
        # lives as long as the pod (until kill()).
        self._starter = threading.Thread(target=self._start, name="labkit-pod-start", daemon=True)
        self._starter.start()
        self.channel: Any = None
        self.limit_hit = False

    def _start(self) -> None:
        from jupyter_core.utils import run_sync

        try:
            self.km.write_connection_file()
            if self.sandboxed:
                os.chown(self.km.connection_file, self.uid, self.uid)
            with open(self.log_path, "ab") as log:
                run_sync(self.km.start_kernel)(cwd=self.workdir if not self.sandboxed else self.root, stdout=log,
                                              stderr=log, pass_fds=[self._judge_end.fileno()])
        except BaseException as error:  # noqa: BLE001 - said when the worker waits for it
            self._error = error
        finally:
            self._judge_end.close()
            self._ready.set()
        self._killed.wait()  # the kernel's parent thread: see __init__

    def wait(self) -> None:
        """The kernel and judge have started (or raise why they could not)."""
        from ..channel import Channel

        self._ready.wait()
        if self._error is not None:
            raise self._error
        if self.channel is None:
            self.channel = Channel(self._control, name="labkit-worker-judge").start()

    STARVED = 16  # threads: fewer left than a cell's world starts (its loop, writers, workers)

    def forks_refused(self) -> bool:
        """Whether the kernel's side was refused a process or a thread (its pids limit)."""
        return "kernel" in self.cgroups and self.cgroups["kernel"].limit_hit()

    def starved(self) -> bool:
        """Whether the kernel's side hit its pids limit and is still at it: what it forked
        lives on, so no cell from here on could start the threads it needs."""
        if not self.forks_refused():
            return False
        left = self.cgroups["kernel"].pids_left()
        return left is not None and left < self.STARVED

    def kill(self) -> None:
        """The kernel, the judge, and everything either started."""
        from jupyter_core.utils import run_sync

        self._ready.wait()
        self.limit_hit = self.forks_refused()
        if self.channel is not None:
            self.channel.close("the submission is graded")
        else:
            self._control.close()
        try:
            process = getattr(self.km.provisioner, "process", None)
            if process is not None:  # killed and reaped here, jupyter_client's shutdown finds it gone
                run_sync(self.km.provisioner.send_signal)(signal.SIGKILL)  # (it polls every 0.1 s otherwise)
                process.wait(5)
                self.km.provisioner.pgid = None  # reaped: its group id may be another process's now
        except Exception:
            pass
        try:
            run_sync(self.km.shutdown_kernel)(now=True)
        except Exception:
            pass
        for group in self.cgroups.values():
            group.remove()
        kill_strays(self.marker)
        self._killed.set()
        self._starter.join()

    def remove(self) -> None:
        if self.sandboxed:
            for mounted in (self.shared, self.common):
                try:
                    check(libc.umount2(mounted.encode(), 2), "umount")  # MNT_DETACH
                except OSError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
        if os.path.basename(os.path.dirname(self.root)).startswith(SHORT):  # the short place, for long TMPDIRs
            shutil.rmtree(os.path.dirname(self.root), ignore_errors=True)


def kernel_manager(spec: dict, **kwargs: Any) -> Any:
    """A jupyter_client kernel manager whose kernel is started through the pod's
    launcher (:mod:`labkit.grade.launch`) with ``spec`` and the two commands."""
    from jupyter_client import AsyncKernelManager

    class PodKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            argv = super().format_kernel_cmd(extra_arguments)
            if argv and os.path.basename(argv[0]).startswith("python"):
                argv = [sys.executable, *argv[1:]]
            if spec["sandboxed"]:
                limits = Limits(**spec["limits"])
                commands = {"kernel": kernel_command(argv, uid=spec["uid"], shared=spec["shared"],
                                                     common=spec["common"], student=spec["student"], limits=limits),
                            "judge": judge_command(uid=spec["uid"], common=spec["common"], limits=limits)}
            else:
                commands = {"kernel": argv, "judge": _judge_argv()}
            return [sys.executable, "-I", "-S", launch.__file__, json.dumps({**spec, **commands})]

    return PodKernelManager(**kwargs)


def strays(marker: str) -> list[int]:
    """Processes still carrying a pod's marker (``RUN-TOKEN``: started by it, escaped its
    groups), or any of a run's pods' (``RUN``)."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if any(v == needle or v.startswith(needle + b"-") for v in f.read().split(b"\0")):
                    found.append(int(name))
        except OSError:
            continue
    return found


def kill_strays(marker: str) -> None:
    """Kill what :func:`strays` finds."""
    for pid in strays(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
