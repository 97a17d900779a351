"""Grading benchmarks: submissions per minute, ``labkit grade`` against plain nbgrader.

The same submissions (each lab's release with the model answers typed in, as students
hand it in) are graded three ways, in the same run, each in a fresh copy of the course:
``nbgrader autograde`` (one process, one submission after the other, the baseline),
``labkit grade --workers 1`` and ``labkit grade`` with every core, both sandboxed. Target:
at least 2.5 times nbgrader's throughput on two cores. Then what the sandbox costs: one
worker grading the same submissions with it and with ``--unsafe-no-sandbox``.

Run with ``make bench ARGS=grading``; ``LABKIT_BENCH_SUBMISSIONS`` sets how many per lab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # submissions: how students make a hand-in

from submissions import LABS, Course, answered, python_env  # noqa: E402

SUBMISSIONS = int(os.environ.get("LABKIT_BENCH_SUBMISSIONS", "10"))
ONE_LAB = "1-smtp-by-hand"
TARGET = 2.5


def course(root: Path, labs: list[str], per_lab: int) -> Course:
    """A course with ``per_lab`` honest submissions of each lab."""
    made = Course(root)
    for lab in labs:
        notebook = answered(made, lab)
        for i in range(per_lab):
            made.hand_in(f"student{i:03d}", lab, notebook)
    return made


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=python_env(), check=True, capture_output=True)
    return time.perf_counter() - started


def throughput(labs: list[str], per_lab: int, scratch: Path) -> dict[str, float]:
    """Submissions per minute: nbgrader autograde (one run per lab: it takes one);
    labkit grade (one run for all the labs) with 1 worker, with all cores, and with 1
    worker unsandboxed (what the sandbox costs)."""
    total = per_lab * len(labs)
    grade = [sys.executable, "-m", "labkit.cli", "grade", *labs, "--course", "."]
    runs = {"nbgrader": [[sys.executable, "-m", "nbgrader", "autograde", lab, "--log-level=ERROR"] for lab in labs],
            "labkit x1": [[*grade, "--workers", "1"]], f"labkit x{os.cpu_count()}": [grade],
            "labkit x1 unsandboxed": [[*grade, "--workers", "1", "--unsafe-no-sandbox"]]}
    figures = {}
    for name, commands in runs.items():
        made = course(scratch / name.replace(" ", "-"), labs, per_lab)
        figures[name] = total / sum(timed(command, made.path) for command in commands) * 60
    return figures


def main() -> None:
    from labkit.grade.pod import isolation, missing_isolation

    print("== grading ==")
    print(f"isolation here: {isolation()}" + (f" ({missing_isolation()})" if missing_isolation() else ""))
    scratch = Path(tempfile.mkdtemp(prefix="labkit-bench-grading-"))
    try:
        for title, chosen, per_lab in ((f"one lab ({ONE_LAB})", [ONE_LAB], SUBMISSIONS),
                                       (f"all {len(LABS)} labs", LABS, max(2, SUBMISSIONS // 2))):
            figures = throughput(chosen, per_lab, scratch / title.split()[0])
            base = figures["nbgrader"]
            shown = "  ".join(f"{name} {value:5.1f}/min ({value / base:.2f}x)" for name, value in figures.items())
            best = figures[f"labkit x{os.cpu_count()}"]  # the target is for every core
            print(f"{title:22} {per_lab * len(chosen):3} submissions: {shown}"
                  f"   target >= {TARGET}x: {'OK' if best / base >= TARGET else 'MISSED'}")
            sandboxed, bare = 60 / figures["labkit x1"], 60 / figures["labkit x1 unsandboxed"]
            print(f"{'':22} the sandbox costs {sandboxed - bare:+.2f}s a submission "
                  f"({sandboxed:.2f}s against {bare:.2f}s, one worker)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
