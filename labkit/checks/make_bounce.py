"""Checks for ``make_bounce``, the delivery status notification back to the sender.

Each rule builds a bounce for two failed recipients (one with an enhanced status code in
its diagnostic, one without, refused by a remote MTA) and reads it with the stdlib
``email`` package, as a mail client and a bounce processor would: a multipart/report
(RFC 6522) with a human part, a message/delivery-status part (RFC 3464) and the original
headers (in any transfer encoding). The rules ending in ``-elsewhere`` ask about another
bounce (one recipient, an original with a UTF-8 subject). The last rule makes
smtp.awesome.com bounce a real message through it. ::

    from labkit import checks
    checks.make_bounce.run(make_bounce)
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from ..mta.types import Failure
from .harness import ALBERT, CAROL, Broken, Probe, Rule, entry_points, parsed

NOBODY = "nobody@typo.brilliant.com"
HOST = "smtp.awesome.com"
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class Case:
    """One bounce to ask for: who failed and why, and the message that bounced."""

    failures: tuple[Failure, ...]
    original: bytes
    message_id: str
    subject: str
    queue_id: str = "4F2A17C9"
    arrived: float = 1760000000.0

    @property
    def step(self) -> str:
        return (f"make_bounce(reporting_mta={HOST!r}, sender={ALBERT!r}, failures=["
                f"{', '.join(f.recipient for f in self.failures)}], ...)")


PARTY = Case((Failure(NOBODY, "550 5.1.2 typo.brilliant.com: Host or domain name not found (NXDOMAIN)"),
              Failure(CAROL, "554 Transaction failed: go away", remote_mta="mx2.careful.com")),
             b"From: Albert <albert@awesome.com>\r\nTo: nobody@typo.brilliant.com, Carol <carol@careful.com>\r\n"
             b"Subject: Party on Friday\r\nMessage-ID: <party.1@awesome.com>\r\n\r\nBring snacks.\r\n",
             "<party.1@awesome.com>", "Party on Friday")
# Elsewhere (the hidden variants): one recipient a remote MTA refused; a UTF-8 subject, folded.
ELSEWHERE = Case((Failure("tom@twins.com", "550 5.1.1 <tom@twins.com>: Recipient address rejected",
                          remote_mta="mx.twins.com"),),
                 "From: Albert <albert@awesome.com>\r\nTo: tom@twins.com\r\nSubject: Caf\u00e9 au lait\r\n"
                 "Message-ID:\r\n <cafe.2@awesome.com>\r\n\r\nTomorrow?\r\n".encode(),
                 "<cafe.2@awesome.com>", "Caf\u00e9 au lait", queue_id="77AA0C3E")


# The email package's generator, writing a message/delivery-status part whose payload is a str.
_STATUS_AS_TEXT = "_handle_message_delivery_status"


def _bounce(probe: Probe, case: Case = PARTY) -> Any:
    """The student's bounce for ``case``, parsed by the email package."""
    try:
        data = probe(reporting_mta=HOST, queue_id=case.queue_id, sender=ALBERT, failures=list(case.failures),
                     original=case.original, arrived=case.arrived, step=case.step)
    except Broken as broken:
        if _STATUS_AS_TEXT in broken.got:
            broken.hint = ("the email package writes a message/delivery-status part from a list of header blocks, "
                           "not from a str: part.set_payload([block, ...]) with each block an email.message.Message "
                           "(block['Final-Recipient'] = 'rfc822; ...'); or write the whole bounce as text")
        raise
    return parsed(data)


def _part(bounce: EmailMessage, index: int, what: str, types: tuple[str, ...]) -> EmailMessage:
    parts = list(bounce.iter_parts())
    found = parts[index].get_content_type() if index < len(parts) else "nothing"
    if found not in types:
        raise Broken(f"part {index + 1} of the multipart/report", f"{what} ({' or '.join(types)})", found,
                     hint="a DSN's parts, in order: the explanation for people, message/delivery-status, the "
                          "original message or its headers (RFC 6522 §3, RFC 3464 §2)")
    return parts[index]


def _blocks(bounce: EmailMessage) -> list:
    """The header blocks of the message/delivery-status part: per message, per recipient."""
    return _part(bounce, 1, "the status report", ("message/delivery-status",)).get_payload()


def _recipient_block(blocks: list, failure: Failure) -> Any:
    for block in blocks[1:]:
        kind, _, address = str(block.get("Final-Recipient", "")).partition(";")
        if kind.strip().lower() == "rfc822" and address.strip().lower() == failure.recipient:
            return block
    raise Broken("the message/delivery-status part", f"a block with Final-Recipient: rfc822; {failure.recipient}",
                 " / ".join(repr(dict(b)) for b in blocks), hint="after the per-message block (Reporting-MTA), one "
                 "block per recipient, each after a blank line; the address as it is, without <> (RFC 3464 §2.1, "
                 "§2.3.2)")


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


