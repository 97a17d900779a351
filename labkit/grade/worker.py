"""Grading one submission, in a worker process: a local pool's, or on a dask worker
``python -m labkit.grade.worker --serve``, which grades the jobs it reads one after another.

1. **Read** it: a notebook that is not JSON, not nbformat, not UTF-8, too large or too
   deep is ``invalid``, with the reason, and nothing runs.
2. **Restore** the course's cells: each test cell and read-only code cell is put back as
   the course has it; one the student edited (compared with the cell they were given,
   the release's: hidden tests never count as an edit) or deleted is flagged for a human.
   Cells the student added, notes included, run as they are and cost nothing.
3. **Run** it in a pod (:mod:`.pod`): a sandboxed kernel with no answer key, and beside
   it the judge with the lab world and the checks. Every cell but the autograded test
   cells runs in the kernel (time caps per cell and for the whole notebook, output
   capped); each **test cell is judged by the judge, in order, where it stands**: its
   checks run against the student's objects as they are at that point (:mod:`.verdict`).
   A test cell never runs in the kernel, so its hidden tests never reach it.
4. **Decide** from data: each cell's score is the judge's verdict, or 0 with "could not be
   judged: WHY"; the status is one of :class:`Status`; flags are :class:`Flag` s.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..channel import ChannelClosed, RemoteError
from . import pod as pods
from . import verdict

MAX_NOTEBOOK_BYTES = 20 << 20  # a handed-in notebook (the labs' are ~100 kB with outputs)
MAX_JSON_DEPTH = 64
BOOTSTRAP = "import labkit.graded as _labkit_graded\n_labkit_graded.channel()"
PROCESS_NOTE = 50  # processes a notebook may start before the TA is told


class Status(str, Enum):
    """A submission's status in grades.csv."""

    GRADED = "graded"
    FLAGGED = "flagged"  # graded, and something a human should look at
    TIMED_OUT = "timed out"
    CRASHED = "crashed"
    UNJUDGED = "unjudged"  # a cell could not be judged for a reason of the grader's
    INVALID = "invalid"  # not a notebook
    MISSING = "missing"


class FlagKind(str, Enum):
    """What a human should look at (the status is then ``flagged``)."""

    EDITED_TEST = "edited test cell"
    DELETED_TEST = "deleted test cell"
    EDITED_LOCKED = "edited read-only cell"
    LABKIT_INTERNALS = "the student's code"
    FLOOD = "output"


@dataclass(frozen=True)
class Flag:
    kind: FlagKind
    detail: str

    def text(self) -> str:
        return f"{self.kind.value} {self.detail}"


@dataclass
class Run:
    """What happened when the notebook ran."""

    status: Status = Status.GRADED
    reason: str = ""
    executed: set[str] = field(default_factory=set)  # grade ids of the cells that ran to the end
    stderr: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the reason, not flags


