"""A student's ``received_header``, right, and wrong in each of the usual ways.

:func:`make` builds the stamp a careful student writes; each keyword turns on one classic
mistake, so every wrong one differs from the right one in one place.
"""

from __future__ import annotations

import textwrap
import time
from email.utils import formatdate


def make(*, no_tcp_info=False, no_brackets=False, name_for_helo=False, always_esmtp=False, for_everyone=False,
         ctime_date=False, gmt_zone=False, zone_unknown=False, no_semicolon=False, dated_now=False, one_line=False,
         lf_folding=False, textwrap_fold=False):
    def received_header(hop):
        address = hop.peer_address if no_brackets else f"[{hop.peer_address}]"
        seen_as = f"{hop.peer_name} {address}" if hop.peer_name else address
        said = (hop.peer_name or hop.peer_address) if name_for_helo else hop.helo
        clauses = [f"from {said}" if no_tcp_info else f"from {said} ({seen_as})",
                   f"by {hop.by}",
                   f"with {'ESMTP' if always_esmtp else hop.protocol}",
                   f"id {hop.queue_id}"]
        if len(hop.recipients) == 1 or for_everyone:
            clauses.append("for " + ", ".join(f"<{r}>" for r in hop.recipients))
        if ctime_date:
            when = time.ctime(hop.timestamp)
        elif gmt_zone:
            when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(hop.timestamp))
        else:
            when = formatdate(None if dated_now else hop.timestamp, localtime=not zone_unknown)
        fold = " " if one_line else "\n\t" if lf_folding else "\r\n\t"
        if textwrap_fold:
            return "\r\n\t".join(textwrap.wrap(f"Received: {' '.join(clauses)}; {when}", 76))
        return "Received: " + fold.join(clauses) + (" " if no_semicolon else "; ") + when

    return received_header


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "no TCP-info after the HELO name": (make(no_tcp_info=True), "from", "TCP-info"),
    "the address without brackets": (make(no_brackets=True), "from", "square brackets"),
    "the client's name instead of its HELO": (make(name_for_helo=True), "from", "HELO name"),
    "always 'with ESMTP'": (make(always_esmtp=True), "by-with-id", "RFC 3848"),
    "every recipient in 'for'": (make(for_everyone=True), "for-one", "Bcc"),
    "time.ctime() date": (make(ctime_date=True), "date", "numeric time zone"),
    "a GMT zone name": (make(gmt_zone=True), "date", "obsolete"),
    "formatdate's -0000 (zone unknown)": (make(zone_unknown=True), "date", "unknown"),
    "no ';' before the date": (make(no_semicolon=True), "date", "after a ';'"),
    "dated now, not when received": (make(dated_now=True), "date", "hop.timestamp"),
    "never folded": (make(one_line=True), "folding", "fold it"),
    "folded with a bare LF": (make(lf_folding=True), "field", "header injection"),
    "textwrap cuts long names": (make(textwrap_fold=True), "folding", "intact"),
}
