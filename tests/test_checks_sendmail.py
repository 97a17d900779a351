"""The sendmail checks catch each classic mistake, with its message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.seams import default_sendmail
from mistakes.sendmail import MISTAKES, good
from mistakes.independent import sendmail as independent

DEADLINE = 3.0  # a program starts a Python, imports smtplib and talks SMTP: more than a function call


def test_a_right_program_passes_every_rule():
    passes_every_rule(checks.sendmail, good, deadline=DEADLINE)


CORPORA = {"labkit's": MISTAKES, "independent": independent.MISTAKES}


def test_an_independently_written_right_program_passes_every_rule():
    passes_every_rule(checks.sendmail, independent.good, deadline=DEADLINE)


@pytest.mark.parametrize("corpus, mistake", [(c, m) for c, mistakes in CORPORA.items() for m in mistakes])
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(corpus, mistake, visible_rules):
    visible = visible_rules("7-unix-mail")["sendmail"]
    caught(checks.sendmail, CORPORA[corpus], mistake, deadline=DEADLINE, visible=visible)


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
