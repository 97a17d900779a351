"""The users of one mail host: who they are, their passwords, where their mail lives,
and how long a client that keeps guessing their passwords must wait."""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Account:
    address: str  # betty@brilliant.com
    password: str
    maildir: Path  # the user's Maildir root (INBOX); folders are Maildir++ subfolders

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]


class LoginPenalty:
    """How long the reply to a failed login waits, per client address, as Dovecot does:
    its ``auth_failure_delay`` (2 s) for a first failure, and its anvil's auth penalty,
    which doubles that for each further failure in a row from the same address (4, 8)
    up to 15 s. A successful login clears the address's count and is never delayed.
    So a password is guessed at a few tries a minute, not a thousand a second.

    The sessions only say how long (their ``reply_delay``); the server waits without
    holding a thread (``asyncio.sleep``). Thread-safe; remembers at most
    :attr:`MAX_CLIENTS` addresses (the least recently failed are forgotten)."""

    MAX_CLIENTS = 10_000

    def __init__(self, delay: float = 0.0, maximum: float = 15.0) -> None:
        self.delay, self.maximum = delay, maximum
        self._failures: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def outcome(self, client: str, ok: bool) -> float:
        """Count a login from ``client``: a successful one (``ok``) clears its count (its
        next failure counts as a first) and waits 0 s; a failed one returns the seconds
        its reply must wait."""
        with self._lock:
            if ok:
                self._failures.pop(client, None)
                return 0.0
            count = self._failures.pop(client, 0) + 1
            self._failures[client] = count  # now the most recent: forgotten last
            while len(self._failures) > self.MAX_CLIENTS:
                self._failures.popitem(last=False)
        return min(self.delay * 2 ** min(count - 1, 30), self.maximum)


class Accounts:
    """Looks users up by full address or by local part (``betty`` or ``betty@brilliant.com``).
    ``penalty`` delays failed logins (by default not at all)."""

    def __init__(self, accounts: list[Account] | None = None, penalty: LoginPenalty | None = None) -> None:
        self.penalty = penalty or LoginPenalty()
        self._by_login: dict[str, Account] = {}
        self._by_address: dict[str, Account] = {}
        for account in accounts or ():
            self.add(account)

    def add(self, account: Account) -> None:
        self._by_address[account.address.lower()] = account
        self._by_login[account.address.lower()] = account
        self._by_login.setdefault(account.local_part.lower(), account)

    def __iter__(self):
        return iter(self._by_address.values())

    def __len__(self) -> int:
        return len(self._by_address)

    def find(self, login: str) -> Account | None:
        """The account for a login name or address (case-insensitive), or None."""
        return self._by_login.get(login.lower())

    def by_address(self, address: str) -> Account | None:
        """The account whose mailbox is ``address`` (RFC 5321 §2.4: the local part *may*
        be case-sensitive; like most MTAs, labkit folds it)."""
        return self._by_address.get(address.lower())

    def authenticate(self, login: str, password: str) -> Account | None:
        """The account if ``password`` is right for ``login``; compares in constant time."""
        account = self.find(login)
        if account is None:
            hmac.compare_digest(password.encode(), b"x" * len(password.encode()))
            return None
        if hmac.compare_digest(password.encode(), account.password.encode()):
            return account
        return None
