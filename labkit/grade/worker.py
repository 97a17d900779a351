"""Grading one submission: ``python -m labkit.grade.worker JOB.json RESULT.json``, so
every submission gets a fresh process, locally or on a dask worker.

1. **Restore** the course's cells: every test cell (and read-only cell) is put back as
   the source notebook has it; an edited or deleted test cell is flagged and earns
   nothing.
2. **Run** the notebook with nbclient in a sandboxed kernel (:mod:`.sandbox`), with a
   time cap for the whole notebook and each cell, and a cap on output. The agent
   (:mod:`.agent`) is started in the kernel first.
3. **Judge from outside**: each test cell's checks run here against the student's
   objects in the kernel (:mod:`.verdict`). The cell's score is that verdict; where the
   notebook's own result disagrees, the submission is flagged.
4. **Clean up**: the kernel and everything it started are killed.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from . import sandbox, verdict
from .remote import AgentClient

BOOTSTRAP = "import labkit.grade.agent as _labkit_agent; _labkit_agent.bootstrap({sock!r}, {audit!r}, {protected!r})"
AUDIT_FLAGS = {"course-files": "opened the course's files (the hidden tests or the gradebook)",
               "sqlite": "opened a database (the gradebook?)", "network": "connected to another machine"}


def nbgrader_meta(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test(cell: Any) -> bool:
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.get("cell_type") == "code"


def restore(submitted: Any, source: Any) -> tuple[Any, list[str], set[str]]:
    """The submission with the course's test and read-only cells put back: (notebook,
    flags, ids of the test cells that were edited or deleted)."""
    cells, flags, tampered = [], [], set()
    theirs: dict[str, Any] = {}  # grade id: the copy kept, the first
    for cell in submitted.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in theirs:  # a duplicated cell: nbgrader would refuse it too
            continue
        if grade_id:
            theirs[grade_id] = cell
        cells.append(cell)
    ours = [c for c in source.cells if nbgrader_meta(c).get("grade_id")]
    for position, cell in enumerate(ours):
        meta = nbgrader_meta(cell)
        grade_id = meta["grade_id"]
        if not (meta.get("locked") or is_test(cell)):
            continue
        if grade_id not in theirs:
            if is_test(cell):
                flags.append(f"deleted test cell {grade_id} (restored; it earns nothing)")
                tampered.add(grade_id)
            before = [nbgrader_meta(c).get("grade_id") for c in ours[:position]]
            index = max((i + 1 for i, c in enumerate(cells) if nbgrader_meta(c).get("grade_id") in before), default=0)
            cells.insert(index, nbformat.from_dict(dict(cell)))
            continue
        mine = theirs[grade_id]
        if is_test(cell) and mine.source.strip() != cell.source.strip():
            flags.append(f"edited test cell {grade_id} (restored; it earns nothing)")
            tampered.add(grade_id)
        mine.source, mine.cell_type = cell.source, cell.cell_type
        mine.metadata["nbgrader"] = dict(meta)
    restored = nbformat.from_dict(dict(submitted))
    restored.cells = cells
    for cell in restored.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return restored, flags, tampered


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel started through :func:`labkit.grade.sandbox.kernel_command`."""

    wrap: Any = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return self.wrap(super().format_kernel_cmd(extra_arguments))


class CappedClient(NotebookClient):
    """nbclient keeping at most ``budget`` bytes of output (the rest: a flood, dropped)."""

    budget: int = 0
    flooded: bool = False

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> Any:
        size = len(json.dumps(msg.get("content", {})))
        if self.budget - size < 0:
            self.flooded = True
            return None
        self.budget -= size
        return super().output(outs, msg, display_id, cell_index)


@dataclass
class Run:
    """What happened when the notebook ran."""

    status: str = "graded"  # graded | timed out | crashed
    reason: str = ""
    executed: set[str] = field(default_factory=set)  # grade ids of the cells that ran to the end
    stderr: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the reason, not flags


