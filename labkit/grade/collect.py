"""Finding the submissions of one assignment in an nbgrader course.

Submissions are read from nbgrader's own layout, ``submitted/STUDENT/ASSIGNMENT/*.ipynb``.
An LMS download (a zip, or a folder, of ``STUDENT_anything.ipynb`` files, as Moodle and
Canvas name them) is first imported into that layout, so everything after works on one
shape. Students the gradebook knows who handed nothing in are *missing*.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

_LMS_NAME = re.compile(r"^(?P<student>[^_/\\]+)_.*\.ipynb$")


@dataclass(frozen=True)
class Submission:
    student: str
    assignment: str
    notebook: Path | None  # None: nothing was handed in

    @property
    def digest(self) -> str:
        """What the submission is, for resuming: a changed file is graded again."""
        return hashlib.sha256(self.notebook.read_bytes()).hexdigest() if self.notebook else ""


def import_lms(download: Path, course: Path, assignment: str, notebook_name: str) -> list[str]:
    """Copy an LMS download into ``submitted/``; returns the students found. A student
    with several files keeps the last one in name order (LMSs number resubmissions)."""
    found: dict[str, tuple[str, bytes]] = {}
    if zipfile.is_zipfile(download):
        with zipfile.ZipFile(download) as archive:
            for info in archive.infolist():
                match = _LMS_NAME.match(Path(info.filename).name)
                if match and not info.is_dir():
                    _keep(found, match["student"], info.filename, archive.read(info))
    else:
        for path in sorted(Path(download).rglob("*.ipynb")):
            match = _LMS_NAME.match(path.name)
            if match:
                _keep(found, match["student"], str(path), path.read_bytes())
    for student, (_, data) in found.items():
        target = course / "submitted" / student / assignment / notebook_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return sorted(found)


def _keep(found: dict[str, tuple[str, bytes]], student: str, name: str, data: bytes) -> None:
    if student not in found or name > found[student][0]:
        found[student] = (name, data)


def submissions(course: Path, assignment: str, notebook_name: str, known_students: list[str],
                only: str | None = None) -> list[Submission]:
    """One per student: the handed-in notebook, or none (missing)."""
    root = course / "submitted"
    students = set(known_students)
    if root.is_dir():
        students |= {p.name for p in root.iterdir() if (p / assignment).is_dir()}
    if only is not None:
        students &= {only} if only in students else set()
        students.add(only)
    found = []
    for student in sorted(students):
        folder = root / student / assignment
        notebook = folder / notebook_name
        if not notebook.exists():
            candidates = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
            notebook = candidates[0] if candidates else None
        found.append(Submission(student, assignment, notebook))
    return found


def clear(course: Path, student: str, assignment: str) -> None:
    """Forget an earlier grading of one submission (``--force``)."""
    shutil.rmtree(course / "autograded" / student / assignment, ignore_errors=True)
