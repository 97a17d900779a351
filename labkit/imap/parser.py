"""The IMAP4rev1 command parser, sans-IO: bytes in, commands out (RFC 3501 §9).

Two layers:

- :class:`CommandReader` frames the byte stream into whole commands. A command is one
  line, except that a line ending in a literal marker ``{n}`` (synchronising: the
  server first answers ``+``) or ``{n+}`` (LITERAL+, RFC 7888: the client does not
  wait) is followed by ``n`` raw octets and then the rest of the command. Lines and
  literals are bounded; an oversized literal is refused *before* it is buffered.
- :class:`Cursor` reads the grammar of one framed command (atoms, quoted strings,
  literals, lists, sequence sets, dates), raising :class:`ParseError` with a message
  that names what was expected.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Callable, TypeVar, Union

from .wire import MONTHS, decode_mailbox, not_atom_char

MAX_LINE = 64 * 1024
"""Longest command text (without literals); RFC 7162 §4 asks servers for at least 8192."""
MAX_LITERAL = 64 * 1024
"""Largest literal total for commands other than APPEND (passwords, search strings)."""
MAX_APPEND_LITERAL = 50 * 1024 * 1024
"""Largest message APPEND accepts."""
MAX_LITERALS = 64
"""Most literals in one command."""

_LITERAL_MARKER = re.compile(rb"\{(\d{1,20})(\+?)\}$")
_TAG_CHARS = frozenset(c for c in range(0x21, 0x7F) if chr(c) not in '(){%*"\\+')
_QUOTED_SPECIALS = b'"\\'


# ---------------------------------------------------------------------------------
# Framing: the events a CommandReader produces


@dataclass
class Command:
    """A complete command: the text around its literals, and the literals.

    ``segments[i]`` is the text before ``literals[i]`` (its ``{n}`` marker removed);
    there is always one more segment than literals.
    """

    segments: list[bytes]
    literals: list[bytes] = field(default_factory=list)


@dataclass
class Continue:
    """Send ``+ Ready for literal``: the client waits for it before a ``{n}`` literal."""


@dataclass
class Refused:
    """The command was refused while framing (too long, literal too big): send
    ``tag BAD text`` (or ``NO`` when ``no`` is set), nothing else."""

    tag: str
    text: str
    no: bool = False


@dataclass
class RawLine:
    """A line read in raw mode (IDLE's ``DONE``, an AUTHENTICATE response)."""

    line: bytes


Event = Union[Command, Continue, Refused, RawLine]

_LINE, _LITERAL, _SKIP, _DISCARD = "line", "literal", "skip", "discard"


def _tag_of(text: bytes) -> str:
    """The tag of a (partial) command line, or ``*`` if it has none."""
    tag = text.split(b" ", 1)[0]
    if tag and all(c in _TAG_CHARS for c in tag):
        return tag.decode("ascii")
    return "*"


def _command_name(text: bytes) -> bytes:
    """``APPEND`` for ``a1 APPEND ...``; ``UID`` subcommands are not needed here."""
    parts = text.split(b" ", 2)
    return parts[1].upper() if len(parts) > 1 else b""


class CommandReader:
    """Frames a client's byte stream into :data:`Event` objects (h11 style)::

        reader.feed(data)
        while (event := reader.next_event()) is not None:
            ...

    Set :attr:`raw_lines` to read plain lines (no literals) instead of commands.
    """

    def __init__(
        self,
        *,
        max_line: int = MAX_LINE,
        max_literal: int = MAX_LITERAL,
        max_append_literal: int = MAX_APPEND_LITERAL,
    ) -> None:
        self.max_line, self.max_literal, self.max_append_literal = max_line, max_literal, max_append_literal
        self.raw_lines = False
        self._buf = bytearray()
        self._state = _LINE
        self._segments: list[bytes] = []
        self._literals: list[bytes] = []
        self._literal_total = 0
        self._remaining = 0  # octets left of the literal being read or skipped
        self._literal = bytearray()  # the literal being read
        self._tail = b""  # end of a discarded line: does it announce a LITERAL+ literal?

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed."""
        while True:
            if self._state == _LITERAL:
                if not self._take_literal():
                    return None
                continue
            if self._state == _SKIP:
                if not self._skip():
                    return None
                continue
            if self._state == _DISCARD:
                if not self._discard_line():
                    return None
                continue
            event = self._read_line()
            if event is None and self._state == _LITERAL:
                continue  # a LITERAL+ literal started: its octets may be here already
            return event

    # -- states ----------------------------------------------------------------

    def _read_line(self) -> Event | None:
        end = self._buf.find(b"\n")
        used = sum(len(s) for s in self._segments)
        if end < 0:
            if len(self._buf) + used > self.max_line:
                return self._refuse_long_line()
            return None
        if end + used > self.max_line:
            return self._refuse_long_line()
        line = bytes(self._buf[:end]).removesuffix(b"\r")
        del self._buf[: end + 1]
        if self.raw_lines and not self._segments:
            return RawLine(line)
        marker = _LITERAL_MARKER.search(line)
        if marker is None:
            command = Command(self._segments + [line], self._literals)
            self._reset()
            return command
        return self._start_literal(line[: marker.start()], int(marker.group(1)), bool(marker.group(2)))

    def _start_literal(self, text: bytes, size: int, plus: bool) -> Event | None:
        first = self._segments[0] if self._segments else text
        append = _command_name(first) == b"APPEND"
        limit = self.max_append_literal if append else self.max_literal
        problem = None
        if self._literal_total + size > limit:
            what = "message" if append else "literal"
            problem = f"{what} of {size} octets is too big (the limit for this command is {limit})"
        elif len(self._literals) >= MAX_LITERALS:
            problem = f"too many literals in one command (at most {MAX_LITERALS})"
        if problem is not None:
            tag = _tag_of(first)
            self._reset()
            if plus:  # RFC 7888 §4: the octets are on their way; skip them unbuffered
                self._state, self._remaining = _SKIP, size
            # A synchronising literal is refused without "+": the client never sends it.
            return Refused(tag, ("[TOOBIG] " if append else "") + problem, no=append)
        self._segments.append(text)
        self._literal_total += size
        self._state, self._remaining = _LITERAL, size
        return None if plus else Continue()

    def _take_literal(self) -> bool:
        n = min(self._remaining, len(self._buf))
        self._literal += self._buf[:n]  # a bytearray: a 50 MB APPEND is not copied per chunk
        del self._buf[:n]
        self._remaining -= n
        if self._remaining:
            return False
        self._literals.append(bytes(self._literal))
        self._literal = bytearray()
        self._state = _LINE
        return True

    def _skip(self) -> bool:
        n = min(self._remaining, len(self._buf))
        del self._buf[:n]
        self._remaining -= n
        if self._remaining:
            return False
        self._state = _DISCARD  # the rest of the refused command follows
        return True

    def _discard_line(self) -> bool:
        end = self._buf.find(b"\n")
        if end < 0:
            self._tail = (self._tail + bytes(self._buf))[-32:]
            self._buf.clear()
            return False
        line = (self._tail + bytes(self._buf[:end])).removesuffix(b"\r")
        del self._buf[: end + 1]
        self._tail = b""
        marker = _LITERAL_MARKER.search(line)
        if marker and marker.group(2):
            self._state, self._remaining = _SKIP, int(marker.group(1))
        else:
            self._state = _LINE
        return True

    def _refuse_long_line(self) -> Refused:
        tag = _tag_of(bytes(self._segments[0] if self._segments else self._buf[:100]))
        self._reset()
        self._state = _DISCARD
        return Refused(tag, f"command line too long (at most {self.max_line} octets)")

    def _reset(self) -> None:
        self._segments, self._literals, self._literal_total = [], [], 0
        self._state = _LINE


# ---------------------------------------------------------------------------------
# Grammar


class ParseError(ValueError):
    """The command does not follow the RFC 3501 §9 grammar; the message says how."""


class BadMailboxName(ValueError):
    """A well-formed astring that is no mailbox name (not modified UTF-7, RFC 3501
    §5.1.3): the command is understood but cannot work, so ``NO``, not ``BAD``."""


T = TypeVar("T")
SeqRange = tuple[int | None, int | None]
"""One range of a sequence set; None stands for ``*`` (RFC 3501 §9 seq-number)."""

_LITERAL_NEXT = object()


class Cursor:
    """Reads one :class:`Command` left to right, by the grammar the caller expects."""

    def __init__(self, command: Command) -> None:
        self._segments, self._literals = command.segments, command.literals
        self._seg = 0
        self._pos = 0

    # -- low level -------------------------------------------------------------

    @property
    def _text(self) -> bytes:
        return self._segments[self._seg]

    def peek(self) -> int | object | None:
        """The next octet, :data:`_LITERAL_NEXT` before a literal, or None at the end."""
        if self._pos < len(self._text):
            return self._text[self._pos]
        if self._seg < len(self._literals):
            return _LITERAL_NEXT
        return None

    def at_end(self) -> bool:
        return self.peek() is None

    def at(self, char: str) -> bool:
        return self.peek() == ord(char)

    def at_digit(self) -> bool:
        next_octet = self.peek()
        return isinstance(next_octet, int) and 0x30 <= next_octet <= 0x39

    def take_word(self, word: str) -> bool:
        """Consume ``word`` (case-insensitive) if it comes next as a whole word."""
        end = self._pos + len(word)
        text = self._text
        if text[self._pos : end].upper() == word.upper().encode() and (end == len(text) or text[end] in b" )"):
            if end == len(text) and self._seg < len(self._literals):
                return False
            self._pos = end
            return True
        return False

    def at_literal(self) -> bool:
        return self.peek() is _LITERAL_NEXT

    def expect(self, char: str, what: str = "") -> None:
        if not self.at(char):
            raise ParseError(f"expected {what or repr(char)} {self._where()}")
        self._pos += 1

    def take(self, char: str) -> bool:
        """Consume ``char`` if it is next."""
        if self.at(char):
            self._pos += 1
            return True
        return False

    def sp(self) -> None:
        self.expect(" ", "a space")

    def end(self) -> None:
        if not self.at_end():
            raise ParseError(f"unexpected text {self._where()}")

    def _where(self) -> str:
        if self.at_literal():
            return "before a literal"
        rest = self._text[self._pos : self._pos + 20]
        return f"at {rest.decode('ascii', 'replace')!r}" if rest else "at the end of the line"

    def take_while(self, accept: Callable[[int], bool]) -> bytes:
        start = self._pos
        text = self._text
        while self._pos < len(text) and accept(text[self._pos]):
            self._pos += 1
        return text[start : self._pos]

    def literal(self) -> bytes:
        if not self.at_literal():
            raise ParseError(f"expected a literal {self._where()}")
        data = self._literals[self._seg]
        self._seg, self._pos = self._seg + 1, 0
        return data

    # -- RFC 3501 §9 productions -------------------------------------------------

    def tag(self) -> str:
        tag = self.take_while(lambda c: c in _TAG_CHARS)
        if not tag:
            raise ParseError("expected a command tag")
        return tag.decode("ascii")

    def atom(self, what: str = "an atom") -> str:
        """ATOM-CHARs; also accepts the ``\\`` of flags and ``*``/``%``."""
        value = self.take_while(lambda c: c > 0x20 and c < 0x7F and c not in b'(){"]')
        if not value:
            raise ParseError(f"expected {what} {self._where()}")
        return value.decode("ascii")

    def quoted(self) -> bytes:
        self.expect('"', "a quoted string")
        out = bytearray()
        text = self._text
        while self._pos < len(text):
            c = text[self._pos]
            self._pos += 1
            if c == ord('"'):
                return bytes(out)
            if c == ord("\\"):
                if self._pos >= len(text) or text[self._pos] not in _QUOTED_SPECIALS:
                    raise ParseError('in a quoted string, "\\" may only escape \\ or "')
                c = text[self._pos]
                self._pos += 1
            out.append(c)
        raise ParseError("unterminated quoted string")

    def string(self) -> bytes:
        """A quoted string or a literal."""
        if self.at_literal():
            return self.literal()
        if self.at('"'):
            return self.quoted()
        raise ParseError(f"expected a quoted string or a literal {self._where()}")

    def nstring(self) -> bytes | None:
        """NIL or a string."""
        return None if self.take_word("NIL") else self.string()

    def astring(self, what: str = "a string") -> bytes:
        """An atom (``]`` allowed), a quoted string or a literal."""
        if self.at_literal() or self.at('"'):
            return self.string()
        value = self.take_while(lambda c: c > 0x20 and c != 0x7F and c not in b'(){"%*\\')  # 8-bit: lenient
        if not value:
            raise ParseError(f"expected {what} {self._where()}")
        return value

    def text_astring(self, what: str = "a string", charset: str = "utf-8") -> str:
        value = self.astring(what)
        try:
            return value.decode(charset)
        except UnicodeDecodeError:
            raise ParseError(f"{what} is not valid {charset}") from None

    def number(self, what: str = "a number") -> int:
        digits = self.take_while(lambda c: 0x30 <= c <= 0x39)
        if not digits or len(digits) > 10 or int(digits) > 0xFFFFFFFF:
            raise ParseError(f"expected {what} (a 32-bit number) {self._where()}")
        return int(digits)

    def nz_number(self, what: str = "a number") -> int:
        n = self.number(what)
        if n == 0:
            raise ParseError(f"{what} must not be 0")
        return n

    def mailbox(self) -> str:
        """A mailbox name: astring in modified UTF-7 (RFC 3501 §5.1.3), as a str."""
        return self._decode_mailbox(self.astring("a mailbox name"))

    def list_mailbox(self) -> str:
        """A LIST pattern: like a mailbox name but ``%`` and ``*`` may appear."""
        if self.at_literal() or self.at('"'):
            raw = self.string()
        else:
            raw = self.take_while(lambda c: c > 0x20 and c < 0x7F and c not in b'(){"\\')
            if not raw:
                raise ParseError(f"expected a mailbox pattern {self._where()}")
        return self._decode_mailbox(raw)

    @staticmethod
    def _decode_mailbox(raw: bytes) -> str:
        try:
            return decode_mailbox(raw)
        except ValueError as e:
            raise BadMailboxName(str(e)) from None

    def paren_list(self, item: Callable[[], T], *, allow_empty: bool = True) -> list[T]:
        """``"(" [item *(SP item)] ")"``."""
        self.expect("(", "'('")
        items: list[T] = []
        if not self.take(")"):
            items.append(item())
            while not self.take(")"):
                self.sp()
                items.append(item())
        if not items and not allow_empty:
            raise ParseError("the list must not be empty")
        return items

    def flag(self) -> str:
        """A flag: ``\\Seen`` (system flag) or a keyword atom."""
        if self.take("\\"):
            name = self.atom("a flag name")
            flag = "\\" + name
            canonical = SYSTEM_FLAGS.get(flag.lower())
            if canonical is None:
                raise ParseError(f"unknown system flag {flag}")
            return canonical
        keyword = self.atom("a flag")
        bad = not_atom_char(keyword)  # atom() lets "\\", "*" and "%" through
        if bad is not None:  # RFC 3501 §9: flag-keyword = atom
            raise ParseError(f"keyword {keyword} contains {bad!r}, which an atom cannot")
        return keyword

    def flag_list(self) -> list[str]:
        return self.paren_list(self.flag)

    def sequence_set(self) -> list[SeqRange]:
        """``1:*``, ``2,4:7``, ``*:3``… ranges as given (low and high may be swapped)."""
        ranges: list[SeqRange] = []
        while True:
            low = self._seq_number()
            high = self._seq_number() if self.take(":") else low
            ranges.append((low, high))
            if not self.take(","):
                return ranges

    def _seq_number(self) -> int | None:
        if self.take("*"):
            return None
        return self.nz_number("a message number")

    def date(self) -> datetime.date:
        """``date = date-text / DQUOTE date-text DQUOTE`` (``1-Feb-1994``)."""
        quoted = self.take('"')
        text = self.take_while(lambda c: c not in b' ")').decode("ascii", "replace")
        if quoted:
            self.expect('"', "a closing quote")
        try:
            day, month, year = text.split("-")
            return datetime.date(int(year), MONTHS.index(month.capitalize()) + 1, int(day))
        except ValueError:
            raise ParseError(f"bad date {text!r}: expected day-Mon-year such as 1-Feb-1994") from None

    def date_time(self) -> datetime.datetime:
        """``"17-Jul-1996 02:44:25 -0700"`` (RFC 3501 §9 date-time)."""
        text = self.quoted().decode("ascii", "replace")
        try:
            return parse_date_time(text)
        except ValueError:
            raise ParseError(f'bad date-time {text!r}: expected "dd-Mon-yyyy hh:mm:ss +zzzz"') from None


SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent")}
"""RFC 3501 §2.3.2 system flags by lower-case name (flags are case-insensitive)."""


def parse_date_time(text: str) -> datetime.datetime:
    """``"dd-Mon-yyyy hh:mm:ss +zzzz"``; the day may be space-padded."""
    date_part, time_part, zone = text.strip().split(" ")
    day, month, year = date_part.split("-")
    hour, minute, second = (int(x) for x in time_part.split(":"))
    if len(zone) != 5 or zone[0] not in "+-":
        raise ValueError(zone)
    offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    tz = datetime.timezone(offset if zone[0] == "+" else -offset)
    return datetime.datetime(int(year), MONTHS.index(month.capitalize()) + 1, int(day), hour, minute, second, tzinfo=tz)


def resolve_sequence_set(ranges: list[SeqRange], largest: int) -> list[tuple[int, int]]:
    """Normalise ranges: ``*`` becomes ``largest`` and each range is ordered low..high
    (RFC 3501 §9: ``*:3`` is ``3:*``; a UID range ``559:*`` includes the last UID)."""
    out = []
    for low, high in ranges:
        a = largest if low is None else low
        b = largest if high is None else high
        out.append((min(a, b), max(a, b)))
    return out
