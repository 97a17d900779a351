"""Group commit: batches of staged files become durable and land in place together."""

from __future__ import annotations

import asyncio
import os
import threading
import time
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


def test_a_placed_file_costs_one_flush_and_goes_if_it_fails(tmp_path, monkeypatch):
    """A file written under its final name (the MTA's spool file) is flushed once, with
    no rename and no directory flush; if that flush fails, the file goes (it was never
    acknowledged), and the waiter hears why."""
    real, synced = commit._sync_all, []

    def sync_all(paths):
        synced.append(sorted(paths))
        real(paths)

    monkeypatch.setattr(commit, "_sync_all", sync_all)
    placed = os.fspath(tmp_path / "ID1")

    def stage():
        write_temp(placed, b"whole")
        return "ID1", Staged(placed=[placed])

    assert run_now(stage) == "ID1"
    assert (tmp_path / "ID1").read_bytes() == b"whole"
    assert [paths for paths in synced if paths] == [[placed]]  # the file's data, nothing else

    def broken(paths):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(commit, "_sync_all", broken)
    placed = os.fspath(tmp_path / "ID2")
    committer = GroupCommit()
    try:
        with pytest.raises(OSError, match="I/O error"):
            committer.submit(stage).result(timeout=10)
    finally:
        committer.close()
    assert sorted(os.listdir(tmp_path)) == ["ID1"]


# -- spare files: made in idle moments, filled by write_new -----------------------------


def spares_in(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(".spare."))


def test_write_placed_gives_a_spare_its_final_name_and_never_overwrites(tmp_path):
    """A placed file takes a spare's inode under its own name (link, then the spare's
    name goes); a name that exists is an error, and the spare stays ready."""
    directory = os.fspath(tmp_path)
    assert commit.write_placed(directory, "A", b"1") == os.path.join(directory, "A")  # no spare yet
    assert commit.SPARES.make_one()
    [spare] = spares_in(tmp_path)
    inode = os.stat(tmp_path / spare).st_ino
    assert commit.write_placed(directory, "B", b"22") == os.path.join(directory, "B")
    assert os.stat(tmp_path / "B").st_ino == inode and (tmp_path / "B").read_bytes() == b"22"
    assert spares_in(tmp_path) == []
    commit.SPARES.make_one()
    with pytest.raises(FileExistsError):
        commit.write_placed(directory, "A", b"333")
    assert (tmp_path / "A").read_bytes() == b"1" and len(spares_in(tmp_path)) == 1
    commit.SPARES.discard()


def test_write_placed_without_hard_links_creates_the_file(tmp_path, monkeypatch):
    """A file system that cannot link: the file is created, the spare taken goes."""
    directory = os.fspath(tmp_path)
    commit.write_placed(directory, "A", b"1")
    commit.SPARES.make_one()

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert commit.write_placed(directory, "B", b"22") == os.path.join(directory, "B")
    assert (tmp_path / "B").read_bytes() == b"22" and spares_in(tmp_path) == []
    commit.SPARES.discard()


