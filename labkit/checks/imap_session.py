"""Checks for ``imap_session``, the student's IMAP server (RFC 3501): what a mail reader needs.

Every rule serves the student's session class on smtp.brilliant.com in a lab world, with
three messages in Betty's INBOX (Albert's, Carol's, Pat's, in that order; their UIDs are
2, 3 and 4 for a session that keeps them with MailStore: a message before them came and
went, so a UID is never its sequence number). The rules talk to it with imaplib, or
with :class:`~labkit.checks.imap_client.IMAPTalk`, a plain client that reads every
response exactly (tags, untagged data, literals). The rules ending in ``-elsewhere``
run the same on mx2.careful.com, with Carol's messages. ::

    from labkit import checks
    checks.imap_session.run(MyIMAPSession)
"""

from __future__ import annotations

import imaplib
import re

from .harness import ALBERT, Broken, Probe, Rule, difference, entry_points
from .imap_client import IMAPTalk, Response, Unreadable
from .peers import LineClient
from .sessions import BETTYS_MAILBOX, CAROLS_MAILBOX, Mailbox, Served, serve

LOGOUT_CLOSE = 1.0  # seconds for the server to hang up after its LOGOUT reply
DATE_TIME = re.compile(r"^[ \d]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}$")  # RFC 3501 §9 date-time
LITERAL = ("the literal's {size} counts the octets that follow (RFC 3501 §4.3): len() of the bytes, not of the "
           "text; then ')' and CRLF end the FETCH response")
OCTETS = ("a message is octets, not text: one in ISO-8859-1 is not UTF-8, and decode('utf-8', 'replace') turns each "
          "such octet into U+FFFD (three octets once encoded again). Keep folder.read()'s bytes as they are up to the "
          "literal: split and slice bytes, count len() of bytes; RFC822.SIZE is the octets too (info.size) "
          "(RFC 3501 §2.3.4, §6.4.5, §7.4.2)")
# Betty's mailbox with 8-bit text that is not UTF-8 (an ISO-8859-1 body), then a UTF-8 one.
LATIN_1 = (b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\n"
           b"Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_K=F6ln?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n"
           + "Grüße aus Köln! Schöne Äpfel, süße Birnen.\r\nÀ bientôt, Albert\r\n".encode("latin-1"))
EIGHT_BIT_MAILBOX = Mailbox(BETTYS_MAILBOX.host, BETTYS_MAILBOX.user, (LATIN_1, BETTYS_MAILBOX.messages[1]))
REFRESH = ("another client (or the MTA) changed the mailbox: look again before each command (MailStore: "
           "folder.refresh()), and tell the client what changed before the tagged reply (RFC 3501 §5.2, §7)")


def _served(probe: Probe, mailbox: Mailbox = BETTYS_MAILBOX) -> Served:
    return serve(probe, "imap", mailbox, gap=True)


def _client(served: Served, login: bool = True) -> imaplib.IMAP4:
    client = imaplib.IMAP4(served.host, served.port, timeout=served.timeout)
    served.probe.later(_close, client)
    if login:
        client.login(served.user, served.password)
    return client


def _close(client: imaplib.IMAP4) -> None:
    try:
        client.shutdown()
    except OSError:  # shut down already (LOGOUT does it)
        pass


def _raw(served: Served) -> LineClient:
    """A line client past the greeting."""
    client = served.client()
    client.line()
    return client


def _reply(client: LineClient, tag: str, command: str, *pieces: bytes) -> tuple[list[str], str]:
    """Send ``tag command`` (or ``pieces``); (the untagged lines, the tagged reply)."""
    client.send(*(pieces or [f"{tag} {command}\r\n".encode()]))
    lines = client.until(lambda line: line.startswith(f"{tag} "))
    return lines[:-1], lines[-1]


def _expect(step: str, reply: str, tag: str, status: str, hint: str = "") -> None:
    if not reply.upper().startswith(f"{tag} {status}".upper()):
        raise Broken(step, f"{tag} {status} ...", repr(reply), hint=hint)


def _talk(served: Served, select: str = "SELECT") -> IMAPTalk:
    """A logged-in client (a plain one, exact), INBOX selected (or EXAMINEd; "" for neither)."""
    talk = IMAPTalk(_raw(served))
    _ok(talk, f"LOGIN {served.user} {served.password}")
    if select:
        _ok(talk, f"{select} INBOX")
    return talk


def _ok(talk: IMAPTalk, command: str, hint: str = "") -> Response:
    """``command``'s responses; it must end with OK."""
    try:
        response = talk.send(command)
    except Unreadable as error:
        raise Broken(command, "responses that follow RFC 3501's grammar", str(error), hint=hint) from None
    if response.status != "OK":
        raise Broken(command, "... OK ...", response.shown(), hint=hint)
    return response


