"""Where does a recipient's mail go? The routing decision an MTA makes at RCPT time.

:func:`route` is a pure function and a seam: given what the MTA knows about one
``RCPT TO`` (the address, this host's domains and mailboxes, who the client is), it
answers :class:`Local` (store it in this mailbox), :class:`Relay` (send it on, by MX)
or :class:`Refuse` (with the SMTP reply). The rule that matters most is the last one:
mail for other domains is relayed only for clients that may relay (RFC 5321 §3.6.2;
an MTA that relays for anyone is an *open relay*, and spammers find it in hours).
"""

from __future__ import annotations

from ..smtp import replies
from .types import Local, Refuse, Relay, Route, RouteRequest


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
