"""The deliver checks catch each classic mistake, with its message, and pass every legal answer."""

from __future__ import annotations

import os
import threading
import time

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.diskspy import PowerCut, power_cut
from labkit.maildir import create
from labkit.maildir import deliver as labkits_own
from mistakes.deliver import MISTAKES, good
from mistakes.independent import deliver as independent

CORPORA = {"labkit's": MISTAKES, "independent": independent.MISTAKES}
LAB = "5-storing-and-pop3"


def test_a_right_deliver_passes_every_rule():
    passes_every_rule(checks.deliver, good)


def test_an_independently_written_right_answer_passes_every_rule():
    passes_every_rule(checks.deliver, independent.good)


def test_labkits_own_deliver_passes_every_rule(monkeypatch):
    """labkit's answer is a legal one (a group commit, durable the same way): the checks
    must accept it, the fence lifted."""
    monkeypatch.setattr("labkit.fence.check_fence", lambda *args: None)
    passes_every_rule(checks.deliver, labkits_own)


@pytest.mark.parametrize("corpus, mistake", [(c, m) for c, mistakes in CORPORA.items() for m in mistakes])
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(corpus, mistake, visible_rules):
    visible = visible_rules(LAB)["deliver"]
    assert caught(checks.deliver, CORPORA[corpus], mistake, visible=visible).rfc.startswith("maildir(5)")


def test_the_spy_records_real_calls_and_puts_os_back():
    real = os.fsync, os.rename
    result = checks.deliver.run(MISTAKES["fsyncs the file but not new/"][0], only=["fsync"]).results[0]
    assert (os.fsync, os.rename) == real
    synced, renamed = result.got.splitlines()
    assert synced == "os.fsync(the message's file)"
    assert renamed.startswith("os.rename('tmp/") and "', 'new/" in renamed
    assert renamed.endswith(f" of {len(checks.deliver.MESSAGE)} bytes")


def test_from_os_import_fsync_is_seen_too():
    namespace = {}
    exec("from os import fsync, rename, open as os_open, O_RDONLY, close\n"
         "def deliver(maildir, message):\n"
         "    name = 'one.message'\n"
         "    with open(f'{maildir}/tmp/{name}', 'wb') as f:\n"
         "        f.write(message); f.flush(); fsync(f.fileno())\n"
         "    rename(f'{maildir}/tmp/{name}', f'{maildir}/new/{name}')\n"
         "    fd = os_open(f'{maildir}/new', O_RDONLY); fsync(fd); close(fd)\n"
         "    return name\n", namespace)
    assert checks.deliver.run(namespace["deliver"], only=["via-tmp", "fsync"]).passed


def test_a_deliver_that_fails_alone_fails_the_parallel_rule_with_its_own_words():
    result = checks.deliver.run(lambda maildir, message: 1 / 0, only=["parallel"]).results[0]
    assert "ZeroDivisionError" in result.got and "share a file" not in result.hint


def test_a_power_cut_stops_a_delivery_at_its_rename_and_only_there(tmp_path):
    """What the notebook's crash shows: the file written, the rename never made; another
    thread's rename goes on meanwhile."""
    maildir = create(tmp_path / "Maildir")
    other = tmp_path / "other"
    other.write_bytes(b"x")
    renamed = threading.Event()

    def deliver(maildir, message):
        thread = threading.Thread(target=lambda: (os.rename(other, tmp_path / "moved"), renamed.set()))
        thread.start()
        thread.join(10)
        return good(maildir, message)

    # the paths as in the Maildir: the MTA's one-line reply shows them whole (was: cut in the middle of new/NAME)
    with pytest.raises(PowerCut, match=r"at os\.rename\('tmp/[^/']+', 'new/[^/']+'\)$"):
        power_cut(deliver)(maildir, b"Subject: cut\r\n\r\nbody\r\n")
    assert renamed.is_set() and (tmp_path / "moved").exists()
    assert [p.read_bytes() for p in (maildir / "tmp").iterdir()] == [b"Subject: cut\r\n\r\nbody\r\n"]
    assert list((maildir / "new").iterdir()) == []
    assert good(maildir, b"after") and len(list((maildir / "new").iterdir())) == 1  # os is itself again


@pytest.mark.parametrize("impl, says", [
    (lambda maildir, message: open(maildir / "nowhere" / "x", "wb"), "FileNotFoundError"),
    (lambda maildir, message: None, "deliver must return the new file's name"),
    (lambda maildir, message: time.sleep(30), "longer than 0.5s"),
    (lambda maildir, message: labkits_own(maildir, message), "yours to write"),
])
def test_broken_delivers_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.deliver, impl, ["lands-in-new", "parallel", "in-the-world"], says)
