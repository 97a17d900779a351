"""The SMTP client's sans-IO core: replies, the reply parser, commands, and the state
machine of one mail transaction (RFC 5321 §3.3).

Nothing here touches a socket. :class:`ClientTransaction` is fed the bytes the server
sent (:meth:`~ClientTransaction.receive_data`) and hands back the bytes to send
(:meth:`~ClientTransaction.data_to_send`); :mod:`labkit.smtp.send` is the small
blocking driver that moves those bytes over a real socket::

    txn = ClientTransaction(helo="me.example", mail_from="a@x", rcpt_to=["b@y"], message=msg)
    while not txn.finished:
        sock.sendall(txn.data_to_send())
        txn.receive_data(sock.recv(65536))
    result = txn.result()          # SendResult, or raises SMTPError
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The types of the send_mail contract live in .reply (student-facing); imported here for the core's use.
from .reply import Reply, SendResult, SMTPError, SMTPPermanentError, SMTPTransientError, Stage

# -- reply codes (RFC 5321 §4.2.2-§4.2.3) ---------------------------------------------
SERVICE_READY = 220
AUTH_SUCCEEDED = 235  # RFC 4954 §6
OK = 250
AUTH_CONTINUE = 334  # RFC 4954 §4
START_MAIL_INPUT = 354
SERVICE_NOT_AVAILABLE = 421
SYNTAX_ERROR = 500
NOT_IMPLEMENTED = 502

#: Longest reply line we buffer before calling the server broken (RFC 5321 §4.5.3.1.5
#: allows 512 octets; we are lenient, but bounded).
MAX_REPLY_LINE = 8192
#: Most lines in one multi-line reply (an EHLO reply has a dozen).
MAX_REPLY_LINES = 1000
#: Message lines shown in the transcript before it summarises the rest.
TRANSCRIPT_DATA_LINES = 200

Listener = Callable[[str, str], None]
"""Called with ("C" or "S", line) for every protocol line, as it happens."""


# RFC 5321 §4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
#                             Reply-code [ SP textstring ] CRLF
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?")


class MalformedReply(ValueError):
    """The server sent something that is not an SMTP reply line (RFC 5321 §4.2)."""


class ReplyParser:
    """Turns the server's byte stream into :class:`Reply` objects, however it is split.

    Handles multi-line replies (RFC 5321 §4.2.1), including the odd but legal forms: a
    code-only last line (``250``), an empty continuation (``250-``). A bare LF is
    accepted as a line end (robustness); the CR is stripped.
    """

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.on_line = on_line  # sees every raw line as it arrives, even a malformed one
        self._buffer = b""
        self._code: int | None = None
        self._lines: list[str] = []

    @property
    def mid_reply(self) -> bool:
        """True if part of a reply has arrived but not its last line."""
        return bool(self._buffer or self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        """Feed bytes; returns the replies completed by them.

        Raises :class:`MalformedReply` naming the offending line.
        """
        self._buffer += data
        done: list[Reply] = []
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            raw = raw.removesuffix(b"\r")
            if self.on_line is not None:
                self.on_line(raw.decode("utf-8", "replace"))
            reply = self._line(raw)
            if reply is not None:
                done.append(reply)
        if len(self._buffer) > MAX_REPLY_LINE:
            raise MalformedReply(f"reply line longer than {MAX_REPLY_LINE} octets")
        return done

    def _line(self, raw: bytes) -> Reply | None:
        match = _REPLY_LINE.fullmatch(raw)
        if match is None:
            raise MalformedReply(f"malformed reply line {raw[:80]!r}: expected a 3-digit code, then ' ' or '-'")
        code, separator, text = int(match.group(1)), match.group(2), match.group(3) or b""
        if self._code is not None and code != self._code:
            # RFC 5321 §4.2.1: every line of a multi-line reply has the same code.
            raise MalformedReply(f"reply line {raw[:80]!r} changes the code of a multi-line {self._code} reply")
        if len(self._lines) >= MAX_REPLY_LINES:
            raise MalformedReply(f"reply longer than {MAX_REPLY_LINES} lines")
        self._code = code
        self._lines.append(text.decode("utf-8", "replace"))
        if separator == b"-":
            return None
        reply = Reply(code, tuple(self._lines))
        self._code, self._lines = None, []
        return reply


def error_for(problem: str, stage: Stage, reply: Reply | None = None) -> SMTPError:
    """The right error class for a failed reply: permanent for 5xx, otherwise transient
    (4xx, or a code that makes no sense here: a broken server, so try later)."""
    cls = SMTPPermanentError if reply is not None and reply.permanent else SMTPTransientError
    return cls(problem, stage=stage, reply=reply)


# -- commands and message data --------------------------------------------------------
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def has_control(address: str) -> bool:
    """Control characters (NUL, CR, LF, DEL, …) are never part of an address
    (RFC 5321 §4.1.2: atoms and quoted strings are printable characters)."""
    return _CONTROL.search(address) is not None  # one C call: asked of every MAIL, RCPT and HELO


def _check_address(address: str) -> str:
    if any(c in address for c in "\r\n\0<>") or address != address.strip():
        raise ValueError(f"invalid e-mail address {address!r}")
    return address


def mail_command(address: str, params: Sequence[str] = ()) -> str:
    """``MAIL FROM:<address> params``; ``""`` gives the null path ``<>`` (RFC 5321 §4.5.5)."""
    return " ".join([f"MAIL FROM:<{_check_address(address)}>", *params])


def rcpt_command(address: str) -> str:
    if not address:
        raise ValueError("empty recipient address")
    return f"RCPT TO:<{_check_address(address)}>"


_LINE_END = re.compile(rb"\r\n|\r|\n")


def normalize_lines(message: bytes) -> bytes:
    """Every line ending as CRLF, including a final one (RFC 5321 §2.3.8: bare CR and
    LF must not be sent)."""
    message = _LINE_END.sub(b"\r\n", message)
    return message if not message or message.endswith(b"\r\n") else message + b"\r\n"


def dot_stuff(message: bytes) -> bytes:
    """The DATA payload: normalised lines, each leading "." doubled (RFC 5321 §4.5.2),
    then the ``.`` line that ends the data."""
    message = normalize_lines(message)
    stuffed = re.sub(rb"(?m)^\.", b"..", message)
    return stuffed + b".\r\n"


SECRET = "********"
"""What the transcript shows in place of a password."""


AUTH_MECHANISMS = ("PLAIN", "LOGIN")
"""The AUTH mechanisms :func:`auth_steps` speaks, in order of preference."""


def choose_auth(extensions: dict[str, str]) -> str | None:
    """The mechanism to use among those EHLO's AUTH offers (RFC 4954 §3), or None."""
    offered = extensions.get("AUTH", "").upper().split()
    return next((m for m in AUTH_MECHANISMS if m in offered), None)


