"""The sendmail checks catch each classic mistake, with its message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.seams import default_sendmail
from mistakes.sendmail import MISTAKES, good

DEADLINE = 3.0  # a program starts a Python, imports smtplib and talks SMTP: more than a function call


def test_a_right_program_passes_every_rule():
    passes_every_rule(checks.sendmail, good, deadline=DEADLINE)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_caught_with_its_message(mistake):
    caught(checks.sendmail, MISTAKES, mistake, deadline=DEADLINE)


def program(folder: Path, text: str, executable: bool = True) -> str:
    path = folder / "my-sendmail"
    path.write_text(text.replace("{python}", sys.executable).replace("{labkit}", default_sendmail()))
    path.chmod(0o755 if executable else 0o644)
    return str(path)


@pytest.mark.parametrize("text, executable, says", [
    pytest.param("#!{python}\nimport sys\nsys.stdin.read()\nprint(1 / 0)\n", True, "ZeroDivisionError", id="raises"),
    pytest.param("#!{python}\nprint('hello')\n", False, "chmod +x", id="not a program"),
    pytest.param("#!{python}\nimport time\ntime.sleep(30)\n", True, "longer than 1s", id="hangs"),
    pytest.param('#!/bin/sh\nexec "{labkit}" "$@"\n', True, "yours to write", id="labkit-sendmail"),
    pytest.param("#!{python}\nimport sys\ntry:\n    from labkit.sendmail import main\nexcept ImportError:\n"
                 "    sys.exit(0)\n", True, "yours to write", id="labkit's main, fence caught"),
])
def test_broken_programs_fail_with_the_boundarys_message(tmp_path, text, executable, says):
    fails_with(checks.sendmail, program(tmp_path, text, executable), ["delivers", "no-world"], says, deadline=1.0)
