"""A student's ``smtp_session``, right, and wrong in each of the usual ways.

:func:`make` builds the session class a careful student writes (written from RFC 5321,
not from labkit's ``SMTPServerSession``); each keyword turns on one classic mistake, so
every wrong session differs from the right one in one place.
"""

from __future__ import annotations

import re

from labkit.lab import Session

COMMAND_LIMIT = 512  # octets with CRLF (RFC 5321 §4.5.3.1.4)
TEXT_LIMIT = 1000  # octets with CRLF (RFC 5321 §4.5.3.1.6)
PATH = re.compile(r"(?i)(FROM|TO):<([^<>]*)>(?: (.*))?")
PATH_NO_PARAMETERS = re.compile(r"(?i)(FROM|TO):<([^<>]*)>()")


def make(*, greeting_without_name=False, lf_replies=False, ehlo_no_dashes=False, ehlo_no_extensions=False,
         mail_without_helo=False, rcpt_without_mail=False, data_without_rcpt=False, nested_mail=False,
         helo_without_name=False, hello_before_syntax=False, unpack_argument=False, prefix_commands=False,
         refuse_null_sender=False, dispatch_keyerror=False, case_sensitive=False, rset_keeps_transaction=False,
         rset_forgets_hello=False, noop_refuses_argument=False, quit_stays_open=False, accept_every_rcpt=False,
         no_354=False, data_not_queued=False, keeps_final_dot=False, no_unstuffing=False, strip_all_dots=False,
         lf_ends_data=False, no_command_limit=False, no_text_limit=False, first_line_only=False,
         no_mail_parameters=False, ehlo_last_dash=False, drops_partial_line=False):
    path_syntax = PATH_NO_PARAMETERS if no_mail_parameters else PATH

    class SMTPSession(Session):
        def __init__(self, peer, mta, *, hostname):
            self.mta, self.hostname = mta, hostname
            self.txn = mta.transaction(peer)
            self.state = "new"  # new -> hello -> mail -> rcpt -> data
            self.buffer = b""
            self.message = []
            self.too_long = False  # a line of the message was over the limit
            self.closed = False

        # -- bytes in, bytes out ------------------------------------------------------
        def start(self):
            if greeting_without_name:
                return self.reply("220 ESMTP ready")
            return self.reply(self.mta.greeting())

        def reply(self, text):
            return text.encode() + (b"\n" if lf_replies else b"\r\n")

        def receive(self, data):
            self.buffer += data
            out = b""
            while not self.closed:
                end = b"\n" if self.state != "data" or lf_ends_data else b"\r\n"
                at = self.buffer.find(end)
                if at < 0:
                    break
                line, self.buffer = self.buffer[:at], self.buffer[at + len(end):]
                if self.state == "data":
                    out += self.data_line(line.rstrip(b"\r") if lf_ends_data else line)
                else:
                    out += self.reply(self.command(line.rstrip(b"\r")))
                if first_line_only:
                    self.buffer = b""
            if drops_partial_line:
                self.buffer = b""  # what came after the last complete line is lost
            return out

        # -- commands -----------------------------------------------------------------
        def command(self, raw):
            if len(raw) + 2 > COMMAND_LIMIT and not no_command_limit:
                return "500 5.5.2 Line too long"
            line = raw.decode("utf-8", "replace")
            if unpack_argument:
                word, argument = line.split(" ", 1)
            else:
                word, _, argument = line.partition(" ")
            verb = word if case_sensitive else word.upper()
            if prefix_commands and verb in ("MAIL", "RCPT") and not re.match(r"(?i)(MAIL FROM|RCPT TO):", line):
                return f"500 5.5.2 Unknown command {word}"
            handlers = {"HELO": self.helo, "EHLO": self.ehlo, "MAIL": self.mail, "RCPT": self.rcpt,
                        "DATA": self.data, "RSET": self.rset, "NOOP": self.noop, "QUIT": self.quit}
            if dispatch_keyerror:
                return handlers[verb](argument.strip())
            handler = handlers.get(verb)
            if handler is None:
                return f"500 5.5.2 Unknown command {word}"
            return handler(argument.strip())

        def helo(self, name):
            return self.hello(name, "HELO", f"250 {self.hostname}")

        def ehlo(self, name):
            if ehlo_no_extensions:
                return self.hello(name, "EHLO", f"250 {self.hostname} Hello {name}")
            lines = [f"{self.hostname} Hello {name}", *self.mta.extensions()]
            dash = [" " if ehlo_no_dashes or (i == len(lines) - 1 and not ehlo_last_dash) else "-"
                    for i in range(len(lines))]
            return self.hello(name, "EHLO", "\r\n".join(f"250{d}{text}" for d, text in zip(dash, lines)))

        def hello(self, name, verb, ok):
            if hello_before_syntax:
                self.state = "hello"
            if not name and not helo_without_name:
                return f"501 5.5.4 Syntax: {verb} hostname"
            self.txn.reset()
            self.txn.helo, self.txn.extended = name, verb == "EHLO"
            self.state = "hello"
            return ok

        def path(self, keyword, argument):
            """FROM:<address> [parameters] -> (address, parameters), or None."""
            match = path_syntax.fullmatch(argument)
            if match is None or match.group(1).upper() != keyword:
                return None
            if refuse_null_sender and not match.group(2):
                return None
            return match.group(2), (match.group(3) or "").split()

        def mail(self, argument):
            if self.state == "new" and not mail_without_helo:
                return "503 5.5.1 Send HELO or EHLO first"
            found = self.path("FROM", argument)
            if found is None:
                return "501 5.5.4 Syntax: MAIL FROM:<address>"
            if self.state in ("mail", "rcpt") and not nested_mail:
                return "503 5.5.1 Nested MAIL command"
            reply = self.mta.mail(self.txn, *found)
            if reply.startswith("2"):
                self.state = "mail"
            return reply

        def rcpt(self, argument):
            if self.state not in ("mail", "rcpt") and not rcpt_without_mail:
                return "503 5.5.1 Need MAIL first"
            found = self.path("TO", argument)
            if found is None or not found[0]:
                return "501 5.5.4 Syntax: RCPT TO:<address>"
            reply = self.mta.rcpt(self.txn, found[0])
            if reply.startswith("2"):
                self.state = "rcpt"
            return "250 2.1.5 OK" if accept_every_rcpt else reply

        def data(self, argument):
            if self.state != "rcpt" and not (data_without_rcpt and self.state == "mail"):
                return "503 5.5.1 Need RCPT first"
            self.state, self.message, self.too_long = "data", [], False
            return "250 OK" if no_354 else "354 End data with <CR><LF>.<CR><LF>"

        def data_line(self, line):
            if line == b".":
                self.state = "hello"
                if keeps_final_dot:
                    self.message.append(b".\r\n")
                message, self.message = b"".join(self.message), []
                if self.too_long:
                    self.txn.reset()
                    return self.reply("500 5.5.2 Line too long")
                if data_not_queued:
                    self.txn.reset()
                    return self.reply("250 2.0.0 OK")
                return self.reply(self.mta.data(self.txn, message))
            if len(line) + 2 > TEXT_LIMIT and not no_text_limit:
                self.too_long = True
            if line.startswith(b".") and not no_unstuffing:
                line = line.lstrip(b".") if strip_all_dots else line[1:]
            self.message.append(line + b"\r\n")
            return b""

        def rset(self, argument):
            if not rset_keeps_transaction:
                self.txn.reset()
                if self.state != "new":
                    self.state = "new" if rset_forgets_hello else "hello"
            return "250 2.0.0 OK"

        def noop(self, argument):
            if argument and noop_refuses_argument:
                return "501 5.5.4 Syntax: NOOP"
            return "250 2.0.0 OK"

        def quit(self, argument):
            if not quit_stays_open:
                self.closed = True
            return f"221 2.0.0 {self.hostname} closing connection"

    return SMTPSession


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "a greeting without the host's name": (make(greeting_without_name=True), "greeting", "names the server"),
    "replies end in a bare LF": (make(lf_replies=True), "greeting", "bare LF"),
    "'250 ' on every EHLO line": (make(ehlo_no_dashes=True), "ehlo", "250-"),
    "'250-' on the last EHLO line too": (make(ehlo_last_dash=True), "ehlo", "the last one a space"),
    "an incomplete line dropped": (make(drops_partial_line=True), "pipelining", "half of one"),
    "EHLO answered like HELO": (make(ehlo_no_extensions=True), "ehlo", "SIZE"),
    "MAIL before HELO accepted": (make(mail_without_helo=True), "sequence", "HELO"),
    "RCPT before MAIL accepted": (make(rcpt_without_mail=True), "sequence", "503"),
    "DATA with no recipient": (make(data_without_rcpt=True), "sequence", "recipient"),
    "a second MAIL replaces the sender": (make(nested_mail=True), "sequence", "nested"),
    "HELO without a name accepted": (make(helo_without_name=True), "syntax", "501"),
    "the hello counts before its syntax is checked": (make(hello_before_syntax=True), "syntax", "changes nothing"),
    "command, argument = line.split(' ', 1)": (make(unpack_argument=True), "syntax", "ValueError"),
    "commands matched by 'MAIL FROM:' prefix": (make(prefix_commands=True), "syntax", "only its argument"),
    "MAIL FROM:<> refused": (make(refuse_null_sender=True), "syntax", "null reverse-path"),
    "handlers[verb] for an unknown verb": (make(dispatch_keyerror=True), "unknown", "KeyError"),
    "commands in capitals only": (make(case_sensitive=True), "unknown", "case-insensitive"),
    "commands in capitals only (smtplib)": (make(case_sensitive=True), "smtplib", "lower case"),
    "RSET keeps the recipients": (make(rset_keeps_transaction=True), "rset", "recipients"),
    "RSET forgets the HELO": (make(rset_forgets_hello=True), "rset", "HELO"),
    "NOOP with an argument refused": (make(noop_refuses_argument=True), "noop", "ignored"),
    "QUIT leaves the connection open": (make(quit_stays_open=True), "quit", "closed = True"),
    "every recipient accepted": (make(accept_every_rcpt=True), "policy", "mta.rcpt"),
    "no 354 after DATA": (make(no_354=True), "data", "354"),
    "250 without mta.data": (make(data_not_queued=True), "data", "Maildir"),
    "the final '.' kept in the message": (make(keeps_final_dot=True), "data", "final '.'"),
    "no dot-unstuffing": (make(no_unstuffing=True), "dot-unstuffing", "dot-unstuffing: remove exactly one"),
    "every leading dot removed": (make(strip_all_dots=True), "dot-unstuffing", "exactly one"),
    "a bare LF ends a data line": (make(lf_ends_data=True), "bare-lf", "bare LF"),
    "no command line limit": (make(no_command_limit=True), "line-limits", "512"),
    "no text line limit": (make(no_text_limit=True), "line-limits", "1000"),
    "one command per receive()": (make(first_line_only=True), "pipelining", "in order"),
    "no parameters after MAIL FROM:<...>": (make(no_mail_parameters=True), "relay", "SIZE"),
}
