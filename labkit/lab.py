"""Everything a student's part returns, raises or builds on, in one import.

    from labkit.lab import NextHop, PermanentMXError, TemporaryMXError, NullMXError

Each lab replaces one part of the running mail system with the student's own code
(``world.use(resolve_mx=resolve_mx)``). The world calls it safely: off the event loop,
with a deadline, its answer checked; a mistake is answered the way a careful mail
server would (the message stays queued, the client gets a 4xx) and the trace shows it
with your traceback. labkit's own answer for a part is fenced off while your code for
that part runs: calling it raises ``ReferenceUsed``.

The seams, how the world calls them, and what they may use:

``resolve_mx(domain, resolver) -> list[NextHop]``
    Ask DNS with the dnspython ``resolver`` given (``resolver.resolve(name, "MX")``).
    Return the hosts to try, in order; raise :class:`PermanentMXError` (bounce),
    :class:`TemporaryMXError` (try later) or :class:`NullMXError` (RFC 7505).
    Example: ``[NextHop("smtp.brilliant.com", 10, ("1.2.3.5",))]``.

``send_mail(sock, *, helo, mail_from, rcpt_to, message, auth=None, timeout=30.0) -> SendResult``
    Speak SMTP over the connected socket ``sock``. Return
    ``SendResult(accepted={rcpt: Reply}, refused={rcpt: Reply}, data_reply=Reply)``
    or raise :class:`SMTPTransientError` / :class:`SMTPPermanentError`.
    You may use :class:`Reply` to hold a reply; parsing replies is yours.

``received_header(hop: HopInfo) -> str``
    The ``Received:`` header field for one hop (RFC 5321 §4.4), folded with CRLF + tab.

``route(request: RouteRequest) -> Local | Relay | Refuse``
    Where one recipient's mail goes; never relay for strangers.

``deliver(maildir: Path, message: bytes) -> str``
    Store the message the qmail way (tmp/, fsync, rename into new/, fsync new/);
    return the file's name in ``new/``.

``next_retry(attempts, queued_for, *, schedule, max_queue_time) -> float | None``
    Seconds until the next attempt, or None to give up (bounce).

``make_bounce(*, reporting_mta, queue_id, sender, failures, original, arrived) -> bytes``
    The RFC 3464 delivery status notification, as message bytes.

``smtp_session(peer, mta, *, hostname) -> Session``, ``pop3_session(peer, accounts, *, hostname)``,
``imap_session(peer, accounts, *, hostname)``
    A sans-IO server session: subclass :class:`Session` and write ``start()``
    (the greeting) and ``receive(data)`` (replies to what arrived), as bytes; set
    ``self.closed = True`` to end the connection. An SMTP session asks ``mta`` (the
    host's policy, :class:`MTA`) at each step: ``mta.transaction(peer)``,
    ``mta.mail(txn, address, params)``, ``mta.rcpt(txn, address)``,
    ``mta.data(txn, message)``, ``mta.extensions()``; the reply strings they return
    are what you send. POP3 and IMAP sessions find users with
    ``accounts.authenticate(user, password)`` and mail with :class:`MailStore`; the
    IMAP lab may use :mod:`labkit.imap.parser` to read commands.

``sendmail``: a program (a path), used like ``/usr/sbin/sendmail`` by mutt and the checks;
    it finds the running world through ``$LABKIT_STATE_DIR`` (a notebook's world sets it).
"""

from __future__ import annotations

from .boundary import ReferenceUsed
from .dns.mx import MXError, NextHop, NullMXError, PermanentMXError, TemporaryMXError
from .mta.bounce import Failure
from .mta.core import MTA, Transaction
from .mta.received import HopInfo
from .mta.routing import Local, Refuse, Relay, RouteRequest
from .session import BaseSession as Session
from .session import PeerInfo
from .smtp.client import Reply, SendResult, SMTPError, SMTPPermanentError, SMTPTransientError
from .store import MailStore

__all__ = [
    "Failure", "HopInfo", "Local", "MTA", "MXError", "MailStore", "NextHop", "NullMXError", "PeerInfo",
    "PermanentMXError", "ReferenceUsed", "Refuse", "Relay", "Reply", "RouteRequest", "SMTPError",
    "SMTPPermanentError", "SMTPTransientError", "SendResult", "Session", "TemporaryMXError", "Transaction",
]
