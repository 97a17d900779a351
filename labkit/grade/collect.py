"""Finding the submissions of one assignment in an nbgrader course.

Submissions are read from nbgrader's own layout, ``submitted/STUDENT/ASSIGNMENT/*.ipynb``.
An LMS download (a zip, or a folder) is first imported into that layout, so everything
after works on one shape. The student is who the LMS says handed it in, never what the
uploaded file is called:

- **Moodle** ("Download all submissions"): a folder per submission,
  ``Full Name_PARTICIPANT_assignsubmission_file_/``, holding the uploaded files;
- **Canvas**: one file per submission, ``login[_LATE]_USERID_SUBMISSIONID_uploaded-name.ipynb``;
- otherwise a folder per student: ``STUDENT/anything.ipynb``.

A roster (``--roster``: a CSV with ``student`` and ``lms_id`` and/or ``lms_name``) maps the
LMS's ids or names to the course's student ids; without one the LMS's login or name is
the id. An id with ``..``, a path separator or a control character is refused; two
uploads that claim one student are both reported, and neither is graded. Students the
gradebook knows who handed nothing in are *missing*.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assign(?:submission|feedback)_[a-z]+_?$")
_CANVAS = re.compile(r"^(?P<name>[^_]+)_(?:LATE_)?(?P<id>\d+)_(?:\d+_)?.*\.ipynb$")
MAX_UPLOAD = 20 << 20


@dataclass(frozen=True)
class Submission:
    student: str
    assignment: str
    notebook: Path | None  # None: nothing was handed in

    @property
    def digest(self) -> str:
        """What the submission is, for resuming: a changed file is graded again."""
        return hashlib.sha256(self.notebook.read_bytes()).hexdigest() if self.notebook else ""


def valid_id(student: str) -> str:
    """Why ``student`` cannot be a student id (a folder of nbgrader's), or ``""``."""
    if not student or student.strip() != student:
        return "empty, or space at either end"
    if any(unicodedata.category(c).startswith("C") for c in student):
        return "a control character"
    if "/" in student or "\\" in student or student in (".", "..") or student.startswith("."):
        return "a path separator or a leading dot"
    if len(student) > 100:
        return "over 100 characters"
    return ""


def plain(text: str) -> str:
    """A CSV field as it was before :func:`spreadsheet_safe`."""
    return text[1:] if text[:1] == "'" and text[1:2] in _FORMULA else text


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?")


def spreadsheet_safe(text: str) -> str:
    """A field a spreadsheet will not run: a leading ``=``, ``+``, ``-``, ``@``, tab or
    CR gets a ``'`` in front (OWASP, CSV injection). Plain numbers stay numbers (not
    whatever Python's float() reads: ``-inf`` is a formula to a spreadsheet)."""
    if text[:1] in _FORMULA and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def shown(text: str) -> str:
    """A name from a download as a TA may see it: control characters escaped (an escape
    sequence a student chose must not reach a terminal or a CSV)."""
    return "".join(c if not unicodedata.category(c).startswith("C") else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Roster:
    """The course's students as the LMS knows them: by LMS id, and by name for the rows
    that give no id."""

    by_id: dict[str, str]
    by_name: dict[str, str]


def read_roster(path: Path) -> Roster:
    """A roster CSV: ``student``, and ``lms_id`` and/or ``lms_name``."""
    by_id: dict[str, str] = {}
    by_name: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            student = (row.get("student") or "").strip()
            lms_id, name = (row.get("lms_id") or "").strip(), (row.get("lms_name") or "").strip()
            if not student:
                continue
            if lms_id:
                by_id[lms_id.lower()] = student
            elif name:
                by_name[name.lower()] = student
    return Roster(by_id, by_name)


@dataclass(frozen=True)
class _Upload:
    identity: str  # the LMS's: its id, else its name or login
    name: str  # the LMS's name for the student
    where: str  # the path in the download, for messages
    data: bytes
    when: datetime | None = None  # when the LMS took it (its file time in the download), UTC


def _uploads(download: Path) -> list[tuple[str, bytes, datetime | None]]:
    """Every ``.ipynb`` of the download: (path inside it, content, its time)."""
    found = []
    if zipfile.is_zipfile(download):
        with zipfile.ZipFile(download) as archive:
            for info in archive.infolist():
                if not info.is_dir() and info.filename.endswith(".ipynb") and info.file_size <= MAX_UPLOAD:
                    found.append((info.filename, archive.read(info), _zip_time(info)))
    else:
        for path in sorted(Path(download).rglob("*.ipynb")):
            if path.is_file() and path.stat().st_size <= MAX_UPLOAD:
                when = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(tzinfo=None)
                found.append((str(path.relative_to(download)), path.read_bytes(), when))
    return found


def _zip_time(info: zipfile.ZipInfo) -> datetime | None:
    try:
        return datetime(*info.date_time)
    except ValueError:
        return None


class BadPath(ValueError):
    """A download's entry whose path climbs out (``..``) or starts at the root."""


def _identify(where: str, data: bytes, when: datetime | None = None) -> _Upload | None:
    path = PurePosixPath(where.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise BadPath(where)
    parts = path.parts
    folders = [p for p in parts[:-1] if p not in ("", ".")]
    for folder in folders:  # Moodle: the submission's own folder
        match = _MOODLE.match(folder)
        if match:
            return _Upload(match["id"], match["name"], where, data, when)
    match = _CANVAS.match(parts[-1])
    if match and not folders[1:]:  # Canvas: the file name's LMS part, never the uploaded name after it
        return _Upload(match["id"], match["name"], where, data, when)
    if folders:  # a folder per student
        return _Upload(folders[-1], folders[-1], where, data, when)
    return None


def import_lms(download: Path, course: Path, assignment: str, notebook_name: str,
               roster: "Roster | None" = None) -> dict[str, str]:
    """Copy an LMS download into ``submitted/``; returns the problems found, by student
    (or by the LMS's name where no student could be told): they get a row each, and
    nothing of theirs is graded."""
    claims: dict[str, list[_Upload]] = {}
    problems: dict[str, str] = {}
    for where, data, when in _uploads(download):
        try:
            upload = _identify(where, data, when)
        except BadPath:
            problems[f"(refused: {shown(where[:60])})"] = (f"invalid submission: {shown(where)}: a path out of the "
                                                          "download (.. or /) is refused")
            continue
        if upload is None:
            problems[f"(unknown: {shown(where[:60])})"] = (f"invalid submission: {shown(where)} names no student "
                                                          "(no LMS folder or Canvas file name)")
            continue
        student = _student(upload, roster)
        if student is None:
            problems[f"(unknown LMS id: {shown(upload.identity[:40])})"] = (
                f"invalid submission: {shown(where)}: LMS id {shown(upload.identity)} is not in the roster")
            continue
        why = valid_id(student)
        if why:
            problems[f"(invalid: {shown(student[:40])})"] = (f"invalid submission: {shown(where)}: student id "
                                                            f"{shown(student)!r}: {why}")
            continue
        claims.setdefault(student, []).append(upload)
    for student, uploads in claims.items():
        identities = {u.identity for u in uploads}
        if len(identities) > 1:
            problems[student] = ("invalid submission: " + " and ".join(shown(u.where) for u in uploads)
                                 + f" both claim student {student}")
            continue
        chosen = _one(uploads, notebook_name)
        if chosen is None:
            problems[student] = f"invalid submission: {len(uploads)} notebooks handed in, none named {notebook_name}"
            continue
        target = course / "submitted" / student / assignment / notebook_name
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob("*.ipynb"):
            stale.unlink()
        target.write_bytes(chosen.data)
        if chosen.when is not None:  # as nbgrader's collect writes it: the submission's time
            (target.parent / "timestamp.txt").write_text(chosen.when.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    return problems


def _student(upload: _Upload, roster: "Roster | None") -> str | None:
    """The course's student for an upload: by the roster (its LMS id; by name only for
    a roster row without an id), None for an id the roster does not have; without a
    roster, the LMS's own name."""
    if roster is None:
        return upload.name
    if upload.identity.lower() in roster.by_id:
        return roster.by_id[upload.identity.lower()]
    if upload.identity.isdigit():  # an LMS id the roster does not know: never claimed by a name
        return None
    return roster.by_name.get(upload.name.lower())


def _one(uploads: list[_Upload], notebook_name: str) -> _Upload | None:
    """The notebook of a submission: the only one, or the one named as the assignment's
    (a resubmission replaces the file in the LMS, so one name is one notebook)."""
    if len(uploads) == 1:
        return uploads[0]
    named = [u for u in uploads if PurePosixPath(u.where).name.endswith(notebook_name)]
    return named[-1] if len(named) >= 1 and len({u.data for u in named}) == 1 else None


def submissions(course: Path, assignment: str, notebook_name: str, known_students: list[str],
                only: str | None = None) -> list[Submission]:
    """One per student: the handed-in notebook, or none (missing)."""
    root = course / "submitted"
    students = set(known_students)
    if root.is_dir():
        students |= {p.name for p in root.iterdir() if (p / assignment).is_dir() and not valid_id(p.name)}
    if only is not None:
        students &= {only} if only in students else set()
        students.add(only)
    found = []
    for student in sorted(students):
        folder = root / student / assignment
        notebook = folder / notebook_name
        if not notebook.is_file():
            candidates = sorted(p for p in folder.glob("*.ipynb") if p.is_file()) if folder.is_dir() else []
            notebook = candidates[0] if candidates else None
        found.append(Submission(student, assignment, notebook))
    return found


def clear(course: Path, student: str, assignment: str) -> None:
    """Forget an earlier grading of one submission (``--force``)."""
    shutil.rmtree(course / "autograded" / student / assignment, ignore_errors=True)
