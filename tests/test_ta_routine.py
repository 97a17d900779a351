"""A TA's routine end to end, with nbgrader's own API and commands around ``labkit grade``:
release, hand-ins (honest, partial, empty, late, an LMS download), grading, a grade given
by hand in the gradebook, ``nbgrader export`` and grading again, the final feedback, the
course at a glance, the exports; formgrader started the documented way; the students'
own copy of the labs, never overwritten."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from labkit.grade.gradebook import open_gradebook
from submissions import LAB1, ROOT, Course, answered, jupyterlab_save, meta, python_env, source, text

pytest.importorskip("nbgrader")
LIMITS = ["--time-limit", "60", "--cell-time-limit", "8"]
LAB0 = "0-life-of-an-email"


def nbgrader(course: Course, *args: str) -> subprocess.CompletedProcess:
    """nbgrader's own command, run where the TA runs it (the course directory)."""
    return subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=course.path,
                          env=python_env(), capture_output=True, text=True, timeout=300)


def labkit(course: Course, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args, "--course", "grading"], cwd=course.root,
                          env=python_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def routine(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("ta"))
    course.release(LAB1)
    assert nbgrader(course, "db", "assignment", "add", LAB1, "--duedate=2026-01-10 12:00:00 UTC").returncode == 0
    broken_data = {"send-mail": lambda t: t.replace(
        'body = b"".join((b"." + line if line.startswith(b".") else line) + b"\\r\\n" for line in lines)',
        'body = b"".join(line + b"\\r\\n" for line in lines)')}
    course.hand_in("ada", LAB1, answered(course, LAB1), timestamp="2026-01-09 10:00:00.000000 UTC")
    course.hand_in("bob", LAB1, answered(course, LAB1, broken_data), timestamp="2026-01-09 11:00:00.000000 UTC")
    course.hand_in("cy", LAB1, course.release(LAB1), timestamp="2026-01-09 12:00:00.000000 UTC")  # untouched
    course.hand_in("dee", LAB1, answered(course, LAB1), timestamp="2026-01-11 12:00:00.000000 UTC")  # a day late
    download = course.root / "moodle.zip"
    with zipfile.ZipFile(download, "w") as archive:
        info = zipfile.ZipInfo("Erin Example_777_assignsubmission_file_/smtp-by-hand.ipynb", (2026, 1, 9, 9, 0, 0))
        archive.writestr(info, jupyterlab_save(answered(course, LAB1)))
    (course.root / "roster.csv").write_text("student,lms_id,lms_name,email,sis_id\n"
                                            "erin,777,Erin Example,erin@example.edu,S777\n")
    done = course.grade(LAB1, "--submissions", str(download), "--roster", str(course.root / "roster.csv"), *LIMITS)
    assert done.returncode == 0, done.stderr[-3000:]
    return course, done


def test_grades_late_flags_and_partial_credit(routine):
    course, done = routine
    rows = {s: r for (_, s), r in course.rows().items()}
    assert set(rows) == {"ada", "bob", "cy", "dee", "erin"}
    assert (rows["ada"]["score"], rows["ada"]["status"], rows["ada"]["late"]) == ("14", "graded", "")
    assert (rows["dee"]["score"], rows["dee"]["late"]) == ("14", "86400") and "late by 24:00:00" in rows["dee"]["reason"]
    assert rows["erin"]["score"] == "14"  # the LMS's student, by the roster
    bob = rows["bob"]  # dot-stuffing wrong: test-data's visible rule fails, its hidden one passes
    assert float(bob["score"]) == 13 and "test-data (1/2)" in bob["reason"], bob
    assert rows["cy"]["score"] == "0" and rows["cy"]["status"] == "graded"
    with open_gradebook(course.path) as gradebook:
        dee = gradebook.find_submission(LAB1, "dee")
        assert dee.total_seconds_late == 86400 and dee.timestamp is not None
        grade = gradebook.find_grade("test-delivers", "smtp-by-hand", LAB1, "ada")
        assert grade.auto_score == 3 and not grade.needs_manual_grade  # as nbgrader's autograder leaves it
        assert gradebook.find_grade("question-4xx", "smtp-by-hand", LAB1, "ada").needs_manual_grade
        assert gradebook.find_grade("test-data", "smtp-by-hand", LAB1, "bob").auto_score == 1
    assert "test-data" in done.stdout and "needs a human" in done.stdout  # the course at a glance
    page = (course.path / "reports" / f"{LAB1}.html").read_text()
    assert "<svg" in page and "question-4xx" in page


