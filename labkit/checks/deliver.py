"""Checks for ``deliver``, the Maildir write (maildir(5), qmail's rules).

The rules call the student's function on a fresh Maildir and judge the files it leaves
and the system calls it makes (:class:`~labkit.diskspy.DiskSpy`: fsync, rename, link,
recorded where the student's code runs). The last rule plugs the function into the
world, where Betty reads the message over IMAP. ::

    from labkit import checks
    checks.deliver.run(deliver)
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ..diskspy import MOVES, DiskSpy
from ..maildir import create
from .harness import ALBERT, BETTY, Broken, Probe, Rule, entry_points

HOST = "smtp.brilliant.com"
MESSAGE = ("Return-Path: <albert@awesome.com>\r\nFrom: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>"
           "\r\nSubject: Grüße\r\n\r\nDinner tonight?\r\n.\r\n-Albert\r\n").encode()
def _maildir(probe: Probe) -> Path:
    """A fresh, empty Maildir for this rule."""
    return create(Path(probe.enter(tempfile.TemporaryDirectory(prefix="labkit-check-"))) / "Maildir")


def _deliver(probe: Probe, maildir: Path, message: bytes = MESSAGE) -> str:
    return probe(maildir, message,
                 step=f"deliver(maildir, <{len(message)} bytes>)")


def _spied(probe: Probe) -> tuple[Path, str, DiskSpy]:
    maildir = _maildir(probe)
    with DiskSpy.watching(probe.impl) as spy:
        name = _deliver(probe, maildir)
    return maildir, name, spy


def _move_into_new(maildir: Path, name: str, spy: DiskSpy) -> int | None:
    """Where in the calls the file went from tmp/ to new/ (None: it never did)."""
    final = maildir / "new" / name
    tmp = os.path.realpath(maildir / "tmp")
    ino = final.stat().st_ino
    for i, call in enumerate(spy.calls):
        if call.name in MOVES and call.ino == ino and os.path.dirname(call.src) == tmp:
            return i
    return None


# -- the rules ---------------------------------------------------------------------------
def lands_in_new(probe: Probe) -> None:
    maildir = _maildir(probe)
    name = _deliver(probe, maildir)  # the contract: new/NAME holds exactly the bytes
    found = {sub: sorted(os.listdir(maildir / sub)) for sub in ("new", "cur")}
    if found != {"new": [name], "cur": []}:
        raise Broken("after deliver", f"new/ holding one file, {name!r}, and cur/ empty", repr(found),
                     hint="new/ is for mail nobody has seen yet; the reader moves it to cur/ (maildir(5))")


def via_tmp(probe: Probe) -> None:
    maildir, name, spy = _spied(probe)
    where = _move_into_new(maildir, name, spy)
    if where is None:
        raise Broken("how the file got into new/", "written in tmp/, then renamed (or linked) into new/",
                     spy.story(maildir, name), hint="a reader that lists new/ while you write sees half a message: "
                     "write the file in tmp/, then os.rename it into new/ (maildir(5))")
    if spy.calls[where].size != len(MESSAGE):
        raise Broken("the file moved into new/", f"the whole message ({len(MESSAGE)} bytes) in it as it moves",
                     spy.story(maildir, name), hint="close (or flush) the file before renaming it")
    left = sorted(os.listdir(maildir / "tmp"))
    if left:
        raise Broken("tmp/ after deliver", "empty: the file was moved, not copied", repr(left),
                     hint="os.rename moves the file; after os.link, unlink the tmp/ name")


def fsynced(probe: Probe) -> None:
    maildir, name, spy = _spied(probe)
    file_syncs = spy.synced((maildir / "new" / name).stat().st_ino)
    moved = _move_into_new(maildir, name, spy)
    if not file_syncs:
        raise Broken("the file's data", "os.fsync(f.fileno()) on the file, before it goes into new/",
                     spy.story(maildir, name),
                     hint="close() does not put the data on the disk: after a crash the message your server "
                          "acknowledged with 250 would be lost (RFC 5321 §6.1)")
    if moved is not None and file_syncs[0] > moved:
        raise Broken("the file's data", "fsynced before the rename", spy.story(maildir, name),
                     hint="a crash between the rename and the fsync leaves an empty or partial file in new/")
    after = moved if moved is not None else file_syncs[0]
    if not [i for i in spy.synced((maildir / "new").stat().st_ino) if i > after]:
        raise Broken("the directory new/", "fsynced after the rename (os.open(new, os.O_RDONLY), then os.fsync)",
                     spy.story(maildir, name), hint="the rename changes the directory new/, and until new/ is "
                     "fsynced a crash can undo it (stdlib mailbox.Maildir forgets this)")


def unique_names(probe: Probe) -> None:
    maildir = _maildir(probe)
    for _ in range(2):  # two deliveries inside one second (tried again if a second ticked over in between)
        started = int(time.time())
        names = [_deliver(probe, maildir, MESSAGE + f"P.S. number {i}\r\n".encode()) for i in (1, 2)]
        if int(time.time()) == started:
            break
    texts = [(maildir / "new" / n).read_bytes() if (maildir / "new" / n).exists() else b"" for n in names]
    if names[0] == names[-1] or b"number 1" not in texts[0]:
        raise Broken("two deliveries in the same second", "two files with different names", repr(names),
                     hint="the second message replaced the first: a name of the time in seconds is not unique; "
                          "add microseconds, the process id and a counter (maildir(5))")


def in_the_world(probe: Probe) -> None:
    world = probe.world(host=HOST)
    world.send(ALBERT, [BETTY], b"Subject: Dinner\r\nFrom: albert@awesome.com\r\n\r\nTonight at eight?\r\n")
    step = f"Albert -> smtp.awesome.com -> {HOST} (your deliver) -> Betty reads it over IMAP"
    probe.delivered(world, BETTY, step=step)
    with probe.watching(world, step, "Betty's IMAP client shows the message"), world.reader(BETTY) as inbox:
        shown = inbox.show(1)
    if "Tonight at eight?" not in shown:
        raise Broken(step, "the message, read over IMAP", shown[:300])


RULES: list[Rule] = [
    Rule("lands-in-new", "the message lands in new/ with exactly its bytes", "maildir(5)", lands_in_new),
    Rule("via-tmp", "written in tmp/, renamed into new/: never half a file in new/, nothing left in tmp/",
         "maildir(5)", via_tmp),
    Rule("fsync", "the file is fsynced before the rename, and new/ after it", "maildir(5), RFC 5321 §6.1",
         fsynced),
    Rule("unique-names", "two deliveries in the same second get different names", "maildir(5)", unique_names),
    Rule("in-the-world", f"as {HOST}'s deliver: Betty reads the message over IMAP", "maildir(5), RFC 3501",
         in_the_world),
]

run, check = entry_points("deliver", RULES)
