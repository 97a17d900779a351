"""Checks for ``received_header``, the stamp a receiving MTA puts on top of each message.

Each rule hands the student's function a :class:`~labkit.mta.received.HopInfo` as
smtp.brilliant.com would, and reads the field back as mail software does: unfolded
(RFC 5322 §2.2.3), clause by clause (RFC 5321 §4.4), the date with ``email.utils``, the
whole with the stdlib ``email`` parser. The last rule plugs it into the lab world. ::

    from labkit import checks
    checks.received_header.run(received_header)
"""

from __future__ import annotations

import email.utils
import functools
import re
from datetime import datetime, timezone
from typing import Any

from .. import contracts
from ..mta.types import HopInfo
from .harness import ALBERT, BETTY, DAVE, DINNER, Broken, Probe, Rule, entry_points, parsed

HOST = "smtp.brilliant.com"
WHEN = 1760000000.0  # 2025-10-09 08:53:20 UTC: the moment the hop was received, not "now"
HOP = HopInfo(helo="smtp.awesome.com", peer_address="1.2.3.4", peer_name="smtp.awesome.com", by=HOST,
              protocol="ESMTP", queue_id="4F2A17C9", recipients=(BETTY,), timestamp=WHEN)
# A client the receiving host cannot name, whose HELO name is its own idea.
STRANGER = HopInfo(helo="laptop.local", peer_address="1.2.3.99", peer_name="", by=HOST, protocol="SMTP",
                   queue_id="0B77E1D2", recipients=(BETTY,), timestamp=WHEN)

# Elsewhere (the hidden variants): a client whose HELO and DNS names differ, on New Year's Eve.
ELSEWHERE = HopInfo(helo="mail.example.org", peer_address="203.0.113.7", peer_name="mx7.example.net",
                    by="mx.staff.brilliant.com", protocol="ESMTPA", queue_id="A1B2C3D4",
                    recipients=("dave@staff.brilliant.com",), timestamp=1767225599.0)

_COMMENT = re.compile(r"\([^()]*\)")
_FROM = re.compile(r"\bfrom\s+([^\s()]+)\s*\(([^)]*)\)", re.IGNORECASE)
_WORD = {name: re.compile(rf"\b{name}\s+<?([^\s<>();]+)>?", re.IGNORECASE) for name in ("by", "with", "id", "for")}
_NUMERIC_ZONE = re.compile(r"[+-]\d{4}$")


def _short(name: str) -> str:
    return name if len(name) <= 40 else f"{name[:16]}...({len(name)} characters)"


def _about(hop: HopInfo) -> str:
    return (f"received_header(hop) for {_short(hop.helo)} [{hop.peer_address}] -> {_short(hop.by)}, "
            f"{hop.protocol}, {len(hop.recipients)} recipient(s)")


def _stamp(probe: Probe, hop: HopInfo) -> str:
    return probe(hop, step=_about(hop))


def unfolded(field: str) -> str:
    """The field as one line: folding is CRLF before a space or tab (RFC 5322 §2.2.3)."""
    return re.sub(r"\r\n(?=[ \t])", "", field)


def _parts(field: str) -> tuple[str, str]:
    """(the clauses, the date after the last ';'); the date is "" without a ';'."""
    value = unfolded(field).split(":", 1)[1]
    clauses, semicolon, date = value.rpartition(";")
    return (clauses, date.strip()) if semicolon else (value, "")


def clause(field: str, name: str) -> str | None:
    """The value of the ``by``/``with``/``id``/``for`` clause (comments left out)."""
    found = _WORD[name].search(_COMMENT.sub(" ", _parts(field)[0]))
    return found.group(1) if found else None


def _expect(step: str, what: str, expected: str, got: str | None, field: str, hint: str = "") -> None:
    if got is None or got.lower() != expected.lower():
        raise Broken(step, f"{what} {expected}", f"{got!r} in {unfolded(field)!r}", hint=hint)


# -- the rules ---------------------------------------------------------------------------
def one_field(probe: Probe) -> None:
    field = _stamp(probe, HOP)
    read = parsed(f"{field}\r\nSubject: check\r\n\r\nbody\r\n".encode())
    received = read.get_all("Received") or []
    if len(received) != 1 or read["Subject"] != "check" or read.get_content() != "body\r\n":
        raise Broken("the email parser reading your field above a Subject and a body",
                     "one Received field, then the Subject and the body untouched",
                     f"{len(received)} Received field(s), Subject {read['Subject']!r}", hint="return one field: "
                     "'Received: ...' without a blank line or a second header (RFC 5322 §2.2)")