def _fetches(response: Response, hint: str = "") -> list[tuple[int, dict]]:
    try:
        return response.fetches()
    except Unreadable as error:  # most often a literal's {size} that is not its octets: say so first
        raise Broken(response.command, "FETCH responses: * n FETCH (ITEM value ...)",
                     f"{error}, in:\n{response.shown()}",
                     hint=f"a FETCH response that cannot be read is most often a wrong literal size: {LITERAL}"
                          + (f"; {hint}" if hint and hint != LITERAL else "")) from None


def _uids(talk: IMAPTalk) -> list[int]:
    """The UIDs of the messages, in order (FETCH 1:* (UID))."""
    response = _ok(talk, "FETCH 1:* (UID)")
    return [items.get("UID") for _, items in _fetches(response)]


def _body(response: Response, number: int, item: str = "BODY[]", hint: str = LITERAL) -> bytes:
    """The ``item`` of message ``number`` in a FETCH response (a Broken if it is not there)."""
    for n, items in _fetches(response):
        value = next((v for name, v in items.items() if name.startswith(item)), None)
        if n == number and isinstance(value, bytes):
            return value
    raise Broken(response.command, f"* {number} FETCH (... {item} {{size}} and the octets ...)", response.shown(),
                 hint=hint)


def _shown(flags: set[str] | None) -> str:
    return "no FLAGS" if flags is None else f"FLAGS ({' '.join(sorted(flags))})"


def _has_flag(step: str, flags: set[str] | None, flag: str, present: bool, hint: str) -> None:
    if flags is None or (flag in flags) != present:
        raise Broken(step, f"FLAGS {'with' if present else 'without'} {flag}", _shown(flags), hint=hint)


# -- the rules ---------------------------------------------------------------------------
def greeting(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "connecting: the greeting, then CAPABILITY", "* OK ..., IMAP4rev1"):
        client = _client(served, login=False)
        client.logout()


def login(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "LOGIN", "NO for a wrong password, OK for the right one"):
        raw = _raw(served)
        _, reply = _reply(raw, "a1", "SELECT INBOX")
        if reply.upper().startswith("A1 OK"):
            raise Broken("a1 SELECT INBOX, before LOGIN", "a1 NO (or BAD): log in first", repr(reply),
                         hint="before LOGIN the session is in the not-authenticated state (RFC 3501 §3)")
        _, reply = _reply(raw, "a2", f"LOGIN {served.user} wrong-password")
        _expect(f"a2 LOGIN {served.user} wrong-password", reply, "a2", "NO",
                hint="check the password with accounts.authenticate(user, password); NO says it failed")
        _client(served).logout()  # imaplib quotes the password: LOGIN betty@brilliant.com "betty-password"


def literal(probe: Probe) -> None:
    served = _served(probe)
    size = len(served.password.encode())
    step = f"L1 LOGIN {served.user} {{{size}}}, then the password's {size} octets"
    hint = ("a line that ends with {n} announces a literal: answer '+ ...' (a continuation request), then read "
            "exactly n octets, then the rest of the command (RFC 3501 §4.3, §7.5); the parser's CommandReader "
            "says Continue()")
    with probe.watching(served.world, step, "+ ..., then L1 OK", hint=hint):
        raw = _raw(served)
        raw.send(f"L1 LOGIN {served.user} {{{size}}}\r\n".encode())
        try:
            going = raw.line()
        except TimeoutError:
            raise Broken(step, "+ (go ahead)", "nothing: the client waits for '+' before it sends the literal",
                         hint=hint) from None
        if not going.startswith("+"):
            raise Broken(step, "+ (go ahead)", repr(going), hint=hint)
        _, reply = _reply(raw, "L1", "", f"{served.password}\r\n".encode())
        _expect(step, reply, "L1", "OK", hint=hint)


