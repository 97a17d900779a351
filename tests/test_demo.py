"""`labkit demo`: the lecture replayed from a real run."""

from __future__ import annotations

import io
import subprocess
import sys

from conftest import run_in_pty
from labkit.demo import main


def test_demo_tells_the_whole_story():
    out = io.StringIO()
    assert main(["--no-colour"], out=out) == 0
    text = out.getvalue()
    # the slides' names for each SMTP step, in order
    marks = ["server greeting", "client greeting", "sender command", "recipient command", "start of message",
             "acknowledgement of end", "quit"]
    positions = [text.index(mark) for mark in marks]
    assert positions == sorted(positions)
    assert "brilliant.com. IN MX" in text and "10 smtp.brilliant.com." in text  # the MX lookup
    assert "smtp.awesome.com -> ns.lab" in text and "127.0.0.1 -> ns.lab" not in text  # by the host that asked
    assert "smtp.awesome.com -> smtp.brilliant.com" in text  # the relay
    assert "delivered" in text and "Maildir" in text
    # Betty's copy: the newest hop on top, Albert's computer at the bottom
    top = text.rindex("Received: from smtp.awesome.com (smtp.awesome.com [1.2.3.4])")
    first = text.rindex("Received: from pc.awesome.com ([1.2.3.100])")
    assert top < first
    assert "shall we have lunch on Friday?" in text
    assert "\x1b[" not in text  # plain when asked (and when piped)


def test_demo_runs_as_a_command_and_colours_on_request():
    run = subprocess.run([sys.executable, "-m", "labkit.cli", "demo", "--colour"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "\x1b[" in run.stdout
    assert "Betty reads her mail over IMAP" in run.stdout


def test_step_mode_pauses_between_steps_on_a_terminal():
    status, screen = run_in_pty([sys.executable, "-m", "labkit.cli", "demo", "--step", "--no-colour"],
                                keys=b"\n" * 6, timeout=60)  # the lecturer presses Enter
    assert status == 0
    assert screen.count(b"press Enter for the next step") == 5  # before each of steps 2 to 6
    assert b"Betty's copy" in screen
