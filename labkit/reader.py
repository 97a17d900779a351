"""Read a world user's mail from a notebook, over IMAP or POP3, with the stdlib clients.

    with world.reader("betty@brilliant.com") as inbox:      # IMAP by default
        for row in inbox.list():
            print(row)
        print(inbox.show(1))                                # headers and text

The same three calls work over POP3 (``protocol="pop3"``), so a lab can show the
difference: IMAP leaves mail on the server and keeps flags; POP3 downloads.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import poplib
import re
from dataclasses import dataclass
from email.message import EmailMessage

_POLICY = email.policy.default


@dataclass(frozen=True)
class Summary:
    """One line of a mailbox listing."""

    number: int  # message sequence number (IMAP) or message number (POP3)
    uid: str  # IMAP UID or POP3 UIDL
    sender: str
    subject: str
    date: str
    size: int
    flags: tuple[str, ...] = ()

    def __str__(self) -> str:
        seen = " " if "\\Seen" in self.flags else "N"
        return f"{self.number:>4} {seen} {self.date[:16]:16}  {self.sender[:28]:28}  {self.subject[:40]:40} ({self.size} B)"


def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=_POLICY)  # type: ignore[return-value]


def text_of(part: EmailMessage) -> str:
    """The text of a part. Lab messages often carry 8-bit text with no charset
    declared (RFC 2045 would make that US-ASCII); read it as UTF-8 where it is."""
    if part.get_content_charset() is not None:
        return part.get_content()
    raw = part.get_payload(decode=True) or b""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def render(message: EmailMessage) -> str:
    """A message as a person reads it: its headers, then its text part."""
    lines = [f"{name}: {value}" for name, value in message.items()]
    body = message.get_body(preferencelist=("plain", "html"))
    text = text_of(body) if body is not None else "(no text part)"
    return "\n".join(lines) + "\n\n" + text.replace("\r\n", "\n")


class IMAPReader:
    """A small IMAP client over imaplib: the folder stays on the server."""

    def __init__(self, host: str, port: int, user: str, password: str, folder: str = "INBOX") -> None:
        self.client = imaplib.IMAP4(host, port, timeout=10)
        self.client.login(user, password)
        self.select(folder)

    def select(self, folder: str) -> int:
        """Open a folder; returns how many messages it holds."""
        typ, data = self.client.select(folder)
        if typ != "OK":
            raise LookupError(f"cannot open folder {folder!r}: {data[0].decode(errors='replace')}")
        return int(data[0])

    def folders(self) -> list[str]:
        _, data = self.client.list()
        return [re.sub(r'^\(.*?\) (".*?"|NIL) ', "", line.decode()).strip('"') for line in data if line]

    def list(self) -> list[Summary]:
        """A line per message; an empty folder lists as empty (a FETCH of "1:*" there
        would be a BAD: there is no message 1, RFC 3501 §9 seq-number)."""
        _, found = self.client.search(None, "ALL")
        if not found or not found[0]:
            return []
        _, data = self.client.fetch("1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
        rows = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, header = item[0].decode(), _parse(item[1])
            number = int(meta.split()[0])
            uid = re.search(r"UID (\d+)", meta).group(1)  # type: ignore[union-attr]
            size = int(re.search(r"RFC822\.SIZE (\d+)", meta).group(1))  # type: ignore[union-attr]
            flags = tuple(re.search(r"FLAGS \((.*?)\)", meta).group(1).split())  # type: ignore[union-attr]
            rows.append(Summary(number, uid, str(header["From"] or ""), str(header["Subject"] or ""),
                                str(header["Date"] or ""), size, flags))
        return rows

    def fetch(self, number: int) -> EmailMessage:
        """The whole message (marks it \\Seen, as reading it in a mail client would)."""
        typ, data = self.client.fetch(str(number), "(BODY[])")
        if typ != "OK" or not data or not isinstance(data[0], tuple):
            raise LookupError(f"no message {number} in this folder")
        return _parse(data[0][1])

    def show(self, number: int) -> str:
        return render(self.fetch(number))

    def close(self) -> None:
        try:
            self.client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def __enter__(self) -> "IMAPReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class POP3Reader:
    """A small POP3 client over poplib: reads without deleting (deletion is a choice)."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.client = poplib.POP3(host, port, timeout=10)
        self.client.user(user)
        self.client.pass_(password)

    def list(self) -> list[Summary]:
        _, listing, _ = self.client.list()
        _, uidls, _ = self.client.uidl()
        uids = dict(line.decode().split(" ", 1) for line in uidls)
        rows = []
        for line in listing:
            number, size = (int(x) for x in line.split())
            _, head, _ = self.client.top(number, 0)
            header = _parse(b"\r\n".join(head))
            rows.append(Summary(number, uids.get(str(number), ""), str(header["From"] or ""),
                                str(header["Subject"] or ""), str(header["Date"] or ""), size))
        return rows

    def fetch(self, number: int) -> EmailMessage:
        _, lines, _ = self.client.retr(number)
        return _parse(b"\r\n".join(lines) + b"\r\n")

    def show(self, number: int) -> str:
        return render(self.fetch(number))

    def delete(self, number: int) -> None:
        """Mark for deletion; it happens when the session ends with QUIT (close())."""
        self.client.dele(number)

    def close(self) -> None:
        try:
            self.client.quit()
        except (poplib.error_proto, OSError):
            pass

    def __enter__(self) -> "POP3Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
