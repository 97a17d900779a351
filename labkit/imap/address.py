"""RFC 5322 §3.4 address lists, parsed for the IMAP ENVELOPE (RFC 3501 §7.4.2).

The stdlib's ``email.utils.getaddresses`` drops group names (``undisclosed-recipients:;``)
and decodes nothing we need, so this small tokenizer keeps what ENVELOPE wants: display
name (raw, encoded-words left for the client to decode), source route, mailbox, host,
and group start/end markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPECIALS = "()<>@,;:\\\".[]"


@dataclass(frozen=True)
class Address:
    """One ENVELOPE address. A group start has only ``mailbox`` (the group name) and
    host None; a group end has all four None (RFC 3501 §7.4.2)."""

    name: str | None
    route: str | None
    mailbox: str | None
    host: str | None


GROUP_END = Address(None, None, None, None)


@dataclass
class _Token:
    kind: str  # atom, quoted, comment, special, literal ("[1.2.3.4]")
    text: str
    space_before: bool


def _tokenize(value: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(value)
    space = False
    while i < n:
        ch = value[i]
        if ch in " \t\r\n":
            space, i = True, i + 1
            continue
        if ch == '"':
            text, i = _delimited(value, i + 1, '"')
            tokens.append(_Token("quoted", text, space))
        elif ch == "(":
            depth, j = 1, i + 1
            while j < n and depth:
                if value[j] == "\\":
                    j += 1
                elif value[j] in "()":
                    depth += 1 if value[j] == "(" else -1
                j += 1
            tokens.append(_Token("comment", value[i + 1 : j - 1].strip(), space))
            i = j
        elif ch == "[":
            text, i = _delimited(value, i + 1, "]")
            tokens.append(_Token("literal", f"[{text}]", space))
        elif ch in _SPECIALS:
            tokens.append(_Token("special", ch, space))
            i += 1
        else:
            j = i
            while j < n and value[j] not in _SPECIALS and value[j] not in " \t\r\n":
                j += 1
            tokens.append(_Token("atom", value[i:j], space))
            i = j
        space = False
    return tokens


def _delimited(value: str, i: int, close: str) -> tuple[str, int]:
    """Text up to the unescaped ``close`` (unescaping backslashes); index after it."""
    out = []
    while i < len(value) and value[i] != close:
        if value[i] == "\\" and i + 1 < len(value):
            i += 1
        out.append(value[i])
        i += 1
    return "".join(out), i + 1


def _join_words(words: list[_Token]) -> str:
    out = ""
    for word in words:
        if out and word.space_before:
            out += " "
        out += word.text
    return out


def _local_part(words: list[_Token]) -> str:
    return "".join(
        '"' + w.text.replace("\\", "\\\\").replace('"', '\\"') + '"' if w.kind == "quoted" else w.text
        for w in words
    )


class _Parser:
    def __init__(self, value: str) -> None:
        self.tokens = _tokenize(value)
        self.pos = 0
        self.out: list[Address] = []
        self.comment: str | None = None

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def is_special(self, chars: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "special" and token.text in chars

    def address_list(self, in_group: bool = False) -> None:
        while self.peek() is not None:
            if self.is_special(","):
                self.pos += 1
            elif in_group and self.is_special(";"):
                self.pos += 1
                return
            else:
                self.address(in_group)

    def address(self, in_group: bool) -> None:
        words: list[_Token] = []
        comment: str | None = None
        while (token := self.peek()) is not None:
            if token.kind == "comment":
                comment = comment or token.text or None
                self.pos += 1
            elif self.is_special("<"):
                self.pos += 1
                route, mailbox, host = self.angle_addr()
                self.out.append(Address(_join_words(words) or comment, route, mailbox, host))
                return
            elif self.is_special(":") and not in_group:
                self.pos += 1
                self.out.append(Address(None, None, _join_words(words), None))
                self.address_list(in_group=True)
                self.out.append(GROUP_END)
                return
            elif self.is_special("@"):
                self.pos += 1
                host = self.domain(">,;")
                self.out.append(Address(comment or self.comment, None, _local_part(words), host))
                return
            elif self.is_special(",;"):
                break
            elif token.kind == "special" and token.text not in ".":
                self.pos += 1  # stray special: skip it
            else:
                words.append(token)
                self.pos += 1
        if words:  # a local part with no domain
            self.out.append(Address(comment, None, _local_part(words), ""))

    def angle_addr(self) -> tuple[str | None, str, str]:
        route = None
        if self.is_special("@"):
            parts = []
            while (token := self.peek()) is not None and not self.is_special(":>"):
                parts.append(token.text)
                self.pos += 1
            route = "".join(parts)
            if self.is_special(":"):
                self.pos += 1
        words = []
        while (token := self.peek()) is not None and not self.is_special("@>"):
            if token.kind != "comment":
                words.append(token)
            self.pos += 1
        host = ""
        if self.is_special("@"):
            self.pos += 1
            host = self.domain(">")
        if self.is_special(">"):
            self.pos += 1
        return route, _local_part(words), host

    def domain(self, stop: str) -> str:
        """The domain up to ``stop``; a comment in it (``b@x (Betty)``) is kept as
        :attr:`comment`, the display name of old-style addresses."""
        parts = []
        self.comment = None
        while (token := self.peek()) is not None and not self.is_special(stop):
            if token.kind == "comment":
                self.comment = self.comment or token.text or None
            else:
                parts.append(token.text)
            self.pos += 1
        return "".join(parts)


_ATOMS = r"[^\s<>@,;:\\\"()\[\]]+"
_SIMPLE = re.compile(rf"\s*(?:({_ATOMS})@({_ATOMS})|([^<>@,;:\\\"()\[\]]*?)\s*<({_ATOMS})@({_ATOMS})>)\s*")


def _parse_simple(value: str) -> list[Address] | None:
    """The common forms (``a@b``, ``Name <a@b>``, comma-separated) without the tokenizer;
    None when the value has quotes, comments, groups or anything else unusual."""
    out = []
    for piece in value.split(","):
        match = _SIMPLE.fullmatch(piece)
        if match is None:
            return None
        if match.group(1) is not None:
            out.append(Address(None, None, match.group(1), match.group(2)))
        else:
            out.append(Address(" ".join(match.group(3).split()) or None, None, match.group(4), match.group(5)))
    return out


def parse_address_list(value: str) -> list[Address]:
    """The addresses of a From/To/Cc… header value, groups marked as in ENVELOPE."""
    simple = _parse_simple(value) if value.strip() else []
    if simple is not None:
        return simple
    parser = _Parser(value)
    parser.address_list()
    return parser.out