def test_a_flag_reaches_formgrader(tmp_path):
    course = Course(tmp_path)
    course.hand_in("kim", LAB0, answered(course, LAB0, {"test-hops": lambda t: "pass"}))
    assert course.grade(LAB0, *LIMITS).returncode == 0
    assert course.rows()[(LAB0, "kim")]["status"] == "flagged"
    with open_gradebook(course.path) as gradebook:
        assert gradebook.find_submission_notebook("life-of-an-email", LAB0, "kim").flagged


def test_a_late_penalty_is_taken_from_the_new_score_on_a_regrade(tmp_path):
    """The course's late policy (nbgrader's LateSubmissionPlugin, 'zero') takes the score
    this run recorded, not the one the gradebook held before: a late hand-in first
    graded 0, handed in again and regraded, loses its new points (the run records many
    submissions into one open gradebook)."""
    course = Course(tmp_path)
    with open(course.path / "nbgrader_config.py", "a") as config:
        config.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    course.release(LAB0)
    assert nbgrader(course, "db", "assignment", "add", LAB0, "--duedate=2026-01-10 12:00:00 UTC").returncode == 0
    late, on_time = "2026-01-11 12:00:00.000000 UTC", "2026-01-09 12:00:00.000000 UTC"
    course.hand_in("max", LAB0, answered(course, LAB0), timestamp=on_time)
    course.hand_in("lee", LAB0, course.release(LAB0), timestamp=late)  # untouched: no points to lose
    assert course.grade(LAB0, *LIMITS).returncode == 0
    assert course.rows()[(LAB0, "lee")]["score"] == "0"
    course.hand_in("lee", LAB0, answered(course, LAB0), timestamp=late)
    again = course.grade(LAB0, "--force", *LIMITS)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = course.rows()
    assert (rows[(LAB0, "max")]["score"], rows[(LAB0, "max")]["late"]) == ("5", "")
    lee = rows[(LAB0, "lee")]
    assert (lee["score"], lee["late"]) == ("0", "86400") and "(penalty 5)" in lee["reason"], lee
    with open_gradebook(course.path) as gradebook:
        notebook = gradebook.find_submission_notebook("life-of-an-email", LAB0, "lee")
        assert (notebook.score, notebook.late_submission_penalty) == (5, 5)


def test_one_result_the_gradebook_refuses_leaves_the_run_s_open_gradebook_working(tmp_path):
    """The coordinator keeps one gradebook open for a run: a result it cannot write down
    (here a score the database cannot take) is rolled back, and the next result lands."""
    from labkit.grade.gradebook import RESULT_FILE, record

    course = Course(tmp_path)
    course.hand_in("ann", LAB0, answered(course, LAB0))
    assert course.grade(LAB0, *LIMITS).returncode == 0
    result = json.loads((course.path / "autograded" / "ann" / LAB0 / RESULT_FILE).read_text())
    assert result["score"] == 5
    with open_gradebook(course.path) as book:
        unwritable = {name: {**cell, "score": {"not": "a number"}} for name, cell in result["cells"].items()}
        with pytest.raises(Exception):
            record(course.path, {**result, "student": "bob", "cells": unwritable}, book=book)
        record(course.path, {**result, "student": "bea"}, book=book)
    with open_gradebook(course.path) as gradebook:
        assert gradebook.find_submission(LAB0, "bea").score == 5
    assert (course.path / "feedback" / "bea" / LAB0 / "life-of-an-email.html").is_file()


