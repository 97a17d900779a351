"""``deliver`` as a student writes it from the notebook (with pathlib), and its one-mistake variants."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

_lock = threading.Lock()
_count = 0


def _sequence() -> int:
    global _count
    with _lock:
        _count += 1
        return _count


def make(*, straight_to_new=False, copies=False, text_mode=False, syncs_tmp_dir=False, syncs_dir_first=False,
         seconds_name=False, hashed_name=False, counts_new=False, fixed_tmp=False):
    def deliver(maildir, message):
        maildir = Path(maildir)
        if seconds_name:  # old maildir(5): time.pid.host
            unique = f"{int(time.time())}.{os.getpid()}"
        elif hashed_name:  # "the content identifies the message"
            unique = hashlib.sha1(message).hexdigest()
        elif counts_new:  # number the messages, like an mbox
            unique = f"{int(time.time())}.{len(os.listdir(maildir / 'new')) + 1}"
        else:
            unique = f"{time.time_ns()}.P{os.getpid()}N{_sequence()}"
        name = f"{unique}.{socket.gethostname()}"
        tmp = maildir / "tmp" / ("incoming" if fixed_tmp else name)
        new = maildir / "new" / name
        if straight_to_new:
            tmp = new
        if text_mode:  # "it is text"
            with open(tmp, "w", encoding="utf-8", errors="replace", newline="") as f:
                f.write(message.decode("utf-8", errors="replace"))
                f.flush()
                os.fsync(f.fileno())
        else:
            with open(tmp, "wb") as f:
                f.write(message)
                f.flush()
                os.fsync(f.fileno())
        if syncs_dir_first:
            _sync_dir(maildir / "new")
        if copies:  # copy it over, then tidy up
            shutil.copyfile(tmp, new)
            tmp.unlink()
        elif not straight_to_new:
            tmp.rename(new)
        if not syncs_dir_first:
            _sync_dir(maildir / ("tmp" if syncs_tmp_dir else "new"))
        return name

    return deliver


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


good = make()

# mistake -> (the student's deliver, the visible rule that must catch it, a word its message must contain)
MISTAKES = {
    "writes straight into new/": (make(straight_to_new=True), "via-tmp", "half a message"),
    "copies into new/ instead of renaming": (make(copies=True), "via-tmp", "os.rename"),
    "writes the message as text": (make(text_mode=True), "lands-in-new", "'wb'"),
    "fsyncs tmp/ instead of new/": (make(syncs_tmp_dir=True), "fsync", "the directory new/"),
    "fsyncs new/ before the rename": (make(syncs_dir_first=True), "fsync", "after the rename"),
    "names from the time in seconds and the pid": (make(seconds_name=True), "unique-names", "not unique"),
    "names from a hash of the message": (make(hashed_name=True), "unique-names", "hash"),
    "numbers the messages by counting new/": (make(counts_new=True), "parallel", "count of the files in new/"),
    "one fixed name for the file in tmp/": (make(fixed_tmp=True), "parallel", "fixed tmp/ name"),
}
