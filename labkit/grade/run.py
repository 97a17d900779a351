"""``labkit grade ASSIGNMENT``: grade a whole course's submissions, in parallel.

    labkit grade 1-smtp-by-hand [MORE ASSIGNMENTS] --course grading/ [--workers N] [--student S] [--force]
                 [--submissions lms-download.zip] [--dask SCHEDULER_ADDRESS]

The coordinator (this module) collects the submissions (:mod:`.collect`), hands each to
a worker process (:mod:`.worker`: sandboxed, judged from outside) on this machine or on
a dask.distributed cluster, and writes every verdict itself, one after the other
(:mod:`.gradebook`): gradebook, autograded notebook, feedback page. Then
``labkit-grades.csv`` (one row per student and assignment: score, max score, status, how
late, reason; nbgrader's own export writes ``grades.csv``) and a summary:
the score distribution, the statuses, the submissions flagged for a human look.
A second run skips what it graded already (the same file), unless ``--force``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable, TextIO

import nbformat

from . import collect, gradebook
from . import pod as pods
from .worker import InvalidSubmission, Status, given_cells, read_submission, suspicious

STATUSES = tuple(s.value for s in Status)
CSV_FIELDS = ["student", "assignment", "score", "max_score", "status", "late", "reason"]
WORKER_TASKS = 20  # submissions per worker process before the pool is renewed


def job_for(submission: collect.Submission, source: dict, shape: dict, notebook_name: str, given: dict[str, str]
            ) -> dict:
    """One submission's job: all a worker needs (nothing of the course but the
    assignment's source notebook, which never reaches the kernel)."""
    return {**shape, "student": submission.student, "assignment": submission.assignment,
            "notebook_name": notebook_name, "notebook": submission.notebook.read_bytes().decode("utf-8"),
            "source": source, "given": given}


def run_job(job: dict) -> dict:
    """One submission, in this (worker) process: what a pool process runs. The
    student's code is not here but in the pod's sandboxed kernel; a failure of the
    worker itself still gives the submission a row."""
    from .worker import grade as grade_one

    try:
        return grade_one(job)
    except Exception as error:  # a bug of ours: this submission gets a row saying so
        return _failed(job, Status.UNJUDGED, f"could not be judged: the grader failed on this submission: "
                                             f"{type(error).__name__}: {error}")


class _Apart:
    """A dask worker thread's grading process (``python -m labkit.grade.worker --serve``):
    beside the dask worker, whose threads must not share a pod's mounts and namespaces,
    and kept for that thread's next jobs, as a local pool's process is (its imports, the
    kernel's labkit and the next pod's start are paid once, not for every job). Renewed
    every ``WORKER_TASKS`` jobs; all of a dask worker's are ended at a run's end
    (:func:`end_apart`), and each ends by itself if its dask worker dies."""

    live: "set[_Apart]" = set()
    started = 0  # in this dask worker, ever
    lock = threading.Lock()
    mine = threading.local()

    def __init__(self, sandboxed: bool) -> None:
        import subprocess

        self.sandboxed, self.jobs = sandboxed, 0
        self.stderr = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labkit.grade.worker", "--serve", *([] if sandboxed else ["--unsandboxed"])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        with self.lock:
            self.live.add(self)
            _Apart.started += 1

    @classmethod
    def for_job(cls, job: dict) -> "_Apart":
        apart: _Apart | None = getattr(cls.mine, "apart", None)
        sandboxed = job.get("sandboxed", True)
        if apart is None or apart not in cls.live or apart.jobs >= WORKER_TASKS or apart.sandboxed != sandboxed:
            if apart is not None:
                apart.end()
            apart = cls.mine.apart = cls(sandboxed)
        apart.jobs += 1
        return apart

    def grade(self, job: dict) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (OSError, ValueError):  # it died, or the run is ending (end_apart closed its stdin)
            line = ""
        if line:
            return json.loads(line)
        self.end()
        try:
            self.stderr.seek(0)
            why = self.stderr.read()[-300:]
        except ValueError:  # closed by another thread's end()
            why = ""
        return _failed(job, Status.UNJUDGED, f"could not be judged: the grading process failed "
                                             f"({self.process.returncode}): {why}")

    def end(self) -> None:
        """Close its stdin: idle, it ends at once, its warm pod and scratch with it; one
        still grading (a run stopped) is killed after a few seconds, its pods with it."""
        with self.lock:
            self.live.discard(self)
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(10)
        except Exception:  # noqa: BLE001 - still grading: it goes all the same
            self.process.kill()
            self.process.wait()


