"""What the world's SMTP servers really accepted, per client connection.

A student's ``send_mail`` reports what happened; the world can see the other end too.
Every world SMTP service records, by the client's socket address, which recipients it
accepted (after the message was durable) and when the connection ended. After a
student's client returns, the relaying MTA waits for the receiving end of that very
connection to finish and compares: a recipient claimed delivered that the receiving host
never accepted stays queued; one the receiving host accepted counts as delivered
whatever the client then said, so fixing the client and retrying never sends it twice.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

Client = tuple[str, int]  # the client's (ip, port) as the server sees it
MAX_KEPT = 10_000


@dataclass
class Receipt:
    accepted: dict[str, str] = field(default_factory=dict)  # recipient (lower case) -> queue id
    open: bool = True


class Receipts:
    def __init__(self) -> None:
        self._by_client: collections.OrderedDict[Client, Receipt] = collections.OrderedDict()
        self._cond = threading.Condition()
        self.endpoints: set[tuple[str, int]] = set()  # the world's SMTP listeners

    def covers(self, host: str, port: int) -> bool:
        """Whether (host, port) is a world SMTP service, so its receipts exist."""
        return (host, port) in self.endpoints

    def _get(self, client: tuple) -> Receipt:
        client = (client[0], client[1])  # an IPv6 peername has four fields
        receipt = self._by_client.get(client)
        if receipt is None:
            receipt = self._by_client[client] = Receipt()
            while len(self._by_client) > MAX_KEPT:  # bounded: forget the oldest
                self._by_client.popitem(last=False)
        return receipt

    def opened(self, client: tuple) -> None:
        with self._cond:
            self._by_client.pop((client[0], client[1]), None)  # a reused port: a new connection
            self._get(client)

    def accepted(self, client: tuple, recipients: list[str], queue_id: str) -> None:
        with self._cond:
            receipt = self._get(client)
            receipt.accepted.update((r.lower(), queue_id) for r in recipients)

    def closed(self, client: tuple) -> None:
        with self._cond:
            self._get(client).open = False
            self._cond.notify_all()

    def wait(self, client: tuple, timeout: float = 2.0) -> dict[str, str]:
        """The recipients accepted over the connection from ``client`` (-> queue id),
        once the server has finished with it (or after ``timeout``). Forgets them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            client = (client[0], client[1])
            while True:
                receipt = self._by_client.get(client)
                remaining = deadline - time.monotonic()
                if receipt is None or not receipt.open or remaining <= 0:
                    break
                self._cond.wait(remaining)
            receipt = self._by_client.pop(client, None)
        return dict(receipt.accepted) if receipt else {}
