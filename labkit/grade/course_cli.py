"""``labkit feedback``, ``labkit report`` and ``labkit export``: a TA's commands after grading."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import course


def main(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"labkit {command}", description=course.__doc__.split("\n\n")[0])
    if command in ("feedback", "report"):
        parser.add_argument("assignments", nargs="+", metavar="ASSIGNMENT")
    parser.add_argument("--course", type=Path, default=Path("grading"), help="the nbgrader course (default: grading)")
    if command == "export":
        parser.add_argument("--format", choices=course.FORMATS, default="spreadsheet")
        parser.add_argument("--roster", type=Path, help="CSV: student, and the LMS's lms_id, lms_name, sis_id, login, "
                            "email, section")
        parser.add_argument("--output", type=Path, help="the CSV to write (default: COURSE/export-FORMAT.csv)")
    args = parser.parse_args(argv)
    if not (args.course / "nbgrader_config.py").exists():
        print(f"labkit {command}: {args.course} is not an nbgrader course (no nbgrader_config.py)", file=sys.stderr)
        return 2
    try:
        if command == "feedback":
            for assignment in args.assignments:
                pages = course.final_feedback(args.course, assignment)
                print(f"{assignment}: {len(pages)} feedback pages in {args.course / 'feedback'}")
        elif command == "report":
            for assignment in args.assignments:
                text, page = course.write_report(args.course, assignment)
                print(text)
                print(f"  the page: {page}")
        else:
            out = args.output or args.course / f"export-{args.format}.csv"
            count = course.export(args.course, out, args.format, args.roster)
            print(f"{count} students written to {out} ({args.format})")
    except (KeyError, ValueError, LookupError) as error:
        print(f"labkit {command}: {error}", file=sys.stderr)
        return 2
    return 0
