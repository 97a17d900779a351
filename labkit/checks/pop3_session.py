"""Checks for ``pop3_session``, the student's POP3 server (RFC 1939, RFC 2449).

Every rule serves the student's session class on smtp.brilliant.com in a lab world, with
three messages in Betty's Maildir (two in ``new/``, one a reader has seen, in ``cur/``),
and talks to it with poplib (or a plain line client where poplib would hide the detail).
The rules ending in ``-elsewhere`` run the same on mx2.careful.com, with Carol's messages
(a long one, one that is mostly dots, 8-bit text). ::

    from labkit import checks
    checks.pop3_session.run(MyPOP3Session)
"""

from __future__ import annotations

import imaplib
import poplib
import re
from typing import Callable

from .harness import Broken, Probe, Rule, entry_points
from .sessions import BETTYS_MAILBOX, CAROLS_MAILBOX, Mailbox, Served, serve

BETTYS = Mailbox(BETTYS_MAILBOX.host, BETTYS_MAILBOX.user, BETTYS_MAILBOX.messages, read=(2,))
CAROLS = Mailbox(CAROLS_MAILBOX.host, CAROLS_MAILBOX.user, CAROLS_MAILBOX.messages, read=(0,))
UIDL_SYNTAX = re.compile(rb"^[\x21-\x7e]{1,70}$")  # RFC 1939 §7
STUFFING = ("a line that starts with '.' goes with one more '.', and the reply ends with a line with only '.' "
            "(RFC 1939 §3)")
HANG_UP = 1.0  # seconds for the server to close after its QUIT reply


def _served(probe: Probe, mailbox: Mailbox = BETTYS) -> Served:
    return serve(probe, "pop3", mailbox)


def _client(served: Served, login: bool = True) -> poplib.POP3:
    client = poplib.POP3(served.host, served.port, timeout=served.timeout)
    served.probe.later(client.close)
    if login:
        client.user(served.user)
        client.pass_(served.password)
    return client


def _refused(step: str, command: Callable[[], bytes | tuple], hint: str) -> None:
    """``command`` must get -ERR."""
    try:
        reply = command()
    except poplib.error_proto as error:
        if bytes(error.args[0]).startswith(b"-ERR"):
            return
        raise
    raise Broken(step, "-ERR", repr(reply[0] if isinstance(reply, tuple) else reply), hint=hint)


def _retr(client: poplib.POP3, number: int) -> bytes:
    """RETR as the client sees it: dot-stuffing undone, CRLF line endings."""
    return b"\r\n".join(client.retr(number)[1]) + b"\r\n"


def _listing(client: poplib.POP3) -> dict[int, int]:
    return {int(n): int(size) for n, size in (entry.split()[:2] for entry in client.list()[1])}


def _numbers(served: Served, client: poplib.POP3) -> dict[int, int]:
    """Which message each number is (number -> index in the mailbox), by RETR."""
    found = {}
    for number in sorted(_listing(client)):
        which = served.mailbox.which(_retr(client, number))
        if which is None:
            raise Broken(f"RETR {number}", "one of the messages in the maildrop", "another text", hint=STUFFING)
        found[number] = which
    return found


def _uidls(client: poplib.POP3) -> dict[int, bytes]:
    return {int(n): uid for n, uid in (entry.split(b" ", 1) for entry in client.uidl()[1])}


# -- the rules ---------------------------------------------------------------------------
def greeting(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "connecting, then an unknown command", "+OK greeting, -ERR to FROBNICATE"):
        client = _client(served, login=False)
        _refused("FROBNICATE", lambda: client._shortcmd("FROBNICATE"),
                 hint="a command the server does not know gets -ERR (RFC 1939 §3)")
        client.quit()


def login(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "USER and PASS", "-ERR for a wrong password, +OK for the right one"):
        client = _client(served, login=False)
        _refused("STAT before logging in", client.stat, hint="until USER and PASS succeed, the session is in the "
                 "AUTHORIZATION state: mail commands get -ERR (RFC 1939 §4)")
        client.user(served.user)
        _refused("PASS wrong-password", lambda: client.pass_("wrong-password"),
                 hint="check the password with accounts.authenticate(user, password): it returns None if wrong")
        _client(served).quit()  # and the right one works


