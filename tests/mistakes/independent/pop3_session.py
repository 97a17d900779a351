"""``pop3_session`` as a student of lab 5 writes it (on the Maildir's files), and its
one-mistake variants."""

from __future__ import annotations

import fcntl
import os

from labkit.lab import Session


def make(*, new_only=False, uidl_whole_name=False, uidl_numbers=False, list_one_lists_all=False, top_body_only=False,
         top_counts_header=False, top_unstuffed=False, no_rset=False, no_capa=False, case_sensitive=False,
         user_anytime=False, no_lock=False, lockf=False, keeps_lock_on_drop=False, stuffs_lone_dots=False,
         counts_deleted=False, lists_deleted=False,
         file_lock_kept_on_drop=False, no_pipelining=False):
    def stuff(lines):
        if stuffs_lone_dots:  # "the '.' line would end the reply"
            return [b".." if line == b"." else line for line in lines]
        return [b"." + line if line[:1] == b"." else line for line in lines]

    def reply(first, lines=None):
        text = first.encode() + b"\r\n"
        if lines is not None:
            text += b"".join(line + b"\r\n" for line in lines) + b".\r\n"
        return text

    class POP3(Session):
        def __init__(self, peer, accounts, *, hostname):
            self.accounts, self.hostname = accounts, hostname
            self.pending = b""
            self.state = "AUTHORIZATION"
            self.login_name = None
            self.lock_fd = None
            self.files = []  # (folder, file name), numbered from 1
            self.marked = set()
            self.root = None

        def start(self):
            return reply(f"+OK POP3 server {self.hostname} at your service")

        def receive(self, data):
            self.pending += data
            out = []
            while b"\r\n" in self.pending and not self.closed:
                line, self.pending = self.pending.split(b"\r\n", 1)
                out.append(self.handle(line.decode("utf-8", "replace")))
            return b"".join(out)

        def connection_lost(self):
            if not (keeps_lock_on_drop or file_lock_kept_on_drop):
                self.release()
            self.closed = True

        def handle(self, line):
            parts = line.split(" ", 1)
            cmd = parts[0] if case_sensitive else parts[0].upper()
            arg = parts[1] if len(parts) > 1 else ""
            if cmd == "CAPA" and not no_capa:
                return reply("+OK", [b"USER", b"UIDL", b"TOP", b"RESP-CODES", *([] if no_pipelining else [b"PIPELINING"])])
            if cmd == "QUIT":
                return self.quit()
            if cmd in ("USER", "PASS") and (self.state == "AUTHORIZATION" or user_anytime):
                return self.user(arg) if cmd == "USER" else self.password(arg)
            if self.state != "TRANSACTION":
                return reply("-ERR not logged in")
            handler = {"STAT": self.cmd_stat, "LIST": self.cmd_list, "UIDL": self.cmd_uidl, "RETR": self.cmd_retr,
                       "TOP": self.cmd_top, "DELE": self.cmd_dele, "NOOP": self.cmd_noop,
                       "RSET": self.cmd_rset}.get(cmd)
            if handler is None or (cmd == "RSET" and no_rset):
                return reply(f"-ERR unknown command {cmd}")
            return handler(arg)

        # AUTHORIZATION
        def user(self, name):
            self.login_name = name
            return reply("+OK")

        def password(self, secret):
            if self.login_name is None:
                return reply("-ERR USER first")
            account = self.accounts.authenticate(self.login_name, secret)
            if account is None:
                return reply("-ERR invalid login")
            root = str(account.maildir)
            if file_lock_kept_on_drop:  # a file object: its lock lasts until the file is closed (or collected)
                self.lock_file = open(os.path.join(root, ".pop3-lock"), "a")
                try:
                    fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    self.lock_file.close()
                    return reply("-ERR [IN-USE] maildrop busy")
            elif not no_lock:
                fd = os.open(os.path.join(root, ".pop3-lock"), os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    (fcntl.lockf if lockf else fcntl.flock)(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    return reply("-ERR [IN-USE] maildrop busy")
                self.lock_fd = fd
            self.root, self.state = root, "TRANSACTION"
            folders = ("new",) if new_only else ("cur", "new")
            self.files = sorted(((f, n) for f in folders for n in os.listdir(os.path.join(root, f))),
                                key=lambda entry: entry[1])
            return reply(f"+OK maildrop has {len(self.files)} messages")

        # TRANSACTION
        def path(self, i):
            folder, name = self.files[i - 1]
            return os.path.join(self.root, folder, name)

        def pick(self, arg):
            try:
                i = int(arg)
            except ValueError:
                return None
            if 1 <= i <= len(self.files) and i not in self.marked:
                return i
            if lists_deleted and 1 <= i <= len(self.files):
                return i
            return None

        def live(self):
            return [i for i in range(1, len(self.files) + 1) if counts_deleted or i not in self.marked]

        def cmd_stat(self, arg):
            return reply(f"+OK {len(self.live())} {sum(os.path.getsize(self.path(i)) for i in self.live())}")

        def cmd_list(self, arg):
            if arg and not list_one_lists_all:
                i = self.pick(arg)
                return reply(f"+OK {i} {os.path.getsize(self.path(i))}") if i else reply("-ERR no such message")
            return reply("+OK scan listing follows",
                         [f"{i} {os.path.getsize(self.path(i))}".encode() for i in self.live()])

        def uid(self, i):
            if uidl_numbers:
                return str(i)
            name = self.files[i - 1][1]
            return name if uidl_whole_name else name.split(":", 1)[0]

        def cmd_uidl(self, arg):
            if arg:
                i = self.pick(arg)
                return reply(f"+OK {i} {self.uid(i)}") if i else reply("-ERR no such message")
            return reply("+OK", [f"{i} {self.uid(i)}".encode() for i in self.live()])

        def content(self, i):
            with open(self.path(i), "rb") as f:
                return f.read()

        def cmd_retr(self, arg):
            i = self.pick(arg)
            if i is None:
                return reply("-ERR no such message")
            return reply("+OK message follows", stuff(self.content(i).split(b"\r\n")[:-1]))

        def cmd_top(self, arg):
            words = arg.split()
            i = self.pick(words[0]) if len(words) == 2 and words[1].isdigit() else None
            if i is None:
                return reply("-ERR usage: TOP msg n")
            lines = self.content(i).split(b"\r\n")[:-1]
            blank = lines.index(b"")
            if top_body_only:
                shown = lines[blank + 1:blank + 1 + int(words[1])]
            elif top_counts_header:
                shown = lines[:int(words[1])] or lines[:blank + 1]
            else:
                shown = lines[:blank + 1 + int(words[1])]
            return reply("+OK", shown if top_unstuffed else stuff(shown))

        def cmd_dele(self, arg):
            i = self.pick(arg)
            if i is None:
                return reply("-ERR no such message")
            self.marked.add(i)
            return reply(f"+OK message {i} marked")

        def cmd_noop(self, arg):
            return reply("+OK")

        def cmd_rset(self, arg):
            self.marked = set()
            return reply("+OK")

        # UPDATE
        def quit(self):
            if self.state == "TRANSACTION":
                self.state = "UPDATE"
                for i in self.marked:
                    os.remove(self.path(i))
            self.release()
            self.closed = True
            return reply("+OK bye")

        def release(self):
            if getattr(self, "lock_file", None) is not None:
                self.lock_file.close()
                self.lock_file = None
            if self.lock_fd is not None:
                os.close(self.lock_fd)
                self.lock_fd = None

    return POP3


good = make()

# mistake -> (the student's session, the visible rule that must catch it, a word its message must contain)
MISTAKES = {
    "lists new/ only": (make(new_only=True), "stat-list", "cur/"),
    "UIDL is the whole file name": (make(uidl_whole_name=True), "uidl", "before ':'"),
    "UIDL is the message number": (make(uidl_numbers=True), "uidl", "change from session to session"),
    "LIST n sends the whole listing": (make(list_one_lists_all=True), "list-one", "one line"),
    "TOP sends the body only": (make(top_body_only=True), "top", "the whole header"),
    "TOP counts the header's lines": (make(top_counts_header=True), "top", "first k lines of the body"),
    "TOP without dot-stuffing": (make(top_unstuffed=True), "top", "dot-stuffed"),
    "no RSET": (make(no_rset=True), "rset", "RSET unmarks"),
    "no CAPA": (make(no_capa=True), "capa", "CAPA answers"),
    "commands compared in upper case only": (make(case_sensitive=True), "states", "case-insensitive"),
    "USER and PASS once logged in": (make(user_anytime=True), "states", "AUTHORIZATION state"),
    "no maildrop lock": (make(no_lock=True), "lock", "[IN-USE]"),
    "fcntl.lockf as the lock": (make(lockf=True), "lock", "lockf"),
    "keeps the lock when the connection drops": (make(keeps_lock_on_drop=True), "lock", "connection_lost"),
    "stuffs only the lines that are a lone '.'": (make(stuffs_lone_dots=True), "retr", "one more '.'"),
    "STAT counts the deleted messages": (make(counts_deleted=True), "dele-quit", "STAT does not count"),
    "LIST n of a deleted message": (make(lists_deleted=True), "list-one", "deleted"),
    "the lock's file closed at QUIT only (a file object)": (make(file_lock_kept_on_drop=True), "lock",
                                                           "connection_lost"),
    "no PIPELINING in CAPA": (make(no_pipelining=True), "capa", "PIPELINING"),
}
