"""How IMAP data is written on the wire: strings, NIL, flag lists, dates, mailbox names."""

from __future__ import annotations

import base64
import functools
import datetime
import re
from typing import AbstractSet, Iterable

_ATOM_SPECIALS = frozenset('(){ %*"\\]')


def not_atom_char(text: str) -> str | None:
    """The first character of ``text`` that an RFC 3501 §9 atom cannot hold, or None."""
    return next((c for c in text if not 0x20 < ord(c) < 0x7F or c in _ATOM_SPECIALS), None)


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CRLF = b"\r\n"
NIL = b"NIL"

_NOT_QUOTABLE = re.compile(rb"[^\t\x20-\x7e]")  # RFC 3501 §9: QUOTED-CHAR is 7-bit, no CR/LF
_MAX_QUOTED = 1024
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')  # RFC 3501 §9 ATOM-CHAR


def string(value: str | bytes) -> bytes:
    """An IMAP string: quoted when it is short 7-bit text, else a literal (RFC 3501 §4.3:
    8-bit octets, CR and LF cannot appear in a quoted string)."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(data) <= _MAX_QUOTED and not _NOT_QUOTABLE.search(data):
        if b"\\" in data or b'"' in data:
            data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + data + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(value: str | bytes | None) -> bytes:
    """NIL for None, else :func:`string`."""
    return NIL if value is None else string(value)


def astring(value: str | bytes) -> bytes:
    """An atom where that is unambiguous (``INBOX``), else :func:`string`."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if _ATOM.fullmatch(data) and data.upper() != NIL:
        return data
    return string(data)


def paren(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


FLAG_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen \\Flagged)``: system flags in a stable order, then keywords sorted."""
    if isinstance(flags, frozenset):  # a message's own flags: a handful of sets, each made once
        return _frozen_flag_list(flags)
    return _flag_list(set(flags))


@functools.lru_cache(maxsize=1024)
def _frozen_flag_list(flags: frozenset[str]) -> bytes:
    return _flag_list(flags)


def _flag_list(flags: AbstractSet[str]) -> bytes:
    ordered = [f for f in FLAG_ORDER if f in flags] + sorted(flags.difference(FLAG_ORDER))
    return ("(" + " ".join(ordered) + ")").encode("ascii")


def format_date_time(timestamp: float) -> bytes:
    """RFC 3501 date-time in local time: ``"17-Jul-1996 02:44:25 -0700"``."""
    moment = datetime.datetime.fromtimestamp(timestamp).astimezone()
    offset = int(moment.utcoffset().total_seconds()) // 60  # type: ignore[union-attr]
    sign = "+" if offset >= 0 else "-"
    zone = f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    text = f"{moment.day:2d}-{MONTHS[moment.month - 1]}-{moment.year:04d} {moment:%H:%M:%S} {zone}"
    return b'"' + text.encode("ascii") + b'"'


# -- mailbox names: modified UTF-7 (RFC 3501 §5.1.3) -------------------------------


def encode_mailbox(name: str) -> bytes:
    """``Entwürfe`` -> ``Entw&APw-rfe``; ``&`` -> ``&-``."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).rstrip(b"=").replace(b"/", b",")
            out.append("&" + b64.decode("ascii") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out).encode("ascii")


def decode_mailbox(raw: bytes) -> str:
    """The inverse of :func:`encode_mailbox`; raises ValueError naming the problem.

    Raw UTF-8 (sent by some clients despite the RFC) is accepted too.
    """
    if not raw.isascii():
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("mailbox name is neither modified UTF-7 nor UTF-8 (RFC 3501 5.1.3)") from None
    text = raw.decode("ascii")
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError(f"unterminated '&' shift in mailbox name {text!r} (RFC 3501 5.1.3)")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            try:
                data = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4), validate=True)
                out.append(data.decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                raise ValueError(f"bad modified UTF-7 {chunk!r} in mailbox name (RFC 3501 5.1.3)") from None
        i = end + 1
    return "".join(out)
