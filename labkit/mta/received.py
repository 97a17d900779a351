"""The Received trace header (RFC 5321 §4.4): every relay stamps the message.

Reading a message's Received headers from the top down walks its path backwards, from
the last hop to the first. This module is a seam: a student's ``received_header`` with
the same signature replaces the reference in one line.
"""

from __future__ import annotations

import email.utils
import re
from datetime import datetime, timezone

from .types import HopInfo


def received_header(hop: HopInfo) -> str:
    """The ``Received:`` header field for ``hop``, folded, without a final CRLF.

    RFC 5321 §4.4 grammar: ``from`` (HELO name and TCP-info), ``by``, ``with``, ``id``,
    ``for`` (only when there is a single recipient, so Bcc recipients are not
    revealed, §7.2), then ``;`` and the date-time (RFC 5322 §3.6.7).
    """
    tcp_info = f"{hop.peer_name} [{hop.peer_address}]" if hop.peer_name else f"[{hop.peer_address}]"
    clauses = [
        f"from {hop.helo} ({tcp_info})",
        f"by {hop.by} (labkit) with {hop.protocol} id {hop.queue_id}",
    ]
    if len(hop.recipients) == 1:
        clauses.append(f"for <{hop.recipients[0]}>")
    # RFC 5322 §3.3: numeric zone; "+0000" is UTC ("-0000" would mean "zone unknown").
    date = email.utils.format_datetime(datetime.fromtimestamp(hop.timestamp, timezone.utc))
    return "Received: " + "\r\n\t".join(clauses) + f"; {date}"


_RECEIVED = re.compile(rb"^received:", re.IGNORECASE | re.MULTILINE)


def count_received(message: bytes) -> int:
    """How many Received headers the message's header section holds (loop detection)."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    header = message if end < 0 else message[:end]
    return len(_RECEIVED.findall(header))
