"""A student's ``deliver``, right, and wrong in each of the usual ways.

:func:`make` builds the Maildir write a careful student writes; each keyword turns on
one classic mistake, so every wrong one differs from the right one in one place.
"""

from __future__ import annotations

import itertools
import os
import socket
import time

counter = itertools.count()


def make(*, straight_to_new=False, keeps_tmp=False, rename_before_close=False, no_fsync=False, no_dir_fsync=False,
         fsync_after_rename=False, second_names=False, unix_newlines=False, returns_path=False, into_cur=False):
    def deliver(maildir, message):
        now = time.time()
        if second_names:
            name = f"{int(now)}.P{os.getpid()}.{socket.gethostname()}"
        else:
            name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(counter)}.{socket.gethostname()}"
        tmp = os.path.join(maildir, "tmp", name)
        final = os.path.join(maildir, "cur" if into_cur else "new", name)
        f = open(final if straight_to_new else tmp, "wb")
        f.write(message.replace(b"\r\n", b"\n") if unix_newlines else message)
        if rename_before_close:
            os.rename(tmp, final)
        if not (no_fsync or fsync_after_rename):
            f.flush()
            os.fsync(f.fileno())
        f.close()
        if keeps_tmp:
            os.link(tmp, final)
        elif not (straight_to_new or rename_before_close):
            os.rename(tmp, final)
        if fsync_after_rename:
            fd = os.open(final, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        if not (no_fsync or no_dir_fsync):
            fd = os.open(os.path.join(maildir, "new"), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return final if returns_path else name

    return deliver


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "writes straight into new/": (make(straight_to_new=True), "via-tmp", "half a message"),
    "links into new/ and keeps the tmp/ file": (make(keeps_tmp=True), "via-tmp", "unlink"),
    "renames before closing the file": (make(rename_before_close=True), "via-tmp", "close"),
    "no fsync at all": (make(no_fsync=True), "fsync", "RFC 5321 §6.1"),
    "fsyncs the file but not new/": (make(no_dir_fsync=True), "fsync", "mailbox.Maildir"),
    "fsyncs only after the rename": (make(fsync_after_rename=True), "fsync", "before the rename"),
    "names from the time in seconds": (make(second_names=True), "unique-names", "not unique"),
    "Unix line endings": (make(unix_newlines=True), "lands-in-new", "bytes"),
    "returns the whole path": (make(returns_path=True), "lands-in-new", "no '/'"),
    "delivers into cur/": (make(into_cur=True), "lands-in-new", "does not exist"),
}
