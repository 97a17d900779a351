"""A student's ``make_bounce``, right, and wrong in each of the usual ways.

:func:`make` builds the DSN a careful student writes (by hand, as text); each keyword
turns on one classic mistake, so every wrong one differs from the right one in one place.
"""

from __future__ import annotations

import re
import uuid
from email.utils import formatdate, make_msgid


def make(*, no_mime_version=False, unclosed=False, status_as_text=False, no_names=False, no_reporting_mta=False,
         one_block=False, action_bounced=False, reply_code_status=False, no_original=False, from_sender=False,
         to_recipients=False, no_auto_submitted=False):
    def make_bounce(*, reporting_mta, queue_id, sender, failures, original, arrived):
        boundary = f"=_bounce_{queue_id}_{uuid.uuid4().hex}"
        reasons = "\r\n".join(f"  <{f.recipient}>: {f.diagnostic}" for f in failures)
        human = "Sorry, your message could not be delivered." if no_names else (
            f"Your message could not be delivered to:\r\n\r\n{reasons}\r\n")
        per_message = "" if no_reporting_mta else f"Reporting-MTA: dns; {reporting_mta}\r\n"
        per_message += f"Arrival-Date: {formatdate(arrived, localtime=True)}\r\n"
        blocks = []
        for f in failures:
            found = re.search(r"\b[245]\.\d{1,3}\.\d{1,3}\b", f.diagnostic)
            code = f.diagnostic[:3] if reply_code_status else found.group(0) if found else "5.0.0"
            action = "bounced" if action_bounced else "failed"
            blocks.append(f"Final-Recipient: rfc822; {f.recipient}\r\nAction: {action}\r\nStatus: {code}\r\n"
                          f"Diagnostic-Code: smtp; {f.diagnostic}\r\n")
        if one_block:
            everyone = ", ".join(f.recipient for f in failures)
            blocks = [f"Final-Recipient: rfc822; {everyone}\r\nAction: failed\r\nStatus: 5.0.0\r\n"]
        headers = original.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace") + "\r\n"
        parts = [f"Content-Type: text/plain; charset=utf-8\r\n\r\n{human}",
                 f"Content-Type: {'text/plain' if status_as_text else 'message/delivery-status'}\r\n\r\n"
                 + "\r\n".join([per_message, *blocks])]
        if not no_original:
            parts.append(f"Content-Type: text/rfc822-headers\r\n\r\n{headers}")
        top = [f"From: {sender if from_sender else f'MAILER-DAEMON@{reporting_mta}'}",
               f"To: {', '.join(f.recipient for f in failures) if to_recipients else sender}",
               "Subject: Delivery Status Notification (Failure)",
               f"Date: {formatdate(localtime=True)}",
               f"Message-ID: {make_msgid(domain=reporting_mta)}"]
        if not no_auto_submitted:
            top.append("Auto-Submitted: auto-replied")
        if not no_mime_version:
            top.append("MIME-Version: 1.0")
        top.append(f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"')
        body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
        end = "" if unclosed else f"--{boundary}--\r\n"
        return ("\r\n".join(top) + "\r\n\r\n" + body + end).encode()

    return make_bounce


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "no MIME-Version": (make(no_mime_version=True), "report", "MIME-Version: 1.0"),
    "the last boundary never closed": (make(unclosed=True), "report", "--BOUNDARY--"),
    "the status as text/plain": (make(status_as_text=True), "report", "message/delivery-status"),
    "says sorry, but not to whom": (make(no_names=True), "explains", "each failed recipient"),
    "no Reporting-MTA": (make(no_reporting_mta=True), "per-recipient", "Reporting-MTA"),
    "one block for every recipient": (make(one_block=True), "per-recipient", "one block per recipient"),
    "Action: bounced": (make(action_bounced=True), "per-recipient", "Action: failed"),
    "the reply code as Status": (make(reply_code_status=True), "status", "not the reply code"),
    "leaves out the original": (make(no_original=True), "original", "the original message"),
    "from the sender": (make(from_sender=True), "no-loops", "loop"),
    "addressed to the failed recipients": (make(to_recipients=True), "report", "not to the sender"),
    "no Auto-Submitted": (make(no_auto_submitted=True), "no-loops", "RFC 3834"),
}
