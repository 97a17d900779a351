"""The users of one mail host: who they are, their passwords, where their mail lives."""

from __future__ import annotations

import hmac
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


class Accounts:
    """Looks users up by full address or by local part (``betty`` or ``betty@brilliant.com``)."""

    def __init__(self, accounts: list[Account] | None = None) -> None:
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
