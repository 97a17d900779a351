"""A TA's routine after ``labkit grade``: the final feedback, the course at a glance, the exports.

    labkit feedback 1-smtp-by-hand --course grading      # after hand grading in formgrader
    labkit report 1-smtp-by-hand --course grading        # pass rates, histograms (terminal + HTML)
    labkit export --course grading --format canvas --roster roster.csv

Everything is read from nbgrader's gradebook (hand-graded scores, the TA's comments, late
penalties: what formgrader wrote) and labkit's saved verdicts (``autograded/STUDENT/LAB/
.labkit-result.json``); nothing here writes the gradebook.

- :func:`final_feedback` rewrites each student's ``feedback/STUDENT/LAB/NOTEBOOK.html``:
  labkit's page (each check's step, expected, got, transcript, RFC rule) with the
  hand-graded questions (the student's answer, the points, the TA's comment) and the
  total out of the assignment's real maximum, never a test cell's source.
- :func:`at_a_glance` gives each autograded question's pass rate and mean, the score
  histogram, and what still needs a human (flagged, crashed, unjudged, ungraded
  questions); :func:`report_page` draws it as an HTML page with plots (inline SVG).
- :func:`export` writes the grades for a spreadsheet or an LMS import (Canvas's
  gradebook CSV, Moodle's grade import CSV), manual points and late penalties included;
  a roster maps the course's student ids to the LMS's.
"""

from __future__ import annotations

import csv
import html
import json
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .gradebook import RESULT_FILE, feedback_page, open_gradebook

HUMAN = ("flagged", "timed out", "crashed", "unjudged", "invalid")


@dataclass
class Question:
    """One graded cell of an assignment, across the class."""

    grade_id: str
    max_score: float
    auto: bool  # autograded (a test cell), else graded by hand
    scores: list[float] = field(default_factory=list)

    @property
    def pass_rate(self) -> float:
        return sum(1 for s in self.scores if s >= self.max_score) / len(self.scores) if self.scores else 0.0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores) if self.scores else 0.0


@dataclass
class Glance:
    assignment: str
    max_score: float
    totals: dict[str, float]  # student -> score (auto + manual - late penalty)
    questions: list[Question]
    attention: list[tuple[str, str]]  # (student, why a human should look)


def _results(course: Path, assignment: str) -> dict[str, dict]:
    found = {}
    for path in sorted((course / "autograded").glob(f"*/{assignment}/{RESULT_FILE}")):
        try:
            found[path.parent.parent.name] = json.loads(path.read_text())
        except ValueError:
            continue
    return found


def at_a_glance(course: Path, assignment: str) -> Glance:
    """The assignment across the class, from the gradebook and labkit's verdicts."""
    from nbgrader.api import MissingEntry

    results = _results(course, assignment)
    totals: dict[str, float] = {}
    questions: dict[str, Question] = {}
    attention = [(s, f"{r['status']}: {r.get('reason', '')[:120]}") for s, r in results.items() if r["status"] in HUMAN]
    with open_gradebook(course) as gradebook:
        lab = gradebook.find_assignment(assignment)
        max_score = float(lab.max_score)
        for notebook in lab.notebooks:
            for cell in notebook.grade_cells:
                questions[cell.name] = Question(cell.name, float(cell.max_score), cell.cell_type == "code")
        for student in results:
            try:
                submission = gradebook.find_submission(assignment, student)
            except MissingEntry:
                continue
            penalty = sum(float(nb.late_submission_penalty or 0) for nb in submission.notebooks)
            totals[student] = max(0.0, float(submission.score) - penalty)
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if grade.name in questions:
                        questions[grade.name].scores.append(float(grade.score))
                    if grade.needs_manual_grade:
                        attention.append((student, f"{grade.name} waits for a human grade"))
    return Glance(assignment, max_score, totals, list(questions.values()), sorted(attention))


def histogram(scores: list[float], top: float, bins: int = 5) -> list[tuple[str, int]]:
    """(label, count) for ``bins`` equal ranges of 0..``top`` (the last one closed)."""
    out = []
    for i in range(bins):
        low, high = top * i / bins, top * (i + 1) / bins
        count = sum(1 for s in scores if low <= s < high or (i == bins - 1 and s == high))
        out.append((f"{low:g}-{high:g}", count))
    return out