def test_hand_grading_export_regrading_and_the_final_feedback(routine):
    course, _ = routine
    with open_gradebook(course.path) as gradebook:  # what formgrader does when the TA grades the question
        grade = gradebook.find_grade("question-4xx", "smtp-by-hand", LAB1, "ada")
        grade.manual_score = 1.5
        comment = gradebook.find_comment("question-4xx", "smtp-by-hand", LAB1, "ada")
        comment.manual_comment = "Right about dave, but name RFC 5321 §4.2.1."
        gradebook.db.commit()
    exported = nbgrader(course, "export")
    assert exported.returncode == 0, exported.stderr
    with open(course.path / "grades.csv", newline="") as f:  # nbgrader's file, its own shape
        ada = next(r for r in csv.DictReader(f) if r["student_id"] == "ada")
    assert float(ada["raw_score"]) == 15.5
    again = course.grade(LAB1, "--force", *LIMITS)  # labkit's file is its own: nbgrader's export broke nothing
    assert again.returncode == 0, again.stderr[-2000:]
    assert course.rows()[(LAB1, "ada")]["score"] == "14"
    with open_gradebook(course.path) as gradebook:
        assert gradebook.find_grade("question-4xx", "smtp-by-hand", LAB1, "ada").manual_score == 1.5
    for folder in (course.path / "submitted").glob(f"*/{LAB1}"):  # handed in through the exchange: collect
        (folder / "submission_secret.txt").write_text(f"secret of {folder.parent.name}")  # leaves its secret
    done = labkit(course, "feedback", LAB1)
    assert done.returncode == 0, done.stderr
    page = (course.path / "feedback" / "ada" / LAB1 / "smtp-by-hand.html").read_text()
    assert "Score: 15.5 / 16" in page and "name RFC 5321 §4.2.1" in page and "1.5 / 2" in page
    assert "not final" not in page  # bob's question waits for the TA: his page says so
    assert "not final" in (course.path / "feedback" / "bob" / LAB1 / "smtp-by-hand.html").read_text()
    assert nbgrader(course, "release_assignment", LAB1).returncode == 0  # the exchange, as README's step 1
    returned = nbgrader(course, "release_feedback", LAB1)  # README's step 5: it reads labkit's timestamp.txt
    assert returned.returncode == 0, returned.stderr
    assert any(p.name.endswith(".html") for p in (course.path / "exchange").rglob("*")), returned.stderr
    hidden = [line.strip() for c in source(LAB1)["cells"] if meta(c).get("grade") for line in text(c).splitlines()
              if "check(" in line or "HIDDEN" in line]
    for path in (course.path / "feedback").rglob("*"):
        if path.is_file():
            written = path.read_text()
            assert not [line for line in hidden if line in written], path
    generated = nbgrader(course, "generate_feedback", LAB1, "--force")  # formgrader's button, configured
    assert generated.returncode == 0, generated.stderr
    for path in (course.path / "feedback").rglob("*.html"):
        assert "BEGIN HIDDEN TESTS" not in path.read_text() and "nobody-accepted" not in path.read_text().split(
            "<h2")[0], path


