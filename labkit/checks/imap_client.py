"""A plain IMAP client for the checks: what imaplib hides, read exactly.

:class:`IMAPTalk` sends a tagged command over a :class:`~labkit.checks.peers.LineClient`
and reads every response up to the tagged one, literals (``{n}`` then n octets) and all.
A :class:`Response` parses the untagged data a check judges: FETCH items (``UID``,
``FLAGS``, ``BODY[...]`` as bytes), SEARCH numbers, ``* n EXISTS`` and ``* n EXPUNGE``,
response codes (``[UIDVALIDITY 3]``). Nothing here is lenient on purpose: what a
student's server sends is shown as it came when it cannot be read.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from .peers import LineClient

MAX_RESPONSES = 200  # untagged responses read for one command, at most
_LITERAL = re.compile(rb"\{(\d{1,9})\}$")
_MARK = "\x00"  # stands for a literal in a response's text: \x00 index \x00


class Unreadable(ValueError):
    """A response that does not follow the grammar (RFC 3501 §9)."""


@dataclass
class Untagged:
    """One untagged response: its text (literals marked) and its literals."""

    text: str
    literals: list[bytes] = field(default_factory=list)

    def shown(self) -> str:
        """The line as a student reads it: each literal as {size} and its first octets."""
        return re.sub(f"{_MARK}(\\d+){_MARK}", lambda m: self._literal(int(m.group(1))), self.text)

    def _literal(self, index: int) -> str:
        data = self.literals[index]
        return f"{{{len(data)}}} {data[:40]!r}{'...' if len(data) > 40 else ''}"

    def words(self) -> list[str]:
        return self.text.split(" ")


@dataclass
class Response:
    """Everything the server said to one command."""

    command: str
    untagged: list[Untagged]
    done: str  # the tagged line: "a1 OK FETCH completed"

    @property
    def status(self) -> str:
        words = self.done.split(" ")
        return words[1].upper() if len(words) > 1 else ""

    def shown(self) -> str:
        return "\n".join([*(u.shown() for u in self.untagged), self.done])

    def numbered(self, kind: str) -> list[int]:
        """The n of each ``* n KIND`` (EXISTS, RECENT, EXPUNGE), in order."""
        found = []
        for response in self.untagged:
            words = response.words()
            if len(words) >= 3 and words[1].isdigit() and words[2].upper() == kind:
                found.append(int(words[1]))
        return found

    def code(self, name: str) -> str | None:
        """The argument of a response code ``[NAME arg]`` in an untagged OK or the tagged line."""
        for text in [u.text for u in self.untagged] + [self.done]:
            found = re.search(rf"\[{name}(?: ([^\]]*))?\]", text, re.IGNORECASE)
            if found:
                return found.group(1) or ""
        return None

    def has(self, start: str) -> Untagged | None:
        """The first untagged response that starts with ``start`` (after ``* ``), any case."""
        return next((u for u in self.untagged if u.text[2:].upper().startswith(start.upper())), None)

    def search(self) -> list[int] | None:
        """The numbers of the ``* SEARCH`` response (None: there was none)."""
        for response in self.untagged:
            words = response.words()
            if len(words) >= 2 and words[1].upper() == "SEARCH":
                return [int(w) for w in words[2:] if w.isdigit()]
        return None

    def fetches(self) -> list[tuple[int, dict[str, Any]]]:
        """Each ``* n FETCH (...)``: (n, {ITEM: value}), in order; a value is a str, an
        int, bytes (a literal or quoted string), None (NIL) or a list."""
        found = []
        for response in self.untagged:
            words = response.words()
            if len(words) >= 3 and words[1].isdigit() and words[2].upper() == "FETCH":
                found.append((int(words[1]), fetch_items(response)))
        return found

    def flags(self, number: int) -> set[str] | None:
        """The flags of message ``number`` as the client knows them after this response
        (the last FETCH FLAGS for it wins), without \\Recent; None if none was sent."""
        flags = None
        for n, items in self.fetches():
            if n == number and isinstance(items.get("FLAGS"), list):
                flags = {str(f) for f in items["FLAGS"]} - {"\\Recent"}
        return flags


def fetch_items(response: Untagged) -> dict[str, Any]:
    """The items of a FETCH response: ``{"UID": 4, "FLAGS": ["\\\\Seen"], "BODY[]": b"..."}``."""
    text = response.text.split(" ", 3)[3] if response.text.count(" ") >= 3 else ""
    tokens = _tokens(text, response.literals)
    items = _value(tokens)
    if not isinstance(items, list) or next(tokens, None) is not None:
        raise Unreadable(f"not a parenthesised list of items: {response.shown()}")
    if len(items) % 2:
        raise Unreadable(f"an item without its value: {response.shown()}")
    found: dict[str, Any] = {}
    for name, value in zip(items[::2], items[1::2]):
        if not isinstance(name, str):
            raise Unreadable(f"{name!r} is not an item name: {response.shown()}")
        found[name.upper()] = int(value) if isinstance(value, str) and value.isdigit() else value
    return found


_Token = tuple[str, Any]


def _value(tokens: Iterator[_Token]) -> Any:
    kind, value = next(tokens, ("end", None))
    if kind == "(":
        items = []
        while True:
            following = next(tokens, ("end", None))
            if following[0] == ")":
                return items
            if following[0] == "end":
                raise Unreadable("a list that never closes")
            items.append(_value(itertools.chain([following], tokens)))
    if kind in ("atom", "string"):
        return None if kind == "atom" and value.upper() == "NIL" else value
    raise Unreadable(f"unexpected {kind} {value!r}")


def _tokens(text: str, literals: list[bytes]) -> Iterator[_Token]:
    i = 0
    while i < len(text):
        c = text[i]
        if c == " ":
            i += 1
        elif c in "()":
            yield c, c
            i += 1
        elif c == _MARK:
            end = text.index(_MARK, i + 1)
            yield "string", literals[int(text[i + 1:end])]
            i = end + 1
        elif c == '"':
            out, i = bytearray(), i + 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                out += text[i].encode()
                i += 1
            yield "string", bytes(out)
            i += 1
        else:  # an atom; a section in brackets may hold spaces and parentheses: BODY[HEADER.FIELDS (FROM)]
            start, depth = i, 0
            while i < len(text) and (depth or text[i] not in " ()"):
                depth += {"[": 1, "]": -1}.get(text[i], 0)
                i += 1
            yield "atom", text[start:i]


class IMAPTalk:
    """Tagged commands and their responses over ``client`` (past the greeting)."""

    def __init__(self, client: LineClient) -> None:
        self.client = client
        self._tags = itertools.count(1)

    def send(self, command: str, tag: str = "") -> Response:
        tag = tag or f"c{next(self._tags)}"
        self.client.send(f"{tag} {command}\r\n".encode())
        return self.read(tag, command)

    def read(self, tag: str, command: str) -> Response:
        """Responses up to ``tag``'s."""
        untagged = []
        while len(untagged) < MAX_RESPONSES:
            line = self.response()
            if line.text.startswith(f"{tag} "):
                return Response(command, untagged, line.shown())
            untagged.append(line)
        raise Unreadable(f"more than {MAX_RESPONSES} responses to {command}, and no {tag} reply")

    def response(self) -> Untagged:
        """One whole response line, its literals read."""
        parts: list[str] = []
        literals: list[bytes] = []
        while True:
            raw = self.client.raw_line()
            found = _LITERAL.search(raw)
            if found is None:
                parts.append(raw.decode("utf-8", "replace"))
                return Untagged("".join(parts), literals)
            parts.append(raw[:found.start()].decode("utf-8", "replace") + f"{_MARK}{len(literals)}{_MARK}")
            literals.append(self.client.read(int(found.group(1))))
