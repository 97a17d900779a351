"""Everything a student's part returns, raises or builds on, in one import.

    from labkit.lab import NextHop, PermanentMXError, TemporaryMXError, NullMXError

Each lab replaces one part of the running mail system with the student's own code
(``world.use(resolve_mx=resolve_mx)``). The world calls it safely: off the event loop,
with a deadline, its answer checked; a mistake is answered the way a careful mail
server would (the message stays queued, the client gets a 4xx) and the trace shows it
with your traceback. labkit's own answer for a part is fenced off while your code for
that part runs: calling it raises ``ReferenceUsed``.

What you may import from labkit (:data:`STUDENT_MODULES`): this module, ``labkit.notebook``
(the world and its pictures), ``labkit.checks`` and, in the IMAP lab, ``labkit.imap.parser``;
the types below under any of the names labkit gives them. When your lab is graded, labkit's
own answers are not there at all.

The seams, how the world calls them, and what they may use:

"""

from __future__ import annotations

from .dns.hops import MXError, NextHop, NullMXError, PermanentMXError, TemporaryMXError
from .fence import ReferenceUsed
from .mta.types import Failure, HopInfo, Local, MTAPolicy, Refuse, Relay, RouteRequest, Transaction
from .seams import SEAMS
from .session import BaseSession as Session
from .session import PeerInfo
from .smtp.reply import Reply, SendResult, SMTPError, SMTPPermanentError, SMTPTransientError

__doc__ = (__doc__ or "") + "\n\n".join(spec.doc for spec in SEAMS.values()) + "\n"

MTA = MTAPolicy  # the name the labs used first


def __getattr__(name: str):  # the IMAP lab's store on first use: it is labkit's Maildir code, not a type
    if name in ("MailStore", "StoreError"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

STUDENT_MODULES = ("labkit.lab", "labkit.notebook", "labkit.checks", "labkit.imap.parser")
"""The labkit modules a student's code may import (and their submodules)."""

__all__ = [
    "Failure", "HopInfo", "Local", "MTA", "MTAPolicy", "MXError", "MailStore", "NextHop", "NullMXError", "PeerInfo",
    "PermanentMXError", "ReferenceUsed", "Refuse", "Relay", "Reply", "RouteRequest", "SMTPError",
    "SMTPPermanentError", "SMTPTransientError", "SendResult", "Session", "StoreError", "TemporaryMXError",
    "Transaction",
]
