"""``labkit grade`` on a course of synthetic submissions: the exact grades.csv, the
gradebook, feedback without hidden tests, resuming, a dask cluster, the other labs,
and ``labkit selfcheck``."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from labkit.grade.gradebook import open_gradebook
from submissions import EXPECTED, LAB1, NOTEBOOKS, OTHER_LABS, ROOT, edited, lab1_submissions, source

pytest.importorskip("nbgrader")
LIMITS = ["--time-limit", "30", "--cell-time-limit", "8"]


def make_course(root: Path) -> Path:
    course = root / "grading"
    course.mkdir()
    shutil.copy(ROOT / "grading" / "nbgrader_config.py", course)
    os.symlink(NOTEBOOKS, root / "notebooks")
    return course


def hand_in(course: Path, student: str, assignment: str, notebook: dict) -> None:
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    name = next((NOTEBOOKS / assignment).glob("*.ipynb")).name
    (folder / name).write_text(json.dumps(notebook))


def labkit(*args: str, cwd: Path, timeout: float = 400, python: tuple[str, ...] = ("-m", "labkit.cli")
           ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, *python, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def add_student(course: Path, student: str) -> None:
    with open_gradebook(course) as gradebook:
        gradebook.update_or_create_student(student)


def rows(course: Path) -> dict[str, dict]:
    with open(course / "grades.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The whole corpus, graded once (the tests below read the result)."""
    course = make_course(tmp_path_factory.mktemp("course"))
    for student, notebook in lab1_submissions(course).items():
        hand_in(course, student, LAB1, notebook)
    add_student(course, "oli")  # in the gradebook, handed nothing in
    download = course.parent / "lms-download.zip"
    with zipfile.ZipFile(download, "w") as archive:
        archive.writestr("pat_1_attempt.ipynb", "not a notebook: the earlier attempt")
        archive.writestr("pat_2_attempt.ipynb", json.dumps(source(LAB1)))
    before = _kernels()
    done = labkit("grade", LAB1, "--course", str(course), "--submissions", str(download), *LIMITS, cwd=course.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return course, done, before


def _kernels() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and b"ipykernel_launcher" in _cmdline(p)}


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_grades_csv_is_exactly_what_each_submission_deserves(graded):
    course, _, _ = graded
    got = rows(course)
    assert sorted(got) == sorted(EXPECTED)
    for student, (score, status, reason) in EXPECTED.items():
        row = got[student]
        assert (row["score"], row["max_score"], row["status"]) == (score, "14", status), (student, row)
        assert reason in row["reason"], (student, row["reason"])
        if not reason:
            assert row["reason"] == "", (student, row["reason"])


def test_the_gradebook_has_the_scores_cell_by_cell(graded):
    course, _, _ = graded
    with open_gradebook(course) as gradebook:
        assert gradebook.find_grade("test-data", "smtp-by-hand", LAB1, "bob").auto_score == 0
        assert gradebook.find_grade("test-delivers", "smtp-by-hand", LAB1, "bob").auto_score == 3
        assert gradebook.find_submission(LAB1, "ada").score == 14
        assert gradebook.find_submission(LAB1, "ada").needs_manual_grade  # the question, for formgrader
    assert (course / "autograded" / "bob" / LAB1 / "smtp-by-hand.ipynb").exists()