def from_clause(probe: Probe, hops: tuple[HopInfo, ...] = (HOP, STRANGER)) -> None:
    for hop in hops:
        field = _stamp(probe, hop)
        found = _FROM.search(_parts(field)[0])
        tcp_info = f"{hop.peer_name} [{hop.peer_address}]" if hop.peer_name else f"[{hop.peer_address}]"
        wanted = f"from {hop.helo} ({tcp_info})"
        if found is None:
            raise Broken(_about(hop), wanted, repr(unfolded(field)), hint="the from clause is the name the client "
                         "gave in HELO/EHLO, then in parentheses what this server saw: its name, if DNS gave one, "
                         "and its address in brackets (RFC 5321 §4.4, TCP-info)")
        helo, info = found.group(1), found.group(2).split()
        if helo.lower() != hop.helo.lower():
            raise Broken(_about(hop), wanted, repr(found.group(0)),
                         hint="after 'from' comes the HELO name, even when it is not the client's real name")
        if f"[{hop.peer_address}]" not in info or (hop.peer_name and hop.peer_name.lower() not in
                                                   [i.lower() for i in info]):
            raise Broken(_about(hop), wanted, repr(found.group(0)),
                         hint="the address goes in square brackets, as an address literal (RFC 5321 §4.1.3)")


def by_with_id(probe: Probe) -> None:
    for protocol, queue_id in (("ESMTPA", "9D3C0A11"), ("SMTP", "5E6F7A8B"), ("ESMTP", "4F2A17C9")):
        hop = HopInfo(HOP.helo, HOP.peer_address, HOP.peer_name, HOST, protocol, queue_id, (BETTY,), WHEN)
        field = _stamp(probe, hop)
        _expect(_about(hop), "by", HOST, clause(field, "by"), field)
        _expect(_about(hop), "with", protocol, clause(field, "with"), field,
                hint="hop.protocol says how the client spoke: SMTP (HELO), ESMTP (EHLO), ESMTPA (EHLO and AUTH), "
                     "RFC 3848")
        _expect(_about(hop), "id", queue_id, clause(field, "id"), field)


def for_one(probe: Probe) -> None:
    field = _stamp(probe, HOP)
    _expect(_about(HOP), "for", BETTY, clause(field, "for"), field,
            hint=f"with one recipient, end the clauses with 'for <{BETTY}>'")
    several = HopInfo(HOP.helo, HOP.peer_address, HOP.peer_name, HOST, "ESMTP", "77AA0C3E",
                      (BETTY, DAVE, "secret.admirer@brilliant.com"), WHEN)
    field = _stamp(probe, several)
    shown = [r for r in several.recipients if r.lower() in field.lower()]
    if shown:
        raise Broken(_about(several), "no recipient named: several recipients, so no 'for' clause",
                     repr(unfolded(field)), hint="a Bcc recipient would see who else got the message: with more "
                     "than one recipient leave 'for' out (RFC 5321 §7.2)")


def date(probe: Probe, hops: tuple[HopInfo, ...] = (HOP, STRANGER)) -> None:
    for hop in hops:
        field = _stamp(probe, hop)
        text = _COMMENT.sub("", _parts(field)[1]).strip()
        expected = f"'; ' then a date like {_utc(hop.timestamp)}"
        if not text:
            raise Broken(_about(hop), expected, repr(unfolded(field)),
                         hint="the date comes last, after a ';' (RFC 5321 §4.4)")
        when = _date(text)
        if len(text.split()) > 6 and _date(" ".join(text.split()[:6])) is not None:
            raise Broken(_about(hop), expected, repr(text), hint="the date comes last: after the ';' nothing but "
                         "the date; every clause (for <...> too) goes before it (RFC 5321 §4.4)")
        if text.endswith("-0000"):
            raise Broken(_about(hop), f"{expected} (a numeric time zone)", repr(text),
                         hint="-0000 means 'time zone unknown' (RFC 5322 §3.3), which is what formatdate(t) writes; "
                              "formatdate(t, localtime=True) gives this host's zone, +0000 is UTC")
        if when is None or when.tzinfo is None or not _NUMERIC_ZONE.search(text):
            raise Broken(_about(hop), f"{expected} (a numeric time zone)", repr(text),
                         hint="email.utils.formatdate(hop.timestamp, localtime=True) writes one; names like GMT or "
                              "EST are obsolete (RFC 5322 §3.3, §4.3)")
        if abs(when.timestamp() - hop.timestamp) > 1:
            raise Broken(_about(hop), f"the hop's time, {_utc(hop.timestamp)}", repr(text),
                         hint="use hop.timestamp: the stamp says when this host received the message")


