"""A sans-IO SMTP server session (RFC 5321 §4.1, §4.3.2; RFC 4954 AUTH).

Bytes in, bytes out, like the POP3 and IMAP sessions: :class:`SMTPServerSession` is
fed what the client sent and returns the replies; it never touches a socket. It parses
the dialogue and keeps its state machine; every decision about mail (may this client
send? does this recipient exist? queue it) is the MTA core's
(:class:`labkit.mta.core.MTA`, through :class:`labkit.mta.types.MTAPolicy`), so it answers exactly as the aiosmtpd front end does.
It is the ``smtp_session`` seam's reference::

    world.use(host="smtp.brilliant.com", smtp_session=SMTPServerSession)

The state machine (RFC 5321 §3.3, §4.1.4) is a table, :data:`COMMANDS`: for each
command, the states it may come in, the 503 it gets anywhere else, and the state a
2xx or 3xx reply moves to. AUTH's dialogue (RFC 4954 §4) has states of its own, in which
a line is the client's answer to a 334 challenge, not a command (:data:`AUTH_ANSWERS`)::

    greeted --HELO/EHLO--> ready --MAIL--> mail --RCPT--> rcpt --DATA--> data
       ^                   ^  |                           |  (RCPT)       |
       |                   |  +--AUTH--> auth: PLAIN, or LOGIN user, password (334 ...)
       |                   +------- RSET, or the "." that ends DATA -------+

Decisions worth knowing (each a classic SMTP server bug):

- Commands end at LF (a bare LF is tolerated there, as aiosmtpd and Postfix do), but
  message lines end only at CRLF, and only CRLF "." CRLF ends DATA (RFC 5321 §4.1.1.4).
  So ``\\n.\\n`` inside a message is just text: no second message can be smuggled.
- Lines that start with "." lose that dot (RFC 5321 §4.5.2, dot-unstuffing).
- Limits (RFC 5321 §4.5.3.1): a command line of 512 octets, a text line of 1000 (with
  CRLF), the message size the MTA sets. An over-long line is answered 500, a too-big
  message 552, once it has been read to its end (§4.2.5: reply after the data).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass

from ..mta.types import MTAPolicy
from ..session import BaseSession, PeerInfo
from . import replies

CRLF = b"\r\n"
MAX_COMMAND_LINE = 512  # octets, with CRLF (RFC 5321 §4.5.3.1.4)
MAX_TEXT_LINE = 1000  # octets, with CRLF (RFC 5321 §4.5.3.1.6)
EXTENSION_ALLOWANCE = 26 + 10  # SIZE= and SMTPUTF8 lengthen MAIL (RFC 1870 §3, RFC 6531 §3.4)

# Replies of the dialogue itself (the policy's replies are in labkit.smtp.replies).
CLOSING = "221 2.0.0 {host} closing connection"
EHLO_FIRST = "{host} Hello {name}"
HELO_OK = "250 {host}"
OK = "250 2.0.0 OK"
GO_AHEAD = "354 End data with <CR><LF>.<CR><LF>"
HELP = "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP (see RFC 5321)"
AUTH_CHALLENGE = "334 {}"
AUTH_OK = replies.AUTH_OK
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
AUTH_ABORTED = "501 5.7.0 Authentication aborted by the client"
AUTH_BAD_BASE64 = "501 5.5.2 Cannot decode base64 (RFC 4954 §4)"
AUTH_UNKNOWN = "504 5.5.4 Unrecognized authentication type: use PLAIN or LOGIN"
AUTH_ALREADY = "503 5.5.1 Already authenticated"
AUTH_IN_TRANSACTION = "503 5.5.1 AUTH is not allowed during a mail transaction (RFC 4954 §4)"
AUTH_DISABLED = replies.AUTH_DISABLED
UNKNOWN = '500 5.5.2 Error: command "{}" not recognized'
EMPTY = "500 5.5.2 Error: bad syntax: empty command line"
COMMAND_TOO_LONG = f"500 5.5.2 Command line too long (at most {MAX_COMMAND_LINE} octets, RFC 5321 4.5.3.1.4)"
TEXT_TOO_LONG = f"500 5.5.2 Line too long (at most {MAX_TEXT_LINE} octets, RFC 5321 4.5.3.1.6)"
TOO_MUCH_DATA = "552 5.3.4 Too much mail data (limit {} octets)"
SIZE_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size ({} octets)"
NEED_HELO = "503 5.5.1 Error: send HELO or EHLO first"
NESTED_MAIL = "503 5.5.1 Error: nested MAIL command (RSET first)"
NEED_MAIL = "503 5.5.1 Error: need MAIL command"
NEED_RCPT = replies.NEED_RCPT
SYNTAX = "501 5.5.4 Syntax: {}"
UNKNOWN_PARAMETER = "555 5.5.4 {} parameter not recognized or not implemented: {}"
EXPN_DISABLED = "502 5.5.1 EXPN not implemented"


class State(enum.Enum):
    GREETED = "greeted"  # waiting for HELO or EHLO
    READY = "ready"  # a client that said hello; no transaction
    MAIL = "mail"  # MAIL accepted: RCPT next
    RCPT = "rcpt"  # a recipient accepted: more RCPT, or DATA
    DATA = "data"  # reading the message
    AUTH_PLAIN = "auth: PLAIN"  # AUTH PLAIN sent 334: the next line is the base64 response (RFC 4616)
    AUTH_USER = "auth: LOGIN user"  # AUTH LOGIN sent 334 Username: the next line is the user name
    AUTH_PASSWORD = "auth: LOGIN password"  # then 334 Password: the next line is the password
    CLOSED = "closed"  # QUIT answered


COMMAND_STATES = frozenset({State.GREETED, State.READY, State.MAIL, State.RCPT})  # where a line is a command
HELLOED = frozenset({State.READY, State.MAIL, State.RCPT})
TRANSACTION = frozenset({State.MAIL, State.RCPT})


@dataclass(frozen=True)
class Command:
    """One SMTP command: where it may come, what it gets elsewhere, where it leads."""

    handler: str  # method name: gets the argument (or what ``parse`` made of it), returns the reply
    syntax: str  # for 501 replies
    states: frozenset[State] = COMMAND_STATES  # where it may come (RFC 5321 §4.1.4)
    refused: tuple[tuple[frozenset[State], str], ...] = ()  # elsewhere: the 503 reply, by state
    then: State | None = None  # the state a 2xx or 3xx reply moves to (from ``states``)
    parse: str = ""  # method name: the argument's syntax (SyntaxProblem: 501), checked before the handler
    syntax_first: frozenset[State] = frozenset()  # states where a syntax error is said before the 503 (as aiosmtpd)

    def refusal(self, state: State) -> str:
        """The 503 for this command in ``state``, or "" where it may come."""
        if state in self.states:
            return ""
        return next((reply for states, reply in self.refused if state in states), NEED_HELO)


COMMANDS: dict[str, Command] = {
    "HELO": Command("_helo", "HELO hostname", then=State.READY),
    "EHLO": Command("_ehlo", "EHLO hostname", then=State.READY),
    "MAIL": Command("_mail", "MAIL FROM:<address> [parameters]", frozenset({State.READY}),
                    ((TRANSACTION, NESTED_MAIL),), then=State.MAIL, parse="_mail_path", syntax_first=TRANSACTION),
    "RCPT": Command("_rcpt", "RCPT TO:<address> [parameters]", TRANSACTION, ((frozenset({State.READY}), NEED_MAIL),),
                    then=State.RCPT, parse="_rcpt_path"),
    "DATA": Command("_data", "DATA", frozenset({State.RCPT}), ((frozenset({State.READY, State.MAIL}), NEED_RCPT),),
                    then=State.DATA),
    "RSET": Command("_rset", "RSET"),  # to READY once said hello; greeted stays greeted
    "NOOP": Command("_noop", "NOOP [text]"),
    "QUIT": Command("_quit", "QUIT", then=State.CLOSED),
    "VRFY": Command("_vrfy", "VRFY <address>"),
    "HELP": Command("_help", "HELP [command]"),
    "EXPN": Command("_expn", "EXPN list"),
    # AUTH only outside a transaction (RFC 4954 §4), said after "not enabled here" and "already":
    # its handler, then AUTH_PLAIN or AUTH_USER by mechanism (AUTH_EDGES)
    "AUTH": Command("_auth", "AUTH mechanism [initial-response]", HELLOED),
}

# In AUTH's states a line is the client's answer to the 334 challenge (RFC 4954 §4):
# the method that takes it, and where each outcome leads (the diagram's edges).
AUTH_ANSWERS: dict[State, str] = {
    State.AUTH_PLAIN: "_plain",
    State.AUTH_USER: "_login_user",
    State.AUTH_PASSWORD: "_login_password",
}
AUTH_EDGES: tuple[tuple[State, str, State], ...] = (
    (State.READY, "AUTH PLAIN: 334", State.AUTH_PLAIN),
    (State.READY, "AUTH LOGIN: 334", State.AUTH_USER),
    (State.AUTH_USER, "user: 334", State.AUTH_PASSWORD),
    (State.AUTH_PLAIN, "235 / 535", State.READY),
    (State.AUTH_PASSWORD, "235 / 535", State.READY),
)
DATA_END = (State.DATA, "'.': 250 queued", State.READY)  # the line that ends the message

# RFC 5321 §4.1.2: "FROM:" / "TO:", the path in angle brackets, then parameters.
_PATH = re.compile(r"(?i)(FROM|TO):\s*<([^<>]*)>(?:\s+(.*))?")


class SyntaxProblem(Exception):
    """A command's arguments do not parse: answered 501."""


