"""Hardening the mail servers (issue #10): the world as a real process, killed, starved
of reads, flooded; every wait bounded, nothing sleeps to wait for an event."""

from __future__ import annotations

import collections
import imaplib
import json
import os
import re
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import lecture_config
from labkit import maildir
from labkit.world import World
from world_process import WorldProcess, topology

BETTY, CAROL = "betty@brilliant.com", "carol@careful.com"


class RawIMAP:
    """An IMAP client on a plain socket: it reads only when told to."""

    def __init__(self, endpoint: tuple[str, int], user: str, password: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(endpoint, timeout=timeout)
        self.file = self.sock.makefile("rb")
        assert self.line().startswith(b"* OK")
        self.command(f"LOGIN {user} {password}")

    def line(self) -> bytes:
        line = self.file.readline()
        assert line, "the server closed the connection"
        return line

    def command(self, text: str, tag: str = "t") -> list[bytes]:
        """Send one command and read up to its tagged reply, which must be OK."""
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        lines = []
        while not (line := self.line()).startswith(tag.encode() + b" "):
            lines.append(line)
        assert line.startswith(tag.encode() + b" OK"), line
        return lines

    def wait_exists(self, count: int) -> None:
        """During IDLE: read until the mailbox has ``count`` messages."""
        while not ((m := re.match(rb"\* (\d+) EXISTS", self.line())) and int(m.group(1)) >= count):
            pass

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def remaining_recipients(spool: Path) -> int:
    """Recipients a (dead) host still has to deliver to: its spool's state files, or
    the envelope of a message not tried yet."""
    left = 0
    for path in spool.iterdir():
        if path.name.startswith(".") or path.name.endswith(".state"):
            continue
        state = spool / f"{path.name}.state"
        envelope = json.loads(state.read_text()) if state.exists() else json.loads(path.open("rb").readline())
        left += len(envelope["recipients"])
    return left


def copies(world: World, address: str) -> collections.Counter:
    """How many copies of each numbered message (X-Seq) ``address`` has."""
    return collections.Counter(int(re.search(rb"X-Seq: (\d+)", m).group(1)) for m in world.messages(address))


# -- 1. repeats after a crash ---------------------------------------------------------------
def test_kill_9_repeats_at_most_the_delivery_in_flight(tmp_path):
    """Messages for Betty and Carol (two domains); Carol's host tarpits, so when the world
    is killed (-9) after the last 250 every message has reached Betty and is still being
    relayed to careful.com. Progress is saved per domain (delivery._save_progress), so
    after a restart Betty gets none again but the one whose delivery was in flight at the
    kill (the last but one may be; the last is not past DNS yet), and Carol gets each once."""
    state = tmp_path / "state"
    slow_carol = {'users = { carol = "carol-password" }': 'users = { carol = "carol-password" }\nbehaviour = "tarpit"'}
    world = WorldProcess(state, topology(tmp_path, **slow_carol))
    count = 12  # fewer than the 16 deliveries in flight a host allows: none waits for a slot
    betty = RawIMAP(world.endpoint("smtp.brilliant.com", "imap"), BETTY, "betty-password")
    betty.command("SELECT INBOX")
    betty.sock.sendall(b"i IDLE\r\n")
    assert betty.line().startswith(b"+")
    with smtplib.SMTP(*world.endpoint("smtp.awesome.com", "submission"), timeout=10) as client:
        client.login("albert", "albert-password")
        for seq in range(count):
            message = b"From: albert@awesome.com\r\nX-Seq: %d\r\nSubject: two domains\r\n\r\nbody\r\n" % seq
            client.sendmail("albert@awesome.com", [BETTY, CAROL], message)
            if seq < count - 1:
                betty.wait_exists(seq + 1)  # one relay to Betty at a time
        world.kill()  # right after the last 250
    betty.close()
    left = remaining_recipients(state / "spool" / "smtp.awesome.com")
    with World(lecture_config(), state_dir=state) as restarted:  # careful.com answers at once now
        restarted.wait_for(lambda e: e.kind == "delivered" and e.server == "smtp.awesome.com", count=left)
        got = {address: copies(restarted, address) for address in (BETTY, CAROL)}
    for address, counted in got.items():
        assert sorted(counted) == list(range(count)), f"{address} is missing messages"
    duplicates = sum(n - 1 for counted in got.values() for n in counted.values())
    assert duplicates <= 1, got
    assert not unfinished(state / "mail" / BETTY)


# -- 2. what a killed writer leaves in tmp/ -----------------------------------------------
def unfinished(folder: Path) -> list[str]:
    """The files in a Maildir's tmp/ (the committer's empty spares aside)."""
    return sorted(name for name in os.listdir(folder / "tmp") if not name.startswith(".spare."))


THIS_HOST = maildir.unique_name().split(".", 2)[2]  # as maildir(5) names write it


def half_delivery(folder: Path, pid: int, *, host: str = THIS_HOST, age: float = 0.0) -> str:
    """A message left in ``folder/tmp`` by process ``pid`` of ``host`` (named as
    labkit.maildir.unique_name names files), last touched ``age`` seconds ago."""
    name = f"{int(time.time())}.M{len(os.listdir(folder / 'tmp')):06d}P{pid}Q000001.{host}"
    path = folder / "tmp" / name
    path.write_bytes(b"Subject: half a delivery\r\n\r\n")
    os.utime(path, (time.time() - age, time.time() - age))
    return name


def test_stale_tmp_files_are_swept_at_start_and_by_readers(tmp_path):
    state = tmp_path / "state"
    inbox = maildir.create(state / "mail" / BETTY)
    sent = maildir.create(inbox / ".Sent")
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(exited.stdout)
    alive = half_delivery(inbox, os.getpid())  # the test's own: a writer still at work
    half_delivery(inbox, dead)
    half_delivery(sent, dead)
    half_delivery(inbox, 12345, host="elsewhere.example", age=37 * 3600)  # another host's: only age tells
    world = WorldProcess(state)
    try:
        assert unfinished(inbox) == [alive] and unfinished(sent) == []
        old = half_delivery(inbox, os.getpid(), age=37 * 3600)  # a reader removes it, whoever wrote it
        with imaplib.IMAP4(*world.endpoint("smtp.brilliant.com", "imap")) as client:
            client.login(BETTY, "betty-password")
            client.select("INBOX")
        assert old not in unfinished(inbox) and unfinished(inbox) == [alive]
    finally:
        world.stop()
