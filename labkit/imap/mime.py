"""A message as a tree of MIME parts, with exact byte offsets (RFC 2045/2046, RFC 3501 §6.4.5).

IMAP clients fetch parts by number (``BODY[1.2]``) and are told each part's size in
octets, so the split must keep the bytes exactly as stored: the CRLF before a boundary
belongs to the boundary (RFC 2046 §5.1.1), a part's MIME header ends with its blank
line. Header *fields* are split here too (``HEADER.FIELDS`` returns raw lines);
parameters (``charset``, ``boundary``, RFC 2231 continuations) are parsed by the stdlib
``email`` package.
"""

from __future__ import annotations

import email.message
import email.utils
import re
from dataclasses import dataclass, field
from functools import cached_property

MAX_DEPTH = 32
"""Deepest nesting of multiparts and message/rfc822 parts that is parsed."""
MAX_PARTS = 1000
"""Most parts parsed in one message; the rest is treated as opaque body."""

_BLANK_LINE = re.compile(rb"\n\r?\n")
_FIELD_START = re.compile(rb"^(?=[^ \t\r\n])", re.M)
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """(header block including its terminating blank line, body)."""
    if data.startswith(b"\r\n"):
        return data[:2], data[2:]
    if data.startswith(b"\n"):
        return data[:1], data[1:]
    match = _BLANK_LINE.search(data)
    if match is None:
        return data, b""
    return data[: match.end()], data[match.end() :]


def header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """The fields of a header block: (lower-case name, raw bytes with continuation
    lines and line ending). The terminating blank line is not a field."""
    for ending in (b"\r\n", b"\n"):  # drop the blank line that ends the block
        if header == ending or header.endswith(b"\n" + ending):
            header = header[: -len(ending)]
            break
    fields = []
    for raw in _FIELD_START.split(header):
        if not raw:
            continue
        name = raw.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        fields.append((name, raw))
    return fields


def select_fields(header: bytes, names: list[str], *, exclude: bool = False) -> bytes:
    """``HEADER.FIELDS (names)`` or, with ``exclude``, ``HEADER.FIELDS.NOT``: the chosen
    raw field lines plus the blank line (RFC 3501 §6.4.5)."""
    wanted = {n.lower() for n in names}
    kept = [raw for name, raw in header_fields(header) if (name in wanted) != exclude]
    return b"".join(kept) + b"\r\n"


def unfold(raw_field: bytes) -> str:
    """A field's value: after the colon, unfolded (RFC 5322 §2.2.3), 8-bit kept as
    surrogate escapes so it can be written back as the same octets."""
    value = raw_field.partition(b":")[2].strip()
    if b"\n" in value:
        value = _FOLD.sub(b"", value)
    return value.decode("utf-8", "surrogateescape")


def count_lines(body: bytes) -> int:
    """Text lines in a body, for BODYSTRUCTURE's size-in-lines."""
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


@dataclass
class Part:
    """One MIME entity: its header block, its body, and its sub-parts."""

    header: bytes
    body: bytes
    default_type: str = "text/plain"
    children: list["Part"] = field(default_factory=list)
    message: "Part | None" = None  # the encapsulated message of a message/rfc822 part

    _fields: dict[str, bytes] | None = field(default=None, repr=False, compare=False)

    def get(self, name: str) -> str | None:
        """A field's unfolded value, or None (the first occurrence wins)."""
        if self._fields is None:
            self._fields = {}
            for key, raw in header_fields(self.header):
                self._fields.setdefault(key, raw)
        raw = self._fields.get(name.lower())
        return None if raw is None else unfold(raw)

    @cached_property
    def _content_type(self) -> email.message.Message:
        """The stdlib's view of the structured fields, for their parameters."""
        holder = email.message.Message()
        holder.set_default_type(self.default_type)
        for name in ("Content-Type", "Content-Disposition"):
            value = self.get(name)
            if value is not None:
                holder[name] = value
        return holder

    @property
    def content_type(self) -> str:
        """``text/plain``, lower case; RFC 2045 §5.2 defaults apply."""
        return self._content_type.get_content_type()

    @property
    def maintype(self) -> str:
        return self.content_type.split("/")[0]

    @property
    def subtype(self) -> str:
        return self.content_type.split("/")[1]

    @property
    def params(self) -> list[tuple[str, str]]:
        """Content-Type parameters, RFC 2231 continuations joined."""
        params = header_params(self._content_type, "content-type") if self.get("content-type") else []
        if self.maintype == "text" and not any(key == "charset" for key, _ in params):
            params.insert(0, ("charset", "us-ascii"))  # RFC 2045 §5.2, RFC 2046 §4.1.2 default
        return params

    @property
    def disposition(self) -> tuple[str, list[tuple[str, str]]] | None:
        """Content-Disposition (RFC 2183): (``attachment``, params), or None."""
        value = self.get("content-disposition")
        if not value:
            return None
        return value.split(";", 1)[0].strip().lower(), header_params(self._content_type, "content-disposition")

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart"


def header_params(holder: email.message.Message, name: str) -> list[tuple[str, str]]:
    """The parameters of a structured header (skipping its first, bare value)."""
    params = holder.get_params(header=name, unquote=True) or []
    out = []
    for key, value in params[1:]:
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        out.append((key.lower(), str(value)))
    return out


def parse(data: bytes, *, default_type: str = "text/plain", _depth: int = 0, _budget: list[int] | None = None) -> Part:
    """Split ``data`` (a message or a MIME part) into a :class:`Part` tree."""
    budget = _budget if _budget is not None else [MAX_PARTS]
    header, body = split_header(data)
    part = Part(header, body, default_type)
    if _depth >= MAX_DEPTH or budget[0] <= 0:
        return part
    budget[0] -= 1
    if part.is_multipart:
        boundary = part._content_type.get_boundary()
        child_type = "message/rfc822" if part.subtype == "digest" else "text/plain"
        chunks = split_multipart(body, boundary.encode("utf-8", "surrogateescape")) if boundary else []
        part.children = [parse(c, default_type=child_type, _depth=_depth + 1, _budget=budget) for c in chunks]
        if not part.children:  # no boundary found: one opaque text part (a multipart needs one)
            part.children = [Part(b"", body)]
    elif part.content_type == "message/rfc822":
        part.message = parse(body, _depth=_depth + 1, _budget=budget)
    return part


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The body parts between the boundaries (RFC 2046 §5.1.1): the preamble and
    epilogue are dropped, the CRLF before each delimiter belongs to the delimiter."""
    delimiter = re.compile(rb"(?:\r?\n)?^--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)", re.M)
    parts = []
    start = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : match.start()])
        if match.group(1):  # the close delimiter
            return parts
        start = match.end()
    if start is not None:  # no close delimiter: the last part runs to the end
        parts.append(body[start:])
    return parts


def find_part(top: Part, numbers: list[int]) -> Part | None:
    """Part ``1.2.3`` of a message (RFC 3501 §6.4.5), or None if there is none.

    A non-multipart message has one part, 1 (its body); the parts of a message/rfc822
    part are those of the message it encapsulates.
    """
    node = top
    for depth, n in enumerate(numbers):
        if depth and node.message is not None:
            node = node.message
        kids = node.children if node.is_multipart else [node]
        if not 1 <= n <= len(kids):
            return None
        node = kids[n - 1]
    return node
