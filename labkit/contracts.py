"""What each seam may return: checks the boundary runs on a student's answer.

Each check returns the value (normalised where the contract allows two spellings, such
as a Received header with or without its final CRLF) or raises
:class:`ContractError` with a message that names the problem in the
seam's own terms. The boundary treats a violation exactly like an exception: the
servers answer as a careful real server would and nothing is lost.
"""

from __future__ import annotations

import email.parser
import email.policy
import ipaddress
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

MAX_LINE = 998  # RFC 5322 §2.1.1: a line is at most 998 characters before CRLF


class ContractError(TypeError):
    """A seam returned something its contract does not allow; the message says what."""


def type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


# -- resolve_mx -------------------------------------------------------------------------
def next_hops(value: Any) -> list:
    """A non-empty list of NextHop, each with a host, a preference and addresses."""
    from .dns.hops import NextHop

    if not isinstance(value, (list, tuple)):
        raise ContractError(f"resolve_mx must return a list of NextHop, got {type_name(value)}"
                            + (" (did you forget the return statement?)" if value is None else ""))
    if not value:
        raise ContractError("resolve_mx returned an empty list: when there is nowhere to deliver, raise "
                            "PermanentMXError (or TemporaryMXError to try again later)")
    hops = []
    for i, hop in enumerate(value):
        if isinstance(hop, str):
            raise ContractError(f"item {i} is the string {hop!r}: return NextHop(host, preference, addresses) "
                                "objects, with the addresses from the host's A/AAAA records")
        if not isinstance(hop, NextHop):
            raise ContractError(f"item {i} is a {type_name(hop)}, not a NextHop(host, preference, addresses)")
        if not isinstance(hop.host, str) or not hop.host:
            raise ContractError(f"item {i}: host must be a host name (str), got {hop.host!r}")
        if isinstance(hop.preference, bool) or not isinstance(hop.preference, int) or not 0 <= hop.preference <= 65535:
            raise ContractError(f"item {i} ({hop.host}): preference must be an int 0-65535 (RFC 1035 §3.3.9), "
                                f"got {hop.preference!r}")
        addresses = hop.addresses
        if isinstance(addresses, str) or not isinstance(addresses, (list, tuple)):
            raise ContractError(f"item {i} ({hop.host}): addresses must be a tuple of IP address strings, "
                                f"got {type_name(addresses)} {addresses!r}")
        if not addresses:
            raise ContractError(f"item {i} ({hop.host}) has no addresses: a host without A/AAAA records "
                                "cannot be connected to; leave it out (RFC 5321 §5.1)")
        for address in addresses:
            try:
                ipaddress.ip_address(address)
            except (TypeError, ValueError):
                raise ContractError(f"item {i} ({hop.host}): {address!r} is not an IP address") from None
        hops.append(NextHop(hop.host, hop.preference, tuple(addresses), bool(hop.implicit)))
    return hops


# -- send_mail ---------------------------------------------------------------------------
def send_result(rcpt_to: Sequence[str]) -> Callable[[Any], Any]:
    """A SendResult with a reply for every recipient, each in accepted or refused."""

    def check(value: Any) -> Any:
        from .smtp.reply import Reply, SendResult

        if not isinstance(value, SendResult):
            raise ContractError(f"send_mail must return a SendResult(accepted, refused, data_reply) or raise "
                                f"SMTPError, got {type_name(value)}")
        for name in ("accepted", "refused"):
            table = getattr(value, name)
            if not isinstance(table, dict):
                raise ContractError(f"SendResult.{name} must be a dict recipient -> Reply, got {type_name(table)}")
            for rcpt, reply in table.items():
                if rcpt not in rcpt_to:
                    raise ContractError(f"SendResult.{name} has {rcpt!r}, which is not one of the recipients "
                                        f"{list(rcpt_to)}")
                if not isinstance(reply, Reply):
                    raise ContractError(f"SendResult.{name}[{rcpt!r}] must be the server's Reply, got "
                                        f"{type_name(reply)} {reply!r}")
                reply_shape(reply, f"SendResult.{name}[{rcpt!r}]")
                if name == "accepted" and not 200 <= reply.code < 300:
                    raise ContractError(f"{rcpt!r} is in accepted, but its RCPT reply was {reply.code}: only 2xx "
                                        "replies accept a recipient (RFC 5321 §4.2.1)")
                if name == "refused" and not 400 <= reply.code < 600:
                    raise ContractError(f"{rcpt!r} is in refused, but its RCPT reply was {reply.code}: a refusal "
                                        "is a 4xx or 5xx reply")
        for rcpt in rcpt_to:
            if rcpt in value.accepted and rcpt in value.refused:
                raise ContractError(f"{rcpt!r} is both accepted and refused")
            if rcpt not in value.accepted and rcpt not in value.refused:
                raise ContractError(f"no reply for recipient {rcpt!r}: every recipient goes in accepted or refused")
        if value.data_reply is not None and not isinstance(value.data_reply, Reply):
            raise ContractError(f"SendResult.data_reply must be a Reply or None, got {type_name(value.data_reply)}")
        if value.data_reply is not None:
            reply_shape(value.data_reply, "SendResult.data_reply")
        if value.accepted and value.data_reply is None:
            raise ContractError("recipients were accepted but data_reply is None: the server's reply to the "
                                "final '.' of DATA goes in data_reply")
        return value

    return check


