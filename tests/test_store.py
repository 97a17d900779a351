"""The mail store: UIDs, flags, folders, path safety, concurrency, durability."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import labkit.commit
import labkit.store
from labkit.maildir import deliver
from labkit.store import (
    BadFolderName,
    FolderExists,
    MailboxLocked,
    MailStore,
    MessageInfo,
    NoSuchFolder,
    NoSuchMessage,
    StoreError,
    TooManyKeywords,
)

MESSAGE = b"From: albert@awesome.com\r\nSubject: hi\r\n\r\nHello Betty\r\n"


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "betty")


def deliver_n(store: MailStore, n: int) -> list[str]:
    return [deliver(store.root, MESSAGE + f"#{i}\r\n".encode()) for i in range(n)]


def test_uids_ascending_in_delivery_order(store: MailStore) -> None:
    keys = deliver_n(store, 3)
    inbox = store.folder("INBOX")
    assert [m.uid for m in inbox.messages()] == [1, 2, 3]
    assert [m.key for m in inbox.messages()] == keys
    assert inbox.uidnext == 4
    assert inbox.recent == {1, 2, 3}
    assert not os.listdir(store.root / "new")


def test_uids_never_reused_after_expunge(store: MailStore) -> None:
    deliver_n(store, 3)
    inbox = store.folder("INBOX")
    inbox.expunge([3])
    deliver_n(store, 1)
    assert [m.uid for m in inbox.refresh()] == [1, 2, 4]
    assert inbox.uidnext == 5


def test_uids_and_uidvalidity_survive_restart(store: MailStore) -> None:
    deliver_n(store, 2)
    first = store.folder("INBOX")
    first.expunge([1])
    again = MailStore(store.root).folder("inbox")
    assert [m.uid for m in again.messages()] == [2]
    assert (again.uidvalidity, again.uidnext) == (first.uidvalidity, 3)


def test_uidvalidity_changes_when_uidlist_is_lost(store: MailStore) -> None:
    deliver_n(store, 1)
    before = store.folder("INBOX").uidvalidity
    (store.root / "labkit-uidlist").unlink()
    after = store.folder("INBOX")
    assert after.uidvalidity > before
    assert [m.uid for m in after.messages()] == [1]


def test_two_processes_agree_on_uids(store: MailStore) -> None:
    deliver_n(store, 2)
    code = "import sys; from labkit.store import MailStore; " "print([m.uid for m in MailStore(sys.argv[1]).folder('INBOX').messages()])"
    out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[1, 2]", out.stderr
    deliver_n(store, 1)
    assert [m.uid for m in store.folder("INBOX").messages()] == [1, 2, 3]


def test_read_is_crlf_and_size_matches(store: MailStore) -> None:
    deliver(store.root, b"Subject: lf\n\nline one\nline two\n")
    deliver(store.root, "Subject: 8bit\r\n\r\nGrüße\r\n".encode())
    inbox = store.folder("INBOX")
    lf, utf8 = inbox.messages()
    assert inbox.read(lf.uid) == b"Subject: lf\r\n\r\nline one\r\nline two\r\n"
    assert all(m.size == len(inbox.read(m.uid)) for m in inbox.messages())
    assert inbox.read(utf8.uid) == "Subject: 8bit\r\n\r\nGrüße\r\n".encode()


def test_flags_written_as_maildir_info(store: MailStore) -> None:
    (key,) = deliver_n(store, 1)
    inbox = store.folder("INBOX")
    info = inbox.set_flags(1, ["\\seen", "\\Flagged", "\\Deleted", "$Forwarded"])
    assert info.flags == {"\\Seen", "\\Flagged", "\\Deleted", "$Forwarded"}
    assert os.listdir(store.root / "cur") == [f"{key}:2,FPST"]
    assert store.folder("INBOX").messages()[0].flags == info.flags


def test_flags_set_by_mutt_rename_are_seen(store: MailStore) -> None:
    (key,) = deliver_n(store, 1)
    inbox = store.folder("INBOX")
    os.rename(store.root / "cur" / f"{key}:2,", store.root / "cur" / f"{key}:2,RS")  # as mutt does
    (info,) = inbox.refresh()
    assert (info.uid, info.flags) == (1, {"\\Seen", "\\Answered"})
    assert inbox.read(1) == MESSAGE + b"#0\r\n"


def test_read_after_rename_by_another_client(store: MailStore) -> None:
    (key,) = deliver_n(store, 1)
    inbox = store.folder("INBOX")
    os.rename(store.root / "cur" / f"{key}:2,", store.root / "cur" / f"{key}:2,S")
    assert inbox.read(1).startswith(b"From:")


def test_vanished_message_raises_store_error(store: MailStore) -> None:
    deliver_n(store, 1)
    pop, imap = store.folder("INBOX"), store.folder("INBOX")
    imap.expunge([1])
    with pytest.raises(NoSuchMessage, match="UID 1 .* gone"):
        pop.read(1)
    with pytest.raises(NoSuchMessage, match="no message with UID 9"):
        pop.read(9)


def test_append_is_durable_and_keeps_flags_and_date(store: MailStore) -> None:
    sent = store.create("Sent")
    uid = sent.append(b"Subject: x\r\n\r\nbody\r\n", ["\\Seen"], internaldate=1_700_000_000.0)
    (info,) = MailStore(store.root).folder("Sent").messages()  # a fresh reader sees it
    assert (info.uid, info.flags, info.internaldate) == (uid, {"\\Seen"}, 1_700_000_000.0)
    assert os.listdir(store.root / ".Sent" / "tmp") == []
    assert (store.root / ".Sent" / "maildirfolder").exists()


def test_copy_to_returns_new_uids_in_order(store: MailStore) -> None:
    deliver_n(store, 3)
    inbox, work = store.folder("INBOX"), store.create("Work")
    inbox.set_flags(3, ["\\Flagged"])
    assert inbox.copy_to([3, 1], work) == [1, 2]
    copied = work.refresh()
    assert [work.read(m.uid) for m in copied] == [inbox.read(3), inbox.read(1)]
    assert copied[0].flags == {"\\Flagged"}


def test_keywords_kept_as_letters_with_a_durable_table(store: MailStore) -> None:
    (key,) = deliver_n(store, 1)
    inbox = store.folder("INBOX")
    os.rename(store.root / "cur" / f"{key}:2,", store.root / "cur" / f"{key}:2,z")  # a letter nobody knows
    inbox.refresh()
    info = inbox.set_flags(1, ["\\Seen", "$Hello", "NIL", "$hello"])  # keywords compare case-insensitively
    assert info.flags == {"\\Seen", "$Hello", "NIL"}
    assert os.listdir(store.root / "cur") == [f"{key}:2,Sabz"]
    assert (store.root / "labkit-keywords").read_text() == "0 $Hello\n1 NIL\n"  # Dovecot's dovecot-keywords format
    assert inbox.change_flags(1, add=["$world"], remove=["nil", "$unknown"]).flags == {"\\Seen", "$Hello", "$world"}
    assert inbox.keywords == ("$Hello", "NIL", "$world")
    code = ("import sys; from labkit.store import MailStore; f = MailStore(sys.argv[1]).folder('INBOX');"
            "print(sorted(f.messages()[0].flags)); f.change_flags(1, add=['$Later'])")
    out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "['$Hello', '$world', '\\\\Seen']", out.stderr
    assert inbox.refresh()[0].flags == {"\\Seen", "$Hello", "$world", "$Later"}  # a letter new to this process


def test_keywords_limited_to_26_letters(store: MailStore) -> None:
    deliver_n(store, 1)
    inbox = store.folder("INBOX")
    inbox.set_flags(1, [f"k{n}" for n in range(26)])
    with pytest.raises(TooManyKeywords, match="no room for keyword extra"):
        inbox.change_flags(1, add=["\\Seen", "extra"])
    assert len(inbox.refresh()[0].flags) == 26  # nothing changed
    uid = inbox.append(MESSAGE, ["\\Flagged", "k3", "extra"])  # APPEND: flags SHOULD be kept, so this one is left out
    assert [m.flags for m in inbox.refresh() if m.uid == uid] == [{"\\Flagged", "k3"}]


def test_keyword_table_starts_anew_with_a_recreated_folder(store: MailStore) -> None:
    work = store.create("Work")
    work.append(MESSAGE)
    work.refresh()
    work.set_flags(1, ["$old"])
    store.delete("Work")
    work = store.create("Work")  # same path, same process: nothing of the old table may stay
    uid = work.append(MESSAGE)
    work.refresh()
    assert work.keywords == () and work.set_flags(uid, ["$new"]).flags == {"$new"}
    assert (store.root / ".Work" / "labkit-keywords").read_text() == "0 $new\n"


def test_flag_changes_apply_to_the_disk_not_a_stale_view(store: MailStore) -> None:
    deliver_n(store, 1)
    first, second = store.folder("INBOX"), store.folder("INBOX")
    first.set_flags(1, ["\\Seen"])
    second.refresh()
    first.change_flags(1, add=["\\Answered"])
    assert second.get(1).flags == {"\\Seen"}  # second has not looked again
    assert second.change_flags(1, remove=["\\Seen"]).flags == {"\\Answered"}  # first's change is kept
    assert first.refresh()[0].flags == {"\\Answered"}


def test_recent_claimed_by_one_session_and_saved_with_the_uid_list(store: MailStore) -> None:
    deliver_n(store, 2)
    assert store.folder("INBOX").recent == {1, 2}  # looking claims nothing
    claimer, late = store.folder("INBOX", claim_recent=True), store.folder("INBOX", claim_recent=True)
    assert (claimer.recent, late.recent) == ({1, 2}, set())
    uid = claimer.append(MESSAGE)
    deliver_n(store, 1)
    assert late.refresh() and late.recent == {uid, uid + 1}  # the first to see them
    assert claimer.refresh() and claimer.recent == {1, 2}
    code = "import sys; from labkit.store import MailStore; print(sorted(MailStore(sys.argv[1]).folder('INBOX').recent))"
    out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr
    assert (store.root / "labkit-uidlist").read_text().split("\n")[0].endswith(f" {uid + 2} {uid + 2}")


def test_a_claim_not_yet_saved_outlives_another_process_writing_the_uid_list(store: MailStore) -> None:
    deliver_n(store, 2)
    store.folder("INBOX")  # gives the UIDs (and saves them)
    assert store.folder("INBOX", claim_recent=True).recent == {1, 2}  # a claim, in memory only
    code = "import sys; from labkit.store import MailStore; MailStore(sys.argv[1]).folder('INBOX').append(b'x')"
    subprocess.run([sys.executable, "-c", code, str(store.root)], check=True, timeout=30)
    inbox = store.folder("INBOX")
    assert inbox.recent == {3}  # 1 and 2 stay claimed here
    inbox.append(b"y")
    assert (store.root / "labkit-uidlist").read_text().split("\n")[0].endswith(" 5 3")  # saved with the next write


def test_uidlist_without_recent_field_is_read(store: MailStore) -> None:
    deliver_n(store, 2)
    store.folder("INBOX")
    uidlist = store.root / "labkit-uidlist"
    lines = uidlist.read_text().split("\n")
    uidlist.write_text("\n".join([" ".join(lines[0].split()[:2])] + lines[1:]))  # as labkit wrote it before
    labkit.store._states.clear()  # as after a restart
    again = store.folder("INBOX", claim_recent=True)
    assert [m.uid for m in again.messages()] == [1, 2] and again.recent == set()


@pytest.mark.parametrize("batch", [1, 256])
def test_copy_is_all_or_nothing(store: MailStore, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("labkit.store.COPY_BATCH", batch)
    deliver_n(store, 3)
    inbox, work = store.folder("INBOX"), store.create("Work")
    store.folder("INBOX").expunge([3])  # another session, while inbox still shows it
    with pytest.raises(NoSuchMessage):
        inbox.copy_to([1, 2, 3], work)
    # batches of one: the two copies made are gone again; else none was made
    assert work.refresh() == [] and work.uidnext == (3 if batch == 1 else 1)
    assert os.listdir(work.path / "tmp") == []


def test_copy_in_batches_keeps_order_flags_and_dates(store: MailStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("labkit.store.COPY_BATCH", 2)
    deliver_n(store, 5)
    inbox, work = store.folder("INBOX"), store.create("Work")
    inbox.change_flags(2, add=["\\Seen", "$Work"])
    uids = inbox.copy_to([5, 2, 3, 1, 4], work)
    assert uids == [1, 2, 3, 4, 5]
    copies = {m.uid: m for m in work.refresh()}
    for source, uid in zip([5, 2, 3, 1, 4], uids):
        original = inbox.get(source)
        assert work.read(uid) == inbox.read(source)
        assert copies[uid].flags == original.flags and copies[uid].internaldate == original.internaldate



def test_copy_flushes_the_data_before_taking_the_folder_lock(store: MailStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Other sessions' refreshes wait for the folder lock: the data of a batch is made
    durable before it is taken, only the renames (and cur/'s fsync) under it."""
    monkeypatch.setattr("labkit.store.COPY_BATCH", 2)
    deliver_n(store, 3)
    inbox, work = store.folder("INBOX"), store.create("Work")
    real, synced = labkit.commit._sync_all, []

    def sync_all(paths: list[str]) -> None:
        fd = os.open(work.path / "labkit-uidlist.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except BlockingIOError:
            held = True
        finally:
            os.close(fd)  # releases it again if we got it
        if all(os.path.dirname(p) == str(work.path / "tmp") for p in paths):
            synced.append((f"{len(paths)} in tmp/", held))
        elif paths == [str(work.path / "cur")]:
            synced.append(("cur/", held))
        real(paths)

    monkeypatch.setattr(labkit.commit, "_sync_all", sync_all)
    assert inbox.copy_to([1, 2, 3], work) == [1, 2, 3]
    assert synced == [("2 in tmp/", False), ("cur/", True), ("1 in tmp/", False), ("cur/", True)]

def test_folders_create_rename_delete(store: MailStore) -> None:
    store.create("Work/Projects/2024")
    store.create("Sent/")
    assert store.folders() == ["INBOX", "Sent", "Work", "Work/Projects", "Work/Projects/2024"]
    assert (store.root / ".Work.Projects").is_dir()
    with pytest.raises(FolderExists):
        store.create("Sent")
    with pytest.raises(FolderExists):
        store.create("inbox")
    store.folder("Work/Projects").append(MESSAGE)
    store.rename("Work", "Job")
    assert store.folders() == ["INBOX", "Job", "Job/Projects", "Job/Projects/2024", "Sent"]
    assert len(store.folder("Job/Projects").messages()) == 1
    store.delete("Job/Projects/2024")
    assert "Job/Projects/2024" not in store.folders()
    with pytest.raises(NoSuchFolder):
        store.folder("Work")
    with pytest.raises(StoreError, match="INBOX cannot be deleted"):
        store.delete("Inbox")


def test_rename_inbox_moves_its_messages(store: MailStore) -> None:
    deliver_n(store, 2)
    store.rename("INBOX", "Old")
    assert len(store.folder("Old").messages()) == 2
    assert store.folder("INBOX").messages() == []


def test_deleted_folder_gets_new_uidvalidity_when_recreated(store: MailStore) -> None:
    first = store.create("Trash").uidvalidity
    store.delete("Trash")
    assert store.create("Trash").uidvalidity > first


@pytest.mark.parametrize("name", ["../x", "/etc", "a/../../b", "a\0b", "..", "", "a//b", "a/", "x\ny", "a.b", "a\\..\\b"])
def test_path_traversal_and_bad_names_refused(store: MailStore, name: str) -> None:
    with pytest.raises(BadFolderName):
        store.create(name) if name != "a/" else store.folder(name)
    assert store.folders() == ["INBOX"]
    assert sorted(p.name for p in store.root.parent.iterdir()) == ["betty"]


def test_user_names_validated(tmp_path: Path) -> None:
    for user in ("..", "../x", "a/b", ".hidden", ""):
        with pytest.raises(BadFolderName):
            MailStore.for_user(tmp_path, user)
    assert MailStore.for_user(tmp_path, "betty").root == tmp_path / "betty"


def test_subscriptions_persist(store: MailStore) -> None:
    store.subscribe("Sent")
    store.subscribe("Work/Projects")
    store.unsubscribe("Sent")
    store.unsubscribe("Never")
    assert MailStore(store.root).subscriptions == {"Work/Projects"}
    assert (store.root / "subscriptions").read_text() == "Work/Projects\n"


def test_lock_is_exclusive_across_sessions_and_processes(store: MailStore) -> None:
    with store.lock():
        with pytest.raises(MailboxLocked, match="locked"):
            MailStore(store.root).lock()
    code = "import sys; from labkit.store import MailStore; MailStore(sys.argv[1]).lock(); print('got it')"
    run = lambda: subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, timeout=30)
    with store.lock():
        assert "MailboxLocked" in run().stderr
    assert run().stdout.strip() == "got it"


