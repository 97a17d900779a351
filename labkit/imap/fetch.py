"""FETCH data items (RFC 3501 §6.4.5, §7.4.2): parsing the request, writing the reply.

:func:`parse_fetch_items` reads ``(FLAGS BODY.PEEK[HEADER.FIELDS (From)]<0.512>)`` from a
:class:`~.parser.Cursor`; :func:`render` writes one item for one message, given a
:class:`MessageData` that reads the message only when an item needs it and remembers
ENVELOPE/BODYSTRUCTURE across commands and sessions in the folder's per-message cache
(a Maildir file never changes content, only its name's flags).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from labkit.store import MessageInfo, NoSuchMessage

from . import mime
from .parser import Cursor, ParseError
from .structure import body_structure, envelope
from .wire import NIL, flag_list, format_date_time, string

T = TypeVar("T")

MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SIMPLE_ITEMS = frozenset(
    {"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE", "RFC822.TEXT",
     "BODY", "BODYSTRUCTURE", "UID"}
)
SECTION_TEXTS = frozenset({"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})


@dataclass(frozen=True)
class Section:
    """``1.2.HEADER.FIELDS (From To)``: part numbers, a text specifier, field names."""

    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        spec = ".".join(map(str, self.part))
        if self.text:
            spec += ("." if spec else "") + self.text
        if self.fields:
            spec += " (" + " ".join(self.fields) + ")"
        return spec


@dataclass(frozen=True)
class FetchItem:
    """One fetch-att. ``section`` is set for ``BODY[...]``/``BODY.PEEK[...]``."""

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None  # (origin, length)

    @property
    def sets_seen(self) -> bool:
        """RFC 3501 §6.4.5: BODY[...] (not PEEK), RFC822 and RFC822.TEXT set \\Seen."""
        return (self.section is not None and not self.peek) or self.name in ("RFC822", "RFC822.TEXT")


# -- parsing -------------------------------------------------------------------


def parse_fetch_items(cursor: Cursor) -> list[FetchItem]:
    """A macro (ALL, FAST, FULL), one fetch-att, or a parenthesised list of them."""
    if cursor.at("("):
        return _once(cursor.paren_list(lambda: _fetch_att(cursor), allow_empty=False))
    start_name = _att_name(cursor)
    if start_name in MACROS:
        return [FetchItem(name) for name in MACROS[start_name]]
    return [_fetch_att(cursor, start_name)]


def _once(items: list[FetchItem]) -> list[FetchItem]:
    """Each item once, where it was first asked for (``FLAGS FLAGS`` gets one FLAGS, as
    in Dovecot); ``BODY[x]`` and ``BODY.PEEK[x]`` are one item, which sets \\Seen if
    either does."""
    first: dict[tuple[str, Section | None, tuple[int, int] | None], int] = {}
    out: list[FetchItem] = []
    for item in items:
        key = (item.name, item.section, item.partial)
        if key not in first:
            first[key] = len(out)
            out.append(item)
        elif not item.peek:
            out[first[key]] = item
    return out


def _att_name(cursor: Cursor) -> str:
    name = cursor.take_while(lambda c: chr(c).isalnum() or c == ord(".")).decode("ascii").upper()
    if not name:
        raise ParseError("expected a fetch attribute such as FLAGS or BODY[]")
    return name


def _fetch_att(cursor: Cursor, name: str | None = None) -> FetchItem:
    name = name or _att_name(cursor)
    if name in ("BODY", "BODY.PEEK") and cursor.at("["):
        section = _section(cursor)
        partial = None
        if cursor.take("<"):
            origin = cursor.number("a partial origin")
            cursor.expect(".", "'.' in <origin.length>")
            partial = (origin, cursor.nz_number("a partial length"))
            cursor.expect(">", "'>'")
        return FetchItem("BODY", section, name == "BODY.PEEK", partial)
    if name not in SIMPLE_ITEMS:
        raise ParseError(f"unknown fetch attribute {name}")
    return FetchItem(name)


def _section(cursor: Cursor) -> Section:
    cursor.expect("[")
    part: list[int] = []
    text = ""
    while cursor.at_digit():
        part.append(cursor.nz_number("a part number"))
        if not cursor.take("."):
            break
        if not cursor.at_digit():
            text = _section_text(cursor, required=True)
            break
    else:
        text = _section_text(cursor, required=False)
    if text == "MIME" and not part:
        raise ParseError("MIME needs a part number, as in BODY[1.MIME]")
    fields: tuple[str, ...] = ()
    if text.startswith("HEADER.FIELDS"):
        cursor.sp()
        names = cursor.paren_list(lambda: cursor.text_astring("a header field name", "ascii"), allow_empty=False)
        fields = tuple(names)
    cursor.expect("]", "']' to end the section")
    return Section(tuple(part), text, fields)


def _section_text(cursor: Cursor, *, required: bool) -> str:
    text = cursor.take_while(lambda c: chr(c).isalpha() or c == ord(".")).decode("ascii").upper()
    if text not in SECTION_TEXTS or (required and not text):
        raise ParseError(f"unknown section {text!r}: expected HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME")
    return text


# -- the message, loaded lazily ---------------------------------------------------


class MessageData:
    """One message for FETCH and SEARCH: its store info, and its bytes read only when an
    item needs them (FLAGS, UID, sizes and cached ENVELOPEs need no reading)."""

    def __init__(self, info: MessageInfo, read: Callable[[], bytes], *, recent: bool = False,
                 cache: Callable[[], dict[str, object]] | None = None) -> None:
        """``cache`` gives what was derived from this message before (the folder's
        :meth:`~labkit.store.Folder.cache`), where ENVELOPE, BODYSTRUCTURE and the like are
        kept for the next command and session; without one, nothing is kept."""
        self.info, self._read, self.recent = info, read, recent
        self._cache_of = cache
        self._cache: dict[str, object] | None = None
        self.gone = False  # an item needed the file, and another session had expunged it
        self._data: bytes | None = None
        self._part: mime.Part | None = None

    def cached(self, item: str, compute: Callable[[], T]) -> T:
        """``compute()``, kept in the message's cache as ``item``."""
        cache = self._cache
        if cache is None:
            cache = self._cache = self._cache_of() if self._cache_of is not None else {}
        value = cache.get(item)
        if value is None:
            value = cache[item] = compute()
        return value  # type: ignore[return-value]

    # Plain attributes rather than functools.cached_property: on Python 3.11 its
    # first access takes a lock, and FETCH 1:* makes 10,000 of these objects.
    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self._read()
        return self._data

    @property
    def part(self) -> mime.Part:
        if self._part is None:
            self._part = mime.parse(self.data)
        return self._part

    @property
    def header(self) -> bytes:
        """The top-level header block."""
        return self._part.header if self._part is not None else mime.split_header(self.data)[0]

    @property
    def text(self) -> bytes:
        """The top-level body (everything after the header's blank line)."""
        return self._part.body if self._part is not None else mime.split_header(self.data)[1]

    def envelope(self) -> bytes:
        return self.cached("ENVELOPE", lambda: envelope(mime.Part(self.header, b"")))

    def body_structure(self, extensible: bool) -> bytes:
        return self.cached("BODYSTRUCTURE" if extensible else "BODY", lambda: body_structure(self.part, extensible))

    def section(self, section: Section) -> bytes:
        """The octets of ``BODY[section]``; empty for a part that does not exist."""
        if not section.part:
            if section.text == "":
                return self.data
            if section.text == "TEXT":
                return self.text
            return _header_text(self.header, section)
        node = mime.find_part(self.part, list(section.part))
        if node is None:
            return b""
        if section.text == "":
            return node.body
        if section.text == "MIME":
            return node.header
        if node.message is None:  # HEADER/TEXT of a part need a message/rfc822 part
            return b""
        if section.text == "TEXT":
            return node.message.body
        return _header_text(node.message.header, section)