def glance_text(glance: Glance) -> str:
    """The course at a glance, for a terminal."""
    lines = [f"{glance.assignment}: {len(glance.totals)} graded, out of {glance.max_score:g}"]
    if glance.totals:
        values = list(glance.totals.values())
        lines.append(f"  mean {statistics.fmean(values):.1f}, median {statistics.median(values):g}")
        for label, count in histogram(values, glance.max_score):
            lines.append(f"  {label:>11} {'#' * count} {count}")
    lines.append("  question                     passed   mean / max   by")
    for q in glance.questions:
        lines.append(f"  {q.grade_id:28} {q.pass_rate:5.0%}   {q.mean:4.1f} / {q.max_score:<4g}  "
                     f"{'labkit' if q.auto else 'hand'}")
    if glance.attention:
        lines.append("  needs a human:")
        lines += [f"    {student:16} {why}" for student, why in glance.attention]
    return "\n".join(lines)


def _bars(data: list[tuple[str, float]], top: float, unit: str) -> str:
    """A horizontal bar chart as inline SVG (no plotting library, no script)."""
    height, width = 26 * len(data) + 10, 640
    rows = []
    for i, (label, value) in enumerate(data):
        y, length = 8 + 26 * i, 0 if not top else int(380 * value / top)
        rows.append(f"<text x='0' y='{y + 15}' font-size='14'>{html.escape(label)}</text>"
                    f"<rect x='220' y='{y}' width='{length}' height='18' fill='#0969da'/>"
                    f"<text x='{226 + length}' y='{y + 15}' font-size='14'>{value:g}{unit}</text>")
    return f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>{''.join(rows)}</svg>"


def report_page(glance: Glance) -> str:
    """The course at a glance as a page a TA opens: histogram, pass rates, who to look at."""
    hist = histogram(list(glance.totals.values()), glance.max_score)
    rates = [(q.grade_id + ("" if q.auto else " (hand)"), round(100 * q.pass_rate)) for q in glance.questions]
    attention = "".join(f"<tr><td>{html.escape(s)}</td><td>{html.escape(w)}</td></tr>" for s, w in glance.attention)
    style = ("body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em} td{padding:.2em .8em;"
             "vertical-align:top} table{border-collapse:collapse} tr:nth-child(even){background:#f6f8fa}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(glance.assignment)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(glance.assignment)}</h1>"
            f"<p>{len(glance.totals)} submissions graded, out of {glance.max_score:g} points.</p>"
            f"<h2>Scores</h2>{_bars([(label, float(c)) for label, c in hist], max([c for _, c in hist] or [1]), '')}"
            f"<h2>Questions: share of students with full points</h2>{_bars(rates, 100, '%')}"
            f"<h2>Needs a human</h2><table>{attention or '<tr><td>nothing</td></tr>'}</table></body></html>")


def write_report(course: Path, assignment: str) -> tuple[str, Path]:
    """The terminal text and the HTML page (``reports/ASSIGNMENT.html``) of an assignment."""
    glance = at_a_glance(course, assignment)
    path = course / "reports" / f"{assignment}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_page(glance))
    return glance_text(glance), path


# -- the final feedback ------------------------------------------------------------------------------------
def final_feedback(course: Path, assignment: str) -> list[Path]:
    """Each graded student's feedback page, with what the TA added in formgrader."""
    import nbformat
    from nbgrader.api import MissingEntry

    written = []
    with open_gradebook(course) as gradebook:
        maximum = float(gradebook.find_assignment(assignment).max_score)
        for student, result in _results(course, assignment).items():
            try:
                submission = gradebook.find_submission(assignment, student)
            except MissingEntry:
                continue
            notebook_name = result["notebook"]
            executed = course / "autograded" / student / assignment / notebook_name
            answers = {}
            if executed.exists():
                for cell in nbformat.read(executed, as_version=4).cells:
                    meta = cell.get("metadata", {}).get("nbgrader", {})
                    if meta.get("grade") and meta.get("solution"):
                        answers[meta["grade_id"]] = cell.source
            hand = []
            for notebook in submission.notebooks:
                comments = {c.name: c.manual_comment for c in notebook.comments}
                for grade in notebook.grades:
                    if grade.cell_type != "code" or grade.name in answers:  # graded by hand
                        if grade.name in result["cells"]:
                            continue
                        hand.append({"grade_id": grade.name, "answer": answers.get(grade.name, ""),
                                     "score": grade.score, "max_score": float(grade.max_score),
                                     "graded": grade.manual_score is not None, "comment": comments.get(grade.name)})
            penalty = sum(float(nb.late_submission_penalty or 0) for nb in submission.notebooks)
            total = max(0.0, float(submission.score) - penalty)
            page = feedback_page(result, hand=hand, total=(total, maximum), penalty=penalty)
            path = course / "feedback" / student / assignment / f"{Path(notebook_name).stem}.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(page)
            _exchange_files(course / "submitted" / student / assignment, path.parent, submission.timestamp)
            written.append(path)
    return written


