"""What the POP3 and IMAP checks share: Betty's mailbox with three known messages, served
by the student's session class on smtp.brilliant.com in a running lab world.

The world runs the session through its fault boundary, so a crash, a wrong type or a
hang there is a seam-error trace event plus the protocol's failure line on the wire; the
rules talk to it with poplib/imaplib or a :class:`~labkit.checks.peers.LineClient` inside
:meth:`Probe.watching`, which turns such a failure into the verdict.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..maildir import deliver
from .harness import BETTY, Broken, Probe
from .peers import LineClient

if TYPE_CHECKING:
    from ..world import World

HOST = "smtp.brilliant.com"
# A line with a single ".", lines starting with "." (dot-stuffing), and 8-bit text whose
# octets are not its characters (sizes).
MESSAGES = (
    b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: Dinner\r\n\r\n"
    b"Tonight at eight?\r\n.\r\n..two dots\r\n.hidden\r\n-Albert\r\n",
    "From: Carol <carol@careful.com>\r\nTo: betty@brilliant.com\r\nSubject: Grüße\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Schöne Grüße aus Köln!\r\n".encode(),
    b"From: Pat <pat@plain.com>\r\nTo: betty@brilliant.com\r\nSubject: ping\r\n\r\npong\r\n",
)


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

    def stored(self) -> int:
        """How many messages Betty's Maildir holds (new/ and cur/)."""
        return len(self.world.messages(BETTY))


def serve(probe: Probe, service: str) -> Served:
    """A world whose smtp.brilliant.com serves ``service`` with the student's session."""
    ended: "queue.Queue[None]" = queue.Queue()

    def observed(peer: Any, accounts: Any, *, hostname: str) -> _Observed:
        return _Observed(probe.impl(peer, accounts, hostname=hostname), ended)

    world = probe.world(host=HOST, part=observed)
    account = world.mailbox(BETTY)
    for message in MESSAGES:
        deliver(account.maildir, message)
    endpoint = world.host(HOST).services[service]
    return Served(probe, world, endpoint.host, endpoint.port, account.password, ended)
