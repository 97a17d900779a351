"""``imap_session`` as a student of lab 6 writes it (labkit's parser and MailStore), and
its one-mistake variants."""

from __future__ import annotations

import email
import email.policy
import time

from labkit.imap.parser import CommandReader, Continue, Cursor, ParseError, Refused, resolve_sequence_set
from labkit.lab import MailStore, Session, StoreError


def make(**mistakes: bool):
    known = {"no_continue", "no_uidvalidity", "failed_select_keeps", "examine_writes", "examine_sets_seen",
             "size_in_chars", "no_star", "epoch_internaldate", "peek_sets_seen", "echoes_peek", "body_keeps_unseen",
             "header_without_blank", "fields_drop_folds", "fields_case_sensitive", "flags_adds", "silent_ignored",
             "store_quiet", "flags_in_session", "snapshot", "no_exists_news", "no_expunge_news",
             "search_case_sensitive", "search_whole_field", "search_or", "search_uids", "search_nothing_silent",
             "expunge_old_numbers", "expunge_quiet", "close_keeps", "uid_fetch_numbers", "uid_fetch_without_uid",
             "uid_search_numbers", "uids_are_numbers", "unknown_uid_no", "sections_as_text", "literal_in_characters"}
    assert set(mistakes) <= known, set(mistakes) - known
    m = {name: mistakes.get(name, False) for name in known}

    class IMAP(Session):
        def __init__(self, peer, accounts, *, hostname):
            self.accounts, self.hostname = accounts, hostname
            self.reader = CommandReader()
            self.mailstore = None
            self.box = None
            self.writable = False
            self.seq = []  # UIDs by message number - 1
            self.seen_flags = {}  # uid -> flags as last told
            self.session_flags = {}  # flags_in_session: kept here only

        def start(self):
            return b"* OK [CAPABILITY IMAP4rev1] ready\r\n"

        def receive(self, data):
            self.reader.feed(data)
            out = []
            while not self.closed:
                event = self.reader.next_event()
                if event is None:
                    break
                if isinstance(event, Continue):
                    if not m["no_continue"]:
                        out.append(b"+ Ready for literal data\r\n")
                elif isinstance(event, Refused):
                    out.append(f"{event.tag} BAD {event.text}\r\n".encode())
                else:
                    out.append(self.run(Cursor(event)))
            return b"".join(out)

        # -- dispatch ---------------------------------------------------------------------------
        def run(self, c):
            try:
                tag = c.tag()
            except ParseError:
                return b"* BAD missing tag\r\n"
            try:
                c.sp()
                verb = c.atom().upper()
                by_uid = verb == "UID"
                if by_uid:
                    c.sp()
                    verb = c.atom().upper()
                    if verb not in ("FETCH", "STORE", "SEARCH"):
                        return f"{tag} BAD UID {verb}?\r\n".encode()
                method = getattr(self, "cmd_" + verb.lower(), None)
                if method is None:
                    return f"{tag} BAD {verb} not supported\r\n".encode()
                if verb not in ("CAPABILITY", "NOOP", "LOGOUT", "LOGIN") and self.mailstore is None:
                    return f"{tag} NO not authenticated\r\n".encode()
                if verb in ("FETCH", "STORE", "SEARCH", "EXPUNGE", "CLOSE") and self.box is None:
                    return f"{tag} NO no mailbox selected\r\n".encode()
                if self.box is not None and not m["snapshot"]:
                    self.box.refresh()
                lines, result = method(c, by_uid)
            except ParseError as e:
                return f"{tag} BAD {e}\r\n".encode()
            except StoreError as e:
                return f"{tag} NO {e}\r\n".encode()
            if self.box is not None and not m["snapshot"]:
                lines += self.changes(expunges=by_uid or verb not in ("FETCH", "STORE", "SEARCH"))
            return b"".join(lines) + f"{tag} {result}\r\n".encode()

        def changes(self, expunges):
            current = {info.uid: info for info in self.box.refresh()}
            out = []
            if expunges and not m["no_expunge_news"]:
                for n in reversed(range(1, len(self.seq) + 1)):
                    if self.seq[n - 1] not in current:
                        out.append(f"* {n} EXPUNGE\r\n".encode())
                        self.seq.pop(n - 1)
            for n, u in enumerate(self.seq, 1):
                if u in current and current[u].flags != self.seen_flags.get(u):
                    self.seen_flags[u] = current[u].flags
                    out.append(f"* {n} FETCH (FLAGS ({self.flag_string(u)}))\r\n".encode())
            new = [u for u in current if not self.seq or u > self.seq[-1]]
            if new:
                self.seq.extend(new)
                for u in new:
                    self.seen_flags[u] = current[u].flags
                if not m["no_exists_news"]:
                    out.append(f"* {len(self.seq)} EXISTS\r\n".encode())
            return out

        # -- any state ----------------------------------------------------------------------------
        def cmd_capability(self, c, by_uid):
            return [b"* CAPABILITY IMAP4rev1\r\n"], "OK done"

        def cmd_noop(self, c, by_uid):
            return [], "OK done"

        def cmd_logout(self, c, by_uid):
            self.closed = True
            self.box = None
            return [b"* BYE see you\r\n"], "OK done"

        def cmd_login(self, c, by_uid):
            c.sp()
            user = c.text_astring()
            c.sp()
            password = c.text_astring()
            account = self.accounts.authenticate(user, password)
            if account is None:
                return [], "NO [AUTHENTICATIONFAILED] bad credentials"
            self.mailstore = MailStore(account.maildir)
            return [], "OK logged in"

        # -- authenticated ----------------------------------------------------------------------
        def cmd_select(self, c, by_uid):
            return self.open(c, writable=True)

        def cmd_examine(self, c, by_uid):
            return self.open(c, writable=m["examine_writes"])

        def open(self, c, writable):
            c.sp()
            name = c.mailbox()
            if not m["failed_select_keeps"]:
                self.box = None
            box = self.mailstore.folder(name, claim_recent=writable)
            self.box, self.writable = box, writable
            infos = box.messages()
            self.seq = [i.uid for i in infos]
            self.seen_flags = {i.uid: i.flags for i in infos}
            lines = [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
                     f"* {len(infos)} EXISTS\r\n".encode(), f"* {len(box.recent)} RECENT\r\n".encode()]
            if not m["no_uidvalidity"]:
                lines.append(f"* OK [UIDVALIDITY {box.uidvalidity}] ok\r\n".encode())
            return lines, ("OK [READ-WRITE] selected" if writable else "OK [READ-ONLY] examined")

        # -- selected -------------------------------------------------------------------------------
        def uid_of(self, n):
            return n if m["uids_are_numbers"] else self.seq[n - 1]

        def messages(self, c, by_uid):
            ranges = c.sequence_set()
            if m["no_star"]:
                ranges = [(low or 1, high or 1) for low, high in ranges]
            numbered = list(enumerate(self.seq, 1))
            if by_uid and not m["uid_fetch_numbers"]:
                top = max((self.uid_of(n) for n, _ in numbered), default=0)
                spans = resolve_sequence_set(ranges, top)
                return [(n, u) for n, u in numbered if any(a <= self.uid_of(n) <= b for a, b in spans)]
            spans = resolve_sequence_set(ranges, len(self.seq))
            return [(n, u) for n, u in numbered if any(a <= n <= b for a, b in spans)]

        def flags_of(self, u):
            if m["flags_in_session"]:
                return self.session_flags.get(u, frozenset())
            return self.box.get(u).flags

        def flag_string(self, u):
            extra = ["\\Recent"] if u in self.box.recent else []
            return " ".join([*sorted(self.flags_of(u)), *extra])

        def set_flags(self, u, how, flags):
            if m["flags_in_session"]:
                old = self.session_flags.get(u, frozenset())
                new = set(flags) if how == "FLAGS" else (old | set(flags) if how == "+FLAGS" else old - set(flags))
                self.session_flags[u] = frozenset(new)
                return
            if how == "FLAGS" and not m["flags_adds"]:
                self.box.set_flags(u, flags)
            elif how in ("FLAGS", "+FLAGS"):
                self.box.change_flags(u, add=flags)
            else:
                self.box.change_flags(u, remove=flags)
            self.seen_flags[u] = self.box.get(u).flags

        def cmd_fetch(self, c, by_uid):
            c.sp()
            chosen = self.messages(c, by_uid)
            c.sp()
            wanted = c.paren_list(lambda: self.attribute(c)) if c.at("(") else [self.attribute(c)]
            if by_uid and "UID" not in wanted and not m["uid_fetch_without_uid"]:
                wanted = ["UID", *wanted]
            out = []
            for n, u in chosen:
                parts = [self.render(n, u, a) for a in wanted]
                out.append(f"* {n} FETCH (".encode() + b" ".join(parts) + b")\r\n")
            return out, "OK fetched"

        def attribute(self, c):
            word = c.atom().upper()
            if "[" not in word:
                if word not in ("UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE"):
                    raise ParseError(f"unknown attribute {word}")
                return word
            head, _, section = word.partition("[")
            names = None
            if section == "HEADER.FIELDS":
                c.sp()
                names = [x.decode() if m["fields_case_sensitive"] else x.decode().upper()
                         for x in c.paren_list(c.astring)]
            elif section not in ("", "HEADER", "TEXT"):
                raise ParseError(f"section {section} not supported")
            c.expect("]")
            return (head, section, names)

        def render(self, n, u, a):
            info = self.box.get(u)
            if a == "UID":
                return b"UID %d" % self.uid_of(n)
            if a == "FLAGS":
                self.seen_flags[u] = info.flags
                return f"FLAGS ({self.flag_string(u)})".encode()
            if a == "RFC822.SIZE":
                raw = self.box.read(u)
                return b"RFC822.SIZE %d" % (len(raw.decode("utf-8", "replace")) if m["size_in_chars"] else len(raw))
            if a == "INTERNALDATE":
                if m["epoch_internaldate"]:
                    return b'INTERNALDATE "%d"' % int(info.internaldate)
                stamp = time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(info.internaldate))
                return f'INTERNALDATE "{stamp}"'.encode()
            head, section, names = a
            raw = self.box.read(u)
            if m["sections_as_text"]:  # "it is text": sliced as a str, encoded again
                raw = raw.decode("utf-8", "replace").encode()
            hdr, _, text = raw.partition(b"\r\n\r\n")
            if section == "HEADER":
                data = hdr + (b"\r\n" if m["header_without_blank"] else b"\r\n\r\n")
            elif section == "TEXT":
                data = text
            elif section == "HEADER.FIELDS":
                data = self.pick_fields(hdr, names) + b"\r\n"
            else:
                data = raw
            peek = head == "BODY.PEEK"
            marks = (not peek or m["peek_sets_seen"]) and not m["body_keeps_unseen"]
            if marks and (self.writable or m["examine_sets_seen"]) and "\\Seen" not in info.flags:
                self.set_flags(u, "+FLAGS", ["\\Seen"])
                self.seen_flags[u] = info.flags  # tell the client: news after the command
            shown_head = head if m["echoes_peek"] else "BODY"
            label = f"{shown_head}[{section}" + (f" ({' '.join(names)})" if names else "") + "]"
            size = len(data.decode("utf-8", "replace")) if m["literal_in_characters"] else len(data)
            return label.encode() + b" {%d}\r\n" % size + data

        def pick_fields(self, hdr, names):
            out, keep = [], False
            for line in hdr.split(b"\r\n"):
                if line[:1] in (b" ", b"\t"):
                    if keep and not m["fields_drop_folds"]:
                        out.append(line)
                    continue
                name = line.split(b":", 1)[0].decode("ascii", "replace")
                keep = (name if m["fields_case_sensitive"] else name.upper()) in names
                if keep:
                    out.append(line)
            return b"".join(x + b"\r\n" for x in out)

        def cmd_store(self, c, by_uid):
            c.sp()
            chosen = self.messages(c, by_uid)
            c.sp()
            how = c.atom().upper()
            silent = how.endswith(".SILENT") and not m["silent_ignored"]
            how = how.split(".")[0]
            c.sp()
            flags = c.flag_list() if c.at("(") else [c.flag()]
            if not self.writable:
                return [], "NO read-only mailbox"
            out = []
            for n, u in chosen:
                self.set_flags(u, how, flags)
                if not silent and not m["store_quiet"]:
                    uid_part = f"UID {self.uid_of(n)} " if by_uid else ""
                    out.append(f"* {n} FETCH ({uid_part}FLAGS ({self.flag_string(u)}))\r\n".encode())
            return out, "OK stored"

        def cmd_search(self, c, by_uid):
            tests = []
            while c.take(" "):
                tests.append(self.criterion(c))
            if not tests:
                raise ParseError("nothing to search for")
            combine = any if m["search_or"] else all
            hits = [(n, u) for n, u in enumerate(self.seq, 1) if combine(t(n, u) for t in tests)]
            answer = [self.uid_of(n) if (by_uid and not m["uid_search_numbers"]) or m["search_uids"] else n
                      for n, u in hits]
            if not answer and m["search_nothing_silent"]:
                return [], "OK searched"
            return [("* SEARCH" + "".join(f" {x}" for x in answer) + "\r\n").encode()], "OK searched"

        def criterion(self, c):
            key = c.atom().upper()
            flag = {"SEEN": "\\Seen", "FLAGGED": "\\Flagged", "DELETED": "\\Deleted", "ANSWERED": "\\Answered"}
            if key == "ALL":
                return lambda n, u: True
            if key in flag:
                return lambda n, u: flag[key] in self.flags_of(u)
            if key.startswith("UN") and key[2:] in flag:
                return lambda n, u: flag[key[2:]] not in self.flags_of(u)
            if key in ("FROM", "TO", "SUBJECT", "CC"):
                c.sp()
                needle = c.text_astring()
                return lambda n, u: self.matches(u, key, needle)
            raise ParseError(f"search key {key} not supported")

        def matches(self, u, key, needle):
            parsed = email.message_from_bytes(self.box.read(u), policy=email.policy.compat32)
            value = " ".join(str(v) for v in parsed.get_all(key, []))
            if m["search_whole_field"]:
                return value.strip().lower() == needle.lower()
            if m["search_case_sensitive"]:
                return needle in value
            return needle.lower() in value.lower()

        def deleted(self):
            return [u for u in self.seq if "\\Deleted" in self.box.get(u).flags]

        def cmd_expunge(self, c, by_uid):
            if not self.writable:
                return [], "NO read-only"
            doomed = self.deleted()
            if m["expunge_old_numbers"] or m["expunge_quiet"]:
                numbers = [n for n, u in enumerate(self.seq, 1) if u in doomed]
                self.box.expunge(doomed)
                self.box.refresh()
                self.seq = [u for u in self.seq if u not in doomed]
                return ([] if m["expunge_quiet"] else [f"* {n} EXPUNGE\r\n".encode() for n in numbers]), "OK"
            self.box.expunge(doomed)
            return [], "OK expunged"

        def cmd_close(self, c, by_uid):
            if self.writable and not m["close_keeps"]:
                self.box.expunge(self.deleted())
            self.box, self.seq = None, []
            return [], "OK closed"

    if m["unknown_uid_no"]:
        plain = IMAP.cmd_fetch

        def cmd_fetch(self, c, by_uid):
            lines, result = plain(self, c, by_uid)
            return (lines, result) if lines or not by_uid else ([], "NO no such message")

        IMAP.cmd_fetch = cmd_fetch
    return IMAP