def test_concurrent_delivery_while_refreshing(store: MailStore) -> None:
    per_thread, threads = 25, 4
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[list[int]] = []

    def reader() -> None:
        folder = store.folder("INBOX")
        try:
            for _ in range(500):  # bounded
                uids = [m.uid for m in folder.refresh()]
                seen.append(uids)
                if done.is_set() and len(uids) == per_thread * threads:
                    return
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def writer() -> None:
        deliver_n(store, per_thread)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer) for _ in range(threads)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=30)
    done.set()
    for t in readers:
        t.join(timeout=30)
    assert not errors
    final = store.folder("INBOX").messages()
    assert [m.uid for m in final] == list(range(1, per_thread * threads + 1))
    assert len({m.key for m in final}) == len(final)
    assert all(uids == sorted(set(uids)) for uids in seen)


# ---------------------------------------------------------------- the shared cache


def age(folder: Path) -> None:
    """Date cur/ and new/ a minute back, so that the next change surely changes their mtime."""
    past = time.time_ns() - 60 * 10**9
    for sub in ("cur", "new"):
        os.utime(folder / sub, ns=(past, past))


def uids_and_flags(messages: list[MessageInfo]) -> list[tuple[int, set[str]]]:
    return [(m.uid, set(m.flags)) for m in messages]