# -- the rules ---------------------------------------------------------------------------
def report(probe: Probe) -> None:
    bounce = _bounce(probe)
    defects = [f"{type(d).__name__} in {part.get_content_type()}" for part in bounce.walk() for d in part.defects]
    if defects:
        raise Broken("the email package reading your bounce", "no defects", ", ".join(defects),
                     hint="each part starts with --BOUNDARY, the last one ends with --BOUNDARY-- (RFC 2046 §5.1.1)")
    if str(bounce.get("MIME-Version", "")).strip() != "1.0":
        raise Broken("the bounce's header", "MIME-Version: 1.0", repr(bounce.get("MIME-Version")),
                     hint="without MIME-Version a mail client shows the parts as one text (RFC 2045 §4)")
    date = bounce.get("Date")
    if date is None or getattr(date, "datetime", None) is None:
        raise Broken("the bounce's header", "Date: the moment it was written, e.g. "
                     f"{email.utils.formatdate(localtime=True)}", repr(date), hint="a bounce is a message like any "
                     "other: From, To and Date are required (RFC 5322 §3.6); email.utils.formatdate(localtime=True)")
    _part(bounce, 0, "the explanation for people", ("text/plain", "multipart/alternative"))
    _blocks(bounce)


def explains(probe: Probe) -> None:
    text = _part(_bounce(probe), 0, "the explanation for people", ("text/plain", "multipart/alternative"))
    body = text.get_body(("plain",)) if text.is_multipart() else text
    content = body.get_content() if body is not None else ""
    missing = [f.recipient for f in PARTY.failures if f.recipient not in content.lower()]
    if missing:
        raise Broken("the human-readable part", f"each failed recipient named: {', '.join(missing)}",
                     repr(content[:300]), hint="Albert reads this part: say which addresses failed, and why")


def per_recipient(probe: Probe, case: Case = PARTY) -> None:
    blocks = _blocks(_bounce(probe, case))
    mta = str(blocks[0].get("Reporting-MTA", "")) if blocks else ""
    if not _same(mta.replace(" ", ""), f"dns;{HOST}"):
        raise Broken("the per-message block", f"Reporting-MTA: dns; {HOST}", repr(mta) if mta else "none",
                     hint="the first block of message/delivery-status names this MTA (RFC 3464 §2.2.2)")
    for failure in case.failures:
        block = _recipient_block(blocks, failure)
        where = f"the block for {failure.recipient}"
        if str(block.get("Action", "")).strip().lower() != "failed":
            raise Broken(where, "Action: failed", repr(block.get("Action")),
                         hint="Action says what became of the recipient: failed, delayed, delivered... (RFC 3464 "
                              "§2.3.3)")
        code = str(block.get("Diagnostic-Code", ""))
        if ";" not in code or not _same(failure.diagnostic, code.partition(";")[2]):
            raise Broken(where, f"Diagnostic-Code: smtp; {failure.diagnostic}",
                         repr(code), hint="Diagnostic-Code: the type (smtp), ';', then the reply as the server gave "
                                          "it (RFC 3464 §2.3.6)")
        remote = block.get("Remote-MTA")
        if failure.remote_mta and remote is not None and not _same(str(remote).replace(" ", ""),
                                                                   f"dns;{failure.remote_mta}"):
            raise Broken(where, f"Remote-MTA: dns; {failure.remote_mta} (failure.remote_mta), or no Remote-MTA",
                         repr(str(remote)), hint="Remote-MTA names the host that refused the message, "
                         "failure.remote_mta, not this one (RFC 3464 §2.3.5)")
        if not failure.remote_mta and remote is not None:
            raise Broken(where, "no Remote-MTA field: no remote MTA was involved (failure.remote_mta is '')",
                         f"Remote-MTA: {remote}", hint="Remote-MTA MUST NOT be there when no remote MTA was "
                         "involved: this failure was found here, by DNS (RFC 3464 §2.3.5)")


def status(probe: Probe) -> None:
    blocks = _blocks(_bounce(probe))
    for failure in PARTY.failures:
        found = _STATUS.search(failure.diagnostic)
        expected = found.group(1) if found else "5.x.y"
        got = str(_recipient_block(blocks, failure).get("Status", "")).strip()
        if not (got == expected if found else re.fullmatch(r"5\.\d{1,3}\.\d{1,3}", got)):
            raise Broken(f"the block for {failure.recipient}", f"Status: {expected}", repr(got),
                         hint=f"Status is the enhanced code x.y.z (RFC 3463) from the diagnostic "
                              f"{failure.diagnostic[:40]!r}..., not the reply code; 5.0.0 when there is none "
                              "(RFC 3464 §2.3.4)")


