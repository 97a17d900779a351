"""Writing the verdicts into nbgrader's gradebook, the autograded notebook and the feedback.

Only the coordinator writes here, one submission after the other (nbgrader's sqlite
gradebook is not promised to survive parallel writers, jupyter/nbgrader#174), so workers
never touch the course. What lands is what nbgrader's own tools read: each autograded
cell's ``auto_score`` in ``gradebook.db`` (formgrader, ``nbgrader export``), the run
notebook in ``autograded/STUDENT/ASSIGNMENT/`` (formgrader shows it for the questions
graded by hand), and a feedback page in ``feedback/STUDENT/ASSIGNMENT/``, which shows
each check's rows and transcript but never a test cell's source (hidden tests stay
hidden, unlike ``nbgrader generate_feedback``, jupyter/nbgrader#1363).
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ..checks import Report, Result

RESULT_FILE = ".labkit-result.json"
RESULTS_CSV = "labkit-grades.csv"  # labkit's own name: nbgrader's export writes grades.csv


def course_nbgrader_config(course: Path):
    """The course's nbgrader configuration (its ``nbgrader_config.py``), as traitlets reads it."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    path = course / "nbgrader_config.py"
    return PyFileConfigLoader(path.name, str(course)).load_config() if path.exists() else Config()


def course_config(course: Path) -> tuple[str, str]:
    """(the gradebook's URL, the course id), from the course's nbgrader_config.py."""
    config = course_nbgrader_config(course)
    directory = config.get("CourseDirectory", {})
    url = directory.get("db_url", "") or f"sqlite:///{course / 'gradebook.db'}"
    return url, directory.get("course_id", "") or "default"


def course_directory(course: Path, setting: str, default: str, config: Any = None) -> Path:
    """One of the course's folders: ``CourseDirectory.SETTING`` of its nbgrader_config.py
    (``config``, if read already), else ``default``."""
    config = course_nbgrader_config(course) if config is None else config
    return course / (config.get("CourseDirectory", {}).get(setting, "") or default)


def source_notebook(course: Path, assignment: str) -> Path:
    """The authored notebook of ``assignment`` (the course's source directory)."""
    folder = course_directory(course, "source_directory", "source") / assignment
    found = sorted(folder.glob("*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebook for assignment {assignment!r} in {folder}")
    return found[0]


def open_gradebook(course: Path):
    """nbgrader's Gradebook of ``course`` (a context manager). A new gradebook is set up
    by nbgrader's ``alembic``, which must be on PATH: beside this Python, in a venv.
    SQLAlchemy 2's warnings about how nbgrader 0.9 adds a submission (an autoflush while
    it builds the rows; they are added all the same) are not shown to the TA."""
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", r"Object of type <Submitted\w+> not in session", SAWarning)

    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    url, course_id = course_config(course)
    return Gradebook(url, course_id)


def ensure_assignment(course: Path, assignment: str) -> None:
    """The gradebook knows ``assignment`` and its cells once nbgrader has generated it."""
    from nbgrader.api import MissingEntry

    with open_gradebook(course) as gradebook:
        try:
            gradebook.find_assignment(assignment)
            return
        except MissingEntry:
            pass
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
                           "--log-level=WARN"], cwd=course, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed: {done.stderr[-1000:]}")


def known_students(course: Path) -> list[str]:
    with open_gradebook(course) as gradebook:
        return [s.id for s in gradebook.students]


def record(course: Path, result: dict, timestamp: "datetime | None" = None, *, book: Any = None) -> None:
    """Write one submission's verdict as nbgrader's autograder leaves it: its time
    (``timestamp.txt``), each autograded cell's ``auto_score`` (and no manual grade needed
    for it, unless a TA gave one), the notebook flagged where labkit flagged it, the late
    penalty of the course's plugin (nbgrader's ``LateSubmissionPlugin`` unless configured);
    then the autograded notebook and the feedback page. ``result`` gains ``late``
    (seconds) and ``penalty`` (points). ``book``: the course's gradebook, kept open by a
    caller that records many (:func:`open_gradebook` for each costs a new database
    engine: its schema checked, every statement compiled again); else one is opened."""
    student, assignment, notebook = result["student"], result["assignment"], result["notebook"]
    stem = Path(notebook).stem
    if book is None:
        with open_gradebook(course) as book:
            _record_grades(book, course, result, timestamp)
    else:
        try:
            _record_grades(book, course, result, timestamp)
        except BaseException:
            book.db.rollback()  # the next submission's record starts clean
            raise
    folder = course / "autograded" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    if result.get("executed"):  # what a kernel printed may hold text no encoder takes (a lone surrogate)
        (folder / notebook).write_text(result["executed"], encoding="utf-8", errors="backslashreplace")
    saved = {k: v for k, v in result.items() if k != "executed"}
    (folder / RESULT_FILE).write_text(json.dumps(saved))
    feedback = course / "feedback" / student / assignment
    feedback.mkdir(parents=True, exist_ok=True)
    (feedback / f"{stem}.html").write_text(feedback_page(saved), encoding="utf-8", errors="backslashreplace")