def test_exports_for_a_spreadsheet_canvas_and_moodle(routine):
    course, _ = routine
    for fmt in ("spreadsheet", "canvas", "moodle"):
        done = labkit(course, "export", "--format", fmt, "--roster", str(course.root / "roster.csv"))
        assert done.returncode == 0, done.stderr
    with open(course.path / "export-canvas.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert rows[1][0] == "Points Possible"
    erin = next(r for r in rows if r[0] == "Erin Example")
    assert erin[1:3] == ["777", "S777"] and float(erin[5]) >= 14
    with open(course.path / "export-moodle.csv", newline="") as f:
        moodle = {r["ID number"]: r for r in csv.DictReader(f)}
    assert moodle["777"]["Email address"] == "erin@example.edu"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_formgrader_started_the_documented_way_serves_the_course(tmp_path):
    """`make formgrader` (jupyter lab in grading/): its API lists the course's labs."""
    course = Course(tmp_path)
    course.release(LAB0)
    port = free_port()
    env = {**python_env(), "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")}
    server = subprocess.Popen(["make", "-s", "-C", str(ROOT), "formgrader", "GRADING=" + str(course.path),
                               f"ARGS=--no-browser --ServerApp.port={port} --ServerApp.ip=127.0.0.1 "
                               "--IdentityProvider.token=ta-token"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        listed = None
        for _ in range(600):  # bounded: a minute at most
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/formgrader/api/assignments?token=ta-token",
                                            timeout=5) as response:
                    listed = json.loads(response.read())
                    break
            except OSError:
                time.sleep(0.1)
        assert listed is not None, server.stdout.read1(20000) if server.stdout else ""
        assert LAB0 in {a["name"] for a in listed}
        assert not (ROOT / "gradebook.db").exists()  # no stray gradebook at the root
    finally:  # make and the jupyter lab it started (as Ctrl-C in the TA's terminal stops both)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        for _ in range(300):  # bounded: 30 s for jupyter lab to shut down, then it is killed
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(server.pid, signal.SIGKILL)


def test_the_students_copy_is_made_once_and_never_overwritten(tmp_path):
    from labkit.labs import copy_labs

    course = Course(tmp_path)
    course.release(LAB0)
    mine = tmp_path / "my-labs"
    assert copy_labs(course.path / "release", mine) == [f"new lab: {LAB0}/life-of-an-email.ipynb"]
    notebook = mine / LAB0 / "life-of-an-email.ipynb"
    notebook.write_text(notebook.read_text().replace("awesome_queue_id = None", "awesome_queue_id = 'MINE'"))
    assert copy_labs(course.path / "release", mine) == []  # nothing new: nothing touched
    released = course.path / "release" / LAB0 / "life-of-an-email.ipynb"
    released.write_text(released.read_text().replace("Lab 0", "Lab 0 (revised)"))
    said = copy_labs(course.path / "release", mine)
    assert "MINE" in notebook.read_text() and len(said) == 1 and "new version" in said[0]
    beside = next(mine.glob(f"{LAB0}/*new version*.ipynb"))
    assert "Lab 0 (revised)" in beside.read_text()
    page = json.loads((mine / ".jupyter" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"]["nbgrader:formgrader"] is True


def test_binder_files_build_what_students_open(tmp_path):
    """repo2docker cannot run here: what can be checked is checked. apt.txt names Debian
    packages; postBuild, run with this environment in a copy of the repository, makes the
    release and the students' copy."""
    import shutil

    names = [line.split("#")[0].strip() for line in (ROOT / "apt.txt").read_text().splitlines()]
    for name in filter(None, names):
        shown = subprocess.run(["apt-cache", "show", name], capture_output=True, text=True)
        if shown.returncode != 0 and "apt-cache" not in shown.stderr:
            pytest.fail(f"apt.txt names {name}, which Debian does not have")
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "my-labs", "release", "gradebook.db",
                                                              "__pycache__", "autograded", "submitted", "feedback"))
    env = {**python_env(), "HOME": str(tmp_path / "home")}
    done = subprocess.run(["bash", str(copy / "postBuild")], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    labs = sorted(p.parent.name for p in (copy / "my-labs").glob("*/*.ipynb"))
    assert labs == sorted(p.name for p in (ROOT / "notebooks").iterdir() if list(p.glob("*.ipynb")))
    assert (tmp_path / "home" / ".jupyter" / "labconfig" / "page_config.json").exists()