def capa(probe: Probe) -> None:
    served = _served(probe)
    hint = ("CAPA answers +OK, then one capability a line, then '.': here at least USER, TOP, UIDL and "
            "PIPELINING (your server answers commands that come in one packet: say so, and clients send them "
            "without waiting for each reply, RFC 2449 §6.6), in both states (RFC 2449 §5, §6)")
    wanted = {"USER", "TOP", "UIDL", "PIPELINING"}
    with probe.watching(served.world, "CAPA, before and after logging in", "+OK, then USER, TOP, UIDL, PIPELINING, "
                        "'.'", hint=hint):
        client = _client(served, login=False)
        for when in ("before logging in", "after logging in"):
            try:
                capabilities = {name.upper() for name in client.capa()}
            except poplib.error_proto as error:
                raise Broken(f"CAPA {when}", "+OK capability list follows, then the list", repr(error.args[0]),
                             hint=hint) from None
            missing = wanted - capabilities
            if missing:
                raise Broken(f"CAPA {when}", "USER, TOP, UIDL and PIPELINING among the capabilities",
                             f"{sorted(capabilities)}: no {', '.join(sorted(missing))}", hint=hint)
            if when == "before logging in":
                client.user(served.user)
                client.pass_(served.password)
        client.quit()


def states(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "each command in a state where it is not allowed", "-ERR"):
        client = _client(served, login=False)
        hint = ("before PASS succeeds the session is in the AUTHORIZATION state: only USER, PASS, CAPA and QUIT; "
                "every other command gets -ERR (RFC 1939 §4)")
        for command in ("LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 0", "RSET", "NOOP"):
            _refused(f"{command}, before logging in", lambda: client._shortcmd(command), hint=hint)
        _refused("PASS betty-password, with no USER before it", lambda: client._shortcmd(f"PASS {served.password}"),
                 hint="PASS only follows a successful USER (RFC 1939 §7)")
        client.user(served.user)
        client.pass_(served.password)
        _refused(f"USER {served.user}, once logged in", lambda: client.user(served.user),
                 hint="USER and PASS belong to the AUTHORIZATION state; once in TRANSACTION they get -ERR "
                      "(RFC 1939 §5): a session cannot switch to another maildrop")
        for command in ("stat", "Noop"):
            try:
                client._shortcmd(command)
            except poplib.error_proto as error:
                raise Broken(command, "+OK: commands are case-insensitive", repr(error.args[0]),
                             hint="compare the command in upper case: verb.upper() (RFC 1939 §3)") from None
        client.quit()
        raw = served.client()
        raw.line()
        raw.send(b"QUIT\r\n")
        reply = raw.line()
        if not reply.startswith("+OK") or not raw.hung_up(HANG_UP):
            raise Broken("QUIT before logging in", "+OK, then the connection closes", repr(reply),
                         hint="QUIT in the AUTHORIZATION state says +OK and closes, deleting nothing (RFC 1939 §4)")


def stat_list(probe: Probe, mailbox: Mailbox = BETTYS) -> None:
    served = _served(probe, mailbox)
    sizes = sorted(len(m) for m in mailbox.messages)
    with probe.watching(served.world, "STAT, LIST", f"{len(sizes)} messages of {sizes} octets"):
        client = _client(served)
        count, total = client.stat()
        listed = _listing(client)
        client.quit()
    if (count, total, sorted(listed.values())) != (len(sizes), sum(sizes), sizes):
        hint = ("sizes are octets of the message as RETR sends it (CRLF line endings): len() of the bytes, not of "
                "the text (RFC 1939 §5, §11)")
        if count < len(sizes):
            hint = ("the maildrop is every message in new/ and in cur/ (where a mail reader moves what it has "
                    "seen, renaming it NAME:2,S): list both folders")
        raise Broken("STAT, LIST", f"+OK {len(sizes)} {sum(sizes)}; sizes {sizes}",
                     f"+OK {count} {total}; sizes {sorted(listed.values())}", hint=hint)


def list_one(probe: Probe) -> None:
    served = _served(probe)
    hint = ("LIST with a message number answers one line, '+OK n size', for that message (a scan listing, "
            "RFC 1939 §5); fetchmail asks LIST n before each RETR n")
    with probe.watching(served.world, "LIST n for each message, then after DELE 2", "+OK n size", hint=hint):
        client = _client(served)
        listed = _listing(client)
        for number, size in sorted(listed.items()):
            reply = client.list(number)
            if reply.split()[:3] != [b"+OK", str(number).encode(), str(size).encode()]:
                raise Broken(f"LIST {number}", f"+OK {number} {size}", repr(reply), hint=hint)
        client.dele(2)
        refused = "a deleted message, or one that does not exist, gets -ERR (RFC 1939 §5)"
        _refused("LIST 2, after DELE 2", lambda: client.list(2), hint=refused)
        _refused(f"LIST {len(listed) + 5}", lambda: client.list(len(listed) + 5), hint=refused)
        if 2 in _listing(client):
            raise Broken("LIST, after DELE 2", "the listing without message 2", "message 2 is listed",
                         hint="messages marked as deleted are not listed (RFC 1939 §5)")
        client.quit()