def _header_text(header: bytes, section: Section) -> bytes:
    if section.text == "HEADER":
        return header
    return mime.select_fields(header, list(section.fields), exclude=section.text.endswith(".NOT"))


# -- rendering -----------------------------------------------------------------


# What an item is when the message was expunged by another session meanwhile (RFC 2180
# §4.1.1 lets a server answer so; these are Dovecot's): empty, NIL or a blank structure.
_BLANK_BODY = b'("text" "plain" NIL NIL NIL "7bit" 0 0'
GONE_VALUES = {
    "RFC822.SIZE": b"0",
    "ENVELOPE": b"(" + b" ".join([b"NIL"] * 10) + b")",
    "BODY": _BLANK_BODY + b")",
    "BODYSTRUCTURE": _BLANK_BODY + b" NIL NIL NIL NIL)",
}


def render(item: FetchItem, message: MessageData, flags: frozenset[str]) -> bytes:
    """``NAME value`` for one item (``flags`` are those to report, \\Recent included).
    If the message has been expunged by another session, what needs its file is
    :data:`GONE_VALUES` (or NIL) and ``message.gone`` is set."""
    try:
        value = _value(item, message, flags)
    except NoSuchMessage:
        message.gone = True
        value = NIL if item.section is not None else GONE_VALUES.get(item.name, NIL)
    return _label(item) + b" " + value