def select(probe: Probe) -> None:
    served = _served(probe)
    hint = ("SELECT answers * FLAGS (...), * n EXISTS, * n RECENT and * OK [UIDVALIDITY n] (all four are "
            "required), then the tagged OK (RFC 3501 §6.3.1, §7.3.1)")
    with probe.watching(served.world, "LOGIN, SELECT INBOX", "* 3 EXISTS, RECENT, FLAGS, UIDVALIDITY", hint=hint):
        talk = _talk(served, select="")
        response = _ok(talk, "SELECT INBOX", hint=hint)
        missing = [what for what, found in (
            ("* 3 EXISTS", response.numbered("EXISTS") == [len(served.mailbox.messages)]),
            ("* n RECENT", bool(response.numbered("RECENT"))), ("* FLAGS (...)", response.has("FLAGS (")),
            ("* OK [UIDVALIDITY n]", (response.code("UIDVALIDITY") or "").isdigit())) if not found]
        if missing:
            raise Broken("SELECT INBOX", ", ".join(missing), response.shown(), hint=hint)
        again = _ok(_talk(served, select=""), "SELECT INBOX", hint=hint)
        if again.code("UIDVALIDITY") != response.code("UIDVALIDITY"):
            raise Broken("SELECT INBOX, in a second session", f"[UIDVALIDITY {response.code('UIDVALIDITY')}] again",
                         again.shown(), hint="UIDVALIDITY stays the same as long as the UIDs do: take the "
                                             "folder's (MailStore: folder.uidvalidity) (RFC 3501 §2.3.1.1)")
        nowhere = talk.send("SELECT Nowhere")
        if nowhere.status != "NO":
            raise Broken("SELECT Nowhere (no such mailbox)", "NO", nowhere.shown(),
                         hint="a mailbox that does not exist cannot be selected: NO (RFC 3501 §6.3.1)")
        after = talk.send("FETCH 1 (UID)")
        if after.status == "OK":
            raise Broken("FETCH 1 (UID), after the failed SELECT Nowhere", "NO or BAD: no mailbox is selected",
                         after.shown(), hint="a SELECT that fails leaves no mailbox selected, not the one "
                                             "before (RFC 3501 §6.3.1)")


def examine(probe: Probe) -> None:
    served = _served(probe)
    hint = ("EXAMINE opens the mailbox read-only: the tagged OK says [READ-ONLY], reading a message does not "
            "set \\Seen, and STORE (or EXPUNGE) gets NO (RFC 3501 §6.3.2)")
    with probe.watching(served.world, "EXAMINE INBOX, FETCH 1 (BODY[]), STORE 1 +FLAGS (\\Flagged)", hint,
                        hint=hint):
        talk = _talk(served, select="")
        opened = _ok(talk, "EXAMINE INBOX", hint=hint)
        if opened.code("READ-ONLY") is None or opened.numbered("EXISTS") != [len(served.mailbox.messages)]:
            raise Broken("EXAMINE INBOX", f"* {len(served.mailbox.messages)} EXISTS ..., then OK [READ-ONLY]",
                         opened.shown(), hint=hint)
        _body(_ok(talk, "FETCH 1 (BODY[])"), 1)
        stored = talk.send("STORE 1 +FLAGS (\\Flagged)")
        if stored.status != "NO":
            raise Broken("STORE 1 +FLAGS (\\Flagged), in a mailbox opened with EXAMINE", "NO (it is read-only)",
                         stored.shown(), hint=hint)
        flags = _ok(_talk(served), "FETCH 1 (FLAGS)").flags(1)
        if flags is None or flags & {"\\Seen", "\\Flagged"}:
            raise Broken("FETCH 1 (FLAGS), in another session, after the EXAMINE session read message 1",
                         "FLAGS without \\Seen or \\Flagged", _shown(flags), hint=hint)


def fetch(probe: Probe, mailbox: Mailbox = BETTYS_MAILBOX) -> None:
    served = _served(probe, mailbox)
    expected = "* n FETCH (BODY[] {size}, exactly size octets of the message, then ')')"
    with probe.watching(served.world, "LOGIN, SELECT, FETCH n (BODY[])", expected, hint=LITERAL):
        client = _client(served)
        client.select("INBOX")
        for n in range(1, len(mailbox.messages) + 1):
            status, data = client.fetch(str(n), "(BODY[])")
            body = data[0][1] if data and isinstance(data[0], tuple) else None
            if status != "OK" or body != mailbox.messages[n - 1]:
                raise Broken(f"FETCH {n} (BODY[])", expected + f": message {n}", f"{status} {data!r}"[:300],
                             hint=LITERAL)


def eight_bit(probe: Probe) -> None:
    served = _served(probe, EIGHT_BIT_MAILBOX)
    with probe.watching(served.world, "FETCH n (RFC822.SIZE BODY.PEEK[]), FETCH n (BODY.PEEK[TEXT]) of an "
                        "ISO-8859-1 message", "the message's octets, unchanged, and their number", hint=OCTETS):
        talk = _talk(served)
        for n, message in enumerate(served.mailbox.messages, 1):
            command = f"FETCH {n} (RFC822.SIZE BODY.PEEK[])"
            response = _ok(talk, command, hint=OCTETS)
            size = next((items.get("RFC822.SIZE") for m, items in _fetches(response, OCTETS) if m == n), None)
            if size != len(message):
                raise Broken(command, f"RFC822.SIZE {len(message)} (octets)", f"RFC822.SIZE {size}", hint=OCTETS)
            _same(command, message, _body(response, n, hint=OCTETS))
            command = f"FETCH {n} (BODY.PEEK[TEXT])"
            _same(command, message.partition(b"\r\n\r\n")[2],
                  _body(_ok(talk, command, hint=OCTETS), n, "BODY[TEXT]", hint=OCTETS))


