"""SEARCH (RFC 3501 §6.4.4): search keys parsed into predicates over messages.

Text keys (FROM, SUBJECT, HEADER, BODY, TEXT) match case-insensitive substrings of the
*decoded* text: RFC 2047 encoded-words in headers, base64/quoted-printable and the
charset of text parts, so a client searching ``CHARSET UTF-8 SUBJECT "Grüße"`` finds it.
Only the header is read when no key needs the body.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.header
import email.utils
import quopri
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

from labkit.store import MessageInfo

from . import mime
from .address import parse_address_list
from .fetch import MessageData
from .parser import Cursor, ParseError, SeqRange, resolve_sequence_set

CHARSETS = {"UTF-8": "utf-8", "US-ASCII": "ascii"}


class BadCharset(ParseError):
    """SEARCH CHARSET names a charset this server does not know (RFC 3501 §6.4.4):
    answer ``NO [BADCHARSET (UTF-8 US-ASCII)]``."""


@dataclass
class Candidate:
    """One message being tested, with what the sequence-set keys need."""

    msn: int
    message: MessageData
    last_msn: int
    last_uid: int
    _address_cache: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def info(self) -> MessageInfo:
        return self.message.info

    @cached_property
    def _fields(self) -> dict[str, list[str]]:
        """Unfolded header values by lower-case field name."""
        out: dict[str, list[str]] = {}
        for name, raw in mime.header_fields(self.message.header):
            out.setdefault(name, []).append(mime.unfold(raw))
        return out

    @cached_property
    def _headers(self) -> dict[str, list[str]]:
        """Decoded header values by lower-case field name."""
        return {name: [decode_words(value) for value in values] for name, values in self._fields.items()}

    def header(self, name: str) -> list[str]:
        return self._headers.get(name.lower(), [])

    def addresses(self, name: str) -> tuple[str, ...]:
        """An address field as written (decoded), and each of its addresses as the
        envelope has it, ``Name <mailbox@host>``: RFC 3501 §6.4.4 searches FROM, TO, CC
        and BCC in the envelope, where comments and spaces around ``@`` are gone.
        Parsed once per field (a SEARCH may have many address keys)."""
        cached = self._address_cache.get(name)
        if cached is not None:
            return cached
        out = list(self.header(name))
        for value in self._fields.get(name, []):
            for address in parse_address_list(value):
                if address.mailbox is None or address.host is None:  # group start or end
                    continue
                spec = f"<{address.mailbox}@{address.host}>" if address.host else f"<{address.mailbox}>"
                out.append(f"{decode_words(address.name)} {spec}" if address.name else spec)
        cached = self._address_cache[name] = tuple(out)
        return cached

    @cached_property
    def header_text(self) -> str:
        """The decoded header, case-folded (kept in the message's cache for the next SEARCH)."""
        return self.message.cached("search:header", lambda: "\n".join(
            f"{k}: {v}" for k, values in self._headers.items() for v in values).casefold())

    @cached_property
    def body_text(self) -> str:
        """The decoded text parts, case-folded. How to decode them is kept in the
        message's cache: a message of one part is then read and decoded, never parsed."""
        recipe = self.message.cached("search:body", lambda: _recipe(self.message.part))
        if recipe is _MULTIPART:
            return "\n".join(_texts(self.message.part)).casefold()
        if recipe is _NO_TEXT:
            return ""
        encoding, charset = recipe
        return _decode(self.message.text, encoding, charset).casefold()


Predicate = Callable[[Candidate], bool]


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded; raw 8-bit read as UTF-8."""
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


_MULTIPART, _NO_TEXT = "multipart", "no text"  # recipes: parse the structure; nothing to search


def _recipe(part: mime.Part) -> tuple[str, str] | str:
    """How to get a message's searchable body text without parsing it again: for one
    text part, its (transfer encoding, charset)."""
    if part.is_multipart or part.message is not None:
        return _MULTIPART
    if part.maintype != "text":
        return _NO_TEXT
    return _encoding(part), _charset(part)


def _encoding(part: mime.Part) -> str:
    return (part.get("content-transfer-encoding") or "").strip().lower()


def _charset(part: mime.Part) -> str:
    return dict(part.params).get("charset", "utf-8")


def _decode_body(part: mime.Part) -> str:
    return _decode(part.body, _encoding(part), _charset(part))


def _decode(data: bytes, encoding: str, charset: str) -> str:
    try:
        if encoding == "base64":
            data = base64.b64decode(data)
        elif encoding == "quoted-printable":
            data = quopri.decodestring(data)
    except (binascii.Error, ValueError):
        pass
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _texts(part: mime.Part) -> list[str]:
    """The decoded text of every text part (and of attached messages), in order."""
    if part.is_multipart:
        return [text for child in part.children for text in _texts(child)]
    if part.message is not None:
        inner = part.message
        return [decode_words(mime.unfold(raw)) for _, raw in mime.header_fields(inner.header)] + _texts(inner)
    if part.maintype == "text":
        return [_decode_body(part)]
    return []


def _in_set(ranges: list[SeqRange], number: int, largest: int) -> bool:
    return any(low <= number <= high for low, high in resolve_sequence_set(ranges, largest))


def _sent_date(c: Candidate) -> datetime.date | None:
    """The Date header's date in its own time zone (RFC 3501: SENT* disregard time)."""
    values = c.header("date")
    try:
        return email.utils.parsedate_to_datetime(values[0]).date() if values else None
    except (TypeError, ValueError, IndexError):
        return None


def _internal_date(c: Candidate) -> datetime.date:
    return datetime.datetime.fromtimestamp(c.info.internaldate).date()


_DATE_TESTS: dict[str, Callable[[datetime.date, datetime.date], bool]] = {
    "BEFORE": lambda d, ref: d < ref,
    "ON": lambda d, ref: d == ref,
    "SINCE": lambda d, ref: d >= ref,
}
_FLAG_KEYS = {
    "ANSWERED": "\\Answered", "DELETED": "\\Deleted", "DRAFT": "\\Draft", "FLAGGED": "\\Flagged", "SEEN": "\\Seen",
}
_ADDRESS_KEYS = ("FROM", "TO", "CC", "BCC")


MAX_SEARCH_DEPTH = 100
"""The deepest SEARCH after folding (see :class:`_Node`): deeper is refused with BAD."""


@dataclass
class _Open:
    """A ``(``, ``NOT`` or ``OR`` whose operands are being read."""

    kind: str  # "list", "NOT" or "OR"
    operands: list[_Node] = field(default_factory=list)


@dataclass(frozen=True)
class _Node:
    """A parsed search key: a simple ``test``, or an "and", "or" or "not" of others.
    Built folded, as the meaning allows: ``NOT NOT x`` is ``x``, an OR of an OR is one
    OR, a list in a list one list, a list of one key that key. So ``depth`` grows only
    where the kind changes, and chains of NOT, OR or parentheses of any length (Dovecot
    answers 5,000) compile to a shallow predicate."""

    kind: str
    children: tuple[_Node, ...] = ()
    test: Predicate | None = None
    depth: int = 0

    @classmethod
    def negation(cls, node: _Node) -> _Node:
        return node.children[0] if node.kind == "not" else cls._nested("not", (node,))

    @classmethod
    def combined(cls, kind: str, nodes: list[_Node]) -> _Node:
        children = tuple(child for node in nodes for child in (node.children if node.kind == kind else (node,)))
        return children[0] if len(children) == 1 else cls._nested(kind, children)

    @classmethod
    def _nested(cls, kind: str, children: tuple[_Node, ...]) -> _Node:
        depth = 1 + max(child.depth for child in children)
        if depth > MAX_SEARCH_DEPTH:
            raise ParseError(f"search keys nested too deeply: at most {MAX_SEARCH_DEPTH} levels where NOT, OR"
                             " and parentheses alternate (runs of one of them count once)")
        return cls(kind, children, depth=depth)

    def compile(self) -> Predicate:
        """The predicate (recursion as deep as :attr:`depth`, so bounded)."""
        if self.test is not None:
            return self.test
        parts = [child.compile() for child in self.children]
        if self.kind == "not":
            inner = parts[0]
            return lambda c: not inner(c)
        if self.kind == "or":
            return lambda c: any(part(c) for part in parts)
        return lambda c: all(part(c) for part in parts)


class _SearchParser:
    def __init__(self, cursor: Cursor, charset: str) -> None:
        self.cursor, self.charset = cursor, charset

    def text(self) -> str:
        self.cursor.sp()
        return self.cursor.text_astring("a search string", self.charset).casefold()

    def keys(self) -> Predicate:
        """``search-key *(SP search-key)``, all of which must match, where a key may be
        ``( keys )``, ``NOT key`` or ``OR key key``. Read with a stack of open ones, not
        by recursion, so nesting is bounded by the line alone; nesting of one kind folds
        (:class:`_Node`), and what remains may be :data:`MAX_SEARCH_DEPTH` deep."""
        cursor = self.cursor
        stack = [_Open("list")]  # the keys SEARCH was given: a list without parentheses
        while True:
            node = self._operand(stack)
            while True:  # a key is complete: it is an operand of the innermost open one
                top = stack[-1]
                top.operands.append(node)
                if top.kind == "NOT":
                    node = _Node.negation(node)
                elif top.kind == "OR":
                    if len(top.operands) == 1:
                        cursor.sp()
                        break  # the second operand follows
                    node = _Node.combined("or", top.operands)
                elif cursor.take(" "):
                    break  # the list goes on
                elif len(stack) > 1:
                    cursor.expect(")", "')' to close '(', or a space")
                    node = _Node.combined("and", top.operands)
                else:
                    return _Node.combined("and", top.operands).compile()
                stack.pop()

    def _operand(self, stack: list[_Open]) -> _Node:
        """Opens each ``(``, ``NOT`` and ``OR`` up to the next simple key; reads that key."""
        cursor = self.cursor
        while True:
            if cursor.take("("):
                stack.append(_Open("list"))
            elif cursor.take_word("NOT"):
                stack.append(_Open("NOT"))
                cursor.sp()
            elif cursor.take_word("OR"):
                stack.append(_Open("OR"))
                cursor.sp()
            else:
                return _Node("leaf", test=self.key())

    def key(self) -> Predicate:
        """A search key other than ``(...)``, ``NOT`` and ``OR``."""
        cursor = self.cursor
        if cursor.at_digit() or cursor.at("*"):
            ranges = cursor.sequence_set()
            return lambda c: _in_set(ranges, c.msn, c.last_msn)
        name = cursor.atom("a search key").upper()
        if name == "ALL":
            return lambda c: True
        if name in _FLAG_KEYS or (name.startswith("UN") and name[2:] in _FLAG_KEYS):
            flag, wanted = (_FLAG_KEYS[name], True) if name in _FLAG_KEYS else (_FLAG_KEYS[name[2:]], False)
            return lambda c: (flag in c.info.flags) == wanted
        if name in ("KEYWORD", "UNKEYWORD"):
            cursor.sp()
            keyword, wanted = cursor.flag().lower(), name == "KEYWORD"  # keywords: any case
            return lambda c: any(flag.lower() == keyword for flag in c.info.flags) == wanted
        if name == "RECENT":
            return lambda c: c.message.recent
        if name == "OLD":
            return lambda c: not c.message.recent
        if name == "NEW":
            return lambda c: c.message.recent and "\\Seen" not in c.info.flags
        if name in _ADDRESS_KEYS:
            field, needle = name.lower(), self.text()
            return lambda c: any(needle in value.casefold() for value in c.addresses(field))
        if name == "SUBJECT":
            return self._header_key("subject", self.text())
        if name == "HEADER":
            cursor.sp()
            field = cursor.text_astring("a header field name", "ascii")
            return self._header_key(field, self.text())
        if name == "BODY":
            needle = self.text()
            return lambda c: needle in c.body_text
        if name == "TEXT":
            needle = self.text()
            return lambda c: needle in c.header_text or needle in c.body_text
        if name in ("LARGER", "SMALLER"):
            cursor.sp()
            size, larger = cursor.number("a size"), name == "LARGER"
            return lambda c: c.info.size > size if larger else c.info.size < size
        if name == "UID":
            cursor.sp()
            ranges = cursor.sequence_set()
            return lambda c: _in_set(ranges, c.info.uid, c.last_uid)
        return self._date_key(name)

    def _header_key(self, field: str, needle: str) -> Predicate:
        return lambda c: any(needle in value.casefold() for value in c.header(field))

    def _date_key(self, name: str) -> Predicate:
        sent = name.startswith("SENT")
        test = _DATE_TESTS.get(name[4:] if sent else name)
        if test is None:
            raise ParseError(f"unknown search key {name}")
        self.cursor.sp()
        ref = self.cursor.date()
        if sent:
            return lambda c: (d := _sent_date(c)) is not None and test(d, ref)
        return lambda c: test(_internal_date(c), ref)


def parse_search(cursor: Cursor) -> Predicate:
    """``[CHARSET astring SP] 1*search-key`` (the cursor is after ``SEARCH SP``)."""
    charset = "utf-8"
    if cursor.take_word("CHARSET"):
        cursor.sp()
        name = cursor.text_astring("a charset", "ascii").upper()
        if name not in CHARSETS:
            raise BadCharset(f"unknown charset {name}")
        charset = CHARSETS[name]
        cursor.sp()
    keys = _SearchParser(cursor, charset).keys()
    cursor.end()
    return keys