def uidl(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "UIDL in three sessions", "each message's unique id, the same every time"):
        client = _client(served)
        first = _uidls(client)
        for number, uid in first.items():
            if not UIDL_SYNTAX.match(uid):
                raise Broken("UIDL", "unique ids of 1 to 70 characters from '!' to '~'", repr(uid),
                             hint="no spaces, nothing outside printable ASCII (RFC 1939 §7)")
            reply = client.uidl(number)
            if reply.split()[:3] != [b"+OK", str(number).encode(), uid]:
                raise Broken(f"UIDL {number}", f"+OK {number} {uid.decode()} (one line, as in the listing)",
                             repr(reply), hint="UIDL with a number answers one line: '+OK n unique-id' (RFC 1939 §7)")
        if len(set(first.values())) != len(first) or len(first) != len(served.mailbox.messages):
            raise Broken("UIDL", f"{len(served.mailbox.messages)} different unique ids", repr(first),
                         hint="the file names are unique: use them (RFC 1939 §7)")
        ids = {which: first[n] for n, which in _numbers(served, client).items()}
        client.quit()
        served.wait_ended("the first session")
        _read_over_imap(served)
        again = _client(served)
        changed = {which: uid for which, uid in
                   ((which, _uidls(again)[n]) for n, which in _numbers(served, again).items()) if uid != ids[which]}
        if changed:
            raise Broken("UIDL, after a mail reader marked the messages seen over IMAP (they moved to cur/, "
                         "renamed NAME:2,S)", f"the same unique ids as before: {served.mailbox.named(ids)}",
                         served.mailbox.named(changed),
                         hint="a file's name changes with its flags: the unique id is the name before ':' "
                              "(maildir(5)), and it never changes (RFC 1939 §7)")
        numbers = _numbers(served, again)
        again.dele(1)
        again.quit()
        served.wait_ended("the second session")
        third = _client(served)
        now = {which: _uidls(third)[n] for n, which in _numbers(served, third).items()}
        third.quit()
    if any(uid != ids[which] for which, uid in now.items()) or numbers[1] in now:
        raise Broken("UIDL, after message 1 was deleted in the session before",
                     f"the same unique ids as before, but for the deleted message: "
                     f"{served.mailbox.named({which: ids[which] for which in now})}", served.mailbox.named(now),
                     hint="message numbers change from session to session; a unique id is the message's own, for "
                          "good: clients (fetchmail, Thunderbird's 'leave on server') remember them (RFC 1939 §7)")


def _read_over_imap(served: Served) -> None:
    """Betty's mail reader marks every message seen, over labkit's IMAP (new/ -> cur/, NAME:2,S)."""
    endpoint = served.world.host(served.mailbox.host).services["imap"]
    with imaplib.IMAP4(endpoint.host, endpoint.port, timeout=served.timeout) as imap:
        imap.login(served.user, served.password)
        imap.select("INBOX")
        imap.store("1:*", "+FLAGS", "(\\Seen)")
        imap.logout()


def retr(probe: Probe, mailbox: Mailbox = BETTYS) -> None:
    served = _served(probe, mailbox)
    with probe.watching(served.world, "LIST, then RETR of each message", "each message, byte for byte"):
        client = _client(served)
        for number, size in sorted(_listing(client).items()):
            data = _retr(client, number)
            if data not in mailbox.messages or len(data) != size:
                raise Broken(f"RETR {number}", f"one of the messages, of the {size} octets LIST said",
                             repr(data[:200]), hint=STUFFING)
        client.quit()