def auth_steps(mechanism: str, user: str, password: str) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """The AUTH command and the responses to send to each 334 challenge (RFC 4954 §4),
    each a (line, as shown in the transcript) pair. Passwords are never shown."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode("ascii")

    if mechanism == "PLAIN":  # RFC 4616 §2: authzid NUL authcid NUL passwd, as initial response
        return ("AUTH PLAIN " + b64(f"\0{user}\0{password}"), f"AUTH PLAIN {SECRET}"), []
    if mechanism == "LOGIN":  # draft-murchison-sasl-login: username, then password
        return ("AUTH LOGIN", "AUTH LOGIN"), [(b64(user), b64(user)), (b64(password), SECRET)]
    raise ValueError(f"unsupported AUTH mechanism {mechanism!r}")


def parse_extensions(ehlo: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) -> their parameters (RFC 5321 §4.1.1.1)."""
    extensions: dict[str, str] = {}
    for line in ehlo.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions


# -- the transaction state machine ----------------------------------------------------
class State(enum.Enum):
    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    AUTH = "AUTH"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"  # sent DATA, awaiting 354
    BODY = "body"  # sent the message, awaiting the reply after "."
    RSET = "RSET"
    QUIT = "QUIT"
    DONE = "done"


class ClientTransaction:
    """One SMTP transaction, lock-step (no PIPELINING), from greeting to QUIT.

    The caller moves bytes: :meth:`data_to_send` / :meth:`receive_data` (``b""`` means
    the server closed the connection), and reports :meth:`timed_out` and
    :meth:`connection_lost`. When :attr:`finished`, :meth:`result` returns the
    :class:`SendResult` or raises the :class:`SMTPError` that ended the transaction.
    QUIT is always sent at the end; whatever happens after it is ignored.
    """

    def __init__(
        self,
        *,
        helo: str,
        mail_from: str,
        rcpt_to: Sequence[str],
        message: bytes,
        auth: tuple[str, str] | None = None,
        listener: Listener | None = None,
    ) -> None:
        if isinstance(rcpt_to, str):
            raise TypeError("rcpt_to must be a sequence of addresses, not one string")
        if not rcpt_to:
            raise ValueError("no recipients")
        self.helo, self.auth, self.listener = helo, auth, listener
        mail_command(mail_from)  # these raise ValueError for what cannot go on the wire
        for recipient in rcpt_to:
            rcpt_command(recipient)
        self.mail_from, self.rcpt_to = mail_from, list(rcpt_to)
        self.message = normalize_lines(message)
        self.extensions: dict[str, str] = {}
        self.transcript: list[tuple[str, str]] = []
        self.accepted: dict[str, Reply] = {}
        self.refused: dict[str, Reply] = {}
        self.data_reply: Reply | None = None
        self.error: SMTPError | None = None
        self.state = State.GREETING
        self._parser = ReplyParser(on_line=lambda line: self._log("S", line))
        self._out: list[bytes] = []
        self._rcpt_index = 0
        self._auth_responses: list[tuple[str, str]] = []

    # -- the IO side ------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """No more replies to wait for (there may still be a last QUIT to send)."""
        return self.state is State.DONE

    def data_to_send(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def receive_data(self, data: bytes) -> None:
        if self.finished:
            return
        if not data:
            where = "in the middle of a reply" if self._parser.mid_reply else "while waiting for a reply"
            self.connection_lost(f"server closed the connection {where}")
            return
        try:
            replies = self._parser.feed(data)
        except MalformedReply as exc:
            self._abort(str(exc))
            return
        for i, reply in enumerate(replies):
            if i > 0:
                # Lock-step: one reply per command. Another one now would be taken as
                # the answer to our next command (a recipient wrongly "accepted").
                self._abort(f"server sent {reply.one_line()!r} before the command it answers")
                return
            self._on_reply(reply)
            if self.finished:
                return

    def timed_out(self, seconds: float) -> None:
        """No reply came within ``seconds``: give up (with a last QUIT)."""
        self._abort(f"no reply from the server within {seconds:g}s")

    def connection_lost(self, reason: str) -> None:
        """The connection is gone: nothing more can be sent or received."""
        self._out = []
        if not self._closing:
            self._set_error(SMTPTransientError(reason, stage=self._stage()))
        self.state = State.DONE

    def result(self) -> SendResult:
        if not self.finished:
            raise RuntimeError("the SMTP transaction has not finished")
        if self.error is not None:
            raise self.error
        return SendResult(dict(self.accepted), dict(self.refused), self.data_reply, list(self.transcript))

    # -- the protocol side ------------------------------------------------------------
    def _on_reply(self, reply: Reply) -> None:
        if reply.code == SERVICE_NOT_AVAILABLE and self.state not in (State.QUIT, State.RSET):
            # RFC 5321 §3.8: 421 may come at any time; the server then closes.
            self._fail("server is shutting down the connection", reply)
            return
        TRANSITIONS[self.state].on_reply(self, reply)

    def _on_greeting(self, reply: Reply) -> None:
        # RFC 5321 §4.3.2 / §3.1: 220 to go on; 554 means "no SMTP service here" (and
        # the client should still QUIT); 421 means "busy, try later".
        if reply.code != SERVICE_READY:
            self._fail(f"server did not greet with {SERVICE_READY}", reply)
            return
        self._send(f"EHLO {self.helo}", State.EHLO)

    def _on_ehlo(self, reply: Reply) -> None:
        if reply.code == OK:
            self.extensions = parse_extensions(reply)
            self._after_hello()
        elif reply.code in (SYNTAX_ERROR, NOT_IMPLEMENTED):
            # RFC 5321 §3.2: an old server that does not know EHLO; fall back to HELO.
            self._send(f"HELO {self.helo}", State.HELO)
        else:
            self._fail("EHLO refused", reply)

    def _on_helo(self, reply: Reply) -> None:
        if reply.code == OK:
            self._after_hello()
        else:
            self._fail("HELO refused", reply)

    def _after_hello(self) -> None:
        if self._needs_smtputf8 and "SMTPUTF8" not in self.extensions:
            # RFC 6531 §3.4: non-ASCII addresses only to a server that offers SMTPUTF8.
            self._fail(
                "an address is not ASCII and the server does not offer SMTPUTF8", permanent=True, stage="MAIL"
            )
            return
        limit = self.extensions.get("SIZE", "")
        if limit.isdigit() and 0 < int(limit) < len(self.message):
            # RFC 1870 §6: do not send a message the server has declared too big.
            self._fail(
                f"message of {len(self.message)} octets exceeds the server's SIZE limit of {limit}",
                permanent=True,
                stage="MAIL",
            )
            return
        if self.auth is None:
            self._send_mail()
            return
        mechanism = choose_auth(self.extensions)
        if mechanism is None:
            self._fail("server offers no AUTH PLAIN or LOGIN", permanent=True, stage="AUTH")
            return
        (command, shown), self._auth_responses = auth_steps(mechanism, *self.auth)
        self._send(command, State.AUTH, shown=shown)

    def _on_auth(self, reply: Reply) -> None:
        if reply.code == AUTH_CONTINUE and self._auth_responses:
            response, shown = self._auth_responses.pop(0)
            self._send(response, State.AUTH, shown=shown)
        elif reply.code == AUTH_SUCCEEDED:
            self._send_mail()
        else:
            self._fail("authentication failed", reply)

    def _send_mail(self) -> None:
        params = []
        if "SIZE" in self.extensions:
            params.append(f"SIZE={len(self.message)}")  # RFC 1870 §3
        if not self.message.isascii() and "8BITMIME" in self.extensions:
            params.append("BODY=8BITMIME")  # RFC 6152 §3
        # (RFC 6152 would have us downgrade 8-bit mail for a server without 8BITMIME;
        # like most MTAs today, we send it as it is.)
        if self._needs_smtputf8:
            params.append("SMTPUTF8")  # RFC 6531 §3.4
        self._send(mail_command(self.mail_from, params), State.MAIL)

    def _on_mail(self, reply: Reply) -> None:
        if reply.code // 100 != 2:
            self._fail("sender refused", reply)
            return
        self._send(rcpt_command(self.rcpt_to[0]), State.RCPT)

    def _on_rcpt(self, reply: Reply) -> None:
        recipient = self.rcpt_to[self._rcpt_index]
        if reply.code // 100 == 2:  # 250, or 251 "will forward"
            self.accepted[recipient] = reply
        else:
            self.refused[recipient] = reply
        self._rcpt_index += 1
        if self._rcpt_index < len(self.rcpt_to):
            self._send(rcpt_command(self.rcpt_to[self._rcpt_index]), State.RCPT)
        elif self.accepted:
            self._send("DATA", State.DATA)
        else:
            self._send("RSET", State.RSET)  # nobody to send to: abandon the transaction

    def _on_data(self, reply: Reply) -> None:
        if reply.code != START_MAIL_INPUT:
            self._fail("DATA refused", reply)
            return
        payload = dot_stuff(self.message)
        self._out.append(payload)
        lines = payload.decode("utf-8", "replace").split("\r\n")[:-1]
        for line in lines[:TRANSCRIPT_DATA_LINES]:
            self._log("C", line)
        if len(lines) > TRANSCRIPT_DATA_LINES:
            self._log("C", f"... ({len(lines) - TRANSCRIPT_DATA_LINES} more lines)")
        self.state = State.BODY

    def _on_body(self, reply: Reply) -> None:
        self.data_reply = reply
        if reply.code // 100 != 2:
            self._fail("message refused after DATA", reply)
            return
        self._quit()

    def _on_rset(self, reply: Reply) -> None:
        self._quit()

    def _on_quit(self, reply: Reply) -> None:
        self.state = State.DONE

    # -- helpers ----------------------------------------------------------------------
    @property
    def _needs_smtputf8(self) -> bool:
        return not all(address.isascii() for address in [self.mail_from, *self.rcpt_to])

    @property
    def _closing(self) -> bool:
        """The outcome is settled; what the server does now does not matter."""
        return self.state in (State.RSET, State.QUIT, State.DONE)

    def _stage(self) -> Stage:
        return {
            State.GREETING: "greeting",
            State.HELO: "EHLO",
            State.BODY: "DATA",
        }.get(self.state, self.state.value)

    def _log(self, direction: str, line: str) -> None:
        self.transcript.append((direction, line))
        if self.listener is not None:
            self.listener(direction, line)

    def _send(self, command: str, state: State, *, shown: str | None = None) -> None:
        """Queue one command line; ``shown`` replaces it in the transcript (secrets)."""
        self._log("C", shown if shown is not None else command)
        self._out.append(command.encode("utf-8") + b"\r\n")
        self.state = state

    def _quit(self) -> None:
        self._send("QUIT", State.QUIT)

    def _set_error(self, error: SMTPError) -> None:
        if self.error is None:
            self.error = error

    def _fail(
        self, problem: str, reply: Reply | None = None, *, permanent: bool = False, stage: Stage | None = None
    ) -> None:
        """End the transaction with an error; QUIT politely and wait for its reply."""
        stage = stage or self._stage()
        if permanent:
            self._set_error(SMTPPermanentError(problem, stage=stage, reply=reply))
        else:
            self._set_error(error_for(problem, stage, reply))
        self._quit()

    def _abort(self, problem: str) -> None:
        """A broken exchange (timeout, garbage): send a last QUIT, expect nothing more."""
        if self.finished:
            return
        if not self._closing:
            self._set_error(SMTPTransientError(problem, stage=self._stage()))
        if self.state is not State.QUIT:
            self._quit()
        self.state = State.DONE


@dataclass(frozen=True)
class Transition:
    """What the client does with a reply in one state: the method that reads it, and the
    states it may lead to, each with the reply (or condition) that leads there."""

    on_reply: Callable[[ClientTransaction, Reply], None]
    leads_to: tuple[tuple[State, str], ...]


# The client's state machine (RFC 5321 §3.3, §4.1.4, §3.2; RFC 4954 §4): in each state the
# client waits for one reply; what it sends next is the state it moves to. A 421 in any
# state ends it (QUIT, §3.8); so does a broken connection or a timeout (DONE).
TRANSITIONS: dict[State, Transition] = {
    State.GREETING: Transition(ClientTransaction._on_greeting, ((State.EHLO, "220"), (State.QUIT, "else"))),
    State.EHLO: Transition(ClientTransaction._on_ehlo, ((State.MAIL, "250"), (State.AUTH, "250, with auth"),
                                                         (State.HELO, "500, 502"), (State.QUIT, "else"))),
    State.HELO: Transition(ClientTransaction._on_helo, ((State.MAIL, "250"), (State.AUTH, "250, with auth"),
                                                         (State.QUIT, "else"))),
    State.AUTH: Transition(ClientTransaction._on_auth, ((State.AUTH, "334"), (State.MAIL, "235"),
                                                         (State.QUIT, "else"))),
    State.MAIL: Transition(ClientTransaction._on_mail, ((State.RCPT, "2xx"), (State.QUIT, "else"))),
    State.RCPT: Transition(ClientTransaction._on_rcpt, ((State.RCPT, "next recipient"),
                                                         (State.DATA, "last; one accepted"),
                                                         (State.RSET, "last; none accepted"))),
    State.DATA: Transition(ClientTransaction._on_data, ((State.BODY, "354: the message, '.'"), (State.QUIT, "else"))),
    State.BODY: Transition(ClientTransaction._on_body, ((State.QUIT, "any reply"),)),
    State.RSET: Transition(ClientTransaction._on_rset, ((State.QUIT, "any reply"),)),
    State.QUIT: Transition(ClientTransaction._on_quit, ((State.DONE, "any reply"),)),
}