def _date(text: str) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def _utc(timestamp: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(timestamp, timezone.utc))


def _long(word: str) -> str:
    """A long but valid domain name: four labels of up to 63 characters, with hyphens
    (where textwrap would break a word)."""
    return ".".join(f"{word}-hub{i}-".ljust(60, word[0]) for i in range(4))


def folding(probe: Probe) -> None:
    hop = HopInfo(_long("relay"), "1.2.3.4", _long("client"), _long("mx"), "ESMTP", "1A2B3C4D",
                  (f"{'b' * 64}@{_long('inbox')}",), WHEN)
    field = _stamp(probe, hop)  # the contract: no line over 998, folding only as CRLF + space/tab
    found = _FROM.search(_parts(field)[0])
    if found is None or found.group(1) != hop.helo or clause(field, "by") != hop.by or \
            clause(field, "for") != hop.recipients[0]:
        raise Broken(f"{_about(hop)}: a field of {len(unfolded(field))} characters",
                     "folding only between words: the names unfolded intact", repr(unfolded(field)[:300]) + "...",
                     hint="fold before a space (CRLF + tab): unfolding removes only the CRLF (RFC 5322 §2.2.3)")


def in_the_world(probe: Probe) -> None:
    stamps: list[str] = []

    @functools.wraps(probe.impl)
    def recorded(hop: HopInfo) -> Any:
        stamp = probe.impl(hop)
        stamps.append(stamp)
        return stamp

    world = probe.world(host=HOST, servers=[HOST], part=recorded)
    step = f"Albert -> smtp.awesome.com -> {HOST} (your received_header) -> Betty's Maildir"
    world.send(ALBERT, [BETTY], DINNER)
    probe.delivered(world, BETTY, step=step)
    top = str((probe.stored(world, BETTY, 0).get_all("Received") or [""])[0])
    mine = contracts.received_field(stamps[-1]).split(":", 1)[1] if stamps else ""
    if " ".join(top.split()) != " ".join(unfolded(mine).split()):
        raise Broken("Betty's stored copy, read with the email parser", f"your field on top: {unfolded(mine)!r}",
                     repr(top))


RULES: list[Rule] = [
    Rule("field", "one 'Received:' field, that the email parser reads back", "RFC 5322 §3.6.7", one_field),
    Rule("from", "from the HELO name, then (the client's name [its address])", "RFC 5321 §4.4", from_clause),
    Rule("by-with-id", "by this host, with the protocol (SMTP, ESMTP, ESMTPA), id the queue id",
         "RFC 5321 §4.4, RFC 3848", by_with_id),
    Rule("for-one", "'for <recipient>' with one recipient; no recipients shown when there are several",
         "RFC 5321 §4.4, §7.2", for_one),
    Rule("date", "ends with '; ' and the hop's date, numeric time zone", "RFC 5321 §4.4, RFC 5322 §3.3", date),
    Rule("folding", "a long field is folded (CRLF + space/tab between words), no line over 998",
         "RFC 5322 §2.1.1, §2.2.3", folding),
    Rule("in-the-world", f"on {HOST}: Betty's copy carries your Received field on top", "RFC 5321 §4.4",
         in_the_world),
    Rule("from-elsewhere", "another client: its HELO name, then (its DNS name [its address])", "RFC 5321 §4.4",
         lambda probe: from_clause(probe, (ELSEWHERE,)), variant_of="from"),
    Rule("date-elsewhere", "another moment (New Year's Eve, 23:59:59 UTC): that date, numeric time zone",
         "RFC 5321 §4.4, RFC 5322 §3.3", lambda probe: date(probe, (ELSEWHERE,)), variant_of="date"),
]


run, check = entry_points("received_header", RULES)