def top(probe: Probe, mailbox: Mailbox = BETTYS) -> None:
    served = _served(probe, mailbox)
    hint = ("TOP n k: the whole header, the empty line, then the first k lines of the body (all of it if it has "
            "fewer), dot-stuffed as RETR is (RFC 1939 §7)")
    with probe.watching(served.world, "TOP n 0, TOP n 2 and TOP n 10000 of each message", hint, hint=hint):
        client = _client(served)
        for number in sorted(_listing(client)):
            got = client.top(number, 0)[1]
            which = mailbox.which(b"\r\n".join(got))
            if which is None:
                raise Broken(f"TOP {number} 0", "the message's header, then an empty line", repr(got[:12]), hint=hint)
            header, _, body = mailbox.messages[which].partition(b"\r\n\r\n")
            lines = body.split(b"\r\n")[:-1]
            for count in (0, 2, 10000):
                expected = [*header.split(b"\r\n"), b"", *lines[:count]]
                got = client.top(number, count)[1] if count else got
                if got != expected:
                    raise Broken(f"TOP {number} {count}", "\n".join(repr(line) for line in expected[-6:]),
                                 "\n".join(repr(line) for line in got[-6:]) or "nothing", hint=hint)
        client.quit()


def dele_quit(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "DELE 1, then QUIT", "message 1 gone, the others kept"):
        client = _client(served)
        numbers = _numbers(served, client)
        second = _retr(client, 2)
        client.dele(1)
        if _retr(client, 2) != second:
            raise Broken("RETR 2 after DELE 1", "the same message 2 as before", "another message",
                         hint="message numbers do not change during a session (RFC 1939 §5)")
        _refused("RETR 1 after DELE 1", lambda: client.retr(1), hint="a deleted message cannot be retrieved")
        count, _ = client.stat()
        if count != len(numbers) - 1:
            raise Broken("STAT after DELE 1", f"+OK {len(numbers) - 1} ...", f"+OK {count}",
                         hint="STAT does not count messages marked as deleted (RFC 1939 §5)")
        client.quit()
        served.wait_ended("the session")
    _all_but(served, numbers, 1, f"{len(numbers) - 1} messages: all but message 1",
             "QUIT enters the UPDATE state: that is when the marked messages are removed, their files unlinked "
             "(RFC 1939 §6)")


def _all_but(served: Served, numbers: dict[int, int], gone: int, expected: str, hint: str) -> None:
    """The Maildir after QUIT holds every message but number ``gone`` (``numbers``: the
    session's numbers -> which message)."""
    kept = served.kept()
    if kept != sorted(which for n, which in numbers.items() if n != gone):
        raise Broken("the Maildir after QUIT", expected, f"{len(kept)} messages", hint=hint)


def rset(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "DELE 1, DELE 2, RSET, DELE 3, QUIT", "only message 3 deleted"):
        client = _client(served)
        numbers = _numbers(served, client)
        client.dele(1)
        client.dele(2)
        try:
            client.rset()
        except poplib.error_proto as error:
            raise Broken("RSET", "+OK", repr(error.args[0]),
                         hint="RSET unmarks every message DELE marked in this session (RFC 1939 §5)") from None
        count, _ = client.stat()
        if count != len(numbers):
            raise Broken("STAT after RSET", f"+OK {len(numbers)} ...: every message again", f"+OK {count} ...",
                         hint="RSET unmarks every message DELE marked in this session (RFC 1939 §5)")
        client.dele(3)
        client.quit()
        served.wait_ended("the session")
    _all_but(served, numbers, 3, "all but message 3: RSET unmarked 1 and 2",
             "RSET forgets the marks: QUIT deletes only what is marked then (RFC 1939 §5, §6)")


def drop_keeps(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "DELE 1, DELE 2, then the connection drops", "nothing deleted"):
        client = _client(served)
        client.dele(1)
        client.dele(2)
        client.close()  # no QUIT
        served.wait_ended("the dropped connection")
        left = served.stored()
        _client(served).quit()
    if left != len(served.mailbox.messages):
        raise Broken("the Maildir after the connection dropped", f"all {len(served.mailbox.messages)} messages",
                     f"{left}", hint="only QUIT deletes: a connection that drops (a train in a tunnel) deletes "
                                     "nothing, so DELE only marks (RFC 1939 §6)")


