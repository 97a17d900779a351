"""Checks for ``deliver``, the Maildir write (maildir(5), qmail's rules).

The rules call the student's function on a fresh Maildir and judge the files it leaves
and the system calls it makes (:class:`~labkit.diskspy.DiskSpy`: fsync, rename, link,
recorded where the student's code runs): one message, two in the same second, the same
message twice, eight from eight threads at once. The last rule plugs the function into
the world, where Betty reads the message over IMAP; the rules ending in ``-elsewhere``
run the same in another situation (another message, Carol's host). ::

    from labkit import checks
    checks.deliver.run(deliver)
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from ..diskspy import MOVES, DiskSpy
from ..maildir import create
from .harness import ALBERT, BETTY, CAROL, Broken, Probe, Rule, entry_points

HOST = "smtp.brilliant.com"
# 8-bit text in two charsets (UTF-8 in the header, Latin-1 in the body): bytes, not text.
MESSAGE = ("Return-Path: <albert@awesome.com>\r\nFrom: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>"
           "\r\nSubject: Grüße\r\n\r\nDinner tonight?\r\n.\r\n-Albert\r\n").encode() \
    + "Grüße aus Köln\r\n".encode("latin-1")
# Another situation: a megabyte of every octet, lines ending in CRLF, LF or nothing.
BIG = (b"From: Carol <carol@careful.com>\r\nSubject: the photos\r\n\r\n" + bytes(range(256)) * 4096
       + b"\n.\r\nno newline at the end")
PARALLEL = 8  # deliveries at once, from as many threads
UNIQUE_HINT = ("add microseconds, the process id and a counter (itertools.count: next() on it is safe in threads), "
               "as maildir(5) says")


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


def _stored(maildir: Path) -> dict[str, bytes]:
    """new/'s files: name -> bytes."""
    return {name: (maildir / "new" / name).read_bytes() for name in sorted(os.listdir(maildir / "new"))}


# -- the rules ---------------------------------------------------------------------------
def lands_in_new(probe: Probe, message: bytes = MESSAGE) -> None:
    maildir = _maildir(probe)
    try:
        name = _deliver(probe, maildir, message)  # the contract: new/NAME holds exactly the bytes
    except Broken as broken:
        if " holds " in broken.got:  # the file is there, with other bytes
            raise Broken(broken.step, "the file to hold exactly the message's bytes", broken.got,
                         hint="write the bytes as they are: open(path, 'wb'), no decode(), no newline translation "
                              "(the message is 8-bit: UTF-8 here, Latin-1 there)") from None
        raise
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
                     hint=f"the second message replaced the first: a name of the time in seconds is not unique; "
                          f"{UNIQUE_HINT}")
    before = len(os.listdir(maildir / "new"))
    twice = [_deliver(probe, maildir) for _ in range(2)]
    if twice[0] == twice[1] or len(os.listdir(maildir / "new")) != before + 2:
        raise Broken("the same message delivered twice", "two files with different names, each with the message",
                     f"{twice!r}; new/ holds {len(os.listdir(maildir / 'new')) - before} of them",
                     hint="Albert may send the same bytes twice, and a mailing list may deliver one message to you "
                          f"twice: a name made from the message (a hash of it) is the same both times; {UNIQUE_HINT}")