def _same(command: str, expected: bytes, got: bytes) -> None:
    """``got`` must be ``expected``, octet for octet (else a Broken shown where they differ)."""
    if got != expected:
        want, have, where = difference(expected, got)
        raise Broken(command, f"{{{len(expected)}}} and exactly these octets: {want}",
                     f"{{{len(got)}}}: {have}" + (f"\n({where})" if where else ""), hint=OCTETS)


def fetch_items(probe: Probe) -> None:
    served = _served(probe)
    messages = served.mailbox.messages
    hint = ("one * n FETCH response per message, n its number, with every item asked for: UID n, FLAGS (...), "
            "RFC822.SIZE (octets), INTERNALDATE \"dd-Mon-yyyy hh:mm:ss +zzzz\"; 1:* is every message, * the last, "
            "2:3 a range, 1,3 a list (RFC 3501 §6.4.5, §7.4.2, §9)")
    with probe.watching(served.world, "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)", hint, hint=hint):
        talk = _talk(served)
        command = "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)"
        response = _ok(talk, command, hint=hint)
        got = _fetches(response, hint)
        if [n for n, _ in got] != list(range(1, len(messages) + 1)):
            raise Broken(command, f"* 1 FETCH, * 2 FETCH, * 3 FETCH", response.shown(), hint=hint)
        for n, items in got:
            problems = [what for what, bad in (
                ("UID n", not isinstance(items.get("UID"), int)), ("FLAGS (...)", not isinstance(items.get("FLAGS"),
                                                                                                  list)),
                (f"RFC822.SIZE {len(messages[n - 1])}", items.get("RFC822.SIZE") != len(messages[n - 1])),
                ("INTERNALDATE \"dd-Mon-yyyy hh:mm:ss +zzzz\"",
                 not DATE_TIME.match((items.get("INTERNALDATE") or b"").decode("ascii", "replace")
                                     if isinstance(items.get("INTERNALDATE"), bytes) else ""))) if bad]
            if problems:
                raise Broken(f"{command}: message {n}", ", ".join(problems), response.shown(), hint=hint)
        uids = [items["UID"] for _, items in got]
        if uids != sorted(set(uids)):
            raise Broken(command, "UIDs that grow with the message numbers, all different", repr(uids),
                         hint="messages are numbered in the order of their UIDs (RFC 3501 §2.3.1.2)")
        for asked, numbers in (("2:3", [2, 3]), ("*", [len(messages)]), ("1,3", [1, 3])):
            response = _ok(talk, f"FETCH {asked} (UID)", hint=hint)
            if [n for n, _ in _fetches(response, hint)] != numbers:
                raise Broken(f"FETCH {asked} (UID)", f"FETCH responses for {numbers}", response.shown(), hint=hint)


def peek(probe: Probe) -> None:
    served = _served(probe)
    hint = ("FETCH BODY[] marks the message \\Seen (the mail reader showed it); BODY.PEEK[] does not (a reader "
            "downloading it for later); both answer with the item BODY[] (RFC 3501 §6.4.5)")
    with probe.watching(served.world, "FETCH 1 (BODY.PEEK[]), then FETCH 1 (BODY[])", hint, hint=hint):
        talk = _talk(served)
        peeked = _ok(talk, "FETCH 1 (BODY.PEEK[])", hint=hint)
        if _body(peeked, 1, hint=hint) != served.mailbox.messages[0]:
            raise Broken("FETCH 1 (BODY.PEEK[])", "message 1, as its item BODY[]", peeked.shown(), hint=hint)
        _has_flag("FETCH 1 (FLAGS), after FETCH 1 (BODY.PEEK[])", _ok(talk, "FETCH 1 (FLAGS)").flags(1), "\\Seen",
                  False, hint)
        read = _ok(talk, "FETCH 1 (BODY[])", hint=hint)
        _body(read, 1, hint=hint)
        _has_flag("FETCH 1 (FLAGS), after FETCH 1 (BODY[])", _ok(talk, "FETCH 1 (FLAGS)").flags(1), "\\Seen", True,
                  hint)
        _has_flag("FETCH 1 (FLAGS), in another session", _ok(_talk(served), "FETCH 1 (FLAGS)").flags(1), "\\Seen",
                  True, "flags are kept in the mailbox, for every session (MailStore: folder.change_flags)")


