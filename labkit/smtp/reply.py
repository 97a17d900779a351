"""What an SMTP client gets back and raises: replies, the send result, SMTP errors.

These are the types of the ``send_mail`` seam's contract (``labkit.lab`` re-exports
them): plain data, with no protocol code, so a student's client and labkit's own
(:mod:`labkit.smtp.client`) speak the same language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Stage = str
"""Where a transaction failed: connect, greeting, EHLO, AUTH, MAIL, RCPT or DATA."""


# -- replies --------------------------------------------------------------------------
# RFC 3463 §2 (class.subject.detail); RFC 2034 §4: its class matches the reply's.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) server reply."""

    code: int
    lines: tuple[str, ...]  # text of each line, without "250-" / "250 "

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code ("5.1.1") the text starts with, if any."""
        match = _ENHANCED.match(self.lines[0]) if self.lines else None
        if match and match.group(1) == str(self.code)[0]:
            return match.group(0)
        return None

    def one_line(self) -> str:
        """The reply on one line, for error messages: ``550 5.1.1 no such user``."""
        return " ".join([str(self.code), *(line for line in self.lines if line)])

    def __str__(self) -> str:
        last = len(self.lines) - 1
        return "\r\n".join(
            f"{self.code}{'-' if i < last else (' ' if line else '')}{line}" for i, line in enumerate(self.lines)
        )


# -- errors ---------------------------------------------------------------------------
class SMTPError(Exception):
    """An SMTP transaction failed at ``stage``; ``reply`` is the server's answer, if any."""

    def __init__(self, problem: str, *, stage: Stage, reply: Reply | None = None) -> None:
        self.problem, self.stage, self.reply = problem, stage, reply
        said = f" (server said: {reply.one_line()})" if reply is not None else ""
        super().__init__(f"{stage}: {problem}{said}")


class SMTPTransientError(SMTPError):
    """A 4xx reply or a connection problem: try again later."""


class SMTPPermanentError(SMTPError):
    """A 5xx reply or a message this server cannot take: give up, bounce."""


@dataclass
class SendResult:
    accepted: dict[str, Reply]  # recipient -> its RCPT reply, for recipients the server took
    refused: dict[str, Reply]  # recipient -> RCPT reply (4xx or 5xx)
    data_reply: Reply | None  # the reply after ".", None if no recipient was accepted
    transcript: list[tuple[str, str]] = field(default_factory=list)  # ("C" or "S", line)