def test_outside_changes_seen_by_a_warm_cache(store: MailStore) -> None:
    keys = deliver_n(store, 3)
    pop, imap = store.folder("INBOX"), store.folder("INBOX", claim_recent=True)  # two sessions, one cache
    cur = store.root / "cur"
    os.rename(cur / f"{keys[0]}:2,", cur / f"{keys[0]}:2,S")  # mutt marks it read
    os.unlink(cur / f"{keys[1]}:2,")  # mutt deletes it
    deliver_n(store, 1)  # the MTA delivers
    assert uids_and_flags(imap.refresh()) == [(1, {"\\Seen"}), (3, set()), (4, set())]
    assert (pop.recent, imap.recent) == ({1, 2, 3}, {1, 3, 4})  # \Recent: pop only looked; imap claimed them
    assert [m.uid for m in pop.messages()] == [1, 2, 3]  # a snapshot until its owner refreshes
    assert uids_and_flags(store.folder("INBOX").messages()) == uids_and_flags(imap.messages())
    assert store.folder("INBOX").recent == set()


def test_unchanged_settled_folder_is_not_listed_again(store: MailStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labkit.store, "_SETTLE_NS", -3600 * 10**9)  # trust directory times at once
    keys = deliver_n(store, 3)
    inbox = store.folder("INBOX")
    age(store.root)
    inbox.refresh()  # lists once more, notes the (aged) directory times
    listed: list[str] = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listed.append(path) or real_listdir(path))
    assert [m.uid for m in inbox.refresh()] == [m.uid for m in store.folder("INBOX").messages()] == [1, 2, 3]
    assert listed == []  # two stat calls and the uid list were enough
    cur = store.root / "cur"
    deliver_n(store, 1)  # each outside change changes a directory's times, so each is seen
    assert [m.uid for m in inbox.refresh()] == [1, 2, 3, 4]
    age(store.root)
    inbox.refresh()
    os.rename(cur / f"{keys[0]}:2,", cur / f"{keys[0]}:2,F")
    assert uids_and_flags(inbox.refresh())[0] == (1, {"\\Flagged"})
    age(store.root)
    inbox.refresh()
    os.unlink(cur / f"{keys[1]}:2,")
    assert [m.uid for m in inbox.refresh()] == [1, 3, 4]
    assert listed