class SMTPServerSession(BaseSession):
    """One SMTP connection, server side; ``mta`` decides, this class parses."""

    timeout = 300.0  # RFC 5321 §4.5.3.2.7: at least 5 minutes
    reply_delay = 0.0  # seconds the adapter holds back the reply (a failed AUTH's)

    def __init__(self, peer: PeerInfo, mta: MTAPolicy, *, hostname: str) -> None:
        self.peer, self.mta, self.hostname = peer, mta, hostname
        self.closed = False
        self.state = State.GREETED
        self.txn = mta.transaction(peer)
        self._buffer = b""
        self._too_long = False  # inside an over-long line: answer 500 when it ends
        self._message: list[bytes] = []
        self._size = 0
        self._data_problem = ""  # a reply owed once DATA ends (line too long, too big)
        self._auth_user = b""  # AUTH LOGIN: the user name, until the password comes

    # -- the Session interface -----------------------------------------------------
    def start(self) -> bytes:
        return self._reply(self.mta.greeting())

    def receive(self, data: bytes) -> bytes:
        self._buffer += data
        out: list[bytes] = []
        while not self.closed:
            if self.state is State.DATA:
                line = self._take_line(b"\r\n", MAX_TEXT_LINE)
                if line is None:
                    break
                reply = self._data_line(line)
            else:
                line = self._take_line(b"\n", MAX_TEXT_LINE)  # the exact command limit: in _line
                if line is None:
                    break
                reply = self._line(line)
            if reply:
                out.append(self._reply(reply))
        return b"".join(out)

    def timed_out(self) -> bytes:
        self.closed = True
        return self._reply(f"421 4.4.2 {self.hostname} Error: timeout exceeded")

    # -- lines -----------------------------------------------------------------------
    def _take_line(self, end: bytes, limit: int) -> bytes | None:
        """The next whole line (with its ending), or None until one has arrived. An
        over-long line is dropped as it arrives (bounded memory) and comes back as b""."""
        at = self._buffer.find(end)
        if at < 0:
            if len(self._buffer) > limit:  # keep a CR that may start the CRLF
                self._too_long, self._buffer = True, self._buffer[-1:] if end == CRLF else b""
            return None
        line, self._buffer = self._buffer[: at + len(end)], self._buffer[at + len(end):]
        if self._too_long or len(line) > limit:
            self._too_long = False
            return b""
        return line

    def _line(self, raw: bytes) -> str:
        """One command line, or an AUTH response: the table decides where it may come."""
        if raw == b"":
            return COMMAND_TOO_LONG
        text = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        if self.state in AUTH_ANSWERS:
            answer, self.state = AUTH_ANSWERS[self.state], State.READY  # any answer ends this step
            return getattr(self, answer)(text.strip())
        name, _, argument = text.strip().partition(" ")
        if not name:
            return EMPTY
        command = COMMANDS.get(name.upper())
        if command is None:
            return UNKNOWN.format(name.upper())
        if len(raw.rstrip(b"\r\n")) > MAX_COMMAND_LINE + (EXTENSION_ALLOWANCE if self.txn.extended else 0):
            return COMMAND_TOO_LONG
        refusal = command.refusal(self.state)
        if refusal and self.state not in command.syntax_first:
            return refusal
        try:
            value = getattr(self, command.parse)(argument.strip()) if command.parse else argument.strip()
            if refusal:
                return refusal
            reply = getattr(self, command.handler)(value)
        except SyntaxProblem:
            return SYNTAX.format(command.syntax)
        if command.then is not None and reply[:1] in ("2", "3"):
            self.state = command.then
        return reply

    @staticmethod
    def _reply(text: str) -> bytes:
        return text.encode("utf-8", "surrogateescape") + CRLF

    # -- hello -------------------------------------------------------------------------
    def _helo(self, name: str) -> str:
        return self._hello(name, extended=False) or HELO_OK.format(host=self.hostname)

    def _ehlo(self, name: str) -> str:
        refused = self._hello(name, extended=True)
        if refused:
            return refused
        lines = [EHLO_FIRST.format(host=self.hostname, name=name), *self.mta.extensions()]
        # RFC 5321 §4.2.1: "250-" on every line but the last, which has "250 "
        return "\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines))

    def _hello(self, name: str, *, extended: bool) -> str | None:
        """The MTA's reply if it refuses the name; else the client has said hello."""
        if not name:
            raise SyntaxProblem
        return self.mta.hello(self.txn, name, extended=extended)

    # -- the transaction -------------------------------------------------------------
    def _mail_path(self, argument: str) -> tuple[str, list[str]]:
        return self._path("FROM", argument)

    def _rcpt_path(self, argument: str) -> tuple[str, list[str]]:
        return self._path("TO", argument)

    def _mail(self, path: tuple[str, list[str]]) -> str:
        address, params = path
        return self._mail_parameters(params) or self.mta.mail(self.txn, address, params)

    def _mail_parameters(self, params: list[str]) -> str:
        """SIZE, BODY and SMTPUTF8 are the ones we offer (RFC 1870, 6152, 6531)."""
        for param in params:
            keyword, _, value = param.upper().partition("=")
            if keyword == "SIZE":
                if not value.isdigit():
                    raise SyntaxProblem
                if int(value) > self.mta.max_message_size:
                    return SIZE_TOO_BIG.format(self.mta.max_message_size)
            elif keyword == "BODY":
                if value not in ("7BIT", "8BITMIME"):
                    raise SyntaxProblem
            elif keyword != "SMTPUTF8" or value:
                return UNKNOWN_PARAMETER.format("MAIL FROM", param)
        return ""

    def _rcpt(self, path: tuple[str, list[str]]) -> str:
        address, params = path
        if params:
            return UNKNOWN_PARAMETER.format("RCPT TO", " ".join(params))
        return self.mta.rcpt(self.txn, address)

    def _path(self, keyword: str, argument: str) -> tuple[str, list[str]]:
        """``FROM:<address> params`` -> (address, params); parameters only after EHLO."""
        match = _PATH.fullmatch(argument)
        if match is None or match.group(1).upper() != keyword:
            raise SyntaxProblem
        params = (match.group(3) or "").split()
        if params and not self.txn.extended:
            raise SyntaxProblem
        if not match.group(2) and keyword == "TO":
            raise SyntaxProblem
        return match.group(2), params

    def _data(self, argument: str) -> str:
        if argument:
            raise SyntaxProblem
        self._message, self._size, self._data_problem = [], 0, ""
        return GO_AHEAD

    def _data_line(self, line: bytes) -> str:
        """One line of the message; the lone "." ends it (RFC 5321 §4.1.1.4)."""
        if line == b".\r\n":
            self.state = DATA_END[2]
            message, self._message = b"".join(self._message), []
            if self._data_problem:
                self.txn.reset()
                return self._data_problem
            return self.mta.data(self.txn, message)
        if line == b"":
            self._data_problem = self._data_problem or TEXT_TOO_LONG
            return ""
        self._size += len(line)
        limit = self.mta.max_message_size
        if self._size > limit:
            self._data_problem, self._message = self._data_problem or TOO_MUCH_DATA.format(limit), []
        elif not self._data_problem:
            self._message.append(line[1:] if line.startswith(b".") else line)  # RFC 5321 §4.5.2
        return ""

    def _rset(self, argument: str) -> str:
        if argument:
            raise SyntaxProblem
        self.txn.reset()
        if self.state in HELLOED:
            self.state = State.READY
        return OK

    # -- the rest ----------------------------------------------------------------------
    def _noop(self, argument: str) -> str:
        return OK

    def _quit(self, argument: str) -> str:
        if argument:
            raise SyntaxProblem
        self.closed = True  # the table moves to CLOSED
        return CLOSING.format(host=self.hostname)

    def _vrfy(self, argument: str) -> str:
        if not argument:
            raise SyntaxProblem
        return self.mta.vrfy(argument.strip("<>"))

    def _help(self, argument: str) -> str:
        return HELP

    def _expn(self, argument: str) -> str:
        return EXPN_DISABLED

    # -- AUTH (RFC 4954), on the submission service ---------------------------------------
    def _auth(self, argument: str) -> str:
        if not self.mta.auth_enabled:
            return AUTH_DISABLED
        if self.txn.login:
            return AUTH_ALREADY
        if self.state in TRANSACTION:
            return AUTH_IN_TRANSACTION
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if not mechanism or len(initial.split()) > 1:
            raise SyntaxProblem
        if mechanism == "PLAIN":
            if initial:
                return self._plain(initial)
            self.state = State.AUTH_PLAIN
            return AUTH_CHALLENGE.format("")
        if mechanism == "LOGIN":  # draft-murchison-sasl-login: user name, then password
            self.state = State.AUTH_USER
            return AUTH_CHALLENGE.format(base64.b64encode(b"Username:").decode())
        return AUTH_UNKNOWN

    def _plain(self, response: str) -> str:
        """RFC 4616: authzid NUL authcid NUL password, in base64."""
        decoded = self._decode(response)
        if not isinstance(decoded, bytes):
            return decoded
        parts = decoded.split(b"\0")
        if len(parts) != 3:
            return AUTH_FAILED
        return self._logged_in(parts[1], parts[2])

    def _login_user(self, response: str) -> str:
        user = self._decode(response)
        if not isinstance(user, bytes):
            return user
        self._auth_user, self.state = user, State.AUTH_PASSWORD
        return AUTH_CHALLENGE.format(base64.b64encode(b"Password:").decode())

    def _login_password(self, response: str) -> str:
        password, user, self._auth_user = self._decode(response), self._auth_user, b""
        return password if not isinstance(password, bytes) else self._logged_in(user, password)

    @staticmethod
    def _decode(response: str) -> bytes | str:
        """A client's base64 answer, or the reply if it cancelled ("*") or garbled it."""
        if response == "*":
            return AUTH_ABORTED
        try:
            return base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            return AUTH_BAD_BASE64

    def _logged_in(self, user: bytes, password: bytes) -> str:
        address, delay = self.mta.login(self.txn, user.decode("utf-8", "replace"), password.decode("utf-8", "replace"))
        if address is None:
            self.reply_delay += delay  # the 535 waits (labkit.accounts.LoginPenalty)
            return AUTH_FAILED
        self.txn.login = address
        return AUTH_OK