def run_job_apart(job: dict) -> dict:
    """One submission on a dask worker, in this thread's grading process (:class:`_Apart`)."""
    return _Apart.for_job(job).grade(job)


def end_apart() -> int:
    """End this dask worker's grading processes (run on every worker at a run's end: the
    pods they keep warm go with them); how many there were."""
    with _Apart.lock:
        ending = list(_Apart.live)
    for apart in ending:
        apart.end()
    return len(ending)


def _failed(job: dict, status: Status, reason: str) -> dict:
    source = nbformat.reads(json.dumps(job["source"]), as_version=4)
    cells = {c.metadata["nbgrader"]["grade_id"]: {"points": float(c.metadata["nbgrader"].get("points", 0)),
                                                  "score": 0.0, "passed": None, "unjudged": reason, "reports": []}
             for c in source.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
             and not c.metadata["nbgrader"].get("solution")}
    return {"student": job["student"], "assignment": job["assignment"], "notebook": job["notebook_name"],
            "status": status.value, "reason": reason, "score": 0.0,
            "max_score": sum(c["points"] for c in cells.values()), "cells": cells, "flags": []}


class Progress:
    """A progress bar on a terminal; a line per submission elsewhere."""

    def __init__(self, total: int, out: TextIO = sys.stderr) -> None:
        self.total, self.done, self.out = total, 0, out
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, result: dict) -> None:
        with self._lock:
            self.done += 1
            self.counts[result["status"]] = self.counts.get(result["status"], 0) + 1
            if self.tty:
                filled = int(30 * self.done / max(self.total, 1))
                shown = ", ".join(f"{n} {s}" for s, n in self.counts.items())
                self.out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}  {shown}\x1b[K")
                if self.done == self.total:
                    self.out.write("\n")
            else:
                self.out.write(f"{self.done}/{self.total} {result['student']}: {result['status']} "
                               f"{result['score']:g}/{result['max_score']:g}\n")
            self.out.flush()


PER_CORE = 2  # a submission waits about half its time (timeouts a check waits out on purpose, a kernel's start)
WORKER_MEMORY = 768 << 20  # a worker with its pod and the next one warming, measured at about 700 MB


def default_workers(cores: int | None = None, available: int | None = None) -> int:
    """Two submissions per core keep the cores busy while each waits, as far as the
    memory available (``available`` bytes, by default what the kernel says now) holds
    their pods."""
    cores = cores or len(os.sched_getaffinity(0))
    if available is None:
        try:
            with open("/proc/meminfo") as f:
                available = next(int(line.split()[1]) << 10 for line in f if line.startswith("MemAvailable:"))
        except (OSError, StopIteration, ValueError):
            return cores
    return max(1, min(cores * PER_CORE, available // WORKER_MEMORY))


def grade(assignments: str | list[str], course: Path, *, workers: int | None = None, student: str | None = None,
          force: bool = False, submissions_from: Path | None = None, dask: str | None = None,
          limits: pods.Limits | None = None, progress: Callable[[dict], None] | None = None,
          sandboxed: bool = True, roster: Path | None = None) -> list[dict]:
    """Grade every submission of ``assignments`` (one or several, graded together);
    returns the rows (see the module doc). ``sandboxed=False`` is
    ``--unsafe-no-sandbox``. Nothing is left behind: the run's scratch directory and
    control groups go at the end, on Ctrl-C too."""
    assignments = [assignments] if isinstance(assignments, str) else list(assignments)
    course = course.resolve()
    limits = limits or pods.Limits()
    sources = {a: gradebook.source_notebook(course, a) for a in assignments}
    run = pods.run_id()
    if sandboxed:
        pods.Cgroup.sweep()  # what earlier runs that were killed left behind
    run_dir = tempfile.mkdtemp(prefix=f"labkit-grade-{run}-")  # short names below: sockets live there
    try:
        packages = {a: kernel_package(Path(run_dir), a, path) for a, path in sources.items()}
        shape = {"limits": limits.to_dict(), "sandboxed": sandboxed, "run": run, "run_dir": run_dir,
                 "student_package": next(iter(packages.values()))}
        workers = workers or default_workers()
        if submissions_from is None:  # no more processes (each warming a pod) than hand-ins
            workers = max(1, min(workers, _handed_in(course, assignments, student)))
        with _Pool(workers, dask, shape) as pool:  # pods warm meanwhile
            rows, jobs = [], []
            for assignment, source_path in sources.items():
                found_rows, found_jobs = _collect(course, assignment, source_path, shape, packages[assignment],
                                                  student, force, submissions_from, roster)
                rows += found_rows
                jobs += found_jobs
            report = progress or Progress(len(jobs))
            digests = {(j["student"], j["assignment"]): j["digest"] for j in jobs}
            # One gradebook for the run: opening it for each result costs a database engine each
            with gradebook.open_gradebook(course) if jobs else contextlib.nullcontext() as book:
                for result in pool.run(jobs):
                    result["digest"] = digests[(result["student"], result["assignment"])]
                    handed_in = course / "submitted" / result["student"] / result["assignment"]
                    try:  # the gradebook's one writer
                        gradebook.record(course, result, gradebook.timestamp_of(handed_in), book=book)
                    except Exception as error:  # a result we could not write down: its row says so
                        result = _failed(next(j for j in jobs if (j["student"], j["assignment"]) == (
                            result["student"], result["assignment"])), Status.UNJUDGED,
                            f"could not be judged: the grader could not record it: {type(error).__name__}: {error}")
                    _late(result)
                    result.pop("executed", None)
                    rows.append(result)
                    report(result)
    finally:
        pods.kill_strays(run)  # what a stopped worker's pods left (unsandboxed kernels)
        for place in (run_dir, *pods.short_places(run)):
            shutil.rmtree(place, ignore_errors=True)
        if sandboxed:
            pods.Cgroup.sweep(run)
    rows.sort(key=lambda r: (r["assignment"], r["student"]))
    write_csv(course / gradebook.RESULTS_CSV, rows)
    return rows


def _handed_in(course: Path, assignments: list[str], student: str | None) -> int:
    """How many hand-ins ``submitted/`` holds for ``assignments`` (of ``student``): at most
    that many to grade."""
    try:
        students = [s for s in os.listdir(course / "submitted") if student is None or s == student]
    except OSError:
        return 0
    return sum((course / "submitted" / who / assignment).is_dir() for who in students for assignment in assignments)


def _late(result: dict) -> None:
    """A late submission's row: how late, and the course's penalty taken off its score."""
    if result.get("late"):
        late = int(result["late"])
        said = f"late by {late // 3600}:{late % 3600 // 60:02}:{late % 60:02}"
        if result.get("penalty"):
            said += f" (penalty {result['penalty']:g})"
            result["score"] = max(0.0, result["score"] - result["penalty"])
        result["reason"] = "; ".join(filter(None, [result["reason"], said]))


def kernel_package(run_dir: Path, assignment: str, source_path: Path) -> str:
    """The kernel's labkit for one lab (:func:`~labkit.grade.pod.lab_kernel`)."""
    helpers, graded = pods.lab_kernel(json.loads(source_path.read_text()))
    return str(pods.student_package(run_dir / "student" / assignment, helpers, graded))


def _collect(course: Path, assignment: str, source_path: Path, shape: dict, package: str, student: str | None,
             force: bool, submissions_from: Path | None, roster: Path | None) -> tuple[list[dict], list[dict]]:
    """The rows already decided (missing, invalid, graded before) and the jobs still to do."""
    source = json.loads(source_path.read_text())
    notebook_name = source_path.name
    gradebook.ensure_assignment(course, assignment)
    problems: dict[str, str] = {}
    if submissions_from is not None:
        problems = collect.import_lms(submissions_from, course, assignment, notebook_name,
                                      collect.read_roster(roster) if roster else None)
    found = collect.submissions(course, assignment, notebook_name, gradebook.known_students(course), only=student)
    parsed = nbformat.reads(json.dumps(source), as_version=4)
    max_score = sum(float(c.metadata["nbgrader"].get("points", 0)) for c in parsed.cells
                    if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
                    and not c.metadata["nbgrader"].get("solution"))
    config = gradebook.course_nbgrader_config(course)
    release = gradebook.course_directory(course, "release_directory", "release", config)
    given = given_cells(parsed, config, release / assignment / notebook_name)
    rows, jobs = [], []
    students = {s.student for s in found}
    rows += [gradebook.invalid(who, assignment, notebook_name, max_score, why) for who, why in problems.items()
             if who not in students]
    for submission in found:
        if submission.student in problems:
            rows.append(gradebook.invalid(submission.student, assignment, notebook_name, max_score,
                                          problems[submission.student]))
            continue
        if submission.notebook is None:
            rows.append(gradebook.missing(submission.student, assignment, notebook_name, max_score))
            continue
        try:
            handed_in = read_submission(submission.notebook.read_bytes())
        except (InvalidSubmission, OSError) as error:
            rows.append(gradebook.invalid(submission.student, assignment, notebook_name, max_score,
                                          f"invalid submission: {error}"))
            continue
        before = gradebook.earlier(course, submission.student, assignment)
        if (before is not None and not force and before.get("digest") == submission.digest
                and before.get("status") != Status.UNJUDGED.value):  # unjudged: the grader failed; try again
            rows.append(before)
            continue
        job = job_for(submission, source, {**shape, "student_package": package}, notebook_name, given)
        job["digest"], job["suspicious"] = submission.digest, suspicious(handed_in)
        jobs.append(job)
    return rows, jobs


class _Pool:
    """Where the jobs run: this machine's worker processes (started at once, each warming
    its first pod while the coordinator collects), or a dask.distributed cluster (each
    dask worker thread's jobs in a grading process beside it, :class:`_Apart`).

    Worker processes are reused (their imports cost a second): the isolation that matters
    is each submission's own pod. They are renewed all the same, a whole pool every
    ``WORKER_TASKS`` submissions per worker, the next pool warming while the last jobs of
    this one finish. Not with ``max_tasks_per_child``: before Python 3.13 a pool using it
    stops for good once a worker retires with jobs still queued (CPython gh-115634)."""

    def __init__(self, workers: int, dask: str | None, shape: dict) -> None:
        self.dask, self.workers, self.shape = dask, workers, shape
        self.pools: list[ProcessPoolExecutor] = []  # this one, and the next one warming
        self.local: ProcessPoolExecutor | None = None

    def _start(self) -> ProcessPoolExecutor:
        from .worker import warm

        pool = ProcessPoolExecutor(max_workers=self.workers, initializer=warm, initargs=(self.shape,))
        self.pools.append(pool)
        for _ in range(self.workers):
            pool.submit(int)  # start the processes (and their first pods) now
        return pool

    def __enter__(self) -> "_Pool":
        try:
            self.local = None if self.dask else self._start()
        except BaseException as error:
            self.__exit__(type(error))
            raise
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is None:
            for pool in self.pools:
                pool.shutdown(cancel_futures=True)
            return
        for pool in self.pools:  # stopped (Ctrl-C, SIGTERM) or failed: the workers' jobs are dropped, not waited for
            self.stop(pool)

    @staticmethod
    def stop(pool: ProcessPoolExecutor) -> None:
        """End ``pool``'s processes now. What they ran dies with them: each pod's sandbox
        with its worker (bubblewrap's --die-with-parent); its control groups and any
        process left are the coordinator's to remove (:func:`grade`'s end)."""
        processes = list((pool._processes or {}).values())  # (the executor has no public way to stop its workers)
        for process in processes:
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(10)

    def run(self, jobs: list[dict]) -> Iterable[dict]:
        """The results as they come."""
        if not jobs:
            return
        if self.dask:
            import distributed

            with distributed.Client(self.dask) as client:
                try:
                    for future in distributed.as_completed(client.map(run_job_apart, jobs, pure=False)):
                        yield future.result()
                finally:
                    client.run(end_apart, on_error="ignore")
            return
        share = WORKER_TASKS * self.workers
        for start in range(0, len(jobs), share):
            assert self.local is not None
            pool = self.local
            batch = jobs[start:start + share]
            # A process takes the jobs in turn: after job i, most likely job i + workers. Its
            # next pod is started for that job's lab, or none after its last job of this pool.
            futures: list[Future] = [
                pool.submit(run_job, {**job, "next_package": batch[i + self.workers]["student_package"]
                                      if i + self.workers < len(batch) else None})
                for i, job in enumerate(batch)]
            if start + share < len(jobs):
                self.local = self._start()
            for future in as_completed(futures):
                yield future.result()
            if pool is not self.local:
                pool.shutdown()
                self.pools.remove(pool)


def write_csv(path: Path, rows: list[dict]) -> None:
    """``grades.csv``: a row per student and assignment; these rows replace their
    earlier ones, the other rows (other students, other assignments) stay. A field a
    spreadsheet would take for a formula is neutralised (OWASP's CSV injection advice)."""
    fresh_keys = {(r["assignment"], r["student"]) for r in rows}
    kept = []
    if path.exists():
        with open(path, newline="") as f:
            kept = [{k: r.get(k, "") for k in CSV_FIELDS} for r in csv.DictReader(f)
                    if r.get("assignment") is not None and r.get("student") is not None
                    and (collect.plain(r["assignment"]), collect.plain(r["student"])) not in fresh_keys]
    fresh = [{k: (f"{r.get(k, 0):g}" if isinstance(r.get(k), float) else r.get(k, "")) for k in CSV_FIELDS}
             for r in rows]
    for row in fresh:
        row["late"] = row["late"] if row["late"] not in ("0", 0) else ""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        for row in sorted(kept + fresh, key=lambda r: (str(r["assignment"]), str(r["student"]))):
            writer.writerow({k: collect.spreadsheet_safe(collect.shown(str(v))) for k, v in row.items()})


def summary(rows: list[dict]) -> str:
    """The score distribution, the statuses, and who needs a human look."""
    if not rows:
        return "no submissions"
    scores = [r["score"] / r["max_score"] * 100 if r["max_score"] else 0.0 for r in rows if r["status"] != "missing"]
    lines = [f"{len(rows)} students: " + ", ".join(f"{sum(1 for r in rows if r['status'] == s)} {s}"
                                                 for s in STATUSES if any(r["status"] == s for r in rows))]
    if scores:
        lines.append(f"scores: median {statistics.median(scores):.0f}%, min {min(scores):.0f}%, "
                     f"max {max(scores):.0f}%")
        for low in range(0, 100, 20):
            high = 100 if low == 80 else low + 20
            count = sum(1 for s in scores if low <= s < high or (high == 100 and s == 100))
            lines.append(f"  {low:3}-{high:<3}% {'#' * count} {count}")
    attention = [r for r in rows if r["status"] in ("flagged", "timed out", "crashed", "unjudged", "invalid")]
    if attention:
        lines.append("needs a human look:")
        lines += [f"  {collect.shown(r['student']):16} {r['status']:9} {collect.shown(r['reason'][:150])}"
                  for r in attention]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit grade", description="Grade every submission of an assignment: "
                                     "sandboxed, judged from outside the student's kernel, in parallel.")
    parser.add_argument("assignments", nargs="+", metavar="ASSIGNMENT", help="one or more (graded together)")
    parser.add_argument("--course", type=Path, default=Path("grading"), help="the nbgrader course (default: grading)")
    parser.add_argument("--workers", type=int, help="submissions graded at once (default: two per core, as memory allows)")
    parser.add_argument("--student", help="grade this student only")
    parser.add_argument("--force", action="store_true", help="grade again what was graded already")
    parser.add_argument("--submissions", type=Path, help="an LMS download: a zip or folder, one folder per student "
                        "(Moodle: NAME_ID_assignsubmission_file_/) or STUDENT_*.ipynb files (Canvas)")
    parser.add_argument("--dask", metavar="ADDRESS", help="run the grading on this dask.distributed scheduler")
    parser.add_argument("--time-limit", type=float, help="seconds for a whole notebook (default 300)")
    parser.add_argument("--cell-time-limit", type=float, help="seconds for one cell (default 60)")
    parser.add_argument("--roster", type=Path, help="for --submissions: a CSV mapping the LMS's names and ids to "
                        "student ids (columns: student, and lms_id and/or lms_name)")
    parser.add_argument("--unsafe-no-sandbox", action="store_true",
                        help="grade without the sandbox (no root or no bubblewrap): each kernel runs as you, with your "
                        "network and files, and could read labkit's own answers: only for a course that trusts its "
                        "students")
    args = parser.parse_args(argv)
    limits = pods.Limits(**{k: v for k, v in (("notebook_seconds", args.time_limit),
                                               ("cell_seconds", args.cell_time_limit)) if v})
    sandboxed = not args.unsafe_no_sandbox
    missing = pods.missing_isolation()
    if sandboxed and missing:
        print(f"labkit grade: {missing}; without it a submission could read labkit's own answers and the course. "
              "Run it as root where bubblewrap is installed, or, for students you trust, with --unsafe-no-sandbox.",
              file=sys.stderr)
        return 2
    if not sandboxed:
        print("labkit grade: warning: --unsafe-no-sandbox: submissions run as you, unconfined", file=sys.stderr)
    stopped_by: list[int] = []

    def stop(number: int, _frame: object) -> None:  # Ctrl-C or SIGTERM: once, then the run tidies up undisturbed
        stopped_by.append(number)
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt

    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, stop)
    try:
        rows = grade(args.assignments, args.course, workers=args.workers, student=args.student, force=args.force,
                     submissions_from=args.submissions, dask=args.dask, limits=limits, sandboxed=sandboxed,
                     roster=args.roster)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        print(f"labkit grade: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labkit grade: stopped; what was graded is in the gradebook", file=sys.stderr)
        return 128 + (stopped_by[0] if stopped_by else signal.SIGINT)
    print(summary(rows))
    for assignment in args.assignments:  # the course at a glance, per question
        from .course import write_report

        text, page = write_report(args.course, assignment)
        print(text)
        print(f"  the page: {page}")
    print(f"grades: {args.course / gradebook.RESULTS_CSV}; feedback: {args.course / 'feedback'}")
    return 0