def test_warm_cache_sees_another_process_append(store: MailStore) -> None:
    deliver_n(store, 1)
    inbox = store.folder("INBOX")
    code = ("import sys; from labkit.store import MailStore; "
            "print(MailStore(sys.argv[1]).folder('INBOX').append(b'Subject: x\\r\\n\\r\\nhi\\r\\n', ['\\\\Seen']))")
    out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "2", out.stderr
    assert uids_and_flags(inbox.refresh()) == [(1, set()), (2, {"\\Seen"})]
    assert inbox.read(2) == b"Subject: x\r\n\r\nhi\r\n"
    deliver_n(store, 1)
    assert [m.uid for m in inbox.refresh()] == [1, 2, 3]


def test_uids_never_reused_when_an_older_uidlist_comes_back(store: MailStore) -> None:
    deliver_n(store, 2)
    inbox = store.folder("INBOX")
    older = (store.root / "labkit-uidlist").read_bytes()
    deliver_n(store, 1)
    assert [m.uid for m in inbox.refresh()] == [1, 2, 3]
    (store.root / "labkit-uidlist").write_bytes(older)  # restored from a backup, say
    assert [m.uid for m in inbox.refresh()] == [1, 2, 4]  # UID 3 may have meant that message
    assert inbox.uidnext == 5


