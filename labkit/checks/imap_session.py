"""Checks for ``imap_session``, the student's IMAP server (RFC 3501), its basic subset.

Every rule serves the student's session class on smtp.brilliant.com in a lab world, with
three messages in Betty's INBOX, and talks to it with imaplib, or with a plain line
client where imaplib is lenient (LOGOUT, tags, BAD). ::

    from labkit import checks
    checks.imap_session.run(MyIMAPSession)
"""

from __future__ import annotations

import imaplib

from .harness import BETTY, Broken, Probe, Rule, entry_points
from .peers import LineClient
from .sessions import MESSAGES, Served, serve

LOGOUT_CLOSE = 1.0  # seconds for the server to hang up after its LOGOUT reply


def _served(probe: Probe) -> Served:
    return serve(probe, "imap")


def _client(served: Served, login: bool = True) -> imaplib.IMAP4:
    client = imaplib.IMAP4(served.host, served.port, timeout=served.timeout)
    served.probe.later(_close, client)
    if login:
        client.login(BETTY, served.password)
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
        _, reply = _reply(raw, "a2", f"LOGIN {BETTY} wrong-password")
        _expect("a2 LOGIN betty@brilliant.com wrong-password", reply, "a2", "NO",
                hint="check the password with accounts.authenticate(user, password); NO says it failed")
        _client(served).logout()  # imaplib quotes the password: LOGIN betty@brilliant.com "betty-password"


def select(probe: Probe) -> None:
    served = _served(probe)
    with probe.watching(served.world, "LOGIN, SELECT INBOX", f"* {len(MESSAGES)} EXISTS, then OK"):
        client = _client(served)
        status, data = client.select("INBOX")
    if data != [str(len(MESSAGES)).encode()]:
        raise Broken("SELECT INBOX", f"* {len(MESSAGES)} EXISTS", f"{status} {data!r}",
                     hint="SELECT says how many messages the mailbox has: '* 3 EXISTS' (RFC 3501 §7.3.1)")


LITERAL = ("the literal's {size} counts the octets that follow (RFC 3501 §4.3): len() of the bytes, not of the "
           "text; then ')' and CRLF end the FETCH response")


def fetch(probe: Probe) -> None:
    served = _served(probe)
    expected = "* n FETCH (BODY[] {size}, exactly size octets of the message, then ')')"
    with probe.watching(served.world, "LOGIN, SELECT, FETCH n (BODY[])", expected, hint=LITERAL):
        client = _client(served)
        client.select("INBOX")
        for n in range(1, len(MESSAGES) + 1):
            status, data = client.fetch(str(n), "(BODY[])")
            body = data[0][1] if data and isinstance(data[0], tuple) else None
            if status != "OK" or body not in MESSAGES:
                raise Broken(f"FETCH {n} (BODY[])", expected, f"{status} {data!r}"[:300], hint=LITERAL)


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
    Rule("select", "SELECT INBOX: * 3 EXISTS", "RFC 3501 §6.3.1, §7.3.1", select),
    Rule("fetch", "FETCH n BODY[]: the message as a literal of the right size", "RFC 3501 §6.4.5, §4.3", fetch),
    Rule("logout", "LOGOUT: * BYE, then the tagged OK, then it hangs up", "RFC 3501 §6.1.3", logout),
    Rule("bad-command", "garbage gets BAD, and the session goes on", "RFC 3501 §7.1.5", bad_command),
    Rule("tags", "each tagged reply carries its command's tag, in pieces or pipelined", "RFC 3501 §2.2.1",
         tags),
]

run, check = entry_points("imap_session", RULES)
