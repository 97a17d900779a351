"""Grading benchmarks: submissions per minute, ``labkit grade`` against plain nbgrader.

The same submissions (each lab's release with the model answers typed in, as students
hand it in) are graded five ways, each in a fresh copy of the course: ``nbgrader
autograde`` (one process, one submission after the other: the baseline), ``labkit
grade`` sandboxed with one worker, one worker a core, and its default (two a core, as
memory allows), and one worker with ``--unsafe-no-sandbox`` (what the sandbox costs).
They run in interleaved rounds, so a machine busy with something else slows all of them
alike; each ratio is one round's labkit against that round's nbgrader, shown as median
(min-max). Target: labkit with two workers (one a core) at least 2.5 times nbgrader's
throughput, for one lab and for all.

Then, with ``LABKIT_BENCH_AT_SCALE=300``: that many submissions of one lab graded on a
dask.distributed LocalCluster (one worker process per core), the figure the README
extrapolates to a cluster of machines.

Run with ``make bench ARGS=grading``; ``LABKIT_BENCH_SUBMISSIONS`` sets how many per lab
(default 10), ``LABKIT_BENCH_ROUNDS`` how many rounds (default 3).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # submissions: how students make a hand-in

from submissions import LABS, Course, answered, python_env  # noqa: E402

SUBMISSIONS = int(os.environ.get("LABKIT_BENCH_SUBMISSIONS", "10"))
ROUNDS = int(os.environ.get("LABKIT_BENCH_ROUNDS", "3"))
AT_SCALE = int(os.environ.get("LABKIT_BENCH_AT_SCALE", "0"))
ONE_LAB = "1-smtp-by-hand"
TARGET = 2.5
CORES = len(os.sched_getaffinity(0))
DEFAULT = "labkit (default workers)"
GRADEBOOK = "gradebook.db"  # answers' key for the gradebook the releases left


def course(root: Path, labs: list[str], per_lab: int, answers: dict[str, dict | bytes]) -> Course:
    """A course with ``per_lab`` honest submissions of each lab, its gradebook as a TA's
    is after ``make release`` (each lab generated, so neither way of grading pays for that)."""
    made = Course(root)
    for lab in labs:
        if lab not in answers:  # the release is generated once a lab, not once a course
            answers[lab] = answered(made, lab)
        notebook = answers[lab]
        for i in range(per_lab):
            made.hand_in(f"student{i:03d}", lab, notebook)
    gradebook = made.path / "gradebook.db"
    if GRADEBOOK not in answers:  # the first course generated every lab: its gradebook is the one to copy
        answers[GRADEBOOK] = gradebook.read_bytes()
    gradebook.write_bytes(answers[GRADEBOOK])
    return made


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=python_env(), check=True, capture_output=True)
    return time.perf_counter() - started


def ways(labs: list[str]) -> dict[str, list[list[str]]]:
    """The commands of each way of grading: nbgrader autograde takes one lab a run;
    labkit grade takes them all in one."""
    grade = [sys.executable, "-m", "labkit.cli", "grade", *labs, "--course", "."]
    return {"nbgrader": [[sys.executable, "-m", "nbgrader", "autograde", lab, "--log-level=ERROR"] for lab in labs],
            "labkit x1": [[*grade, "--workers", "1"]], f"labkit x{CORES}": [[*grade, "--workers", str(CORES)]],
            DEFAULT: [grade], "labkit x1 unsandboxed": [[*grade, "--workers", "1", "--unsafe-no-sandbox"]]}


def rounds(labs: list[str], per_lab: int, scratch: Path) -> dict[str, list[float]]:
    """Submissions per minute of each way, one figure per round."""
    total, answers = per_lab * len(labs), {}
    figures: dict[str, list[float]] = {}
    for n in range(ROUNDS):
        for name, commands in ways(labs).items():
            made = course(scratch / f"{n}-{name.replace(' ', '-')}", labs, per_lab, answers)
            figures.setdefault(name, []).append(total / sum(timed(command, made.path) for command in commands) * 60)
            shutil.rmtree(made.root, ignore_errors=True)
    return figures


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def at_scale(count: int, scratch: Path) -> None:
    """``count`` submissions of one lab on a dask LocalCluster of one process per core."""
    import distributed

    made = course(scratch / "at-scale", [ONE_LAB], count, {})
    with distributed.LocalCluster(n_workers=CORES, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        seconds = timed([sys.executable, "-m", "labkit.cli", "grade", ONE_LAB, "--course", ".",
                         "--dask", cluster.scheduler_address], made.path)
    print(f"{count} submissions of {ONE_LAB} on a dask LocalCluster of {CORES} workers: {seconds:.0f}s "
          f"({count / seconds * 60:.1f}/min, {seconds * CORES / count:.2f} core-seconds a submission)")


def main() -> None:
    from labkit.grade.pod import isolation, missing_isolation

    print("== grading ==")
    print(f"isolation here: {isolation()}" + (f" ({missing_isolation()})" if missing_isolation() else ""))
    print(f"{ROUNDS} interleaved rounds; ratios against nbgrader in the same round: median (min-max)")
    scratch = Path(tempfile.mkdtemp(prefix="labkit-bench-grading-"))
    try:
        for title, chosen, per_lab in ((f"one lab ({ONE_LAB})", [ONE_LAB], SUBMISSIONS),
                                       (f"all {len(LABS)} labs", LABS, max(2, SUBMISSIONS // 2))):
            figures = rounds(chosen, per_lab, scratch / title.split()[0])
            base = figures["nbgrader"]
            ratios = {name: [v / b for v, b in zip(values, base)] for name, values in figures.items()}
            print(f"{title}, {per_lab * len(chosen)} submissions:")
            for name, values in figures.items():
                print(f"  {name:26} {statistics.median(values):6.1f}/min" +
                      ("" if name == "nbgrader" else f"  {spread(ratios[name])}"))
            for name in (f"labkit x{CORES}", DEFAULT):  # one worker a core, and the default (two a core)
                print(f"  target: {name} >= {TARGET}x nbgrader: "
                      f"{'OK' if statistics.median(ratios[name]) >= TARGET else 'MISSED'}")
            sandboxed = [60 / v for v in figures["labkit x1"]]
            bare = [60 / v for v in figures["labkit x1 unsandboxed"]]
            print(f"  the sandbox costs {statistics.median(sandboxed) - statistics.median(bare):+.2f}s a submission "
                  f"({statistics.median(sandboxed):.2f}s against {statistics.median(bare):.2f}s, one worker)")
        if AT_SCALE:
            at_scale(AT_SCALE, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