def test_sizes_measured_when_first_needed_then_kept(store: MailStore) -> None:
    deliver(store.root, b"Subject: lf\n\nline one\nline two\n")
    deliver(store.root, MESSAGE)
    inbox = store.folder("INBOX")
    uidlist = store.root / "labkit-uidlist"
    recorded = lambda: [line.split()[2] for line in uidlist.read_text().splitlines()[1:]]
    assert recorded() == ["-", "-"]  # SELECT reads no message
    lf, crlf = inbox.messages()
    assert lf.size == len(b"Subject: lf\r\n\r\nline one\r\nline two\r\n") == len(inbox.read(lf.uid))
    assert inbox.read(crlf.uid) == MESSAGE and crlf.size == len(MESSAGE)
    inbox.refresh()
    assert recorded() == [str(lf.size), str(len(MESSAGE))]
    code = "import sys; from labkit.store import MailStore; print([m.size for m in MailStore(sys.argv[1]).folder('INBOX').messages()])"
    out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == str([lf.size, len(MESSAGE)]), out.stderr


def test_message_gone_before_its_size_was_measured(store: MailStore) -> None:
    keys = deliver_n(store, 2)
    inbox = store.folder("INBOX")
    os.unlink(store.root / "cur" / f"{keys[0]}:2,")
    with pytest.raises(NoSuchMessage, match="UID 1 .* gone"):
        inbox.messages()[0].size
    assert [(m.uid, m.size) for m in inbox.measure()] == [(2, len(MESSAGE) + 4)]  # "#1\r\n"
    assert [m.uid for m in inbox.messages()] == [2]