def reply_shape(reply: Any, where: str) -> None:
    """A Reply's fields have their types: an int code, a tuple of str lines."""
    if isinstance(reply.code, bool) or not isinstance(reply.code, int):
        raise ContractError(f"{where}: Reply(code, lines) takes the code as an int (250), got {type_name(reply.code)} "
                            f"{reply.code!r}")
    if isinstance(reply.lines, (str, bytes)) or not isinstance(reply.lines, (tuple, list)) or not all(
            isinstance(line, str) for line in reply.lines):
        raise ContractError(f"{where}: Reply(code, lines) takes the lines as a tuple of str, one per line, got "
                            f"{type_name(reply.lines)} {reply.lines!r}: Reply({reply.code!r}, ('2.0.0 OK',))")


# -- received_header ---------------------------------------------------------------------
_FOLD = re.compile(r"\r\n[ \t]")


def received_field(value: Any) -> str:
    """One ``Received:`` field, CRLF only as folding (a final CRLF is allowed)."""
    if not isinstance(value, str):
        hint = " (decode it: a header is text)" if isinstance(value, bytes) else ""
        raise ContractError(f"received_header must return a str, got {type_name(value)}{hint}")
    text = value[:-2] if value.endswith("\r\n") else value
    if not text.lower().startswith("received:"):
        raise ContractError(f"the header must start with 'Received:', got {text[:40]!r}")
    unfolded = _FOLD.sub(" ", text)
    if "\r" in unfolded or "\n" in unfolded:
        raise ContractError("a line break that is not folding (CRLF then a space or tab) would end the header "
                            "and start another, or the body (RFC 5322 §2.2.3): this is header injection")
    if "\0" in text:
        raise ContractError("the header contains a NUL character (RFC 5322 §2.2)")
    for line in text.split("\r\n"):
        if len(line.encode()) > MAX_LINE:
            raise ContractError(f"a header line of {len(line.encode())} characters: fold it, lines are at most "
                                f"{MAX_LINE} (RFC 5322 §2.1.1)")
    return text


# -- sessions ----------------------------------------------------------------------------
SESSION_METHODS = ("start", "receive")  # what every session has (labkit.session.Session)


def missing_session_methods(value: Any) -> list[str]:
    """Which of :data:`SESSION_METHODS` ``value`` (a session, or its class) lacks."""
    return [m for m in SESSION_METHODS if not callable(getattr(value, m, None))]


def session_object(value: Any) -> Any:
    """A session factory's product: something with start() and receive(data)."""
    missing = missing_session_methods(value)
    if missing:
        raise ContractError(f"the session factory made a {type_name(value)} without {' and '.join(missing)}(): "
                            "a session needs start() -> bytes and receive(data) -> bytes")
    return value


def unwatch(value: Any) -> Callable[[], None]:
    """What a session's optional ``watch(wake)`` returns: the function that stops the
    watching (the adapter calls it when the connection ends). Without one the adapter
    would never wait for ``wake()``: the session's mailbox_changed() would never run."""
    if not callable(value):
        raise ContractError(f"watch(wake) must return the function that stops the watching (the adapter calls it "
                            f"when the connection ends; folder.watch(callback) returns one), got {type_name(value)}: "
                            "without it wake() is never waited for, and mailbox_changed() never runs")
    return value


def session_bytes(method: str) -> Callable[[Any], "bytes | Iterator[Any]"]:
    """Bytes, or an iterator of bytes chunks (a reply sent as it is made); each chunk is
    checked by :func:`session_chunk` when the adapter takes it."""

    def check(value: Any) -> "bytes | Iterator[Any]":
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, Iterator):
            return value
        hint = {"str": " (encode it: reply.encode() + b'\\r\\n')",
                "None": " (return b'' when there is nothing to send yet)",
                "list": " (join them: b''.join(replies), or return iter(replies) to send them one by one)",
                }.get(type_name(value), "")
        raise ContractError(f"{method}() must return bytes, got {type_name(value)}{hint}")

    return check