def test_a_committer_that_makes_no_spares_leaves_them_to_others(tmp_path):
    """The MTA's committer (the 250's flush) never makes spares: a job would wait."""
    directory = os.fspath(tmp_path)
    commit.write_new(directory, "a", b"1")  # a directory to keep spares in
    quiet, other = GroupCommit(make_spares=False), None
    try:
        quiet.submit(lambda: (None, Staged())).result(timeout=10)
        time.sleep(0.2)  # idle: a committer that makes spares makes one in a millisecond
        assert spares_in(tmp_path) == []
        other = GroupCommit()
        deadline = time.monotonic() + 10
        while not spares_in(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert spares_in(tmp_path)  # ... as this one does
    finally:
        quiet.close()
        if other is not None:
            other.close()


def test_write_new_fills_a_spare_made_ahead(tmp_path):
    directory = os.fspath(tmp_path)
    first = commit.write_new(directory, "a", b"1")  # no spare yet: a file of that name
    assert first == os.path.join(directory, "a")
    assert commit.SPARES.make_one()  # the directory is now one to keep spares in
    [spare] = spares_in(tmp_path)
    assert (tmp_path / spare).read_bytes() == b""
    second = commit.write_new(directory, "b", b"22")
    assert second == os.path.join(directory, spare)  # the spare, not a new file
    assert (tmp_path / spare).read_bytes() == b"22" and not (tmp_path / "b").exists()
    commit.SPARES.make_one()
    commit.SPARES.discard()
    assert spares_in(tmp_path) == [spare]  # the untaken one is gone; a taken spare is the caller's


def test_a_spare_swept_away_is_not_a_failure(tmp_path):
    directory = os.fspath(tmp_path)
    commit.write_new(directory, "a", b"1")
    commit.SPARES.make_one()
    for name in spares_in(tmp_path):  # e.g. a tmp/ clean-up
        os.unlink(tmp_path / name)
    assert commit.write_new(directory, "b", b"2") == os.path.join(directory, "b")
    assert (tmp_path / "b").read_bytes() == b"2"
    commit.SPARES.discard()


def test_no_spares_for_a_directory_that_is_gone(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    commit.write_new(os.fspath(gone), "a", b"1")
    os.unlink(gone / "a")
    gone.rmdir()
    assert commit.SPARES.make_one()  # tried, failed, forgot the directory
    assert not gone.exists()
    commit.SPARES.discard()


def test_an_idle_committer_makes_spares_and_removes_them_when_closed(maildir):
    committer = GroupCommit()
    try:
        committer.submit(lambda: (None, Staged([(commit.write_new(os.fspath(maildir / "tmp"), "m", b"x"),
                                                 os.fspath(maildir / "new" / "m"))]))).result(10)
        deadline = time.monotonic() + 10
        while len(spares_in(maildir / "tmp")) < commit.Spares.PER_DIRECTORY and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(spares_in(maildir / "tmp")) == commit.Spares.PER_DIRECTORY
        # the next message lands in a spare, and the file in new/ holds it
        name = committer.submit(stage_file_new(maildir, "n", b"next")).result(10)
        assert (maildir / "new" / name).read_bytes() == b"next"
    finally:
        committer.close()
    assert spares_in(maildir / "tmp") == []
    assert sorted(os.listdir(maildir / "new")) == ["m", "n"]


def stage_file_new(directory, name: str, data: bytes):
    def stage():
        tmp = commit.write_new(os.fspath(directory / "tmp"), name, data)
        assert os.path.basename(tmp).startswith(".spare.")
        return name, Staged([(tmp, os.path.join(directory, "new", name))])

    return stage


def test_sweep_removes_the_spares_a_killed_process_left(tmp_path):
    directory = os.fspath(tmp_path)
    (tmp_path / ".spare.1.99999.1").write_bytes(b"")  # another (dead) process's
    (tmp_path / "1700000000.M1P1Q1.host").write_bytes(b"a delivery in progress")
    commit.write_new(directory, "a", b"1")
    commit.SPARES.make_one()  # one of ours, ready for use
    ours = [n for n in spares_in(tmp_path) if n != ".spare.1.99999.1"]
    commit.SPARES.sweep(directory)
    assert spares_in(tmp_path) == ours
    assert (tmp_path / "1700000000.M1P1Q1.host").exists()
    commit.SPARES.discard()


@pytest.mark.parametrize("writers", [1, 2])
def test_a_second_writer_starts_the_next_batch_while_one_is_still_flushing(maildir, writers):
    """Pipelined group commit (the MTA's committer has two writers): a write that comes
    while a batch is busy is made durable at once, not after that batch; each writer
    ends when the committer closes."""
    committer = GroupCommit(writers=writers)
    started, gate = threading.Event(), threading.Event()
    try:
        busy = committer.submit(lambda: (started.set() or gate.wait(30), Staged()))
        assert started.wait(10)
        later = committer.submit(stage_file(maildir, "later", b"x"))
        if writers == 1:  # it waits for the busy batch ...
            assert wait([later], timeout=0.5).not_done == {later}
        else:  # ... or does not
            assert later.result(timeout=10) == "later" and (maildir / "new" / "later").exists()
            assert not busy.done()
        gate.set()
        busy.result(10)
        assert later.result(10) == "later"
    finally:
        gate.set()
        committer.close()
    assert not any(thread.is_alive() for thread in committer._threads)


def test_a_write_whose_waiter_went_is_skipped_and_the_writer_goes_on(maildir):
    """A waiter may give up (a task cancelled as a world stops: asyncio.wrap_future cancels
    the Future): its stage is not run, and the committer serves the next ones."""
    committer = GroupCommit()
    gate = threading.Event()
    try:
        blocker = committer.submit(lambda: (gate.wait(10), Staged()))
        abandoned = committer.submit(stage_file(maildir, "gone", b"x"))
        assert abandoned.cancel()
        gate.set()
        blocker.result(10)
        assert committer.submit(stage_file(maildir, "next", b"y")).result(10) == "next"
        assert not (maildir / "gone").exists()
    finally:
        committer.close()


def test_asubmit_wakes_the_loop_once_a_batch_and_tells_each_waiter_its_own_outcome(maildir):
    """Coroutines waiting on one batch are answered by a single call into their event loop
    (not a wake-up per message); each gets its result, or its own stage's error; a waiter
    that gave up before the batch was written has its stage skipped."""
    committer = GroupCommit()
    started, gate = threading.Event(), threading.Event()

    async def main() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        calls = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args, **kwargs: (calls.append(args), real(*args, **kwargs))[1]
        committer.submit(lambda: (started.set(), gate.wait(10), Staged()))  # hold the writer
        assert started.wait(10)  # so everything below is one batch
        waits = [committer.asubmit(stage_file(maildir, f"m{i}", b"x")) for i in range(10)]
        bad = committer.asubmit(stage_file(maildir / "missing", "b", b"x"))
        gone = committer.asubmit(stage_file(maildir, "gone", b"x"))
        gone.cancel()
        gate.set()
        results = await asyncio.gather(*waits)
        with pytest.raises(FileNotFoundError):
            await bad
        return results, len(calls)

    try:
        results, calls = asyncio.run(main())
    finally:
        committer.close()
    assert results == [f"m{i}" for i in range(10)]
    assert calls == 1
    assert sorted(os.listdir(maildir / "new")) == sorted(f"m{i}" for i in range(10))  # not "gone"


def test_asubmit_reports_a_failed_commit_and_cleans_up(maildir, monkeypatch):
    def broken(paths):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(commit, "_sync_all", broken)
    committer = GroupCommit()

    async def main() -> None:
        with pytest.raises(OSError, match="I/O error"):
            await committer.asubmit(stage_file(maildir, "c", b"z"))

    try:
        asyncio.run(main())
    finally:
        committer.close()
    assert os.listdir(maildir / "new") == [] and os.listdir(maildir / "tmp") == []


def test_a_deliverer_gathers_a_flood_into_one_batch_and_takes_a_lone_job_at_once(maildir, monkeypatch):
    """``gather`` (the deliverer's): jobs that come close together share a batch begun
    ``gather`` after the one before; a job after a quiet moment is not held. The times are
    stretched (0.5 s, not the world's 20 ms and 5 ms) so a busy machine cannot blur them."""
    batches: list[int] = []
    real_commit = commit.commit
    monkeypatch.setattr(commit, "commit", lambda staged: (batches.append(len(staged)), real_commit(staged)))
    monkeypatch.setattr(commit, "FLOOD_GAP", 0.5)
    committer = GroupCommit(make_spares=False, gather=0.5)
    try:
        first = committer.submit(stage_file(maildir, "first", b"1"))
        assert first.result(10) == "first"
        flood = []
        for i in range(4):  # right behind it, 50 ms apart: without gather, a batch each
            flood.append(committer.submit(stage_file(maildir, f"m{i}", b"x")))
            time.sleep(0.05)
        assert [job.result(10) for job in flood] == ["m0", "m1", "m2", "m3"]
        assert batches == [1, 4]  # held back together
        time.sleep(0.6)  # quiet, longer than gather
        t0 = time.monotonic()
        assert committer.submit(stage_file(maildir, "lone", b"y")).result(10) == "lone"
        assert time.monotonic() - t0 < 0.45  # not held for the gather (a batch of one takes ~1 ms)
        assert batches == [1, 4, 1]
    finally:
        committer.close()
    assert sorted(os.listdir(maildir / "new")) == ["first", "lone", "m0", "m1", "m2", "m3"]


def test_a_file_done_with_is_recycled_as_a_spare_and_written_over_exactly(tmp_path):
    """Spares.recycle: a delivered spool file becomes the next one (the same inode, no
    create, no delete); write_placed writes over its old bytes and cuts what is left."""
    directory = os.fspath(tmp_path)
    first = commit.write_placed(directory, "A", b"a much longer old message")
    inode = os.stat(first).st_ino
    commit.SPARES.recycle(first, 25)
    assert not os.path.exists(first) and len(spares_in(tmp_path)) == 1
    second = commit.write_placed(directory, "B", b"new")
    assert os.stat(second).st_ino == inode and (tmp_path / "B").read_bytes() == b"new"
    assert spares_in(tmp_path) == []
    commit.SPARES.discard()


def test_a_file_is_deleted_not_recycled_where_no_spares_are_kept_it_is_large_or_there_are_enough(tmp_path, monkeypatch):
    directory = os.fspath(tmp_path)
    (tmp_path / "x").write_bytes(b"1")
    commit.SPARES.recycle(os.fspath(tmp_path / "x"), 1)  # a directory nobody wrote placed files in
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(commit.Spares, "RECYCLED", 1)
    big = b"x" * (commit.Spares.RECYCLED_SIZE + 1)
    commit.write_placed(directory, "big", big)
    commit.SPARES.recycle(os.path.join(directory, "big"), len(big))  # too large to keep on disk as a spare
    assert spares_in(tmp_path) == []
    commit.write_placed(directory, "a", b"1")
    commit.write_placed(directory, "b", b"2")
    commit.SPARES.recycle(os.path.join(directory, "a"), 1)
    commit.SPARES.recycle(os.path.join(directory, "b"), 1)
    assert len(spares_in(tmp_path)) == 1 and sorted(os.listdir(tmp_path))[0].startswith(".spare.")
    commit.SPARES.discard()
    assert list(tmp_path.iterdir()) == []