good = make()

# mistake -> (the student's session, the visible rule that must catch it, a word its message must contain)
MISTAKES = {
    "no '+' for a literal": (make(no_continue=True), "literal", "'+'"),
    "SELECT without UIDVALIDITY": (make(no_uidvalidity=True), "select", "UIDVALIDITY"),
    "a failed SELECT keeps the mailbox open": (make(failed_select_keeps=True), "select", "no mailbox selected"),
    "EXAMINE opens read-write": (make(examine_writes=True), "examine", "READ-ONLY"),
    "reading in EXAMINE sets \\Seen": (make(examine_sets_seen=True), "examine", "does not set \\Seen"),
    "RFC822.SIZE in characters": (make(size_in_chars=True), "fetch-items", "RFC822.SIZE"),
    "'*' in a sequence set is not the last message": (make(no_star=True), "fetch-items", "the last"),
    "INTERNALDATE as a Unix time": (make(epoch_internaldate=True), "fetch-items", "INTERNALDATE"),
    "BODY.PEEK[] sets \\Seen": (make(peek_sets_seen=True), "peek", "BODY.PEEK[] does not"),
    "answers BODY.PEEK[] as the item": (make(echoes_peek=True), "peek", "item BODY[]"),
    "BODY[] leaves the message unseen": (make(body_keeps_unseen=True), "peek", "marks the message \\Seen"),
    "BODY[HEADER] without the empty line": (make(header_without_blank=True), "sections", "empty line"),
    "HEADER.FIELDS drops a folded field's next lines": (make(fields_drop_folds=True), "sections", "folded"),
    "HEADER.FIELDS names compared case-sensitively": (make(fields_case_sensitive=True), "sections", "any case"),
    "STORE FLAGS adds instead of replacing": (make(flags_adds=True), "store", "replaces"),
    "STORE .SILENT answers anyway": (make(silent_ignored=True), "store", ".SILENT"),
    "STORE answers no FETCH": (make(store_quiet=True), "store", "* n FETCH (FLAGS"),
    "flags kept in the session only": (make(flags_in_session=True), "store", "every session"),
    "the mailbox as it was at SELECT": (make(snapshot=True), "updates", "look again before each command"),
    "new mail not told": (make(no_exists_news=True), "updates", "EXISTS"),
    "another session's expunge not told": (make(no_expunge_news=True), "updates", "* 1 EXPUNGE"),
    "SEARCH strings compared case-sensitively": (make(search_case_sensitive=True), "search", "in any case"),
    "SEARCH FROM matches the whole field": (make(search_whole_field=True), "search", "a part of the field"),
    "SEARCH keys or'ed": (make(search_or=True), "search", "every key"),
    "SEARCH answers UIDs": (make(search_uids=True), "search", "numbers of the messages"),
    "no * SEARCH when nothing matches": (make(search_nothing_silent=True), "search", "'* SEARCH' alone"),
    "EXPUNGE numbers from before the first removal": (make(expunge_old_numbers=True), "expunge", "move down"),
    "EXPUNGE says nothing": (make(expunge_quiet=True), "expunge", "* n EXPUNGE"),
    "CLOSE keeps the \\Deleted messages": (make(close_keeps=True), "expunge", "CLOSE expunges"),
    "UID FETCH takes message numbers": (make(uid_fetch_numbers=True), "uid", "instead of message numbers"),
    "UID FETCH without the UID item": (make(uid_fetch_without_uid=True), "uid", "includes UID"),
    "UID SEARCH answers message numbers": (make(uid_search_numbers=True), "uid", "UID SEARCH"),
    "UIDs are the message numbers": (make(uids_are_numbers=True), "uid", "stays with its message"),
    "NO for a UID no message has": (make(unknown_uid_no=True), "uid", "UID FETCH"),
    "literal size in characters (the UID FETCH shows it)": (make(literal_in_characters=True), "uid", "literal size"),
    "BODY sections cut from the message as text": (make(sections_as_text=True), "eight-bit", "not UTF-8"),
}
