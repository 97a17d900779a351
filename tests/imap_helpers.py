"""What IMAP tests share: Betty's Maildir with three messages served on a loopback port
(the ``accounts``, ``maildir`` and ``server`` fixtures; import them into the test
module), ``ok`` for imaplib's answers, and :class:`RawIMAP`, a line client on a plain
socket for what imaplib will not do (read only when told, pipeline, IDLE)."""

from __future__ import annotations

import imaplib
import queue
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from conftest import observed_server
from imapclient import IMAPClient

from labkit.accounts import Account, Accounts
from labkit.imap import IMAPSession
from labkit.maildir import deliver

HOST = "imap.brilliant.com"
FIRST = (
    b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: first\r\n"
    b"Date: Tue, 2 Jan 2024 10:00:00 +0100\r\nMessage-ID: <first@awesome.com>\r\n\r\nHello Betty\r\n"
)
UTF8 = (
    "From: albert@awesome.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, 你好 — ok\r\n"
).encode()
MIXED = (
    b"From: carol@brilliant.com\r\nSubject: report\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n\r\n"
    b"--XYZ\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee attached.\r\n"
    b"--XYZ\r\nContent-Type: application/pdf; name=r.pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XYZ--\r\n"
)
MESSAGES = (FIRST, UTF8, MIXED)


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    return Accounts([Account("betty@brilliant.com", "pw", tmp_path / "betty"), Account("albert@awesome.com", "x", tmp_path / "albert")])


@pytest.fixture
def maildir(accounts: Accounts) -> Path:
    path = accounts.find("betty").maildir
    for message in MESSAGES:
        deliver(path, message)
    return path


@dataclass
class Server:
    port: int
    maildir: Path
    ended: "queue.Queue[IMAPSession]"

    def imaplib(self, user: str = "betty", password: str = "pw") -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(user, password)
        return client

    def imapclient(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=10)
        client.login("betty", "pw")
        return client

    def wait_ended(self) -> IMAPSession:
        return self.ended.get(timeout=10)


@pytest.fixture
def server(accounts: Accounts, maildir: Path) -> Iterator[Server]:
    with observed_server(IMAPSession, accounts, protocol="imap", hostname=HOST) as (port, ended):
        yield Server(port, maildir, ended)


def ok(result: tuple) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


class RawIMAP:
    """An IMAP client on a plain socket: it reads only when told to."""

    def __init__(self, endpoint: tuple[str, int], user: str, password: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(endpoint, timeout=timeout)
        self.file = self.sock.makefile("rb")
        assert self.line().startswith(b"* OK")
        self.command(f"LOGIN {user} {password}")

    def line(self) -> bytes:
        line = self.file.readline()
        assert line, "the server closed the connection"
        return line

    def command(self, text: str, tag: str = "t") -> list[bytes]:
        """Send one command and read up to its tagged reply, which must be OK; returns
        the lines before it."""
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        lines = []
        while not (line := self.line()).startswith(tag.encode() + b" "):
            lines.append(line)
        assert line.startswith(tag.encode() + b" OK"), line
        return lines

    def wait_exists(self, count: int) -> None:
        """During IDLE: read until the mailbox has ``count`` messages."""
        while not ((m := re.match(rb"\* (\d+) EXISTS", self.line())) and int(m.group(1)) >= count):
            pass

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> RawIMAP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