def in_notebook(cell: Any) -> bool:
    """The notebook's own verdict on a test cell: it ran without an error."""
    return not any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def grade(job: dict) -> dict:
    """Grade one submission (see the module doc); returns the result as JSON data."""
    started = time.monotonic()
    limits = sandbox.Limits(**job.get("limits", {}))
    source = _notebook(job["source"])
    submitted = _notebook(job["notebook"])
    notebook, flags, tampered = restore(submitted, source)
    protected = [p for p in job.get("protected", [job.get("course", "")]) if p]  # hidden from the kernel
    key = kernel_key(protected, limits, job.get("bwrap"), job.get("scratch"))
    kernel = Kernel.take(key)
    Kernel.warm(key)  # the next submission's kernel starts while this one runs (it mostly waits on sockets)
    run = Run()
    cells: dict[str, dict] = {}
    bootstrap = nbformat.v4.new_code_cell(BOOTSTRAP.format(sock=kernel.agent_path, audit=kernel.audit_path,
                                                           protected=protected))
    client = CappedClient(nbformat.v4.new_notebook(cells=[bootstrap] + list(notebook.cells), metadata=notebook.metadata),
                          km=kernel.km, timeout=limits.cell_seconds, kernel_name="python3", allow_errors=True,
                          resources={"metadata": {"path": kernel.workdir}})
    client.budget = limits.output_bytes
    judge = Judge(source, AgentClient(kernel.agent_path), job.get("deadline", 5.0))
    try:
        kernel.wait()
        with client.setup_kernel():
            _execute(client, run, limits, started, kernel.km, judge)
            if run.status != "crashed":
                cells = judge.finish(client.nb)
    except Exception as error:  # the kernel would not even start
        run.status, run.reason = "crashed", f"the notebook could not run: {type(error).__name__}: {error}"
    finally:
        kernel.kill()
    executed = client.nb
    executed.cells = executed.cells[1:]  # without the bootstrap
    if client.flooded:
        flags.append(f"output over {limits.output_bytes // 1024} kB was dropped (a flood)")
    audit_flags, started_processes = _audit(kernel.audit_path)
    flags += audit_flags
    if kernel.limit_hit or started_processes >= limits.processes:
        # Whatever cell it was in then: the notebook could not go on, so the same status always.
        run.status = "crashed"
        run.reason = f"it hit the sandbox's limit of {limits.processes} processes and threads (forks without end?)"
    elif started_processes > PROCESS_NOTE:
        run.notes.append(f"started {started_processes} processes")
    for sus in _solution_flags(executed):
        flags.append(f"the student's code {sus}")
    kernel.remove()
    return _result(job, source, executed, run, cells, flags, tampered, time.monotonic() - started)


_SCRATCH: list[str] = []


def _scratch() -> str:
    """This process's directory for its kernels' files: hidden from every kernel, but for
    the kernel's own shared directory (bound back in)."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="labkit-grade-"))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]


def kernel_key(protected: list[str], limits: sandbox.Limits, bwrap: bool | None = None,
               scratch: str | None = None) -> tuple:
    """What a kernel is made for: two submissions with the same key can use the same
    kind of kernel (the same directories hidden, the same limits)."""
    return tuple(protected), tuple(sorted(limits.to_dict().items())), bwrap, scratch


def warm(protected: list[str], limits: dict) -> None:
    """A worker process's start: its first kernel starts before its first submission."""
    Kernel.warm(kernel_key(protected, sandbox.Limits(**limits)))


class Kernel:
    """One submission's sandboxed kernel, with its private directories, control group
    and the agent's socket. A worker starts the next submission's kernel while the
    current one runs (:meth:`warm`), so a kernel's start-up (half a second) overlaps the
    waiting that grading is mostly made of; every submission still gets a kernel of its
    own, never used before."""

    _spare: "tuple[tuple, Kernel] | None" = None
    _lock = threading.Lock()

    def __init__(self, key: tuple) -> None:
        protected, limits_items, bwrap, scratch = key
        limits = sandbox.Limits(**dict(limits_items))
        self.token = uuid.uuid4().hex[:12]
        self.root = tempfile.mkdtemp(prefix=f"kernel-{self.token}-", dir=scratch or _scratch())
        self.shared, self.workdir = os.path.join(self.root, "shared"), os.path.join(self.root, "work")
        os.makedirs(self.shared)
        os.makedirs(self.workdir)
        self.agent_path, self.audit_path = os.path.join(self.shared, "agent.sock"), os.path.join(self.shared, "audit.log")
        self.cgroup = sandbox.Cgroup(f"labkit-grade-{self.token}", processes=limits.processes,
                                     memory=limits.memory_bytes) if sandbox.isolation()["cgroup"] else None
        self.km = SandboxedKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(self.shared, "kernel"),
                                         connection_file=os.path.join(self.shared, "kernel.json"))
        self.km.wrap = lambda argv: sandbox.kernel_command(
            [sys.executable, *argv[1:]] if argv and argv[0].endswith("python") else argv, limits=limits,
            workdir=self.workdir, shared=self.shared, hidden=[*protected, scratch or _scratch()],
            job=self.token, use_bwrap=bwrap, cgroup=self.cgroup)
        self._log = open(os.path.join(self.shared, "kernel.log"), "wb")  # the kernel's own stdout and stderr
        self._started = threading.Thread(target=self._start, name="labkit-grade-kernel", daemon=True)
        self._error: Exception | None = None
        self.limit_hit = False  # the sandbox refused a process or thread (its pids limit)
        self._started.start()

    def _start(self) -> None:
        try:
            run_sync(self.km.start_kernel)(cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT)
        except Exception as error:
            self._error = error

    def wait(self) -> None:
        """The kernel has started (or raise why it could not)."""
        self._started.join()
        if self._error is not None:
            raise self._error

    @classmethod
    def take(cls, key: tuple) -> "Kernel":
        """The kernel warmed for ``key``, or a new one."""
        with cls._lock:
            spare, cls._spare = cls._spare, None
        if spare is not None and spare[0] == key:
            return spare[1]
        if spare is not None:
            spare[1].discard()
        return cls(key)

    @classmethod
    def warm(cls, key: tuple) -> None:
        with cls._lock:
            if cls._spare is None:
                cls._spare = (key, cls(key))

    def kill(self) -> None:
        self._started.join()
        self.limit_hit = self.cgroup is not None and self.cgroup.limit_hit()
        _kill(self.km, self.token, self.cgroup)
        self._log.close()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def discard(self) -> None:
        self.kill()
        self.remove()


