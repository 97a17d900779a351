"""Bounces: a delivery status notification (RFC 3464) back to the sender.

A bounce is sent from the null reverse-path ``<>`` (RFC 5321 §4.5.5), so that a bounce
that itself fails is never bounced again (no mail storms).
"""

from __future__ import annotations

import email.utils
import re
import secrets

from .types import Failure

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def _header_section(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def status(failure: Failure) -> str:
    """The enhanced status code (RFC 3463) from the diagnostic, or a generic one."""
    found = _STATUS.search(failure.diagnostic)
    if found:
        return found.group(1)
    return "5.0.0" if failure.action == "failed" else "4.0.0"


def make_bounce(
    *, reporting_mta: str, queue_id: str, sender: str, failures: list[Failure], original: bytes, arrived: float
) -> bytes:
    """The DSN message (multipart/report; report-type=delivery-status), CRLF line endings."""
    boundary = f"{queue_id}.{secrets.token_hex(6)}/{reporting_mta}"
    lines_text = "\r\n".join(f"<{f.recipient}>: {f.diagnostic}" for f in failures)
    per_recipient = "\r\n\r\n".join(
        "\r\n".join(
            [f"Final-Recipient: rfc822; {f.recipient}", f"Action: {f.action}", f"Status: {status(f)}"]
            + ([f"Remote-MTA: dns; {f.remote_mta}"] if f.remote_mta else [])
            + [f"Diagnostic-Code: smtp; {f.diagnostic}"]
        )
        for f in failures
    )
    text = (
        f"Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: <{sender}>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {email.utils.formatdate(localtime=True)}\r\n"
        f"Message-ID: <{queue_id}.{secrets.token_hex(4)}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834: robots must not answer this
        "MIME-Version: 1.0\r\n"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"This is the mail system at host {reporting_mta}.\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients. The reasons follow.\r\n"
        "\r\n"
        f"{lines_text}\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"X-Labkit-Queue-ID: {queue_id}\r\n"
        f"Arrival-Date: {email.utils.formatdate(arrived, localtime=True)}\r\n"
        "\r\n"
        f"{per_recipient}\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
    )
    return text.encode("utf-8") + _header_section(original) + f"\r\n--{boundary}--\r\n".encode()
