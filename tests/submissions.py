"""A course of synthetic submissions, made from the labs' own sources.

Each submission is the source notebook (solutions in) with one change, the kind a
student makes: a classic mistake in the solution, a hang, a crash, noise, or one of the
ways to cheat. :data:`EXPECTED` is the ``grades.csv`` row each must get.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LAB1 = "1-smtp-by-hand"


def source(lab: str) -> dict:
    return json.loads(next((NOTEBOOKS / lab).glob("*.ipynb")).read_text())


def _cell(notebook: dict, grade_id: str) -> dict:
    for cell in notebook["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(grade_id)


def _text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def edited(lab: str, grade_id: str, change) -> dict:
    """The lab's source with one cell's text changed by ``change(text) -> text``."""
    notebook = source(lab)
    cell = _cell(notebook, grade_id)
    cell["source"] = change(_text(cell))
    return notebook


def without(lab: str, grade_id: str) -> dict:
    notebook = source(lab)
    notebook["cells"] = [c for c in notebook["cells"]
                         if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != grade_id]
    return notebook


def after_solution(code: str):
    """A change that runs ``code`` at the end of the solution cell (after the def)."""
    return lambda text: text + "\n" + code


STUFFING = 'body = b"".join((b"." + line if line.startswith(b".") else line) + b"\\r\\n" for line in lines)'
FALLBACK = "if hello.code in (500, 502):"


def lab1_submissions(course: Path) -> dict[str, dict]:
    """Lab 1 submissions by student name (``course`` for the cheating ones' paths)."""
    source_file = next((NOTEBOOKS / LAB1).glob("*.ipynb"))
    return {
        "ada": source(LAB1),  # right
        "bob": edited(LAB1, "send-mail", lambda t: t.replace(STUFFING, 'body = b"".join(line + b"\\r\\n" for line in lines)')),
        "cid": edited(LAB1, "send-mail", lambda t: t.replace(FALLBACK, "if False:")),
        "dee": edited(LAB1, "send-mail", after_solution("while True:\n    pass")),
        "eve": edited(LAB1, "send-mail", after_solution("import os\nos._exit(1)")),
        "fay": edited(LAB1, "send-mail", lambda t: t.replace(
            "    sock.settimeout(timeout)", "    import sys\n    print('debug: sending', file=sys.stderr)\n"
            "    sock.settimeout(timeout)")),
        "gus": edited(LAB1, "send-mail", after_solution(FORKS)),
        "hal": edited(LAB1, "send-mail", after_solution(DISK)),
        "ivy": edited(LAB1, "send-mail", lambda t: re.sub(
            r"### BEGIN SOLUTION.*### END SOLUTION", "### BEGIN SOLUTION\n    from labkit.smtp.send import send_mail as "
            "own\n    return own(sock, helo=helo, mail_from=mail_from, rcpt_to=rcpt_to, message=message, auth=auth, "
            "timeout=timeout)\n    ### END SOLUTION", t, flags=re.S)),
        "jon": edited(LAB1, "send-mail", lambda t: re.sub(
            r"### BEGIN SOLUTION.*### END SOLUTION", "### BEGIN SOLUTION\n    raise ValueError('not done')\n    "
            "### END SOLUTION", t, flags=re.S) + "\nchecks.send_mail.check = lambda *args, **kwargs: None\n"),
        "kim": edited(LAB1, "test-delivers", lambda t: "pass"),
        "lee": without(LAB1, "test-helo-fallback"),
        "max": edited(LAB1, "send-mail", after_solution(
            f"try:\n    print(open({str(source_file)!r}).read()[:80])\nexcept OSError:\n    pass")),
        "ned": edited(LAB1, "send-mail", after_solution(
            f"import sqlite3\ntry:\n    sqlite3.connect({str(course / 'gradebook.db')!r}).execute('select 1')\n"
            "except Exception:\n    pass")),
        "pia": edited(LAB1, "send-mail", after_solution("for _ in range(3000):\n    print('x' * 1000)")),
    }


# Each other lab: its right solution, and one classic mistake with the cell it costs.
OTHER_LABS = {
    "0-life-of-an-email": ("answers", lambda t: t.replace('mx_address = "1.2.3.5"', 'mx_address = "1.2.3.53"'),
                           "failed: test-mx"),
    "2-where-does-mail-go": ("resolve-mx", lambda t: t.replace("random.shuffle(group)", "pass"),
                             "failed: test-ties"),
    "3-receiving-mail": ("smtp-session", lambda t: t.replace('(line[1:] if line.startswith(b".") else line)', "line"),
                         "failed: test-data"),
}


# Forks until the sandbox says no (the process limit), then carries on.
FORKS = """import os, time
children = 0
while children < 100000:
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
    except OSError:
        break
    children += 1
"""

# Fills the disk until the sandbox says no (the file size limit), then carries on.
DISK = """try:
    with open("filler", "wb") as filler:
        for _ in range(100000):
            filler.write(b"x" * (1 << 20))
except OSError as error:
    print("the disk said:", error)
"""

# The grades.csv rows (student -> score, status, what the reason must contain).
EXPECTED = {
    "ada": ("14", "graded", ""),
    "bob": ("12", "graded", "failed: test-data"),
    "cid": ("13", "graded", "failed: test-helo-fallback"),
    "dee": ("14", "timed out", "cell send-mail still ran after"),
    "eve": ("0", "crashed", "the kernel died in cell send-mail"),
    "fay": ("14", "graded", "wrote to stderr in test-delivers"),
    "hal": ("14", "graded", ""),
    "ivy": ("0", "flagged", "imports labkit.smtp.send, labkit's own code"),
    "gus": ("0", "crashed", "it hit the sandbox's limit of 256 processes and threads"),
    "jon": ("0", "flagged", "passed in the notebook but not outside it (patched checks?)"),
    "kim": ("11", "flagged", "edited test cell test-delivers"),
    "lee": ("13", "flagged", "deleted test cell test-helo-fallback"),
    "max": ("0", "flagged", "opened the course's files"),
    "ned": ("0", "flagged", "opened a database"),
    "oli": ("0", "missing", "no submission"),
    "pia": ("14", "graded", "a flood"),
    "pat": ("14", "graded", ""),  # handed in through the LMS (a zip of pat_*.ipynb)
}
