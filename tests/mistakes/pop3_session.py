"""A student's POP3 server session, right, and wrong in each of the usual ways.

:func:`make` builds the session class a careful student writes (an RFC 1939 server over
labkit's MailStore, as a server that keeps IMAP's UIDs would be; lab 5's students work on
the Maildir's files instead, see :mod:`mistakes.independent.pop3_session`); each keyword
turns on one classic mistake, so every wrong one differs from the right one in one place.
"""

from __future__ import annotations

import re

from labkit.lab import MailStore
from labkit.store import MailboxLocked

from .lines import LineSession

TRANSACTION = ("STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL")


def make(*, imap_greeting=False, any_password=False, char_sizes=False, no_dot_stuffing=False, renumbers=False,
         quit_keeps=False, deletes_at_dele=False, deletes_on_drop=False, no_buffer=False):
    class POP3(LineSession):
        one_command_per_receive = no_buffer

        def __init__(self, peer, accounts, *, hostname):
            self.accounts, self.hostname = accounts, hostname
            self.user = None
            self.folder = None  # the INBOX, once logged in
            self.lock = None
            self.messages = []  # MessageInfo, numbered from 1
            self.deleted = set()

        def start(self):
            return f"{'* OK' if imap_greeting else '+OK'} {self.hostname} POP3 ready\r\n".encode()

        def connection_lost(self):
            if deletes_on_drop:
                self.commit()
            if self.lock is not None:
                self.lock.release()
            self.closed = True

        def command(self, line):
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                self.closed = True
                if not quit_keeps:
                    self.commit()
                return b"+OK bye\r\n"
            if verb == "CAPA":
                return b"+OK\r\nUSER\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n"
            if self.folder is None:
                return self.authorization(verb, argument)
            if verb not in TRANSACTION:
                return b"-ERR unknown command\r\n"
            return getattr(self, f"do_{verb.lower()}")(argument)

        def authorization(self, verb, argument):
            if verb == "USER":
                self.user = argument
                return b"+OK now PASS\r\n"
            if verb == "PASS" and self.user:
                account = self.accounts.find(self.user) if any_password else self.accounts.authenticate(
                    self.user, argument)
                if account is None:
                    return b"-ERR wrong user or password\r\n"
                store = MailStore(account.maildir)
                try:
                    self.lock = store.lock()
                except MailboxLocked:
                    return b"-ERR [IN-USE] locked\r\n"
                self.folder = store.folder("INBOX")
                self.messages = self.folder.messages()
                return f"+OK {len(self.messages)} messages\r\n".encode()
            return b"-ERR log in first\r\n"

        def size(self, info):
            return len(self.folder.read(info.uid).decode("utf-8", "replace")) if char_sizes else info.size

        def message(self, argument):
            if argument.isdigit() and 1 <= int(argument) <= len(self.messages):
                info = self.messages[int(argument) - 1]
                if info.uid not in self.deleted:
                    return info
            return None

        def numbered(self):
            return [(n, m) for n, m in enumerate(self.messages, 1) if m.uid not in self.deleted]

        def do_stat(self, argument):
            alive = [m for _, m in self.numbered()]
            return f"+OK {len(alive)} {sum(self.size(m) for m in alive)}\r\n".encode()

        def do_list(self, argument):
            if argument:
                info = self.message(argument)
                return f"+OK {argument} {self.size(info)}\r\n".encode() if info else b"-ERR no such message\r\n"
            rows = [f"{n} {self.size(m)}" for n, m in self.numbered()]
            return ("\r\n".join(["+OK", *rows, "."]) + "\r\n").encode()

        def do_uidl(self, argument):
            if argument:
                info = self.message(argument)
                return (f"+OK {argument} {self.folder.uidvalidity}.{info.uid}\r\n".encode() if info
                        else b"-ERR no such message\r\n")
            rows = [f"{n} {self.folder.uidvalidity}.{m.uid}" for n, m in self.numbered()]
            return ("\r\n".join(["+OK", *rows, "."]) + "\r\n").encode()

        def stuffed(self, data):
            return data if no_dot_stuffing else re.sub(rb"(?m)^\.", b"..", data)

        def do_retr(self, argument):
            info = self.message(argument)
            if info is None:
                return b"-ERR no such message\r\n"
            return f"+OK {info.size} octets\r\n".encode() + self.stuffed(self.folder.read(info.uid)) + b".\r\n"

        def do_top(self, argument):
            number, _, count = argument.partition(" ")
            info = self.message(number)
            if info is None or not count.isdigit():
                return b"-ERR no such message\r\n"
            head, _, body = self.folder.read(info.uid).partition(b"\r\n\r\n")
            lines = body.split(b"\r\n")[:-1][:int(count)]
            return b"+OK\r\n" + self.stuffed(head + b"\r\n\r\n" + b"".join(x + b"\r\n" for x in lines)) + b".\r\n"

        def do_dele(self, argument):
            info = self.message(argument)
            if info is None:
                return b"-ERR no such message\r\n"
            self.deleted.add(info.uid)
            if deletes_at_dele:
                self.folder.expunge([info.uid])
            if renumbers:
                self.messages.remove(info)
            return b"+OK marked\r\n"

        def do_noop(self, argument):
            return b"+OK\r\n"

        def do_rset(self, argument):
            self.deleted.clear()
            return b"+OK\r\n"

        def commit(self):
            if self.folder is not None and self.deleted:
                self.folder.expunge(self.deleted)
                self.deleted.clear()

    return POP3


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "greets like IMAP": (make(imap_greeting=True), "greeting", "+OK greeting"),
    "takes any password": (make(any_password=True), "login", "accounts.authenticate"),
    "sizes in characters, not octets": (make(char_sizes=True), "stat-list", "octets"),
    "no dot-stuffing": (make(no_dot_stuffing=True), "retr", "one more '.'"),
    "renumbers after DELE": (make(renumbers=True), "dele-quit", "numbers do not change"),
    "QUIT deletes nothing": (make(quit_keeps=True), "dele-quit", "UPDATE state"),
    "deletes at DELE": (make(deletes_at_dele=True), "drop-keeps", "only QUIT deletes"),
    "deletes when the connection drops": (make(deletes_on_drop=True), "drop-keeps", "only QUIT deletes"),
    "one receive() is one command": (make(no_buffer=True), "pipelined", "buffer"),
}