def _returned(part: EmailMessage) -> EmailMessage:
    """The original's header as a mail client reads it from the third part: a message
    (message/rfc822), or text/rfc822-headers in whatever transfer encoding it was sent."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0]
    text = part.get_payload(decode=True) or b""
    return parsed(text.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0] + b"\n\n")


def original(probe: Probe, case: Case = PARTY) -> None:
    part = _part(_bounce(probe, case), 2, "the original message's header", ("text/rfc822-headers",
                                                                             "message/rfc822"))
    returned = _returned(part)
    message_id, subject = str(returned.get("Message-ID", "")).strip(), str(returned.get("Subject", ""))
    if message_id != case.message_id or subject != case.subject:
        raise Broken("the third part, decoded", f"the original header: Subject: {case.subject}, Message-ID: "
                     f"{case.message_id}", f"Subject: {subject!r}, Message-ID: {message_id!r} in "
                     f"{str(part)[:300]!r}", hint="the whole header of the original comes back: Albert's mail "
                     "client finds which message bounced by its Message-ID (RFC 6522 §3, RFC 3462)")


def no_loops(probe: Probe) -> None:
    bounce = _bounce(probe)
    sender = email.utils.parseaddr(str(bounce["From"]))[1].lower()
    if sender.partition("@")[0] not in ("mailer-daemon", "postmaster"):
        raise Broken("the bounce's From:", f"MAILER-DAEMON@{HOST}", repr(str(bounce["From"])),
                     hint="a bounce comes from the mail system, never from the sender: a bounce of a bounce to "
                          "the sender would loop (RFC 5321 §4.5.5)")
    auto = str(bounce.get("Auto-Submitted", "")).strip().lower()
    if auto not in ("auto-replied", "auto-generated"):
        raise Broken("the bounce's header", "Auto-Submitted: auto-replied", repr(bounce.get("Auto-Submitted")),
                     hint="vacation programs and other robots must not answer a bounce (RFC 3834 §5)")


def in_the_world(probe: Probe) -> None:
    world = probe.world(host=HOST)
    world.send(ALBERT, [NOBODY], b"From: Albert <albert@awesome.com>\r\nSubject: Typo\r\n\r\nHi!\r\n")
    step = f"Albert -> {HOST} -> {NOBODY}: NXDOMAIN, so {HOST} bounces it (your make_bounce) to Albert"
    probe.delivered(world, ALBERT, step=step)
    made = any(e.kind == "seam-call" and e.seam == "make_bounce" for e in world.tracer.events())
    bounce = probe.stored(world, ALBERT, 0)
    if not made or bounce.get_content_type() != "multipart/report":
        raise Broken(step, "your bounce in Albert's INBOX", f"{bounce.get_content_type()}: {bounce['Subject']}")


RULES: list[Rule] = [
    Rule("report", "a multipart/report the email package reads (MIME-Version, Date): explanation, then "
         "message/delivery-status", "RFC 6522 §3, RFC 3464 §2, RFC 5322 §3.6", report),
    Rule("explains", "the first part tells Albert which recipients failed", "RFC 6522 §3", explains),
    Rule("per-recipient", "Reporting-MTA, and per recipient Final-Recipient, Action: failed, Diagnostic-Code, "
         "Remote-MTA only where one refused", "RFC 3464 §2.2, §2.3", per_recipient),
    Rule("status", "Status is the x.y.z code from the diagnostic", "RFC 3464 §2.3.4, RFC 3463", status),
    Rule("original", "the original message's header comes back", "RFC 6522 §3", original),
    Rule("no-loops", "From MAILER-DAEMON, Auto-Submitted: auto-replied", "RFC 3834 §5, RFC 5321 §4.5.5", no_loops),
    Rule("in-the-world", f"{HOST} bounces mail for {NOBODY} to Albert with your make_bounce", "RFC 5321 §6.1",
         in_the_world),
    Rule("per-recipient-elsewhere", "another bounce (one recipient, refused by mx.twins.com): its block",
         "RFC 3464 §2.2, §2.3", lambda probe: per_recipient(probe, ELSEWHERE), variant_of="per-recipient"),
    Rule("original-elsewhere", "another bounce (a UTF-8 subject, a folded Message-ID): the header comes back",
         "RFC 6522 §3", lambda probe: original(probe, ELSEWHERE), variant_of="original"),
]

run, check = entry_points("make_bounce", RULES)
