"""Where does a recipient's mail go? The routing decision an MTA makes at RCPT time.

:func:`route` is a pure function and a seam: given what the MTA knows about one
``RCPT TO`` (the address, this host's domains and mailboxes, who the client is), it
answers :class:`Local` (store it in this mailbox), :class:`Relay` (send it on, by MX)
or :class:`Refuse` (with the SMTP reply). The rule that matters most is the last one:
mail for other domains is relayed only for clients that may relay (RFC 5321 §3.6.2;
an MTA that relays for anyone is an *open relay*, and spammers find it in hours).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..boundary import fenced
from ..smtp import replies


@dataclass(frozen=True)
class RouteRequest:
    """What the MTA knows when a client says ``RCPT TO:<recipient>``."""

    recipient: str  # as the client wrote it: betty@brilliant.com
    domain: str  # its domain, lower case, no trailing dot
    local_domains: frozenset[str]  # the domains this host receives mail for
    mailboxes: frozenset[str]  # every deliverable address here, lower case (postmaster too)
    role: str  # "smtp" (port 25: mail for us) or "submission" (port 587: our users' outgoing mail)
    authenticated: str = ""  # the AUTH login, "" if the client did not log in
    trusted: bool = False  # the client is in this host's trusted networks (Postfix: mynetworks)


@dataclass(frozen=True)
class Local:
    """Deliver into the mailbox ``mailbox`` (an address in ``RouteRequest.mailboxes``)."""

    mailbox: str


@dataclass(frozen=True)
class Relay:
    """Queue it and send it on to the domain's mail exchanger (MX)."""


@dataclass(frozen=True)
class Refuse:
    """Refuse the recipient with this reply, e.g. ``550 5.1.1 <x@y>: user unknown``."""

    reply: str


Route = Local | Relay | Refuse


@fenced("route")
def route(request: RouteRequest) -> Route:
    """The lab MTA's routing: local domains are delivered to existing mailboxes (an
    unknown user is refused at once, RFC 5321 §3.3, so no bounce is ever needed); other
    domains are relayed only on the submission service, for logged-in users or trusted
    networks; everyone else gets 454 Relay access denied, as Postfix answers."""
    if request.domain in request.local_domains:
        address = request.recipient.lower()
        if address in request.mailboxes:
            return Local(address)
        return Refuse(replies.UNKNOWN_USER.format(request.recipient))
    if request.role == "submission" and (request.authenticated or request.trusted):
        return Relay()
    return Refuse(replies.RELAY_DENIED.format(request.recipient))