def sections(probe: Probe, mailbox: Mailbox = BETTYS_MAILBOX) -> None:
    served = _served(probe, mailbox)
    hint = ("BODY[HEADER] is the header with the empty line after it, BODY[TEXT] what follows that line, "
            "BODY[HEADER.FIELDS (A B)] only the fields named (any case; a folded field with its next lines), "
            "then the empty line (RFC 3501 §6.4.5)")
    with probe.watching(served.world, "FETCH BODY.PEEK[HEADER], [TEXT] and [HEADER.FIELDS (...)]", hint, hint=hint):
        talk = _talk(served)
        for n, message in enumerate(mailbox.messages, 1):
            header, _, text = message.partition(b"\r\n\r\n")
            for part, expected in (("HEADER", header + b"\r\n\r\n"), ("TEXT", text)):
                command = f"FETCH {n} (BODY.PEEK[{part}])"
                got = _body(_ok(talk, command, hint=hint), n, f"BODY[{part}]", hint=hint)
                if got != expected:
                    raise Broken(command, repr(expected[-120:]), repr(got[-120:]), hint=hint)
            fields = _fields(header, ("subject", "TO"))
            command = f"FETCH {n} (BODY.PEEK[HEADER.FIELDS (subject TO)])"
            got = _body(_ok(talk, command, hint=hint), n, "BODY[HEADER.FIELDS", hint=hint)
            if not got.endswith(b"\r\n\r\n") or sorted(_lines(got)) != sorted(fields):
                raise Broken(command, "\n".join(repr(f) for f in fields) + "\nthen the empty line", repr(got),
                             hint=hint)


def _lines(header: bytes) -> list[bytes]:
    """A header's fields, each with its folded lines."""
    fields: list[bytes] = []
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    return fields


def _fields(header: bytes, names: tuple[str, ...]) -> list[bytes]:
    wanted = {name.upper().encode() for name in names}
    return [field for field in _lines(header) if field.partition(b":")[0].strip().upper() in wanted]


def store(probe: Probe) -> None:
    served = _served(probe)
    hint = ("STORE n +FLAGS (...) adds flags, -FLAGS removes them, FLAGS replaces them all; each answers "
            "* n FETCH (FLAGS (...)) with the flags now, except the .SILENT forms (RFC 3501 §6.4.6)")
    with probe.watching(served.world, "STORE 2 +FLAGS, -FLAGS, FLAGS; STORE 3 +FLAGS.SILENT", hint, hint=hint):
        talk = _talk(served)
        for command, expected in (("STORE 2 +FLAGS (\\Flagged \\Draft)", {"\\Flagged", "\\Draft"}),
                                  ("STORE 2 -FLAGS (\\Flagged)", {"\\Draft"})):
            flags = _ok(talk, command, hint=hint).flags(2)
            if flags != expected:
                raise Broken(command, f"* 2 FETCH (FLAGS ({' '.join(sorted(expected))}))", _shown(flags), hint=hint)
        command = "STORE 2 FLAGS (\\Answered \\Seen)"
        flags = _ok(talk, command, hint=hint).flags(2)
        if flags != {"\\Answered", "\\Seen"}:
            raise Broken(command, "FLAGS (\\Answered \\Seen)", _shown(flags), hint=hint)
        command = "STORE 3 +FLAGS.SILENT (\\Deleted)"
        silent = _ok(talk, command, hint=hint)
        if silent.flags(3) is not None:
            raise Broken(command, "no FETCH response: .SILENT", silent.shown(), hint=hint)
        other = _ok(_talk(served), "FETCH 2:3 (FLAGS)")
        if (other.flags(2), other.flags(3)) != ({"\\Answered", "\\Seen"}, {"\\Deleted"}):
            raise Broken("FETCH 2:3 (FLAGS), in another session", "2: \\Answered \\Seen; 3: \\Deleted",
                         other.shown(), hint="flags are kept in the mailbox for every session: MailStore's "
                                             "folder.set_flags and change_flags write them in the file's name")


def updates(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "two sessions of Betty's, A and B; mail arrives", "each hears of the other's "
                        "changes", hint=REFRESH):
        a, b = _talk(served), _talk(served)
        _ok(a, "STORE 3 +FLAGS (\\Flagged)")
        _has_flag("B: FETCH 3 (FLAGS), after A's STORE 3 +FLAGS (\\Flagged)", _ok(b, "FETCH 3 (FLAGS)").flags(3),
                  "\\Flagged", True, REFRESH)
        served.world.send(ALBERT, [served.user], b"Subject: news\r\nFrom: albert@awesome.com\r\n\r\nFresh!\r\n")
        probe.delivered(served.world, served.user, step="a new message for Betty, while A and B are selected")
        count = len(served.mailbox.messages) + 1
        news = _ok(b, "NOOP")
        if count not in news.numbered("EXISTS"):
            raise Broken("B: NOOP, after a new message arrived", f"* {count} EXISTS", news.shown(),
                         hint="new mail is told with * n EXISTS, n the new number of messages: NOOP is how "
                              "clients poll for it (RFC 3501 §6.1.2, §7.3.1). " + REFRESH)
        _ok(a, "NOOP")
        _ok(a, "STORE 1 +FLAGS.SILENT (\\Deleted)")
        _ok(a, "EXPUNGE")
        gone = _ok(b, "NOOP")
        if gone.numbered("EXPUNGE") != [1]:
            raise Broken("B: NOOP, after A expunged message 1", "* 1 EXPUNGE", gone.shown(),
                         hint="B's message 1 is gone: B must hear * 1 EXPUNGE (its messages are renumbered) "
                              "before it may use the numbers again (RFC 3501 §7.4.1). " + REFRESH)