def _record_grades(gradebook: Any, course: Path, result: dict, timestamp: "datetime | None") -> None:
    """:func:`record`'s rows in ``gradebook``, in one transaction."""
    from nbgrader.api import MissingEntry

    student, assignment = result["student"], result["assignment"]
    stem = Path(result["notebook"]).stem
    gradebook.update_or_create_student(student)
    submission = gradebook.update_or_create_submission(assignment, student,
                                                       **({"timestamp": timestamp} if timestamp else {}))
    for grade_id, cell in result["cells"].items():
        try:
            grade = gradebook.find_grade(grade_id, stem, assignment, student)
        except MissingEntry:
            continue
        grade.auto_score = cell["score"]
        grade.needs_manual_grade = grade.manual_score is not None  # as nbgrader's SaveAutoGrades
    result["late"], result["penalty"] = 0.0, 0.0
    try:
        row = gradebook.find_submission_notebook(stem, assignment, student)
    except MissingEntry:
        row = None
    if row is not None:
        row.flagged = result["status"] == "flagged"
        row.late_submission_penalty = None
        late = float(submission.total_seconds_late or 0)
        if late > 0:
            gradebook.db.flush()  # the new auto scores, then the notebook's score summed from them
            gradebook.db.refresh(row)
            penalty = _late_penalty(course, student, float(row.score), late)
            row.late_submission_penalty = penalty
            result["late"], result["penalty"] = late, float(penalty or 0)
    gradebook.db.commit()


def _late_penalty(course: Path, student: str, score: float, seconds_late: float) -> float | None:
    """The penalty nbgrader's AssignLatePenalties would give: the course's plugin's
    (``c.AssignLatePenalties.plugin_class``; by default nbgrader's LateSubmissionPlugin,
    ``c.LateSubmissionPlugin.penalty_method`` 'none' or 'zero'), kept between 0 and the score."""
    from nbgrader.preprocessors import AssignLatePenalties

    assigner = AssignLatePenalties(config=course_nbgrader_config(course))
    assigner.init_plugin()
    penalty = assigner.plugin_inst.late_submission_penalty(student, score, seconds_late)
    return None if penalty is None else min(max(float(penalty), 0.0), score)


def timestamp_of(folder: Path) -> "datetime | None":
    """When a submission was handed in: its ``timestamp.txt`` (nbgrader's format), if any."""
    from nbgrader.utils import parse_utc

    try:
        text = (folder / "timestamp.txt").read_text().strip()
        return parse_utc(text) if text else None
    except (OSError, ValueError):
        return None


def earlier(course: Path, student: str, assignment: str) -> dict | None:
    """The saved verdict of an earlier run, if any."""
    path = course / "autograded" / student / assignment / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def report_from_json(data: dict) -> Report:
    report = Report(data["title"])
    for row in data["results"]:
        row = dict(row)
        row["transcript"] = [tuple(line) for line in row.get("transcript", [])]
        report.add(Result(**{k: v for k, v in row.items() if k in Result.__dataclass_fields__}))
    return report


def feedback_page(result: dict, *, hand: list[dict] | None = None, total: tuple[float, float] | None = None,
                  penalty: float = 0.0) -> str:
    """The student's feedback: each autograded cell (its points, as a share of its checks'
    rows where it earns part), and for each failed check the step, expected, got,
    transcript and RFC rule; with ``hand`` (the questions graded by hand: the answer, the
    points, the TA's comment) and ``total`` (points, the assignment's maximum) once the
    TA has graded them (``labkit feedback``). Never a test cell's source."""
    auto = f"{result['score']:g} / {result['max_score']:g} autograded"
    shown = f"{total[0]:g} / {total[1]:g}" if total else auto
    parts = [f"<h1>{html.escape(result['assignment'])}: {html.escape(result['student'])}</h1>",
             f"<p><b>Score: {shown}</b> ({html.escape(result['status'])})"
             + (f"; {auto}" if total else "") + (f"; late penalty {penalty:g}" if penalty else "")
             + ("; <b>not final</b>: a question still waits for its hand grading"
                if any(not q["graded"] for q in hand or []) else "") + "</p>"]
    if result.get("reason"):
        parts.append(f"<p>{html.escape(result['reason'])}</p>")
    for grade_id, cell in result["cells"].items():
        colour = "#1a7f37" if cell["score"] == cell["points"] else "#cf222e"
        part = f" (part of its checks passed: {cell['share']:.0%})" if 0 < cell.get("share", 0) < 1 else ""
        parts.append(f"<h2 style='color:{colour}'>{html.escape(grade_id)}: {cell['score']:g} / {cell['points']:g}"
                     f"{part}</h2>")
        for data in cell.get("reports", []):
            parts.append(report_from_json(data)._repr_html_())
        if not cell.get("reports") and cell.get("unjudged"):
            parts.append(f"<p>could not be judged: {html.escape(cell['unjudged'])}</p>")
    for question in hand or []:
        score = f"{question['score']:g} / {question['max_score']:g}" if question["graded"] else \
            f"not graded yet / {question['max_score']:g}"
        parts.append(f"<h2>{html.escape(question['grade_id'])}: {score} (graded by hand)</h2>"
                     f"<blockquote><pre style='white-space:pre-wrap'>{html.escape(question['answer'])}</pre>"
                     "</blockquote>")
        if question.get("comment"):
            parts.append(f"<p><b>Comment:</b> {html.escape(question['comment'])}</p>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:auto} pre{background:#f6f8fa;padding:.5em;"
             "white-space:pre-wrap}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" \
           f"{''.join(parts)}</body></html>"


def missing(student: str, assignment: str, notebook: str, max_score: float) -> dict:
    return {"student": student, "assignment": assignment, "notebook": notebook, "status": "missing",
            "reason": "no submission", "score": 0.0, "max_score": max_score, "cells": {}, "flags": []}


def invalid(student: str, assignment: str, notebook: str, max_score: float, reason: str) -> dict:
    """The row of a submission that is not a gradable notebook, or whose student could not be told."""
    return {"student": student, "assignment": assignment, "notebook": notebook, "status": "invalid",
            "reason": reason, "score": 0.0, "max_score": max_score, "cells": {}, "flags": []}

