"""`labkit demo`: the lecture replayed from a real run."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from labkit.demo import main
from labkit.render import columns
from terminal import Terminal


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
    dns = text[text.index("\n2. "):text.index("\n3. ")]
    assert re.search(r"^  smtp\.awesome\.com +C: brilliant\.com\. IN MX", dns, re.M)  # asked by the host that asked
    assert re.search(r"^  ns\.lab +S: brilliant\.com\. 300 IN MX 10 smtp\.brilliant\.com\.", dns, re.M)
    assert "127.0.0.1" not in dns
    relay = text[text.index("\n3. "):text.index("\n4. ")]  # the relay: smtp.awesome.com is the client now
    assert re.search(r"^  smtp\.brilliant\.com +S: 220 ", relay, re.M)
    assert re.search(r"^  smtp\.awesome\.com +C: MAIL FROM:<albert@awesome\.com>", relay, re.M)
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


PROMPT = b"-- press Enter"
HEADING = re.compile(r"^\d\. \S", re.M)  # "3. smtp.awesome.com relays ..."


def test_step_mode_on_a_projectors_terminal_fits_its_width_and_pages_long_steps():
    """100 x 32, in colour: every pause comes with the heading of the step on the screen
    (at most 31 lines above the prompt), and no line is wider than the terminal."""
    term = Terminal([sys.executable, "-m", "labkit.cli", "demo", "--step", "--colour"], rows=32, columns=100)
    pauses, at = [], 0
    while True:
        try:
            at = term.expect(PROMPT, at, timeout=60)
        except AssertionError:
            break  # no more pauses: the story ended
        pauses.append(term.text())
        term.type(b"\n")  # the lecturer presses Enter
    assert term.wait() == 0
    text = term.text()
    assert "\x1b[1m<- server greeting" in term.output.decode()  # labels bold, in colour
    assert "\x1b[2m" not in term.output.decode()  # never dim
    lines = text.split("\n")
    assert max(columns(line) for line in lines) <= 100, max(lines, key=columns)
    assert len(pauses) >= 5  # before steps 2 to 6, and between the pages of a long step
    for screen in pauses:
        shown = screen.split("\n")[-32:]  # what a 32-line terminal shows at the pause
        assert HEADING.search("\n".join(shown)), "\n".join(shown)
    assert text.count("(continued)") == len(pauses) - 5
    assert "6. Betty's copy" in text and text.rstrip().endswith("-- Albert")


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["shell", "parent-ignores-sigint"])
def test_ctrl_c_at_a_pause_ends_with_one_line_and_status_130(sigint_ignored):
    """Also when started by a parent that ignores SIGINT (nohup, some launchers: the demo
    inherits that, and Python then installs no Ctrl-C handler of its own)."""
    term = Terminal([sys.executable, "-m", "labkit.cli", "demo", "--step", "--no-colour"], rows=32, columns=100,
                    sigint_ignored=sigint_ignored)
    term.expect(PROMPT)
    term.type(b"\x03")  # Ctrl-C: the terminal sends SIGINT
    assert term.wait() == 130
    after = term.text().split("press Enter", 1)[1]
    assert "Traceback" not in after and after.count("labkit demo: interrupted") == 1
    assert [line for line in after.split("\n")[1:] if line.strip()] == ["labkit demo: interrupted"]


def test_every_heading_is_on_a_real_terminals_screen_when_the_demo_pauses(tmp_path):
    """The same in tmux, a real terminal emulator, 100 x 32: what the room sees."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed")
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock"), "-f", "/dev/null"]
    command = f"{shlex.quote(sys.executable)} -m labkit.cli demo --step --no-colour; echo demo-exit=$?; sleep 60"
    subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "32", "-c", os.getcwd(), command], check=True,
                   timeout=20)
    try:
        screens = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True, check=True,
                                    timeout=20).stdout
            if "demo-exit=" in screen:
                break
            if screen.rstrip().endswith("(Ctrl-C ends) --"):
                screens.append(screen)
                subprocess.run([*tmux, "send-keys", "Enter"], check=True, timeout=20)
                time.sleep(0.2)  # the Enter, echoed, moves the prompt off the last line
            else:
                time.sleep(0.1)
        assert "demo-exit=0" in screen, screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=20)
    assert len(screens) >= 5
    for screen in screens:
        assert HEADING.search(screen), screen