@atexit.register
def _discard_spare() -> None:
    spare, Kernel._spare = Kernel._spare, None
    if spare is not None:
        spare[1].discard()


def _notebook(data: dict) -> Any:
    """A notebook from its JSON (as in a file: sources may be lists of lines)."""
    return nbformat.reads(json.dumps(data), as_version=4)


def _execute(client: CappedClient, run: Run, limits: sandbox.Limits, started: float, km: AsyncKernelManager,
             judge: "Judge") -> None:
    deadline = started + limits.notebook_seconds
    solutions = [i for i, c in enumerate(client.nb.cells) if c.cell_type == "code" and nbgrader_meta(c).get("solution")]
    last_solution = solutions[-1] if solutions else 0
    for index, cell in enumerate(client.nb.cells):
        if cell.cell_type != "code":
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            run.status, run.reason = "timed out", f"the notebook took over {limits.notebook_seconds:g}s"
            return
        client.timeout = max(1, int(min(limits.cell_seconds, left)))
        grade_id = nbgrader_meta(cell).get("grade_id", f"cell {index}")
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:
            run.status = "timed out"
            run.reason = f"cell {grade_id} still ran after {client.timeout}s"
            _interrupt(km)
            return
        except DeadKernelError:
            run.status, run.reason = "crashed", f"the kernel died in cell {grade_id} (os._exit or a crash)"
            return
        if index == 0 and not in_notebook(cell):  # the bootstrap
            run.status, run.reason = "crashed", "the grading agent could not start in the kernel"
            return
        run.executed.add(grade_id)
        if any(o.get("name") == "stderr" for o in cell.outputs if o.get("output_type") == "stream"):
            run.stderr.append(grade_id)
        if index == last_solution:
            judge.ready()


def _interrupt(km: AsyncKernelManager) -> None:
    """Interrupt the running cell (a message on the control channel: a signal would stop
    at bubblewrap, which does not pass it on)."""
    try:
        km.kernel_spec.interrupt_mode = "message"
        run_sync(km.interrupt_kernel)()
    except Exception:
        pass


class Judge:
    """The outside verdict, in a thread of its own, started once the notebook has run its
    last solution cell (the student's code is all defined then): while the kernel goes on
    with the notebook's own test cells, this judges the same cells from outside (the
    checks mostly wait on sockets, so the two overlap). One cell at a time, in order."""

    def __init__(self, source: Any, agent: AgentClient, deadline: float) -> None:
        self.tests = [c for c in source.cells if is_test(c)]
        self.agent, self.deadline = agent, deadline
        self.outside: dict[str, tuple[bool | None, list, str]] = {}
        self._thread = threading.Thread(target=self._work, name="labkit-grade-judge", daemon=True)

    def ready(self) -> None:
        """The student's code has run: judging may begin."""
        if self._thread.ident is None:
            self._thread.start()

    def finish(self, executed: Any) -> dict[str, dict]:
        """Wait for the outside verdicts; add each cell's own verdict in the notebook."""
        self.ready()
        self._thread.join()
        ran = {nbgrader_meta(c).get("grade_id"): c for c in executed.cells if c.get("execution_count")}
        judged = {}
        for cell in self.tests:
            grade_id = nbgrader_meta(cell)["grade_id"]
            passed, reports, why = self.outside.get(grade_id, (None, [], "not judged"))
            judged[grade_id] = {"points": float(nbgrader_meta(cell).get("points", 0)),
                                "in_notebook": grade_id in ran and in_notebook(ran[grade_id]), "outside": passed,
                                "only_checks": not verdict.check_calls(cell.source)[1], "why": why,
                                "reports": [r.to_json() for r in reports]}
        return judged

    def _work(self) -> None:
        for cell in self.tests:
            self.outside[nbgrader_meta(cell)["grade_id"]] = verdict.outside(cell.source, self.agent,
                                                                           deadline=self.deadline)


