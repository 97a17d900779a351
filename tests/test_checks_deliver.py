"""The deliver checks catch each classic mistake, with its message."""

from __future__ import annotations

import os
import time

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.maildir import deliver as labkits_own
from mistakes.deliver import MISTAKES, good


def test_a_right_deliver_passes_every_rule():
    passes_every_rule(checks.deliver, good)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_caught_with_its_message(mistake):
    assert caught(checks.deliver, MISTAKES, mistake).rfc.startswith("maildir(5)")


def test_the_spy_records_real_calls_and_puts_os_back():
    real = os.fsync, os.rename
    result = checks.deliver.run(MISTAKES["fsyncs the file but not new/"][0], only=["fsync"]).results[0]
    assert (os.fsync, os.rename) == real
    synced, renamed = result.got.splitlines()
    assert synced == "os.fsync(the message's file)"
    assert renamed.startswith("os.rename('tmp/") and "', 'new/" in renamed and renamed.endswith(" of 152 bytes")


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


@pytest.mark.parametrize("impl, says", [
    (lambda maildir, message: open(maildir / "nowhere" / "x", "wb"), "FileNotFoundError"),
    (lambda maildir, message: None, "deliver must return the new file's name"),
    (lambda maildir, message: time.sleep(30), "longer than 0.5s"),
    (lambda maildir, message: labkits_own(maildir, message), "yours to write"),
])
def test_broken_delivers_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.deliver, impl, ["lands-in-new", "in-the-world"], says)