def search(probe: Probe, mailbox: Mailbox = BETTYS_MAILBOX) -> None:
    served = _served(probe, mailbox)
    hint = ("SEARCH answers * SEARCH and the numbers of the messages that match every key (none: '* SEARCH' "
            "alone); FROM, TO and SUBJECT match a part of the field, in any case; SEEN, UNSEEN, FLAGGED, DELETED "
            "test the flags (RFC 3501 §6.4.4, §7.2.5)")
    first, second, third = (_sender(m) for m in mailbox.messages)
    with probe.watching(served.world, "SEARCH with flags and header fields", hint, hint=hint):
        talk = _talk(served)
        _ok(talk, "STORE 1 +FLAGS.SILENT (\\Seen)")
        _ok(talk, "STORE 3 +FLAGS.SILENT (\\Flagged)")
        for keys, expected in (("ALL", [1, 2, 3]), (f'FROM "{second}"', [2]), (f'FROM "{second.upper()}"', [2]),
                               (f"SUBJECT {_subject_word(mailbox.messages[0])}", [1]),
                               (f'TO "{served.user.partition("@")[0].upper()}"', [1, 2, 3]),
                               ('FROM "nobody-at-all"', []), ("SEEN", [1]), ("UNSEEN", [2, 3]), ("FLAGGED", [3]),
                               ("DELETED", []), (f'UNSEEN FROM "{third}"', [3]), (f"UNSEEN FROM {first}", [])):
            response = _ok(talk, f"SEARCH {keys}", hint=hint)
            if response.search() != expected:
                raise Broken(f"SEARCH {keys}", f"* SEARCH{''.join(f' {n}' for n in expected)}", response.shown(),
                             hint=hint)


def _sender(message: bytes) -> str:
    """A part of the From: field's address (its local part): "carol"."""
    line = next(line for line in message.split(b"\r\n") if line.startswith(b"From:"))
    return re.search(rb"<?([a-z]+)@", line).group(1).decode()  # type: ignore[union-attr]


def _subject_word(message: bytes) -> str:
    """The Subject's first word, in upper case: DINNER."""
    line = next(line for line in message.split(b"\r\n") if line.startswith(b"Subject:"))
    return line.split()[1].decode("ascii", "replace").upper()


