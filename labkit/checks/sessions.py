"""What the POP3 and IMAP checks share: Betty's mailbox with three known messages, served
by the student's session class on smtp.brilliant.com in a running lab world (or another
user's, with other messages, on another host: the rules' other situations).

The world runs the session through its fault boundary, so a crash, a wrong type or a
hang there is a seam-error trace event plus the protocol's failure line on the wire; the
rules talk to it with poplib/imaplib or a :class:`~labkit.checks.peers.LineClient` inside
:meth:`Probe.watching`, which turns such a failure into the verdict.
"""

from __future__ import annotations

import os
import queue
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..maildir import deliver
from .harness import BETTY, CAROL, Broken, Probe
from .peers import LineClient

if TYPE_CHECKING:
    from ..world import World

HOST = "smtp.brilliant.com"
# A line with a single ".", lines starting with "." (dot-stuffing), 8-bit text whose
# octets are not its characters (sizes), and a folded header field.
MESSAGES = (
    b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: Dinner\r\n\r\n"
    b"Tonight at eight?\r\n.\r\n..two dots\r\n.hidden\r\n-Albert\r\n",
    "From: Carol <carol@careful.com>\r\nTo: betty@brilliant.com,\r\n\tDave <dave@brilliant.com>\r\nSubject: Grüße\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Schöne Grüße aus Köln!\r\n".encode(),
    b"From: Pat <pat@plain.com>\r\nTo: betty@brilliant.com\r\nSubject: ping\r\n\r\npong\r\n",
)
# Carol's, on mx2.careful.com: a long message, one that is mostly dots, and 8-bit text.
CAROLS = (
    b"From: Albert <albert@awesome.com>\r\nTo: carol@careful.com\r\nSubject: minutes\r\n\r\n"
    + b"".join(b"line %d of the minutes\r\n" % i for i in range(3000)),
    b"From: Tom <tom@twins.com>\r\nTo: carol@careful.com\r\nSubject: dots\r\n\r\n.\r\n.\r\n...\r\n. .\r\n",
    "From: Pat <pat@plain.com>\r\nTo: carol@careful.com\r\nSubject: =?utf-8?q?=C3=87a_va=3F?=\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nÇa va très bien, merci.\r\n".encode(),
)


@dataclass(frozen=True)
class Mailbox:
    """Whose mailbox a rule serves, on which host, with which messages; ``read``: the
    indexes of those a mail reader has read already (in cur/, flagged seen: ``:2,S``)."""

    host: str
    user: str
    messages: tuple[bytes, ...]
    read: tuple[int, ...] = ()

    def subject(self, index: int) -> bytes:
        """Message ``index``'s Subject line (what tells the messages apart)."""
        return next(line for line in self.messages[index].split(b"\r\n") if line.startswith(b"Subject:"))

    def which(self, data: bytes) -> int | None:
        """The index of the message ``data`` is (by its Subject line), or None."""
        return next((i for i in range(len(self.messages)) if self.subject(i) in data), None)

    def named(self, by_index: dict[int, bytes]) -> str:
        """``{index: value}`` for a student: each message by its Subject."""
        return ", ".join(f"{self.subject(i).decode('utf-8', 'replace')!r}: {v.decode('ascii', 'replace')}"
                         for i, v in sorted(by_index.items()))


BETTYS_MAILBOX = Mailbox(HOST, BETTY, MESSAGES)
CAROLS_MAILBOX = Mailbox("mx2.careful.com", CAROL, CAROLS)


class _Observed:
    """The student's session, as the world sees it, that says when its connection is
    over (so a rule can wait for that instead of guessing)."""

    def __init__(self, session: Any, ended: "queue.Queue[None]") -> None:
        self._session, self._ended = session, ended

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def connection_lost(self) -> None:
        try:
            lost = getattr(self._session, "connection_lost", None)
            if callable(lost):
                lost()
        finally:
            self._ended.put(None)


@dataclass
class Served:
    """The student's session on a port of the world, with Betty's mail in place."""

    probe: Probe
    world: "World"
    host: str
    port: int
    password: str
    ended: "queue.Queue[None]"
    mailbox: Mailbox = BETTYS_MAILBOX

    @property
    def timeout(self) -> float:
        """A client's wait: longer than the world's deadline, so a hung session shows
        as the world's failure line, not as a client timeout."""
        return self.probe.boundary.deadline + 2

    def client(self) -> LineClient:
        return self.probe.enter(LineClient(self.host, self.port, self.timeout))

    def wait_ended(self, step: str) -> None:
        """Wait until one more connection is over, as the session was told."""
        try:
            self.ended.get(timeout=self.timeout)
        except queue.Empty:
            self.probe.raise_world_failure(self.world, step)
            raise Broken(step, "the session told that its connection is over", "nothing") from None

    @property
    def user(self) -> str:
        return self.mailbox.user

    def stored(self) -> int:
        """How many messages the user's Maildir holds (new/ and cur/)."""
        return len(self.world.messages(self.user))

    def kept(self) -> list[int]:
        """Which of the messages the user's Maildir still holds (their indexes)."""
        return sorted(i for i in map(self.mailbox.which, self.world.messages(self.user)) if i is not None)


def serve(probe: Probe, service: str, mailbox: Mailbox = BETTYS_MAILBOX, *, gap: bool = False) -> Served:
    """A world whose ``mailbox.host`` serves ``service`` with the student's session, the
    mailbox's messages in place. ``gap``: give the messages IMAP UIDs that are not their
    sequence numbers (a message before them came and was expunged)."""
    ended: "queue.Queue[None]" = queue.Queue()
    # Every session made is kept until the rule ends: what it holds (a lock's open file) is
    # released by connection_lost(), as it must be (RFC 1939 §8), not by the garbage collector.
    made: list[_Observed] = []
    probe.later(made.clear)

    def observed(peer: Any, accounts: Any, *, hostname: str) -> _Observed:
        made.append(_Observed(probe.impl(peer, accounts, hostname=hostname), ended))
        return made[-1]

    world = probe.world(host=mailbox.host, part=observed)
    account = world.mailbox(mailbox.user)
    if gap:
        from ..store import MailStore

        deliver(account.maildir, b"Subject: gone\r\n\r\nexpunged before the rule starts\r\n")
        inbox = MailStore(account.maildir).folder("INBOX")  # UID 1 for it
    for i, message in enumerate(mailbox.messages):
        name = deliver(account.maildir, message)
        if i in mailbox.read:  # a reader has seen it: cur/, flagged seen (maildir(5))
            os.rename(account.maildir / "new" / name, account.maildir / "cur" / f"{name}:2,S")
    if gap:
        inbox.expunge([m.uid for m in inbox.messages()])
        inbox.refresh()  # UIDs 2, 3, 4 for the messages
    endpoint = world.host(mailbox.host).services[service]
    return Served(probe, world, endpoint.host, endpoint.port, account.password, ended, mailbox)
