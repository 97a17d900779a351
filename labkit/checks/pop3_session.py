"""Checks for ``pop3_session``, the student's POP3 server (RFC 1939).

Every rule serves the student's session class on smtp.brilliant.com in a lab world, with
three messages in Betty's Maildir, and talks to it with poplib (or a plain line client
where poplib would hide the detail). ::

    from labkit import checks
    checks.pop3_session.run(MyPOP3Session)
"""

from __future__ import annotations

import poplib
from typing import Callable

from .harness import BETTY, Broken, Probe, Rule, entry_points
from .sessions import MESSAGES, Served, serve

SIZES = sorted(len(m) for m in MESSAGES)


def _served(probe: Probe) -> Served:
    return serve(probe, "pop3")


def _client(served: Served, login: bool = True) -> poplib.POP3:
    client = poplib.POP3(served.host, served.port, timeout=served.timeout)
    served.probe.later(client.close)
    if login:
        client.user(BETTY)
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
    return {int(n): int(size) for n, size in (entry.split() for entry in client.list()[1])}


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
        client.user(BETTY)
        _refused("PASS wrong-password", lambda: client.pass_("wrong-password"),
                 hint="check the password with accounts.authenticate(user, password): it returns None if wrong")
        _client(served).quit()  # and the right one works


def stat_list(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "STAT, LIST", f"{len(MESSAGES)} messages of {SIZES} octets"):
        client = _client(served)
        count, total = client.stat()
        sizes = _listing(client)
        client.quit()
    if (count, total, sorted(sizes.values())) != (len(MESSAGES), sum(SIZES), SIZES):
        raise Broken("STAT, LIST", f"+OK {len(MESSAGES)} {sum(SIZES)}; sizes {SIZES}",
                     f"+OK {count} {total}; sizes {sorted(sizes.values())}", hint="sizes are octets of the message "
                     "as RETR sends it (CRLF line endings): len() of the bytes, not of the text (RFC 1939 §5, §11)")


def retr(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "LIST, then RETR of each message", "each message, byte for byte"):
        client = _client(served)
        for number, size in sorted(_listing(client).items()):
            data = _retr(client, number)
            if data not in MESSAGES or len(data) != size:
                raise Broken(f"RETR {number}", f"one of Betty's messages, of the {size} octets LIST said",
                             repr(data[:200]), hint="a line that starts with '.' goes with one more '.', and the "
                             "message ends with a line with only '.' (RFC 1939 §3)")
        client.quit()


def dele_quit(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "DELE 1, then QUIT", "message 1 gone, the others kept"):
        client = _client(served)
        second = _retr(client, 2)
        client.dele(1)
        if _retr(client, 2) != second:
            raise Broken("RETR 2 after DELE 1", "the same message 2 as before", "another message",
                         hint="message numbers do not change during a session (RFC 1939 §5)")
        _refused("RETR 1 after DELE 1", lambda: client.retr(1), hint="a deleted message cannot be retrieved")
        count, _ = client.stat()
        if count != len(MESSAGES) - 1:
            raise Broken("STAT after DELE 1", f"+OK {len(MESSAGES) - 1} ...", f"+OK {count}",
                         hint="STAT does not count messages marked as deleted (RFC 1939 §5)")
        client.quit()
    left = served.stored()
    if left != len(MESSAGES) - 1:
        raise Broken("Betty's Maildir after QUIT", f"{len(MESSAGES) - 1} messages", f"{left}",
                     hint="QUIT enters the UPDATE state: that is when the marked messages are removed (RFC 1939 §6)")


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
    if left != len(MESSAGES):
        raise Broken("Betty's Maildir after the connection dropped", f"all {len(MESSAGES)} messages", f"{left}",
                     hint="only QUIT deletes: a connection that drops (a train in a tunnel) deletes nothing, "
                          "so DELE only marks (RFC 1939 §6)")


def _all_ok(step: str, replies: list[str]) -> None:
    """Judged reply by reply: a session that lost a command would leave the next read waiting."""
    if not replies[-1].startswith("+OK"):
        raise Broken(step, "+OK to each command", " / ".join(replies), hint="TCP delivers bytes, not lines: keep "
                     "what receive() gets in a buffer and answer each complete line (CRLF) in it")


def pipelined(probe: Probe) -> None:
    served = _served(probe)
    step = "'US' + 'ER betty@brilliant.com' in two pieces; then PASS, STAT and NOOP in one packet"
    with probe.watching(served.world, step, "a reply to each command"):
        client = served.client()
        client.line()  # the greeting
        client.send(b"US", f"ER {BETTY}\r\n".encode())
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
    Rule("stat-list", "STAT and LIST give the count and each size in octets", "RFC 1939 §5, §11", stat_list),
    Rule("retr", "RETR sends the message dot-stuffed, ending with '.'", "RFC 1939 §3, §5", retr),
    Rule("dele-quit", "DELE marks (numbers stay); QUIT deletes", "RFC 1939 §5, §6", dele_quit),
    Rule("drop-keeps", "a dropped connection deletes nothing", "RFC 1939 §6", drop_keeps),
    Rule("pipelined", "commands in pieces, or several in one packet", "RFC 1939 §3, RFC 2449 §6.6", pipelined),
]

run, check = entry_points("pop3_session", RULES)