def expunge(probe: Probe) -> None:
    served = _served(probe)
    hint = ("EXPUNGE removes the messages flagged \\Deleted and says * n EXPUNGE for each, n its number at that "
            "moment: the messages after it move down by one at once (RFC 3501 §6.4.3, §7.4.1)")
    with probe.watching(served.world, "STORE 1,3 +FLAGS.SILENT (\\Deleted), EXPUNGE, then CLOSE", hint, hint=hint):
        talk = _talk(served)
        uids = _uids(talk)
        _ok(talk, "STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        response = _ok(talk, "EXPUNGE", hint=hint)
        left = list(uids)
        for n in response.numbered("EXPUNGE"):
            if not 1 <= n <= len(left):
                raise Broken("EXPUNGE", "* n EXPUNGE, each n a message number at its moment", response.shown(),
                             hint=hint)
            del left[n - 1]
        if left != [uids[1]]:
            raise Broken("EXPUNGE, with messages 1 and 3 flagged \\Deleted",
                         "* 3 EXPUNGE and * 1 EXPUNGE (or * 1 EXPUNGE, then * 2 EXPUNGE)", response.shown(), hint=hint)
        now = _uids(talk)
        if now != [uids[1]] or served.kept() != [1]:
            raise Broken("FETCH 1:* (UID), after EXPUNGE", f"only the old message 2 (UID {uids[1]}), as number 1",
                         f"UIDs {now}; the Maildir holds {len(served.kept())} messages", hint=hint)
        _ok(talk, "STORE 1 +FLAGS.SILENT (\\Deleted)")
        closed = _ok(talk, "CLOSE")
        after = talk.send("FETCH 1 (UID)")
        if closed.numbered("EXPUNGE") or after.status == "OK" or served.kept():
            raise Broken("CLOSE, with message 1 flagged \\Deleted; then FETCH 1 (UID)",
                         "CLOSE: OK, no untagged EXPUNGE; the message gone; then NO or BAD (nothing selected)",
                         closed.shown() + "\n" + after.shown() + f"\n(the Maildir holds {len(served.kept())})",
                         hint="CLOSE expunges the \\Deleted messages silently and leaves the selected state "
                              "(RFC 3501 §6.4.2)")


def uid(probe: Probe) -> None:
    served = _served(probe)
    hint = ("UID FETCH, UID STORE and UID SEARCH take and give UIDs instead of message numbers; every FETCH "
            "response to them includes UID; a UID stays with its message for good, while numbers move down after "
            "an EXPUNGE (RFC 3501 §2.3.1.1, §6.4.8)")
    with probe.watching(served.world, "UID FETCH, UID STORE, UID SEARCH", hint, hint=hint):
        talk = _talk(served)
        uids = _uids(talk)
        command = f"UID FETCH {uids[1]} (BODY.PEEK[])"
        response = _ok(talk, command, hint=hint)
        got = _fetches(response, hint)  # a FLAGS change may come in a FETCH response of its own (RFC 3501 §7.4.2)
        if {n for n, _ in got} != {2} or uids[1] not in (items.get("UID") for _, items in got) \
                or _body(response, 2, hint=hint) != served.mailbox.messages[1]:
            raise Broken(command, f"* 2 FETCH (UID {uids[1]} BODY[] ...): message 2, whose UID it is",
                         response.shown(), hint=hint)
        command = f"UID FETCH {uids[0]}:* (FLAGS)"
        got = _fetches(_ok(talk, command, hint=hint), hint)
        if [(n, items.get("UID")) for n, items in got] != list(zip((1, 2, 3), uids)):
            raise Broken(command, "three FETCH responses, each with its UID", repr(got), hint=hint)
        command = f"UID STORE {uids[2]} +FLAGS (\\Flagged)"
        got = _fetches(_ok(talk, command, hint=hint), hint)
        if not any(n == 3 and items.get("UID") == uids[2] and "\\Flagged" in (items.get("FLAGS") or [])
                   for n, items in got):
            raise Broken(command, f"* 3 FETCH (UID {uids[2]} FLAGS (... \\Flagged ...))", repr(got), hint=hint)
        for keys, expected in ((f'FROM "{_sender(served.mailbox.messages[1])}"', [uids[1]]), ("ALL", uids)):
            response = _ok(talk, f"UID SEARCH {keys}", hint=hint)
            if response.search() != expected:
                raise Broken(f"UID SEARCH {keys}", f"* SEARCH {' '.join(map(str, expected))} (UIDs)",
                             response.shown(), hint=hint)
        missing = _ok(talk, f"UID FETCH {uids[2] + 100} (UID)", hint="a UID no message has (one expunged long "
                      "ago) is left out, without an error: OK, and no FETCH response (RFC 3501 §6.4.8)")
        if missing.fetches():
            raise Broken(f"UID FETCH {uids[2] + 100} (UID), a UID no message has", "OK, and no FETCH response",
                         missing.shown(), hint=hint)
        _ok(talk, "STORE 1 +FLAGS.SILENT (\\Deleted)")
        _ok(talk, "EXPUNGE")
        command = f"UID FETCH {uids[1]} (UID), after EXPUNGE took message 1"
        got = _fetches(_ok(talk, f"UID FETCH {uids[1]} (UID)", hint=hint), hint)
        if [(n, items.get("UID")) for n, items in got] != [(1, uids[1])]:
            raise Broken(command, f"* 1 FETCH (UID {uids[1]}): the same message, now number 1", repr(got),
                         hint=hint)
        if _uids(_talk(served)) != uids[1:]:
            raise Broken("FETCH 1:* (UID), in another session", f"the UIDs {uids[1:]} again", "other UIDs",
                         hint=hint)


def logout(probe: Probe) -> None:
    served = _served(probe)
    step = "z9 LOGOUT"
    with probe.watching(served.world, step, "* BYE, then z9 OK, then the connection closes"):
        raw = _raw(served)
        untagged, reply = _reply(raw, "z9", "LOGOUT")
        if not any(line.upper().startswith("* BYE") for line in untagged):
            raise Broken(step, "* BYE ..., then z9 OK", " / ".join([*untagged, reply]),
                         hint="the server says BYE before the tagged OK (RFC 3501 §6.1.3)")
        _expect(step, reply, "z9", "OK")
        if not raw.hung_up(LOGOUT_CLOSE):
            raise Broken(f"after {reply!r}", "the server closes the connection", "it stays open",
                         hint="set self.closed = True with the LOGOUT reply")


def bad_command(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "g1 FROBNICATE, a line with only a tag, g3 NOOP", "BAD, BAD, then OK"):
        raw = _raw(served)
        _, reply = _reply(raw, "g1", "FROBNICATE")
        _expect("g1 FROBNICATE", reply, "g1", "BAD", hint="a command the server does not know is a protocol "
                "error: BAD; NO is for commands that failed (RFC 3501 §7.1)")
        raw.send(b"g2\r\n")
        reply = raw.until(lambda line: line.upper().startswith(("G2 ", "* BAD")))[-1]
        if "BAD" not in reply.upper():
            raise Broken("g2 (a tag, no command)", "g2 BAD (or * BAD)", repr(reply))
        _, reply = _reply(raw, "g3", "NOOP")
        _expect("g3 NOOP, after the garbage", reply, "g3", "OK", hint="after a BAD the session goes on")


def tags(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "NOOP with odd tags, in pieces, two in one packet", "each tag's OK"):
        raw = _raw(served)
        for tag, pieces, step in (("x17", (b"x17 NOOP\r\n",), "x17 NOOP"),
                                  ("Y-2", (b"Y-2 CAPA", b"BILITY\r\n"), "'Y-2 CAPA' + 'BILITY' in two pieces"),
                                  ("p1", (b"p1 NOOP\r\np2 NOOP\r\n",), "p1 NOOP and p2 NOOP in one packet"),
                                  ("p2", (), "p2 NOOP, the second of the packet")):
            raw.send(*pieces)
            reply = raw.until(lambda line: not line.startswith("* "))[-1]
            _expect(step, reply, tag, "OK", hint="the tagged reply starts with the client's own tag (RFC 3501 "
                    "§2.2.1); keep what receive() gets in a buffer and answer each complete line in it")


RULES: list[Rule] = [
    Rule("greeting", "* OK greeting; CAPABILITY says IMAP4rev1", "RFC 3501 §7.1.1, §6.1.1", greeting),
    Rule("login", "LOGIN: NO for a wrong password, OK for the right one; nothing before", "RFC 3501 §6.2.3",
         login),
    Rule("literal", "a literal in a command: {n} gets '+', then n octets", "RFC 3501 §4.3, §7.5", literal),
    Rule("select", "SELECT INBOX: FLAGS, 3 EXISTS, RECENT, UIDVALIDITY; NO for no such mailbox",
         "RFC 3501 §6.3.1, §7.3.1", select),
    Rule("examine", "EXAMINE: [READ-ONLY]; reading marks nothing; STORE gets NO", "RFC 3501 §6.3.2", examine),
    Rule("fetch", "FETCH n BODY[]: the message as a literal of the right size", "RFC 3501 §6.4.5, §4.3", fetch),
    Rule("eight-bit", "8-bit mail that is not UTF-8 (ISO-8859-1): sizes in octets, BODY[] the exact octets",
         "RFC 3501 §2.3.4, §6.4.5, §7.4.2", eight_bit),
    Rule("fetch-items", "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE); sets 2:3, *, 1,3",
         "RFC 3501 §6.4.5, §7.4.2", fetch_items),
    Rule("peek", "BODY[] sets \\Seen, BODY.PEEK[] does not", "RFC 3501 §6.4.5", peek),
    Rule("sections", "BODY[HEADER], BODY[TEXT], BODY[HEADER.FIELDS (...)]", "RFC 3501 §6.4.5", sections),
    Rule("store", "STORE +FLAGS, -FLAGS, FLAGS (and .SILENT); flags kept for every session", "RFC 3501 §6.4.6",
         store),
    Rule("updates", "another session's flags, new mail (EXISTS) and expunges reach a session by its next command",
         "RFC 3501 §5.2, §7.3.1, §7.4.1", updates),
    Rule("search", "SEARCH by flags and header fields: the numbers that match every key", "RFC 3501 §6.4.4",
         search),
    Rule("expunge", "EXPUNGE: * n EXPUNGE for each \\Deleted message; CLOSE expunges silently",
         "RFC 3501 §6.4.2, §6.4.3, §7.4.1", expunge),
    Rule("uid", "UID FETCH, UID STORE, UID SEARCH: UIDs that stay with their message", "RFC 3501 §2.3.1.1, §6.4.8",
         uid),
    Rule("logout", "LOGOUT: * BYE, then the tagged OK, then it hangs up", "RFC 3501 §6.1.3", logout),
    Rule("bad-command", "garbage gets BAD, and the session goes on", "RFC 3501 §7.1.5", bad_command),
    Rule("tags", "each tagged reply carries its command's tag, in pieces or pipelined", "RFC 3501 §2.2.1",
         tags),
    Rule("fetch-elsewhere", "Carol's mailbox too: FETCH n BODY[], literals of the right size",
         "RFC 3501 §6.4.5, §4.3", lambda probe: fetch(probe, CAROLS_MAILBOX), variant_of="fetch"),
    Rule("sections-elsewhere", "Carol's messages too: BODY[HEADER], BODY[TEXT], BODY[HEADER.FIELDS (...)]",
         "RFC 3501 §6.4.5", lambda probe: sections(probe, CAROLS_MAILBOX), variant_of="sections"),
    Rule("search-elsewhere", "Carol's mailbox too: SEARCH by flags and header fields", "RFC 3501 §6.4.4",
         lambda probe: search(probe, CAROLS_MAILBOX), variant_of="search"),
]

run, check = entry_points("imap_session", RULES)
