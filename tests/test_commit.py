"""Group commit: batches of staged files become durable and land in place together."""

from __future__ import annotations

import os
import threading
from concurrent.futures import wait

import pytest

from labkit import commit
from labkit.commit import GroupCommit, Staged, run_now, write_temp


def stage_file(directory, name: str, data: bytes, after=None):
    def stage():
        tmp = os.path.join(directory, "tmp", name)
        write_temp(tmp, data)
        return name, Staged([(tmp, os.path.join(directory, "new", name))], [after] if after else [])

    return stage


@pytest.fixture
def maildir(tmp_path):
    for sub in ("tmp", "new"):
        (tmp_path / sub).mkdir()
    return tmp_path


def test_run_now_puts_the_file_in_place(maildir):
    assert run_now(stage_file(maildir, "a", b"hello")) == "a"
    assert (maildir / "new" / "a").read_bytes() == b"hello"
    assert os.listdir(maildir / "tmp") == []


def test_a_batch_lands_whole_and_runs_its_after_hooks(maildir):
    committer = GroupCommit()
    hooks = []
    gate = threading.Event()
    try:
        blocker = committer.submit(lambda: (gate.wait(10), Staged()))  # hold the writer so a batch queues up
        futures = [committer.submit(stage_file(maildir, f"m{i}", b"x" * i, lambda i=i: hooks.append(i)))
                   for i in range(20)]
        gate.set()
        wait([blocker, *futures], timeout=10)
        assert [f.result() for f in futures] == [f"m{i}" for i in range(20)]
    finally:
        committer.close()
    assert sorted(os.listdir(maildir / "new")) == sorted(f"m{i}" for i in range(20))
    assert (maildir / "new" / "m7").read_bytes() == b"x" * 7
    assert sorted(hooks) == list(range(20))


def test_a_failing_stage_fails_alone(maildir):
    committer = GroupCommit()
    try:
        bad = committer.submit(stage_file(maildir / "missing", "b", b"x"))
        good = committer.submit(stage_file(maildir, "g", b"y"))
        with pytest.raises(FileNotFoundError):
            bad.result(timeout=10)
        assert good.result(timeout=10) == "g"
    finally:
        committer.close()


def test_a_failed_commit_reports_to_every_waiter_and_cleans_up(maildir, monkeypatch):
    def broken(paths):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(commit, "_sync_all", broken)
    committer = GroupCommit()
    try:
        future = committer.submit(stage_file(maildir, "c", b"z"))
        with pytest.raises(OSError, match="I/O error"):
            future.result(timeout=10)
    finally:
        committer.close()
    assert os.listdir(maildir / "new") == [] and os.listdir(maildir / "tmp") == []