def _at_once(probe: Probe, maildir: Path, messages: list[bytes]) -> list[str | Broken | None]:
    """Deliver ``messages`` from as many threads, started together; each one's name, or
    its failure (None: it never returned)."""
    start = threading.Barrier(len(messages))
    outcomes: list[str | Broken | None] = [None] * len(messages)

    def one(i: int) -> None:
        try:
            start.wait(timeout=probe.boundary.deadline)
            outcomes[i] = _deliver(probe, maildir, messages[i])
        except Broken as broken:
            outcomes[i] = broken
        except threading.BrokenBarrierError:
            pass

    threads = [threading.Thread(target=one, args=(i,), name=f"labkit-check-deliver-{i}", daemon=True)
               for i in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(probe.boundary.deadline * 2 + 5)
    return outcomes


def parallel(probe: Probe) -> None:
    maildir = _maildir(probe)
    _deliver(probe, _maildir(probe))  # one alone first: a failure here is not about threads
    messages = [MESSAGE + f"P.S. from thread {i}\r\n".encode() for i in range(PARALLEL)]
    outcomes = _at_once(probe, maildir, messages)
    names = [o for o in outcomes if isinstance(o, str)]
    failed = [o for o in outcomes if isinstance(o, Broken)]
    stored = _stored(maildir)
    lost = [i for i, message in enumerate(messages) if message not in stored.values()]
    left = sorted(os.listdir(maildir / "tmp"))
    if not lost and len(set(names)) == PARALLEL and len(stored) == PARALLEL and not left:
        return
    problems = [f"names returned: {len(names)}, {len(set(names))} different",
                f"new/ holds {len(stored)} files; lost: {', '.join(f'thread {i}' for i in lost) or 'none'}"]
    problems += [f"tmp/ still holds {left}"] if left else []
    if failed:
        problems.append(f"{len(failed)} of the calls failed, the first: {failed[0].got.splitlines()[0]}")
    hung = outcomes.count(None)
    problems += [f"{hung} of the calls never returned"] if hung else []
    raise Broken(f"{PARALLEL} deliveries at the same moment, from {PARALLEL} threads (an MTA takes two messages "
                 "at once)", f"{PARALLEL} files in new/, each message once, under {PARALLEL} different names",
                 "\n".join(problems),
                 hint="two deliveries at once must not share a file: a name of the time in seconds, a count of "
                      "the files in new/ or a fixed tmp/ name is the same for both, and the second write or "
                      f"rename destroys the first; {UNIQUE_HINT}, and open the tmp/ file with \"x\" (os.O_EXCL) "
                      "so that a clash fails instead of overwriting")


def in_the_world(probe: Probe, host: str = HOST, user: str = BETTY) -> None:
    world = probe.world(host=host)
    world.send(ALBERT, [user], b"Subject: Dinner\r\nFrom: albert@awesome.com\r\n\r\nTonight at eight?\r\n")
    step = f"Albert -> smtp.awesome.com -> {host} (your deliver) -> {user} reads it over IMAP"
    probe.delivered(world, user, step=step)
    with probe.watching(world, step, f"{user}'s IMAP client shows the message"), world.reader(user) as inbox:
        shown = inbox.show(1)
    if "Tonight at eight?" not in shown:
        raise Broken(step, "the message, read over IMAP", shown[:300])


RULES: list[Rule] = [
    Rule("lands-in-new", "the message lands in new/ with exactly its bytes", "maildir(5)", lands_in_new),
    Rule("via-tmp", "written in tmp/, renamed into new/: never half a file in new/, nothing left in tmp/",
         "maildir(5)", via_tmp),
    Rule("fsync", "the file is fsynced before the rename, and new/ after it", "maildir(5), RFC 5321 §6.1",
         fsynced),
    Rule("unique-names", "two deliveries in the same second, and the same message twice, get different names",
         "maildir(5)", unique_names),
    Rule("parallel", f"{PARALLEL} deliveries at once, from {PARALLEL} threads: {PARALLEL} files, nothing lost",
         "maildir(5)", parallel),
    Rule("in-the-world", f"as {HOST}'s deliver: Betty reads the message over IMAP", "maildir(5), RFC 3501",
         in_the_world),
    Rule("lands-in-new-elsewhere", "a megabyte of every octet value lands in new/ with exactly its bytes",
         "maildir(5)", lambda probe: lands_in_new(probe, BIG), variant_of="lands-in-new"),
    Rule("in-the-world-elsewhere", "as mx2.careful.com's deliver: Carol reads the message over IMAP",
         "maildir(5), RFC 3501", lambda probe: in_the_world(probe, "mx2.careful.com", CAROL),
         variant_of="in-the-world"),
]

run, check = entry_points("deliver", RULES)
