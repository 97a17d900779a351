"""The message after DATA, taken in chunks as they arrive (sans-IO).

A server reading DATA line by line pays for every line; a 1 MB message is ten thousand
of them. :class:`DataReader` takes whatever arrived, looks only for the end (the line
holding a lone ".", RFC 5321 §4.1.1.4: CRLF "." CRLF, so the CRLF before the dot ends
the message's last line), and handles the body once at the end: joined, dot-unstuffed
(RFC 5321 §4.5.2: a line's leading "." is removed) and checked against the limits::

    reader = DataReader(max_size=10_485_760, max_line=1001)
    rest = reader.feed(chunk)      # None until the end has come; then what followed it
    reader.message                 # the message, or None if a limit was broken:
    reader.problem                 # "too much" or "line too long"
"""

from __future__ import annotations

END = b"\r\n.\r\n"


class DataReader:
    """One message. ``max_size``: octets of mail data (0: no limit); ``max_line``:
    octets of a text line with its CRLF (RFC 5321 §4.5.3.1.6)."""

    def __init__(self, max_size: int, max_line: int) -> None:
        self.max_size, self.max_line = max_size, max_line
        self.message: bytes | None = None
        self.problem = ""  # "too much" or "line too long", once the end has come
        self._chunks: list[bytes] = []
        self._size = 0  # octets taken so far (the virtual CRLF before the first line aside)
        self._tail = b"\r\n"  # the last octets seen: the DATA command's own CRLF, at first

    def feed(self, data: bytes) -> bytes | None:
        """Take ``data``; the octets after the end once it has come (``b""`` if none),
        else None."""
        seen = self._tail + data
        at = seen.find(END)
        if at < 0:
            self._keep(data)
            self._tail = seen[-(len(END) - 1):]
            return None
        # The message ends with the CRLF before the dot, ``at + 2`` octets into ``seen``.
        cut = at + 2 - len(self._tail)  # into ``data``; negative: already kept
        if cut > 0:
            self._keep(data[:cut])
        elif cut < 0:
            self._size += cut
        self._finish()
        return data[at + len(END) - len(self._tail):]

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self.max_size and self._size > self.max_size:
            self._chunks = []  # bounded memory: the rest is only counted
            self.problem = "too much"
        elif not self.problem:
            self._chunks.append(data)

    def _finish(self) -> None:
        if self.problem:
            return
        body = b"".join(self._chunks)[: self._size]
        self._chunks = []
        if self.max_size and len(body) > self.max_size:
            self.problem = "too much"
            return
        if self.max_line and len(body) > self.max_line - 2 and max(
                map(len, body.split(b"\r\n"))) > self.max_line - 2:
            self.problem = "line too long"
            return
        # RFC 5321 §4.5.2: every line that starts with "." loses that dot.
        self.message = (b"\r\n" + body).replace(b"\r\n.", b"\r\n")[2:]
