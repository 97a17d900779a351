"""Betty reads her mail: the notebook reader (IMAP, POP3), muttrc, and mutt itself."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import need, run_in_pty
from labkit.muttrc import muttrc

LUNCH = (b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\n"
         b"Subject: Lunch on Friday?\r\n\r\nShall we? \xe2\x9c\x89\r\n")


def deliver_lunch(world) -> None:
    world.send("albert@awesome.com", ["betty@brilliant.com"], LUNCH)
    world.wait_for_delivery("betty@brilliant.com")


def test_an_empty_mailbox_lists_as_empty(world):
    """Before anything is delivered (lab 3's listing cell, a session that stored nothing)."""
    for protocol in ("imap", "pop3"):
        with world.reader("betty@brilliant.com", protocol) as inbox:
            assert inbox.list() == []


def test_imap_reader_lists_and_shows_with_received_chain(world):
    deliver_lunch(world)
    with world.reader("betty@brilliant.com") as inbox:
        rows = inbox.list()
        assert len(rows) == 1 and rows[0].subject == "Lunch on Friday?" and "\\Seen" not in rows[0].flags
        shown = inbox.show(1)
        assert "Received: from smtp.awesome.com" in shown and "Shall we? ✉" in shown
        assert "\\Seen" in inbox.list()[0].flags  # reading it marked it read, on the server
    with world.reader("betty@brilliant.com") as inbox:  # IMAP keeps mail and flags
        assert "\\Seen" in inbox.list()[0].flags


def test_pop3_reader_downloads_and_deletes_at_quit(world):
    deliver_lunch(world)
    with world.reader("betty@brilliant.com", "pop3") as inbox:
        rows = inbox.list()
        assert [r.subject for r in rows] == ["Lunch on Friday?"]
        assert rows[0].size == len(world.messages("betty@brilliant.com")[0])  # exact octets
        assert "Shall we? ✉" in inbox.show(1)
        inbox.delete(1)
    assert world.messages("betty@brilliant.com") == []  # gone after QUIT


def test_muttrc_command_prints_a_config_for_the_running_world(world):
    run = subprocess.run([sys.executable, "-m", "labkit.cli", "muttrc", "betty@brilliant.com", "--state-dir",
                          str(world.state_dir)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    imap = world.host("brilliant.com").services["imap"]
    assert f'set folder="imap://betty%40brilliant.com@{imap.host}:{imap.port}/"' in run.stdout
    assert "labkit.sendmail" in run.stdout or "labkit-sendmail" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "labkit.cli", "muttrc", "nobody@x.org", "--state-dir",
                          str(world.state_dir)], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "no mailbox 'nobody@x.org'" in bad.stderr


def _mutt(world, tmp_path, *, maildir: bool) -> bytes:
    mutt = need("mutt")
    rc = tmp_path / "muttrc"
    rc.write_text(muttrc(world.info(), "betty@brilliant.com", maildir=maildir)
                  + "set header_cache=''\nset message_cachedir=''\nset mark_old=no\nset wait_key=no\n")
    status, screen = run_in_pty([mutt, "-n", "-F", str(rc), "-e", "push <display-message><exit><quit>"],
                                env={**os.environ, "HOME": str(tmp_path), "TERM": "vt100"})
    assert status == 0, screen[-500:]
    return screen


def test_mutt_reads_betty_over_imap_and_the_flag_lands_in_the_maildir(world, tmp_path):
    deliver_lunch(world)
    screen = _mutt(world, tmp_path, maildir=False)
    assert b"Lunch on Friday?" in screen
    cur = world.mailbox("betty@brilliant.com").maildir / "cur"
    assert [name.rpartition(":2,")[2] for name in os.listdir(cur)] == ["S"]


def test_mutt_reads_the_maildir_directly_and_imap_agrees(world, tmp_path):
    deliver_lunch(world)
    screen = _mutt(world, tmp_path, maildir=True)
    assert b"Lunch on Friday?" in screen
    with world.reader("betty@brilliant.com") as inbox:
        assert "\\Seen" in inbox.list()[0].flags  # mutt's ":2,S" is IMAP's \Seen


def test_imap_idle_wakes_when_the_mta_delivers(world):
    """Betty's client waits in IDLE; Albert's mail arrives through the relay; she hears at once."""
    from imapclient import IMAPClient

    imap = world.host("brilliant.com").services["imap"]
    betty = world.mailbox("betty@brilliant.com")
    with IMAPClient(imap.host, imap.port, ssl=False, timeout=10) as client:
        client.login(betty.address, betty.password)
        client.select_folder("INBOX")
        client.idle()
        world.send("albert@awesome.com", ["betty@brilliant.com"], LUNCH)
        responses = client.idle_check(timeout=10)
        client.idle_done()
    assert (1, b"EXISTS") in responses


def test_mutt_sends_with_the_muttrc_and_a_lone_dot_line_stays_in_the_message(world, tmp_path):
    """mutt hands its sendmail the body as typed: the muttrc's sendmail has -oi (mutt's
    own default has it), so a line holding only '.' does not end the message there."""
    mutt = need("mutt")
    rc = tmp_path / "muttrc"
    rc.write_text(world.muttrc("albert@awesome.com") + "set copy=no\n")
    sent = subprocess.run([mutt, "-n", "-F", str(rc), "-s", "a dot", "betty@brilliant.com"],
                          input=b"before\n.\nafter the dot\n", capture_output=True, timeout=60,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert sent.returncode == 0, sent.stderr
    world.wait_for_delivery("betty@brilliant.com")
    assert world.messages("betty@brilliant.com")[0].endswith(b"\r\n\r\nbefore\r\n.\r\nafter the dot\r\n")
