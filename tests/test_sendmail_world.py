"""labkit-sendmail and mutt submitting into a real running world."""

from __future__ import annotations

import email
import os
import subprocess
import sys

from conftest import need

SENDMAIL = [sys.executable, "-m", "labkit.sendmail"]


def test_sendmail_t_delivers_through_the_relay(world):
    message = b"From: Albert <albert@awesome.com>\nTo: Betty <betty@brilliant.com>\nSubject: via sendmail\n\nhi\n"
    run = subprocess.run(SENDMAIL + ["--state-dir", str(world.state_dir), "-t", "-i"], input=message,
                         capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr
    world.wait_for_delivery("betty@brilliant.com")
    stored = email.message_from_bytes(world.messages("betty@brilliant.com")[0])
    assert stored["Subject"] == "via sendmail"
    assert len(stored.get_all("Received")) == 2
    assert stored["Message-ID"] and stored["Date"]  # added by sendmail


def test_sendmail_unknown_local_user_is_ex_nouser(world):
    run = subprocess.run(SENDMAIL + ["--state-dir", str(world.state_dir), "-f", "albert@awesome.com",
                                     "nobody@awesome.com"], input=b"Subject: x\n\nx\n", capture_output=True, timeout=30)
    assert run.returncode == 67  # EX_NOUSER
    assert b"nobody@awesome.com" in run.stderr and b"550" in run.stderr


def test_sendmail_without_a_world_is_tempfail(tmp_path):
    run = subprocess.run(SENDMAIL + ["--state-dir", str(tmp_path), "betty@brilliant.com"], input=b"x\n",
                         capture_output=True, timeout=30)
    assert run.returncode == 75  # EX_TEMPFAIL
    assert b"labkit world" in run.stderr


def test_mutt_sends_with_labkit_sendmail(world, tmp_path):
    mutt = need("mutt")
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set sendmail="{sys.executable} -m labkit.sendmail --state-dir {world.state_dir}"\n'
        'set from="albert@awesome.com"\nset realname="Albert"\nset use_from=yes\nset record=""\n'
        "set charset=utf-8\nset send_charset=utf-8\n"
    )
    run = subprocess.run([mutt, "-n", "-F", str(rc), "-s", "from mutt", "betty@brilliant.com"],
                         input="Grüße via mutt\n".encode(), capture_output=True, timeout=60,
                         env={**os.environ, "HOME": str(tmp_path), "EMAIL": "albert@awesome.com"})
    assert run.returncode == 0, run.stderr
    world.wait_for_delivery("betty@brilliant.com")
    stored = email.message_from_bytes(world.messages("betty@brilliant.com")[0])
    assert stored["Subject"] == "from mutt"
    assert "Grüße via mutt" in stored.get_payload(decode=True).decode(stored.get_content_charset() or "utf-8")