def test_message_info_is_immutable_and_equal_without_its_size(store: MailStore) -> None:
    deliver_n(store, 1)
    info = store.folder("INBOX").messages()[0]
    with pytest.raises(AttributeError, match="immutable"):
        info.uid = 7  # type: ignore[misc]
    seen = info.with_flags(frozenset({"\\Seen"}))
    assert seen != info and seen.with_flags(frozenset()) == info and seen.size == info.size == len(MESSAGE) + 4
    assert MessageInfo(1, "k", 3, frozenset(), 0.0).size == 3
    with pytest.raises(ValueError, match="no size"):
        MessageInfo(1, "k", None, frozenset(), 0.0)


def test_sessions_sharing_the_cache_under_concurrent_changes(store: MailStore) -> None:
    deliver_n(store, 20)
    session, reader = store.folder("INBOX"), store.folder("INBOX")
    odd_keys = [m.key for m in session.messages() if m.uid % 2]
    errors: list[BaseException] = []
    seen: list[list[int]] = []

    def run(work) -> None:
        try:
            work()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def flag_even() -> None:  # an IMAP session marks the even UIDs read
        for uid in range(2, 21, 2):
            session.set_flags(uid, {"\\Seen"})

    def mutt_flags_odd() -> None:  # mutt flags the odd ones, renaming behind the store's back
        for key in odd_keys:
            os.rename(store.root / "cur" / f"{key}:2,", store.root / "cur" / f"{key}:2,F")

    def refresh() -> None:
        for _ in range(50):  # bounded
            seen.append([m.uid for m in reader.refresh()])

    threads = [threading.Thread(target=run, args=(w,)) for w in (flag_even, mutt_flags_odd, refresh, lambda: deliver_n(store, 20))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert all(uids == sorted(set(uids)) for uids in seen)
    expected = [(uid, {"\\Seen"} if uid % 2 == 0 and uid <= 20 else {"\\Flagged"} if uid <= 20 else set()) for uid in range(1, 41)]
    assert uids_and_flags(reader.refresh()) == uids_and_flags(store.folder("INBOX").messages()) == expected


def test_per_message_cache_follows_the_folders_own_changes(store: MailStore) -> None:
    """What readers derive from a message is kept while its file is in the folder: an
    expunge, or a file another program deleted, takes its entry along."""
    deliver_n(store, 3)
    inbox = store.folder("INBOX")
    first, second, third = inbox.messages()
    for info in (first, second, third):
        inbox.cache(info)["ENVELOPE"] = info.key.encode()
    other = store.folder("INBOX")  # another session: the same cache
    assert other.cache(first)["ENVELOPE"] == first.key.encode()
    inbox.expunge([first.uid])
    (store.root / "cur" / inbox._state.listing[second.key]).unlink()  # as mutt deletes a message
    other.refresh()
    assert inbox.cache(first) == {} and inbox.cache(second) == {}
    assert inbox.cache(third)["ENVELOPE"] == third.key.encode()


def test_an_unused_folder_state_is_dropped(store: MailStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder's state lives while a Folder of it does, then KEEP_UNUSED seconds, or less
    when the unused ones hold over KEEP_UNUSED_MESSAGES: then its memory goes."""
    import gc

    deliver_n(store, 3)
    inbox = store.folder("INBOX")
    inbox.cache(inbox.messages()[0])["x"] = 1
    path = os.path.realpath(store.root)
    monkeypatch.setattr(labkit.store, "KEEP_UNUSED_MESSAGES", 3)
    del inbox
    gc.collect()
    assert path in labkit.store._states  # 3 messages kept unused: within the budget, for a while
    again = store.folder("INBOX")
    assert again.cache(again.messages()[0]) == {"x": 1}  # warm
    monkeypatch.setattr(labkit.store, "KEEP_UNUSED_MESSAGES", 2)
    state = again._state
    del again
    gc.collect()
    assert path not in labkit.store._states and state.infos == {} and state.cache == {}
    fresh = store.folder("INBOX")
    assert [m.uid for m in fresh.messages()] == [1, 2, 3] and fresh.cache(fresh.messages()[0]) == {}


def test_a_dropped_big_state_gives_its_memory_back_free_lists_included(
        store: MailStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a big folder state is dropped, the evictor hands its memory back: Python's
    free lists emptied by a full collection (the objects freed last would each keep an
    arena of their own), then glibc's. It does so without the registry's guard, so
    sessions opening folders meanwhile do not wait for the collection."""
    import gc

    gave_back = threading.Event()
    seen: dict[str, int | bool] = {}
    real = labkit.store._give_back_memory

    def give_back() -> None:
        free_list = [(i, i, i) for i in range(3000)]  # freed: up to 2,000 stay on the 3-tuples' free list
        del free_list
        before = sys.getallocatedblocks()
        real()
        seen["freed"] = before - sys.getallocatedblocks()

        def open_a_folder() -> None:  # as a session's thread would, meanwhile
            seen["guard"] = labkit.store._registry_guard.acquire(timeout=10)
            if seen["guard"]:
                labkit.store._registry_guard.release()

        opener = threading.Thread(target=open_a_folder)
        opener.start()
        opener.join()
        gave_back.set()

    monkeypatch.setattr(labkit.store, "_give_back_memory", give_back)
    monkeypatch.setattr(labkit.store, "_TRIM_AFTER", 2)
    monkeypatch.setattr(labkit.store, "_TRIM_DELAY", 0.0)
    monkeypatch.setattr(labkit.store, "KEEP_UNUSED_MESSAGES", 1)
    deliver_n(store, 3)
    inbox = store.folder("INBOX")
    assert len(inbox.messages()) == 3
    del inbox
    gc.collect()  # the Folder goes: its state, over the budget, is dropped at once
    assert gave_back.wait(30), "the evictor never handed the memory back"
    assert seen["guard"] is True, "the evictor held the registry's guard while it collected"
    assert seen["freed"] >= 1500, f"only {seen['freed']} blocks freed: the free lists were kept"


def test_handing_memory_back_walks_no_object() -> None:
    """The collection that empties the free lists looks at no object: one that walked
    them would stop the whole world for as long as the folders still open take to walk.
    (Garbage is left to the collector's own rounds.)"""
    import gc
    import weakref

    class Node:
        pass

    enabled = gc.isenabled()
    gc.disable()  # no round of the collector's own in between
    try:
        node = Node()
        node.me = node  # a cycle: only a collection that walks it frees it
        ref = weakref.ref(node)
        del node
        labkit.store._give_back_memory()
        assert ref() is not None, "the give-back walked the objects"
        assert gc.get_freeze_count() == 0  # everything is back in the collector's sight
        gc.collect()
        assert ref() is None
    finally:
        if enabled:
            gc.enable()


def test_a_folder_is_watched_for_deliveries_flags_and_expunges(store: MailStore) -> None:
    """What an IMAP session's IDLE hangs on: each change this process makes calls back,
    until it stops watching."""
    inbox = store.folder("INBOX")
    woken = []
    unwatch = inbox.watch(lambda: woken.append(threading.current_thread().name))
    deliver(store.root, MESSAGE)
    inbox.refresh()
    uid = inbox.messages()[0].uid
    store.folder("INBOX").change_flags(uid, add=["\\Seen"])  # another session's change
    inbox.expunge([uid])
    assert len(woken) == 3
    unwatch()
    deliver(store.root, MESSAGE)
    assert len(woken) == 3