def lock(probe: Probe) -> None:
    served = _served(probe)
    lock_hint = ("while one session is in the TRANSACTION state the maildrop is locked: a second login gets -ERR "
                 "([IN-USE]) until the first one ends (RFC 1939 §4, §8; RFC 2449 §8.1.2). fcntl.lockf locks "
                 "belong to the process, and every session of this server runs in one process: use fcntl.flock "
                 "on a file you open, or a lock file created with os.O_EXCL")
    with probe.watching(served.world, "two sessions of Betty's at once", "-ERR for the second", hint=lock_hint):
        first = _client(served)
        second = _client(served, login=False)
        second.user(served.user)
        _refused("a second session's PASS, while the first is logged in", lambda: second.pass_(served.password),
                 hint=lock_hint)
        second.close()
        served.wait_ended("the second session")
        first.quit()
        served.wait_ended("the first session")
        released = ("the lock is released when the session ends, with QUIT or without: close the lock's file in "
                    "connection_lost() too (RFC 1939 §8); the garbage collector closing it some time later is not a "
                    "release")
        for how in ("QUIT", "a dropped connection"):
            try:
                after = _client(served)
            except poplib.error_proto as error:
                raise Broken(f"logging in again, after the session holding the lock ended by {how}", "+OK",
                             repr(error.args[0]), hint=released) from None
            after.close()
            served.wait_ended(f"the session after {how}")


def _all_ok(step: str, replies: list[str]) -> None:
    """Judged reply by reply: a session that lost a command would leave the next read waiting."""
    if not replies[-1].startswith("+OK"):
        raise Broken(step, "+OK to each command", " / ".join(replies), hint="TCP delivers bytes, not lines: keep "
                     "what receive() gets in a buffer and answer each complete line (CRLF) in it")


def pipelined(probe: Probe) -> None:
    served = _served(probe)
    step = f"'US' + 'ER {served.user}' in two pieces; then PASS, STAT and NOOP in one packet"
    with probe.watching(served.world, step, "a reply to each command"):
        client = served.client()
        client.line()  # the greeting
        client.send(b"US", f"ER {served.user}\r\n".encode())
        replies = [client.line()]
        _all_ok(step, replies)
        client.send(f"PASS {served.password}\r\nSTAT\r\nNOOP\r\n".encode())
        for _ in range(3):
            replies.append(client.line())
            _all_ok(step, replies)


RULES: list[Rule] = [
    Rule("greeting", "+OK greeting; -ERR for an unknown command", "RFC 1939 §3, §4", greeting),
    Rule("login", "USER/PASS: -ERR for a wrong password, +OK for the right one; nothing before", "RFC 1939 §7",
         login),
    Rule("capa", "CAPA lists USER, TOP, UIDL and PIPELINING, before and after logging in", "RFC 2449 §5, §6",
         capa),
    Rule("states", "each command only in its state (-ERR elsewhere); commands in any case; QUIT before login",
         "RFC 1939 §3, §4, §5", states),
    Rule("stat-list", "STAT and LIST count every message (new/ and cur/) and give each size in octets",
         "RFC 1939 §5, §11", stat_list),
    Rule("list-one", "LIST n: one line for message n; -ERR for a deleted or missing one", "RFC 1939 §5", list_one),
    Rule("uidl", "UIDL: a unique id per message that never changes (flags, deletions, sessions)", "RFC 1939 §7",
         uidl),
    Rule("retr", "RETR sends the message dot-stuffed, ending with '.'", "RFC 1939 §3, §5", retr),
    Rule("top", "TOP n k: the header, the empty line, k lines of the body, dot-stuffed", "RFC 1939 §7", top),
    Rule("dele-quit", "DELE marks (numbers stay); QUIT deletes", "RFC 1939 §5, §6", dele_quit),
    Rule("rset", "RSET unmarks what DELE marked", "RFC 1939 §5", rset),
    Rule("drop-keeps", "a dropped connection deletes nothing", "RFC 1939 §6", drop_keeps),
    Rule("lock", "one session at a time per maildrop; the lock goes with the session", "RFC 1939 §4, §8", lock),
    Rule("pipelined", "commands in pieces, or several in one packet", "RFC 1939 §3, RFC 2449 §6.6", pipelined),
    Rule("stat-list-elsewhere", "Carol's maildrop too: every message counted, sizes in octets", "RFC 1939 §5, §11",
         lambda probe: stat_list(probe, CAROLS), variant_of="stat-list"),
    Rule("retr-elsewhere", "Carol's messages too (long, dotty, 8-bit): byte for byte, dot-stuffed",
         "RFC 1939 §3, §5", lambda probe: retr(probe, CAROLS), variant_of="retr"),
    Rule("top-elsewhere", "Carol's messages too: the header, the empty line, k lines", "RFC 1939 §7",
         lambda probe: top(probe, CAROLS), variant_of="top"),
]

run, check = entry_points("pop3_session", RULES)
