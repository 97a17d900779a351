"""Grading benchmarks: submissions per minute, ``labkit grade`` against plain nbgrader.

The same submissions are graded three ways, in the same run, each in a fresh copy of the
course: ``nbgrader autograde`` (one process, one submission after the other, the
baseline), ``labkit grade --workers 1`` and ``labkit grade`` with every core, both with
the sandbox on. Target: at least 1.8 times nbgrader's throughput on two cores. Then what
the sandbox costs: one worker grading the same submission with and without it.

Run with ``make bench ARGS=grading``; ``LABKIT_BENCH_SUBMISSIONS`` sets how many per lab.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SUBMISSIONS = int(os.environ.get("LABKIT_BENCH_SUBMISSIONS", "10"))
ONE_LAB = "1-smtp-by-hand"
TARGET = 1.8


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def course(root: Path, labs: list[str], per_lab: int) -> Path:
    """A course with ``per_lab`` submissions (the model solutions) of each lab."""
    grading = root / "grading"
    grading.mkdir(parents=True)
    shutil.copy(ROOT / "grading" / "nbgrader_config.py", grading)
    os.symlink(NOTEBOOKS, root / "notebooks")
    for lab in labs:
        notebook = next((NOTEBOOKS / lab).glob("*.ipynb"))
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", lab, "--force", "--log-level=ERROR"],
                       cwd=grading, env=_env(), check=True, capture_output=True)
        for i in range(per_lab):
            folder = grading / "submitted" / f"student{i:03d}" / lab
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(notebook, folder / notebook.name)
    return grading


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - started


def throughput(labs: list[str], per_lab: int, scratch: Path) -> dict:
    """Submissions per minute: nbgrader autograde (one run per lab: it takes one);
    labkit grade (one run for all the labs) with 1 worker, and with all cores."""
    total = per_lab * len(labs)
    runs = {"nbgrader": [[sys.executable, "-m", "nbgrader", "autograde", lab, "--log-level=ERROR"] for lab in labs],
            "labkit x1": [[sys.executable, "-m", "labkit.cli", "grade", *labs, "--course", ".", "--workers", "1"]],
            f"labkit x{os.cpu_count()}": [[sys.executable, "-m", "labkit.cli", "grade", *labs, "--course", "."]]}
    figures = {}
    for name, commands in runs.items():
        grading = course(scratch / name.replace(" ", "-"), labs, per_lab)
        figures[name] = total / sum(timed(command, grading) for command in commands) * 60
    return figures


def isolation_cost(runs: int = 5) -> dict:
    """Seconds per submission for one worker, with and without the sandbox."""
    from labkit.grade.worker import grade

    notebook = json.loads(next((NOTEBOOKS / ONE_LAB).glob("*.ipynb")).read_text())
    times: dict[str, list[float]] = {"sandbox": [], "no sandbox": []}
    for i in range(runs):
        for name, bwrap in (("sandbox", None), ("no sandbox", False)):
            job = {"student": f"s{i}", "assignment": ONE_LAB, "notebook_name": "n.ipynb", "notebook": notebook,
                   "source": notebook, "course": str(ROOT / "grading"), "bwrap": bwrap}
            started = time.perf_counter()
            result = grade(job)
            times[name].append(time.perf_counter() - started)
            assert result["score"] == result["max_score"], result["reason"]
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    from labkit.grade.sandbox import isolation, isolation_warning

    print("== grading ==")
    print(f"isolation here: {isolation()}" + (f" ({isolation_warning()})" if isolation_warning() else ""))
    scratch = Path(tempfile.mkdtemp(prefix="labkit-bench-grading-"))
    try:
        labs = sorted(p.name for p in NOTEBOOKS.iterdir() if p.is_dir())
        for title, chosen, per_lab in ((f"one lab ({ONE_LAB})", [ONE_LAB], SUBMISSIONS),
                                       (f"all {len(labs)} labs", labs, max(2, SUBMISSIONS // 2))):
            figures = throughput(chosen, per_lab, scratch / title.split()[0])
            base = figures["nbgrader"]
            shown = "  ".join(f"{name} {value:5.1f}/min ({value / base:.2f}x)" for name, value in figures.items())
            best = figures[f"labkit x{os.cpu_count()}"]  # the target is for every core
            print(f"{title:22} {per_lab * len(chosen):3} submissions: {shown}"
                  f"   target >= {TARGET}x: {'OK' if best / base >= TARGET else 'MISSED'}")
        cost = isolation_cost()
        print(f"one submission, one worker: {cost['sandbox']:.2f}s sandboxed, {cost['no sandbox']:.2f}s without: "
              f"the sandbox costs {cost['sandbox'] - cost['no sandbox']:+.2f}s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