def _label(item: FetchItem) -> bytes:
    if item.section is None:
        return item.name.encode()
    label = f"BODY[{item.section}]" + (f"<{item.partial[0]}>" if item.partial is not None else "")
    return label.encode("ascii", "replace")


# Items told from what the store knows of a message (and the flags to report), without
# reading its file (unless its size was never measured).
INFO_ITEMS: dict[str, Callable[[MessageInfo, frozenset[str]], bytes]] = {
    "FLAGS": lambda info, flags: flag_list(flags),
    "UID": lambda info, flags: b"%d" % info.uid,
    "INTERNALDATE": lambda info, flags: format_date_time(info.internaldate),
    "RFC822.SIZE": lambda info, flags: b"%d" % info.size,
}


def info_response(items: list[FetchItem]) -> Callable[[int, MessageInfo, frozenset[str]], bytes] | None:
    """For items all in :data:`INFO_ITEMS` (``FETCH 1:* (FLAGS RFC822.SIZE)``, a client's
    first look at a mailbox): a function that makes one message's whole response,
    ``* msn FETCH (...)`` and CRLF, from its number, info and flags, the labels written
    once for all; None for any other items. It raises :class:`NoSuchMessage` for a
    message whose size it had to measure, and whose file is gone (:func:`render` says
    what is left of it)."""
    if not all(item.section is None and item.name in INFO_ITEMS for item in items):
        return None
    template = b"* %%d FETCH (%b)\r\n" % b" ".join([_label(item) + b" %b" for item in items])
    values = [INFO_ITEMS[item.name] for item in items]

    def response(msn: int, info: MessageInfo, flags: frozenset[str]) -> bytes:
        return template % (msn, *[value(info, flags) for value in values])

    return response


def _value(item: FetchItem, message: MessageData, flags: frozenset[str]) -> bytes:
    name = item.name
    if item.section is not None:
        data = message.section(item.section)
        if item.partial is not None:
            origin, length = item.partial
            data = data[origin : origin + length]
        return string(data)
    from_info = INFO_ITEMS.get(name)
    if from_info is not None:
        return from_info(message.info, flags)
    if name == "ENVELOPE":
        return message.envelope()
    if name in ("BODYSTRUCTURE", "BODY"):
        return message.body_structure(name == "BODYSTRUCTURE")
    if name == "RFC822":
        return string(message.data)
    if name == "RFC822.HEADER":
        return string(message.header)
    if name == "RFC822.TEXT":
        return string(message.text)
    raise ValueError(f"unknown fetch item {name}")
