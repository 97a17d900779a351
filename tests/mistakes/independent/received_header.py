"""``received_header`` as a student writes it (its own folding, the date from a
datetime), and its one-mistake variants."""

from __future__ import annotations

import email.policy
import textwrap
from datetime import datetime, timezone
from email.header import Header
from email.utils import format_datetime

WIDTH = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters


def fold(text: str) -> str:
    """Greedy folding at spaces: each space that would pass the width becomes CRLF + tab."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > WIDTH:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\r\n\t".join([*lines, line])


def make(*, textwrap_hyphens=False, policy_fold=False, header_encode=False, naive_date=False, iso_date=False,
         date_before_for=False, first_recipient=False, no_parentheses=False):
    def received_header(hop):
        seen = f"{hop.peer_name} [{hop.peer_address}]" if hop.peer_name else f"[{hop.peer_address}]"
        clauses = [f"from {hop.helo} {seen}" if no_parentheses else f"from {hop.helo} ({seen})",
                   f"by {hop.by}", f"with {hop.protocol}", f"id {hop.queue_id}"]
        if len(hop.recipients) == 1 or first_recipient:
            clauses.append(f"for <{hop.recipients[0]}>")
        when = datetime.fromtimestamp(hop.timestamp, timezone.utc)
        if naive_date:
            date = datetime.fromtimestamp(hop.timestamp).strftime("%a, %d %b %Y %H:%M:%S %z").strip()
        elif iso_date:
            date = when.isoformat()
        else:
            date = format_datetime(when.astimezone())
        if date_before_for and len(clauses) == 5:
            value = " ".join(clauses[:4]) + f"; {date} " + clauses[4]
        else:
            value = " ".join(clauses) + f"; {date}"
        if textwrap_hyphens:  # long words kept whole, but a hyphen is a place to break
            return "\r\n\t".join(textwrap.wrap(f"Received: {value}", WIDTH, break_long_words=False))
        if policy_fold:  # the email package folds headers: why not this one
            return email.policy.SMTP.fold("Received", value)
        if header_encode:
            return "Received: " + Header(value, header_name="Received").encode()
        return fold(f"Received: {value}")

    return received_header


good = make()

MISTAKES = {
    "textwrap breaks names at their hyphens": (make(textwrap_hyphens=True), "folding", "intact"),
    "folded by email.policy (long names become =?utf-8?q?...?=)": (make(policy_fold=True), "folding", "intact"),
    "folded by email.header.Header (bare LF)": (make(header_encode=True), "field", "header injection"),
    "a naive datetime: no time zone": (make(naive_date=True), "date", "numeric time zone"),
    "an ISO 8601 date": (make(iso_date=True), "date", "formatdate"),
    "the date in the middle": (make(date_before_for=True), "date", "last"),
    "always the first recipient in 'for'": (make(first_recipient=True), "for-one", "Bcc"),
    "TCP-info without parentheses": (make(no_parentheses=True), "from", "TCP-info"),
}
