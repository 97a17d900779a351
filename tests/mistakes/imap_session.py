"""A student's first IMAP server session, right, and wrong in each of the usual ways.

:func:`make` builds the first version a careful student writes (the RFC 3501 commands a
first mail client needs: LOGIN, SELECT, FETCH n (BODY[]), LOGOUT, over labkit's
MailStore): it holds the rules in :data:`BASIC`, not yet the later ones (flags, SEARCH,
EXPUNGE, UIDs, literals: see :mod:`mistakes.independent.imap_session`). Each keyword
turns on one classic mistake, so every wrong one differs from the right one in one place.
"""

from __future__ import annotations

import re

from labkit.lab import MailStore, StoreError

from .lines import LineSession

ARGUMENT = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')  # a quoted string or an atom
BASIC = ("greeting", "login", "select", "fetch", "logout", "bad-command", "tags")


def make(*, no_capability=False, any_password=False, keeps_quotes=False, no_exists=False, char_literal=False,
         no_bye=False, stays_open=False, no_for_unknown=False, crashes_on_tag_only=False, fixed_tag=False,
         no_buffer=False):
    class IMAP(LineSession):
        one_command_per_receive = no_buffer

        def __init__(self, peer, accounts, *, hostname):
            self.accounts, self.hostname = accounts, hostname
            self.store = None  # once logged in
            self.folder = None  # once selected

        def start(self):
            return f"* OK {self.hostname} IMAP4rev1 ready\r\n".encode()

        def command(self, line):
            tag, _, rest = line.partition(" ")
            if crashes_on_tag_only:
                verb, arguments = rest.split(" ", 1)[0], rest.partition(" ")[2]
                verb = verb[0] and verb
            else:
                verb, _, arguments = rest.partition(" ")
            if not tag or not verb:
                return f"{tag or '*'} BAD no command\r\n".encode()
            handler = getattr(self, f"do_{verb.lower()}", None)
            if handler is None or (verb.upper() == "CAPABILITY" and no_capability):
                return self.done(tag, "NO" if no_for_unknown else "BAD", f"unknown command {verb}")
            untagged, status, text = handler(arguments)
            return untagged + self.done(tag, status, text)

        def done(self, tag, status, text):
            return f"{'A001' if fixed_tag else tag} {status} {text}\r\n".encode()

        def do_capability(self, arguments):
            return b"* CAPABILITY IMAP4rev1\r\n", "OK", "CAPABILITY completed"

        def do_noop(self, arguments):
            return b"", "OK", "NOOP completed"

        def do_logout(self, arguments):
            self.closed = not stays_open
            return (b"" if no_bye else b"* BYE logging out\r\n"), "OK", "LOGOUT completed"

        def do_login(self, arguments):
            words = [quoted if quoted or not atom else atom for quoted, atom in ARGUMENT.findall(arguments)]
            if keeps_quotes:
                words = arguments.split()
            if len(words) != 2:
                return b"", "BAD", "LOGIN user password"
            user, password = (re.sub(r"\\(.)", r"\1", w) for w in words)
            account = self.accounts.find(user) if any_password else self.accounts.authenticate(user, password)
            if account is None:
                return b"", "NO", "[AUTHENTICATIONFAILED] wrong user or password"
            self.store = MailStore(account.maildir)
            return b"", "OK", "LOGIN completed"

        def do_select(self, arguments):
            if self.store is None:
                return b"", "NO", "log in first"
            self.folder = None
            try:
                self.folder = self.store.folder(arguments.strip('"'))
            except StoreError as error:
                return b"", "NO", str(error)
            count = len(self.folder.messages())
            news = b"" if no_exists else f"* {count} EXISTS\r\n".encode()
            news += f"* {len(self.folder.recent)} RECENT\r\n* OK [UIDVALIDITY {self.folder.uidvalidity}]\r\n".encode()
            return news + b"* FLAGS (\\Seen \\Deleted)\r\n", "OK", "[READ-WRITE] SELECT completed"

        def do_fetch(self, arguments):
            number, _, items = arguments.partition(" ")
            messages = self.folder.messages() if self.folder else []
            if "BODY[]" not in items.upper() or not number.isdigit() or not 1 <= int(number) <= len(messages):
                return b"", "BAD", "only FETCH n (BODY[]) here"
            data = self.folder.read(messages[int(number) - 1].uid)
            size = len(data.decode("utf-8", "replace")) if char_literal else len(data)
            return f"* {number} FETCH (BODY[] {{{size}}}\r\n".encode() + data + b")\r\n", "OK", "FETCH completed"

    return IMAP


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "no CAPABILITY": (make(no_capability=True), "greeting", "IMAP4rev1"),
    "takes any password": (make(any_password=True), "login", "accounts.authenticate"),
    "keeps the quotes of a quoted password": (make(keeps_quotes=True), "login", "NO for a wrong password"),
    "SELECT without EXISTS": (make(no_exists=True), "select", "EXISTS"),
    "literal size in characters": (make(char_literal=True), "fetch", "octets"),
    "LOGOUT without BYE": (make(no_bye=True), "logout", "BYE"),
    "stays connected after LOGOUT": (make(stays_open=True), "logout", "self.closed"),
    "NO for an unknown command": (make(no_for_unknown=True), "bad-command", "protocol error"),
    "crashes on a line with only a tag": (make(crashes_on_tag_only=True), "bad-command", "IndexError"),
    "the same tag for every reply": (make(fixed_tag=True), "tags", "own tag"),
    "one receive() is one command": (make(no_buffer=True), "tags", "buffer"),
}