def test_feedback_shows_the_failed_check_and_never_a_hidden_test(graded):
    course, _, _ = graded
    page = (course / "feedback" / "bob" / LAB1 / "smtp-by-hand.html").read_text()
    assert "lines starting with &#x27;.&#x27; are dot-stuffed" in page and "RFC 5321 §4.5.2" in page
    assert "transcript" in page and "C: DATA" in page
    sources = [c["source"] for c in source(LAB1)["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    for text in sources:
        for line in ("".join(text) if isinstance(text, list) else text).splitlines():
            if "check(" in line:
                assert line.strip() not in page


def test_the_summary_lists_who_needs_a_human_look(graded):
    _, done, _ = graded
    assert "17 students:" in done.stdout and "needs a human look:" in done.stdout
    for student in ("dee", "eve", "ivy", "jon", "kim", "lee", "max", "ned"):
        assert f"  {student} " in done.stdout


def test_nothing_a_submission_started_outlives_grading(graded):
    _, _, before = graded
    assert _kernels() - before == set()


def test_a_second_run_skips_what_it_graded_and_force_regrades(graded):
    course, _, _ = graded
    first = rows(course)
    again = labkit("grade", LAB1, "--course", str(course), *LIMITS, cwd=course.parent)
    assert again.returncode == 0 and rows(course) == first
    assert "/" not in again.stderr.replace(str(course), "")  # no progress lines: nothing was graded
    bob = labkit("grade", LAB1, "--course", str(course), "--student", "bob", "--force", *LIMITS, cwd=course.parent)
    assert bob.returncode == 0 and "1/1 bob: graded 12/14" in bob.stderr
    assert rows(course) == first


def test_a_dask_cluster_grades_the_same(tmp_path):
    distributed = pytest.importorskip("distributed")
    course = make_course(tmp_path)
    hand_in(course, "ada", LAB1, source(LAB1))
    hand_in(course, "bob", LAB1, lab1_submissions(course)["bob"])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        done = labkit("grade", LAB1, "--course", str(course), "--dask", cluster.scheduler_address, *LIMITS,
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    got = rows(course)
    assert (got["ada"]["score"], got["bob"]["score"], got["bob"]["reason"]) == ("14", "12", "failed: test-data")


def test_every_other_lab_is_graded_from_outside_too(tmp_path):
    course = make_course(tmp_path)
    for lab, (grade_id, mistake, _) in OTHER_LABS.items():
        hand_in(course, "ada", lab, source(lab))
        hand_in(course, "bob", lab, edited(lab, grade_id, mistake))
    done = labkit("grade", *OTHER_LABS, "--course", str(course), *LIMITS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(course / "grades.csv", newline="") as f:
        got = {(r["assignment"], r["student"]): r for r in csv.DictReader(f)}
    for lab, (_, _, reason) in OTHER_LABS.items():
        ada, bob = got[(lab, "ada")], got[(lab, "bob")]
        assert (ada["status"], ada["score"], ada["reason"]) == ("graded", ada["max_score"], ""), ada
        assert bob["status"] == "graded" and float(bob["score"]) < float(bob["max_score"]), bob
        assert bob["reason"] == reason, bob
        result = json.loads((course / "autograded" / "ada" / lab / ".labkit-result.json").read_text())
        assert all(cell["outside"] for cell in result["cells"].values() if cell.get("only_checks")), lab


def test_a_duplicated_test_cell_is_restored_in_the_copy_kept():
    """The first copy of a cell is the one kept; it is the one restored (and flagged)."""
    import nbformat

    from labkit.grade.worker import restore

    ours, theirs = (nbformat.reads(json.dumps(source(LAB1)), as_version=4) for _ in range(2))
    index, test = next((i, c) for i, c in enumerate(theirs.cells)
                       if c.metadata.get("nbgrader", {}).get("grade_id") == "test-delivers")
    fake = nbformat.from_dict({**test, "source": "pass"})
    theirs.cells.insert(index, fake)
    restored, flags, tampered = restore(theirs, ours)
    kept = [c for c in restored.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test-delivers"]
    assert [c.source for c in kept] == [test.source]
    assert tampered == {"test-delivers"} and flags == ["edited test cell test-delivers (restored; it earns nothing)"]


def test_more_submissions_than_a_worker_grades_before_renewal(tmp_path):
    """Worker pools are renewed every few submissions; grading goes on across renewals
    (Python 3.11's max_tasks_per_child stopped for good there: CPython gh-115634)."""
    lab = "0-life-of-an-email"
    course = make_course(tmp_path)
    students = [f"s{i}" for i in range(5)]
    for student in students:
        hand_in(course, student, lab, source(lab))
    code = ("import sys, labkit.grade.run as run; run.WORKER_TASKS = 2; "
            "sys.exit(run.main(sys.argv[1:]))")
    done = labkit(lab, "--course", str(course), "--workers", "1", *LIMITS, cwd=tmp_path, timeout=180,
                  python=("-c", code))
    assert done.returncode == 0, done.stderr[-2000:]
    got = rows(course)
    assert sorted(got) == students
    assert {(r["status"], r["score"] == r["max_score"]) for r in got.values()} == {("graded", True)}


def test_selfcheck_fails_a_stub_and_passes_a_solution(tmp_path):
    stub = json.loads(json.dumps(source(LAB1)))
    for cell in stub["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "send-mail":
            cell["source"] = "def send_mail(sock, **kwargs):\n    raise NotImplementedError()\n"
    (tmp_path / "stub.ipynb").write_text(json.dumps(stub))
    (tmp_path / "done.ipynb").write_text(json.dumps(source(LAB1)))
    failing = labkit("selfcheck", str(tmp_path / "stub.ipynb"), cwd=tmp_path, timeout=120)
    assert failing.returncode == 1 and "[FAIL] test-delivers" in failing.stdout
    assert "NotImplementedError" in failing.stdout and "0 of 7 visible checks pass" in failing.stdout
    passing = labkit("selfcheck", str(tmp_path / "done.ipynb"), cwd=tmp_path, timeout=120)
    assert passing.returncode == 0 and "7 of 7 visible checks pass" in passing.stdout
