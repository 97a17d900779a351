"""One check of one setup: the :class:`~labkit.audit.target.Target`, and what its parts
learn on the way and pass on (TLS findings, how each service is reached, whose
password was refused)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .target import Target
from .tls import TLS


@dataclass
class Login:
    """One login with the user's password, and how it went."""

    service: str  # "IMAP", "POP3", "submission 587"
    rule: str  # the title of the rule whose row says so
    accepted: bool
    said: str = ""  # the server's refusal


@dataclass
class Visit:
    target: Target
    tls: TLS
    logins: list[Login] = field(default_factory=list)
    ways: dict[tuple[str, str], str] = field(default_factory=dict)  # (service, host) -> starttls|implicit|clear

    @classmethod
    def of(cls, target: Target) -> "Visit":
        return cls(target, TLS(target.ca_file))

    @property
    def credentials(self) -> bool:
        return bool(self.target.user and self.target.password)

    def no_credentials(self) -> str:
        """Why the rules that log in could not run."""
        what = "--user" if not self.target.user else "--password"
        return f"the roster gives no {what.strip('-')}" if self.target.roster else f"no {what} given"

    def refused(self, service: str, rule: str, said: str) -> None:
        self.logins.append(Login(service, rule, False, said))

    def accepted(self, service: str, rule: str) -> None:
        self.logins.append(Login(service, rule, True))
