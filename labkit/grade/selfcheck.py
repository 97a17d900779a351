"""``labkit selfcheck LAB.ipynb``: a student runs their notebook as the grader will.

It runs every cell from the top (a fresh kernel, nbclient), then prints each autograded
check cell with its verdict, the failed checks in full (step, expected, got, transcript,
RFC rule), the answers not finished (an answer cell that raises, a written answer still
"YOUR ANSWER HERE"), and exits 1 if any visible check failed or an answer cell raised
(0 otherwise). The hidden checks
are not in the student's copy, so passing here is necessary, not sufficient.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CELL_TIMEOUT = 120


def run(path: Path, out=sys.stdout) -> int:
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    failed = total = unfinished = 0
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if meta.get("solution"):  # an answer cell: it must run, and a written answer must be written
            if cell.cell_type == "code" and errors:
                unfinished += 1
                print(f"[TODO] {meta.get('grade_id')}: your answer cell raised {errors[0].ename} "
                      "(the checks below it ran on what was defined before)", file=out)
            elif cell.cell_type == "markdown" and "YOUR ANSWER HERE" in cell.source:
                print(f"[TODO] {meta.get('grade_id')}: not answered yet (graded by hand)", file=out)
            continue
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        total += 1
        points = meta.get("points", 0)
        print(f"[{'FAIL' if errors else 'PASS'}] {meta.get('grade_id')} ({points:g} point{'' if points == 1 else 's'})",
              file=out)
        for error in errors:
            failed += 1
            detail = "\n".join(error.get("traceback", [])) or f"{error.ename}: {error.evalue}"
            print("    " + _plain(detail).replace("\n", "\n    "), file=out)
    print(f"{total - failed} of {total} visible checks pass" + (
        f"; {unfinished} answer cell{'' if unfinished == 1 else 's'} raised" if unfinished else ""), file=out)
    return 1 if failed or unfinished else 0


def _plain(text: str) -> str:
    """A traceback without its terminal colours."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit selfcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    args = parser.parse_args(argv)
    if not args.notebook.exists():
        print(f"labkit selfcheck: no such notebook: {args.notebook}", file=sys.stderr)
        return 2
    return run(args.notebook)
