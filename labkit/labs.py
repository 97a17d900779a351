"""A student's own copy of the labs (``make lab``): made once, never overwritten.

    python -m labkit.labs grading/release my-labs

nbgrader's release (``grading/release/``) is regenerated whenever the course changes;
students work in ``my-labs/``, which this fills: a lab not there yet is copied in; a lab
the student already has stays as it is, and if the course has changed it since it was
copied, the new version is put beside it (``smtp-by-hand (new version 2026-12-06).ipynb``)
for the student to look at, never over their work. ``my-labs/.labkit-copied.json``
remembers what each copy was made from.

It also writes the student's Jupyter configuration (``my-labs/.jupyter``): nbgrader's
student tools (the assignment list, validate) stay; its instructors' tools (formgrader,
create assignment, course list) are not shown.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import sys
from pathlib import Path

RECORD = ".labkit-copied.json"
INSTRUCTOR_PLUGINS = ("nbgrader:formgrader", "nbgrader:create-assignment", "nbgrader:course-list")
INSTRUCTOR_SERVER = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_labs(release: Path, dest: Path, today: datetime.date | None = None) -> list[str]:
    """Bring ``dest`` up to date with ``release``; returns what was done, one line each."""
    today = today or datetime.date.today()
    dest.mkdir(parents=True, exist_ok=True)
    record_path = dest / RECORD
    try:
        copied: dict[str, str] = json.loads(record_path.read_text())
    except (OSError, ValueError):
        copied = {}
    done = []
    for notebook in sorted(release.glob("*/*.ipynb")):
        key = f"{notebook.parent.name}/{notebook.name}"
        target = dest / key
        fresh = _digest(notebook)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook, target)
            copied[key] = fresh
            done.append(f"new lab: {key}")
        elif copied.get(key) not in (None, fresh):
            beside = target.with_name(f"{target.stem} (new version {today.isoformat()}){target.suffix}")
            shutil.copyfile(notebook, beside)
            copied[key] = fresh
            done.append(f"{key} changed in the course: the new version is beside yours, {beside.name}")
        else:
            copied.setdefault(key, fresh)
    record_path.write_text(json.dumps(copied, indent=1, sort_keys=True))
    student_config(dest / ".jupyter")
    return done


def student_config(folder: Path) -> Path:
    """A Jupyter configuration directory for students (``JUPYTER_CONFIG_DIR``): nbgrader's
    instructors' tools disabled, in the page and on the server."""
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    (folder / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {plugin: True for plugin in INSTRUCTOR_PLUGINS}}, indent=1))
    (folder / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {name: False for name in INSTRUCTOR_SERVER}}}, indent=1))
    return folder


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m labkit.labs RELEASE_DIR STUDENT_DIR", file=sys.stderr)
        return 2
    release, dest = Path(args[0]), Path(args[1])
    if not release.is_dir():
        print(f"no release at {release}: run `make release` first", file=sys.stderr)
        return 2
    for line in copy_labs(release, dest):
        print(line)
    print(f"your labs are in {dest}/ (yours: `make lab` never overwrites them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