def nbgrader_meta(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test(cell: Any) -> bool:
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.get("cell_type") == "code"


def points(cell: Any) -> float:
    try:
        return float(nbgrader_meta(cell).get("points", 0))
    except (TypeError, ValueError):
        return 0.0


# -- 1. reading ----------------------------------------------------------------------------------
class InvalidSubmission(ValueError):
    """Not a notebook that can be graded; the message says why."""


def read_submission(data: bytes) -> Any:
    """The handed-in notebook, or :class:`InvalidSubmission`."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise InvalidSubmission(f"it is {len(data) // 1024} kB, over the limit of {MAX_NOTEBOOK_BYTES >> 20} MB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidSubmission(f"it is not UTF-8 text (byte {error.start})") from None
    try:
        raw = json.loads(text)  # the C parser guards its own recursion: a RecursionError, not a crash
    except RecursionError:
        raise InvalidSubmission(f"its JSON is nested over {MAX_JSON_DEPTH} deep") from None
    except ValueError as error:
        raise InvalidSubmission(f"it is not JSON ({error})") from None
    if _depth(raw) > MAX_JSON_DEPTH:
        raise InvalidSubmission(f"its JSON is nested over {MAX_JSON_DEPTH} deep")
    try:
        notebook = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:
        raise InvalidSubmission(f"it is not a Jupyter notebook ({str(error).splitlines()[0][:200]})") from None
    return notebook


def _depth(value: Any) -> int:
    """How deep lists and objects nest in parsed JSON (counted without recursing)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            todo += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest


# -- 2. restoring the course's cells -----------------------------------------------------------------
def restore(submitted: Any, source: Any, given: dict[str, str]) -> tuple[Any, list[Flag]]:
    """The submission with the course's test and read-only code cells put back
    (``given``: each such cell's text as the release handed it out)."""
    cells, flags = [], []
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
        test, locked_code = is_test(cell), meta.get("locked") and cell.cell_type == "code"
        if not (test or meta.get("locked")):
            continue
        if grade_id not in theirs:
            if test:
                flags.append(Flag(FlagKind.DELETED_TEST, f"{grade_id} (the course's own was judged)"))
            before = [nbgrader_meta(c).get("grade_id") for c in ours[:position]]
            index = max((i + 1 for i, c in enumerate(cells) if nbgrader_meta(c).get("grade_id") in before), default=0)
            cells.insert(index, nbformat.from_dict(dict(cell)))
            continue
        mine = theirs[grade_id]
        if (test or locked_code) and mine.source.strip() != given.get(grade_id, cell.source).strip():
            kind = FlagKind.EDITED_TEST if test else FlagKind.EDITED_LOCKED
            flags.append(Flag(kind, f"{grade_id} (the course's own was {'judged' if test else 'run'})"))
        mine.source, mine.cell_type = cell.source, cell.cell_type
        mine.metadata["nbgrader"] = dict(meta)
    restored = nbformat.from_dict(dict(submitted))
    restored.cells = cells
    for cell in restored.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return restored, flags


def suspicious(notebook: Any) -> list[str]:
    """What the student's answer cells do that a TA should look at (:func:`verdict.suspicious`),
    read in the coordinator, which parses alone (CPython 3.11's ``ast`` counts its
    recursion per interpreter, not per thread: two threads parsing at once can fail)."""
    found: list[str] = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and nbgrader_meta(cell).get("solution"):
            found += [s for s in verdict.suspicious(cell.source) if s not in found]
    return found


def given_cells(source: Any, config: Any = None, release: Path | None = None) -> dict[str, str]:
    """Each test and read-only code cell's text as nbgrader's release hands it out: as
    the course's release has it (``release``: the notebook nbgrader generated), if that
    has them all; else as nbgrader makes it (``ClearHiddenTests`` with the course's
    configuration, whose import takes 0.5 s)."""
    wanted = [c for c in source.cells if nbgrader_meta(c).get("grade_id") and c.cell_type == "code"
              and (is_test(c) or nbgrader_meta(c).get("locked"))]
    try:
        handed_out = {nbgrader_meta(c).get("grade_id"): c.source
                      for c in nbformat.read(release, as_version=4).cells} if release else {}
    except (OSError, ValueError):
        handed_out = {}
    if all(nbgrader_meta(c)["grade_id"] in handed_out for c in wanted):
        return {nbgrader_meta(c)["grade_id"]: handed_out[nbgrader_meta(c)["grade_id"]] for c in wanted}
    from nbgrader.preprocessors import ClearHiddenTests

    clear = ClearHiddenTests(config=config) if config is not None else ClearHiddenTests()
    given = {}
    for cell in wanted:
        copy = nbformat.from_dict(dict(cell))
        clear._remove_hidden_test_region(copy)
        given[nbgrader_meta(cell)["grade_id"]] = copy.source
    return given


# -- 3. running and judging ------------------------------------------------------------------------------
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


class Cause(str, Enum):
    """Why a test cell could not be judged."""

    CHANNEL = "channel"  # the notebook's channel to the judge broke (only the notebook can break it)
    COURSE = "course"  # the course's cell is not in a form the judge runs
    JUDGE = "judge"  # the judge failed, or took too long
    STOPPED = "stopped"  # the notebook stopped before this cell (crashed, timed out)


@dataclass
class Judged:
    """One test cell's verdict: ``passed`` (None when it could not be judged: ``cause``
    says why, ``unjudged`` in words), and the check reports."""

    passed: bool | None
    reports: list = field(default_factory=list)
    unjudged: str = ""
    cause: Cause | None = None


def judge(pod: pods.Pod, cell: Any, deadline: float, limit: float) -> Judged:
    try:
        answer = pod.channel.request("judge.cell", {"source": cell.source, "deadline": deadline}, timeout=limit)
    except TimeoutError:
        return Judged(None, unjudged=f"its checks were still running after {limit:g}s", cause=Cause.JUDGE)
    except (ChannelClosed, RemoteError) as error:
        return Judged(None, unjudged=f"the grader's judge failed ({error})", cause=Cause.JUDGE)
    unjudged = str(answer.get("unjudged") or "")
    if not unjudged:
        return Judged(answer.get("passed"), answer.get("reports", []))
    cause = Cause.CHANNEL if answer.get("cause") == "channel" else Cause.COURSE if answer.get("cause") == "course" \
        else Cause.JUDGE
    return Judged(None, [], unjudged, cause)


def _outputs(judged: Judged) -> list:
    """The judge's verdict as the cell's outputs (an error output when it failed, as
    nbgrader and formgrader read a failed test cell)."""
    from .gradebook import report_from_json

    reports = [report_from_json(r) for r in judged.reports]
    html = "".join(r._repr_html_() for r in reports) or f"<p>{judged.unjudged}</p>"
    text = "\n".join(str(r) for r in reports) or f"could not be judged: {judged.unjudged}"
    outputs = [nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": text})]
    if not judged.passed:
        outputs.append(nbformat.v4.new_output("error", ename="CheckFailed", evalue=text.splitlines()[0][:300]
                                              if text else "failed", traceback=[]))
    return outputs


def _execute(client: CappedClient, pod: pods.Pod, run: Run, limits: pods.Limits, started: float,
             deadline: float) -> dict[str, Judged]:
    judged: dict[str, Judged] = {}
    notebook_deadline = started + limits.notebook_seconds
    stopped = ""  # why the cells after this point were not run (or judged)
    for index, cell in enumerate(client.nb.cells):
        if cell.cell_type != "code":
            continue
        grade_id = nbgrader_meta(cell).get("grade_id", f"cell {index}")
        left = notebook_deadline - time.monotonic()
        if not stopped and left <= 0:
            run.status, run.reason = Status.TIMED_OUT, f"the notebook took over {limits.notebook_seconds:g}s"
            stopped = run.reason
        if not stopped and pod.starved():
            # What it forked holds the pids limit: no cell from here on could start a thread (the
            # world's), each would wait out its time limit. The run is marked crashed (see grade).
            stopped = "it hit the sandbox's limit of processes and threads before this cell"
        if is_test(cell):
            judged[grade_id] = Judged(None, unjudged=stopped, cause=Cause.STOPPED) if stopped else judge(
                pod, cell, deadline, max(1.0, min(limits.cell_seconds, left)))
            cell.outputs = _outputs(judged[grade_id])
            continue
        if stopped:
            continue
        client.timeout = max(1, int(min(limits.cell_seconds, left)))
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:
            run.status = Status.TIMED_OUT
            run.reason = run.reason or f"cell {grade_id} still ran after {client.timeout}s (interrupted)"
            _interrupt(pod)
            continue
        except DeadKernelError:
            run.status, run.reason = Status.CRASHED, f"the kernel died in cell {grade_id} (os._exit or a crash)"
            stopped = f"the kernel died in cell {grade_id} before this cell"
            continue
        if index == 0:  # the bootstrap
            if any(o.get("output_type") == "error" for o in cell.outputs):
                run.status, run.reason = Status.CRASHED, "the grading channel could not start in the kernel"
                stopped = run.reason
            continue
        run.executed.add(grade_id)
        if any(o.get("name") == "stderr" for o in cell.outputs if o.get("output_type") == "stream"):
            run.stderr.append(grade_id)
    return judged


def _interrupt(pod: pods.Pod) -> None:
    """Interrupt the running cell (a message on the control channel: a signal would stop
    at bubblewrap, which does not pass it on)."""
    from jupyter_core.utils import run_sync

    try:
        pod.km.kernel_spec.interrupt_mode = "message"
        run_sync(pod.km.interrupt_kernel)()
    except Exception:
        pass


def grade(job: dict) -> dict:
    """Grade one submission (see the module doc); returns the result as JSON data."""
    started = time.monotonic()
    limits = pods.Limits(**job.get("limits", {}))
    source = nbformat.reads(json.dumps(job["source"]), as_version=4)
    try:
        submitted = read_submission(job["notebook"].encode("utf-8", "surrogateescape")
                                    if isinstance(job["notebook"], str) else job["notebook"])
    except InvalidSubmission as error:
        return invalid(job, str(error))
    notebook, flags = restore(submitted, source, job.get("given", {}))
    pod = _Pods.take(job)
    run = Run()
    judged: dict[str, Judged] = {}
    bootstrap = nbformat.v4.new_code_cell(BOOTSTRAP)
    client = CappedClient(nbformat.v4.new_notebook(cells=[bootstrap] + list(notebook.cells), metadata=notebook.metadata),
                          km=pod.km, timeout=limits.cell_seconds, kernel_name="python3", allow_errors=True,
                          resources={"metadata": {"path": pod.workdir}})
    client.budget = limits.output_bytes
    try:
        pod.wait()
        with client.setup_kernel():
            judged = _execute(client, pod, run, limits, started, job.get("deadline", 5.0))
    except Exception as error:  # the pod would not even start
        run.status, run.reason = Status.CRASHED, f"the notebook could not run: {type(error).__name__}: {error}"
    finally:
        pod.kill()
        pod.remove()
    executed = client.nb
    executed.cells = executed.cells[1:]  # without the bootstrap
    if client.flooded:
        flags.append(Flag(FlagKind.FLOOD, f"over {limits.output_bytes // 1024} kB was dropped (a flood)"))
    if pod.limit_hit:  # whatever cell it was in then: the notebook could not go on, so the same status always
        run.status = Status.CRASHED
        run.reason = f"it hit the sandbox's limit of {limits.processes} processes and threads (forks without end?)"
    flags += [Flag(FlagKind.LABKIT_INTERNALS, sus) for sus in job.get("suspicious", [])]
    return _result(job, source, executed, run, judged, flags, time.monotonic() - started)


def invalid(job: dict, why: str) -> dict:
    """The row of a submission that cannot be graded: 0 points, ``invalid``, why."""
    source = nbformat.reads(json.dumps(job["source"]), as_version=4)
    return _result(job, source, None, Run(Status.INVALID, f"invalid submission: {why}"), {}, [], 0.0)


CREDIT = ("per-check", "all-or-nothing")


def credit(cell: Any, judged: Judged) -> float:
    """The share of a test cell's points a verdict earns: by default each check's rows
    (rules, weighted by their points) earn their part of the cell's points, as
    otter-grader's per-test points do; a cell whose metadata says
    ``{"labkit": {"credit": "all-or-nothing"}}`` earns all or nothing, as nbgrader's do.
    A cell that could not be judged earns nothing."""
    if judged.passed is None:
        return 0.0
    if judged.passed or cell.get("metadata", {}).get("labkit", {}).get("credit") == "all-or-nothing":
        return 1.0 if judged.passed else 0.0
    earned = sum(float(r.get("score", 0)) for r in judged.reports)
    possible = sum(float(r.get("max_score", 0)) for r in judged.reports)
    return round(earned / possible, 4) if possible else 0.0


def _result(job: dict, source: Any, executed: Any, run: Run, judged: dict[str, Judged], flags: list[Flag],
            elapsed: float) -> dict:
    """Scores per cell and in all, the status, and the reason a TA reads."""
    cells: dict[str, dict] = {}
    total = max_score = 0.0
    unjudgeable = []  # cells that could not be judged for a reason other than the run stopping
    for cell in source.cells:
        if not is_test(cell):
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        verdict_of = judged.get(grade_id) or Judged(None, unjudged=run.reason or "the notebook did not get here",
                                                    cause=Cause.STOPPED)
        share = credit(cell, verdict_of)
        score = round(points(cell) * share, 2)
        cells[grade_id] = {"points": points(cell), "score": score, "passed": verdict_of.passed,
                           "share": share, "unjudged": verdict_of.unjudged, "reports": verdict_of.reports}
        total += score
        max_score += points(cell)
        if verdict_of.cause is not None and verdict_of.cause is not Cause.STOPPED:
            unjudgeable.append(grade_id)
    status = run.status
    if status is Status.GRADED and unjudgeable:
        status = Status.UNJUDGED
    if status is Status.GRADED and any(f.kind is not FlagKind.FLOOD for f in flags):
        status = Status.FLAGGED
    failed = [g + (f" ({c['score']:g}/{c['points']:g})" if c["score"] else "") for g, c in cells.items()
              if c["passed"] is False]
    unjudged = [f"{g} ({c['unjudged']})" for g, c in cells.items() if c["passed"] is None and run.status
                is not Status.INVALID]
    reasons = [run.reason] if run.reason else []
    if failed:
        reasons.append(f"failed: {', '.join(failed)}")
    if unjudged and status not in (Status.TIMED_OUT, Status.CRASHED):
        reasons.append("could not be judged: " + "; ".join(unjudged))
    reasons += [f.text() for f in flags]
    if run.stderr:
        reasons.append(f"wrote to stderr in {', '.join(run.stderr)}")
    reasons += run.notes
    return {"student": job["student"], "assignment": job["assignment"], "notebook": job["notebook_name"],
            "status": status.value, "reason": "; ".join(reasons), "score": total, "max_score": max_score,
            "cells": cells, "flags": [{"kind": f.kind.value, "detail": f.detail} for f in flags],
            "elapsed": round(elapsed, 2), "executed": nbformat.writes(executed) if executed is not None else ""}


# -- pods, one warming while another runs ------------------------------------------------------------------
_SCRATCH: list[str] = []


def scratch(parent: str | None = None) -> str:
    """This process's directory for its pods (under the run's, if it gave one)."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix=f"w{os.getpid()}-", dir=parent))
        at_exit(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]


def at_exit(fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` when this process ends: a pool's worker process too, which
    leaves by os._exit (no atexit) after multiprocessing's own finalizers."""
    import multiprocessing.util

    atexit.register(fn, *args)
    multiprocessing.util.Finalize(None, fn, args, exitpriority=10)


def prepare(run_dir: str | None, sandboxed: bool) -> None:
    """A worker process's start (before it has threads): its own mounts, where the pods'
    small file systems live; labkit's bytecode, for its judges; its scratch directory."""
    if sandboxed and os.geteuid() == 0:
        pods.private_mounts()
    pods.compile_labkit()
    scratch(run_dir)


class _Pods:
    """The next submission's pod starts while this one runs (a kernel and a judge take
    about a second to start: that overlaps the waiting grading is mostly made of); every
    submission still gets a pod of its own, never used before."""

    _spare: "tuple[tuple, pods.Pod] | None" = None
    _lock = threading.Lock()

    @staticmethod
    def key(job: dict) -> tuple:
        return (job["student_package"], tuple(sorted(job.get("limits", {}).items())), job.get("sandboxed", True),
                job.get("run", ""), job.get("run_dir"))

    @classmethod
    def make(cls, key: tuple) -> pods.Pod:
        student, limits, sandboxed, run, run_dir = key
        return pods.Pod(scratch(run_dir), student, pods.Limits(**dict(limits)), sandboxed=sandboxed, run=run)

    @classmethod
    def take(cls, job: dict) -> pods.Pod:
        """The job's pod; and the next one starts, for the lab of the job most likely next
        here (``"next_package"``, its kernel's labkit; by default this job's), or none if
        that is None (a pod started for nothing costs as much CPU as a submission's)."""
        key = cls.key(job)
        with cls._lock:
            spare, cls._spare = cls._spare, None
        if spare is not None and spare[0] != key:
            spare[1].kill()
            spare[1].remove()
            spare = None
        pod = spare[1] if spare is not None else cls.make(key)
        following = job.get("next_package", job["student_package"])
        if following is not None:
            cls.warm(cls.key({**job, "student_package": following}))
        return pod

    @classmethod
    def warm(cls, key: tuple) -> None:
        with cls._lock:
            if cls._spare is None:
                cls._spare = (key, cls.make(key))


def _discard_spare() -> None:
    spare, _Pods._spare = _Pods._spare, None
    if spare is not None:
        spare[1].kill()
        spare[1].remove()


at_exit(_discard_spare)


class _PollerEnded(logging.Filter):
    """nbclient's output poller, stopped when a cell times out, can end with a
    ``queue.Empty`` that nobody retrieves; asyncio would print it, a traceback, on the
    TA's terminal. The cell's time-out is in the submission's row already."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, queue.Empty) and "_async_poll_output_msg" in record.getMessage())


def quiet() -> None:
    """A grading process's stderr is the TA's terminal: nothing there but labkit's own words."""
    logging.getLogger("asyncio").addFilter(_PollerEnded())


def start(run_dir: str | None, sandboxed: bool) -> None:
    """A grading process's start (a pool's, or one serving a dask worker). Stopping is
    its coordinator's (a Ctrl-C reaches this process too): SIGTERM ends it at once (what
    it ran dies with it), SIGINT is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    quiet()
    prepare(run_dir, sandboxed)


def warm(job_shape: dict) -> None:
    """A pool process's start: its first pod starts before its first submission."""
    start(job_shape.get("run_dir"), job_shape.get("sandboxed", True))
    _Pods.warm(_Pods.key(job_shape))


_packages: dict[tuple, str] = {}  # a serving process's copies of the kernel's labkit, by lab_kernel()


def own_package(source: dict) -> str:
    """The kernel's labkit for ``source``'s lab, written in this process's scratch the
    first time that lab comes (a job from another machine cannot use the coordinator's)."""
    kernel = pods.lab_kernel(source)
    if kernel not in _packages:
        dest = Path(scratch()) / f"student-{len(_packages)}"
        _packages[kernel] = str(pods.student_package(dest, *kernel))
    return _packages[kernel]


def serve(sandboxed: bool) -> None:
    """Grade jobs one after another for a dask worker (:func:`labkit.grade.run.run_job_apart`):
    a job a line of JSON on stdin, its row a line on stdout, until stdin ends. As a
    pool's process, it imports once and starts the next pod while a job runs, for the
    lab it just graded (a dask worker is mostly given one lab's jobs)."""
    # The rows go out on a copy of stdout that no child inherits (os.dup's are not
    # inheritable); fd 1 itself becomes stderr, so nothing a pod or a library prints can
    # pass for a row.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    start(None, sandboxed)
    for line in sys.stdin:
        job = json.loads(line)
        # the coordinator's run folder and kernel's labkit are on its machine: this process's own instead
        job = {**job, "run_dir": None, "student_package": own_package(job["source"])}
        replies.write(json.dumps(grade(job)) + "\n")
        replies.flush()


if __name__ == "__main__":
    if "--serve" not in sys.argv[1:2]:
        sys.exit("usage: python -m labkit.grade.worker --serve [--unsandboxed]  (labkit grade --dask starts it)")
    serve(sandboxed="--unsandboxed" not in sys.argv)