def session_chunk(method: str) -> Callable[[Any], bytes]:
    """One chunk of a reply :func:`session_bytes` let through as an iterator."""

    def check(value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise ContractError(f"{method}() returned an iterator that gave a {type_name(value)}: each chunk it "
                            "gives must be bytes")

    return check


MAX_REPLY_DELAY = 60.0


def reply_delay(value: Any) -> float:
    """A session's ``reply_delay``: the seconds its reply is to wait."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_REPLY_DELAY:
        raise ContractError(f"reply_delay must be seconds between 0 and {MAX_REPLY_DELAY:g}, got {value!r}")
    return float(value)


# -- route -------------------------------------------------------------------------------
_REPLY = re.compile(r"[45][0-9][0-9]( [^\r\n]*)?")


def route(request: Any) -> Callable[[Any], Any]:
    """Local(mailbox) for a mailbox of this host (one of ``request.mailboxes``), Relay(),
    or Refuse(a 4xx/5xx reply)."""

    def is_mailbox(address: str) -> bool:
        return address.lower() in request.mailboxes

    def check(value: Any) -> Any:
        from .mta.types import Local, Refuse, Relay

        if isinstance(value, Relay):
            return value
        if isinstance(value, Local):
            if not isinstance(value.mailbox, str) or not is_mailbox(value.mailbox):
                raise ContractError(f"Local({value.mailbox!r}): that is not a mailbox of this host")
            return value
        if isinstance(value, Refuse):
            if not isinstance(value.reply, str) or not _REPLY.fullmatch(value.reply):
                raise ContractError(f"Refuse({value.reply!r}): the reply must be one line with a 4xx or 5xx code, "
                                    "e.g. '550 5.1.1 <x@y>: user unknown'")
            return value
        raise ContractError(f"route must return Local(mailbox), Relay() or Refuse(reply), got {type_name(value)}")

    return check


# -- deliver -----------------------------------------------------------------------------
def delivered_file(maildir: Path, message: bytes) -> Callable[[Any], str]:
    """The unique name of a file now in ``maildir/new`` holding exactly ``message``."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
            raise ContractError(f"deliver must return the new file's name in new/ (a str, no '/'), got {value!r}")
        path = maildir / "new" / value
        try:
            stored = path.read_bytes()
        except OSError:
            raise ContractError(f"deliver returned {value!r}, but {path} does not exist: a message is "
                                "delivered when it has been renamed from tmp/ into new/") from None
        if stored != message:
            raise ContractError(f"{path} holds {len(stored)} bytes, not the {len(message)} bytes of the message")
        return value

    return check


# -- the queue's policy --------------------------------------------------------------------
MAX_RETRY_DELAY = 30 * 24 * 3600.0


def retry_delay(value: Any) -> float | None:
    """Seconds until the next attempt, or None to give up (bounce)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ContractError(f"next_retry must return seconds (a number) or None to give up, got {value!r}")
    if not 0 <= value <= MAX_RETRY_DELAY:
        raise ContractError(f"next_retry returned {value!r}s: a delay is between 0 and {MAX_RETRY_DELAY:g}s")
    return float(value)


def bounce_message(sender: str) -> Callable[[Any], bytes]:
    """A DSN to ``sender``: a multipart/report of report-type delivery-status (RFC 3464)."""

    def check(value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray)):
            raise ContractError(f"make_bounce must return the message as bytes, got {type_name(value)}")
        data = re.sub(rb"\r?\n", b"\r\n", bytes(value))
        if b"\r\n\r\n" not in data:
            raise ContractError("the bounce has no blank line between header and body (RFC 5322 §2.1)")
        header = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
        for name in ("From", "To", "Subject"):
            if header[name] is None:
                raise ContractError(f"the bounce has no {name}: header field")
        if sender.lower() not in str(header["To"]).lower():
            raise ContractError(f"the bounce goes To: {header['To']}, not to the sender <{sender}>")
        content_type = header.get_content_type()
        report_type = (header.get_param("report-type") or "").lower()
        if content_type != "multipart/report" or report_type != "delivery-status":
            raise ContractError(f"Content-Type is {content_type} (report-type={report_type or 'none'}): a DSN is "
                                "multipart/report; report-type=delivery-status (RFC 3464 §2, RFC 6522)")
        return data

    return check