def _exchange_files(submitted: Path, feedback: Path, timestamp: object) -> None:
    """What nbgrader's release_feedback reads beside a page, as its generate_feedback
    leaves it: the submission's timestamp and, for a hand-in through the exchange, its
    secret (an LMS hand-in has none: its feedback goes back through the LMS)."""
    stamp = submitted / "timestamp.txt"
    (feedback / "timestamp.txt").write_text(stamp.read_text() if stamp.exists() else f"{timestamp}")
    secret = submitted / "submission_secret.txt"
    if secret.exists():
        shutil.copyfile(secret, feedback / "submission_secret.txt")


# -- exports -----------------------------------------------------------------------------------------------
FORMATS = ("spreadsheet", "canvas", "moodle")


def read_lms_roster(path: Path | None) -> dict[str, dict[str, str]]:
    """student id -> the roster's row (``student`` and the LMS's columns: lms_id,
    lms_name, sis_id, login, email, section)."""
    if path is None:
        return {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {row["student"].strip(): row for row in csv.DictReader(f) if (row.get("student") or "").strip()}


def export(course: Path, out: Path, fmt: str = "spreadsheet", roster: Path | None = None) -> int:
    """Write every student's total per assignment (hand-graded points and late penalties
    included) as ``fmt``; returns the rows written."""
    from .collect import spreadsheet_safe

    people = read_lms_roster(roster)
    grades: dict[str, dict[str, float]] = {}
    maxima: dict[str, float] = {}
    with open_gradebook(course) as gradebook:
        for lab in gradebook.assignments:
            maxima[lab.name] = float(lab.max_score)
            for submission in lab.submissions:
                penalty = sum(float(nb.late_submission_penalty or 0) for nb in submission.notebooks)
                grades.setdefault(submission.student.id, {})[lab.name] = max(0.0, float(submission.score) - penalty)
    labs = sorted(maxima)
    students = sorted(set(grades) | set(people))
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        if fmt == "spreadsheet":
            writer.writerow(["student", *labs, "total", "max"])
            for s in students:
                marks = [grades.get(s, {}).get(lab, 0.0) for lab in labs]
                writer.writerow([spreadsheet_safe(s), *(f"{m:g}" for m in marks), f"{sum(marks):g}",
                                 f"{sum(maxima.values()):g}"])
        elif fmt == "canvas":  # Canvas's gradebook import: the first columns name the student
            writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                             *(f"{lab} ({maxima[lab]:g})" for lab in labs)])
            writer.writerow(["Points Possible", "", "", "", "", *(f"{maxima[lab]:g}" for lab in labs)])
            for s in students:
                who = people.get(s, {})
                writer.writerow([spreadsheet_safe(who.get("lms_name") or s), who.get("lms_id", ""),
                                 who.get("sis_id", ""), who.get("login", s), who.get("section", ""),
                                 *(f"{grades.get(s, {}).get(lab, 0.0):g}" for lab in labs)])
        elif fmt == "moodle":  # Moodle's grade import (CSV): an identifier column, then grade items
            writer.writerow(["Email address", "ID number", *labs])
            for s in students:
                who = people.get(s, {})
                writer.writerow([who.get("email", ""), who.get("lms_id", s),
                                 *(f"{grades.get(s, {}).get(lab, 0.0):g}" for lab in labs)])
        else:
            raise ValueError(f"no export format {fmt!r}; the formats: {', '.join(FORMATS)}")
    return len(students)