def _kill(km: AsyncKernelManager, token: str, cgroup: sandbox.Cgroup | None) -> None:
    """The kernel, its process group, and anything else a submission started."""
    try:
        run_sync(km.shutdown_kernel)(now=True)
    except Exception:
        pass
    if cgroup is not None:
        cgroup.remove()
    for pid in sandbox.strays(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


PROCESS_NOTE = 50  # processes a notebook may start before the TA is told


def _audit(path: str) -> tuple[list[str], int]:
    """What the audit hook saw: (flags for a human, how many processes it started)."""
    try:
        with open(path) as f:
            events = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return [], 0
    first = {e["kind"]: e["detail"] for e in reversed(events)}
    flags = [f"{AUDIT_FLAGS[kind]}: {detail}" for kind, detail in first.items() if kind in AUDIT_FLAGS]
    return flags, sum(1 for e in events if e["kind"] == "process")


def _solution_flags(executed: Any) -> list[str]:
    found: list[str] = []
    for cell in executed.cells:
        if cell.cell_type == "code" and nbgrader_meta(cell).get("solution"):
            found += [s for s in verdict.suspicious(cell.source) if s not in found]
    return found


def _result(job: dict, source: Any, executed: Any, run: Run, cells: dict[str, dict], flags: list[str],
            tampered: set[str], elapsed: float) -> dict:
    """Scores per cell and in all, the status, and the reason a TA reads."""
    total = max_score = 0.0
    disagreements = []
    for cell in source.cells:
        if not is_test(cell):
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        entry = cells.setdefault(grade_id, {"points": float(nbgrader_meta(cell).get("points", 0)),
                                            "in_notebook": False, "outside": None, "why": run.reason,
                                            "reports": []})
        if entry["outside"] is None:  # no check to run outside: the notebook's own result
            passed = entry["in_notebook"]
        elif entry.get("only_checks"):
            passed = entry["outside"]
            if entry["in_notebook"] != passed and grade_id in run.executed:
                disagreements.append(grade_id)
        else:  # checks and plain asserts: both must hold
            passed = entry["outside"] and entry["in_notebook"]
        entry["score"] = entry["points"] if passed and grade_id not in tampered else 0.0
        total += entry["score"]
        max_score += entry["points"]
    patched = [g for g in disagreements if cells[g]["in_notebook"]]
    if patched:
        flags.append(f"{', '.join(patched)} passed in the notebook but not outside it (patched checks?)")
    if len(patched) < len(disagreements):
        flags.append(f"{', '.join(g for g in disagreements if g not in patched)} failed in the notebook but passed "
                     "outside it")
    if any(f.startswith((AUDIT_FLAGS["course-files"], AUDIT_FLAGS["sqlite"])) for f in flags):
        for entry in cells.values():  # the course's files are off limits: no points at all, a human decides
            entry["score"] = 0.0
        total = 0.0
    cheating = [f for f in flags if not f.startswith("output over")]
    status = run.status
    if status == "graded" and cheating:
        status = "flagged"
    lost = [grade_id for grade_id, entry in cells.items() if entry["score"] < entry["points"]]
    reasons = ([run.reason] if run.reason else []) + ([f"failed: {', '.join(lost)}"] if lost else []) + flags
    if run.stderr:
        reasons.append(f"wrote to stderr in {', '.join(run.stderr)}")
    reasons += run.notes
    return {"student": job["student"], "assignment": job["assignment"], "notebook": job["notebook_name"],
            "status": status, "reason": "; ".join(reasons), "score": total, "max_score": max_score,
            "cells": cells, "flags": flags, "elapsed": round(elapsed, 2),
            "executed": nbformat.writes(executed)}


def main() -> None:
    job_path, result_path = sys.argv[1:3]
    with open(job_path) as f:
        job = json.load(f)
    result = grade(job)
    with open(result_path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(result_path + ".tmp", result_path)


if __name__ == "__main__":
    main()
