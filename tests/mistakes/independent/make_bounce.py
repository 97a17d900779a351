"""``make_bounce`` as a student writes it with the email package (MIMEMultipart, MIMEText:
the headers part comes out base64), and its one-mistake variants."""

from __future__ import annotations

import re
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def fields(*pairs: tuple[str, str]) -> Message:
    block = Message()
    for name, value in pairs:
        block[name] = value
    return block


def make(*, no_date=False, remote_everywhere=False, remote_is_me=False, angle_recipient=False,
         status_from_code=False, headers_only_some=False, human_last=False, no_report_type=False,
         status_as_str=False):
    def make_bounce(*, reporting_mta, queue_id, sender, failures, original, arrived):
        report = MIMEMultipart("report") if no_report_type else MIMEMultipart("report",
                                                                                report_type="delivery-status")
        report["From"] = f"Mail Delivery Subsystem <MAILER-DAEMON@{reporting_mta}>"
        report["To"] = sender
        report["Subject"] = "Returned mail: see transcript for details"
        if not no_date:
            report["Date"] = formatdate(localtime=True)
        report["Message-ID"] = make_msgid(domain=reporting_mta)
        report["Auto-Submitted"] = "auto-replied"
        listing = "\n".join(f"  <{f.recipient}>\n     {f.diagnostic}" for f in failures)
        human = MIMEText(f"The following addresses had permanent fatal errors:\n\n{listing}\n", "plain", "utf-8")
        blocks = [fields(("Reporting-MTA", f"dns; {reporting_mta}"),
                         ("Arrival-Date", formatdate(arrived, localtime=True)))]
        for f in failures:
            found = ENHANCED.search(f.diagnostic)
            status = f"{f.diagnostic[0]}.0.0" if status_from_code else found.group(1) if found else "5.0.0"
            rcpt = f"<{f.recipient}>" if angle_recipient else f.recipient
            block = [("Final-Recipient", f"rfc822; {rcpt}"), ("Action", "failed"), ("Status", status)]
            remote = reporting_mta if remote_is_me else f.remote_mta
            if remote or remote_everywhere:
                block.append(("Remote-MTA", f"dns; {remote}"))
            block.append(("Diagnostic-Code", f"smtp; {f.diagnostic}"))
            blocks.append(fields(*block))
        status_part = MIMEBase("message", "delivery-status")
        status_part.set_payload("\n".join(b.as_string() for b in blocks) if status_as_str else blocks)
        head = original.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        if headers_only_some:
            head = "\r\n".join(line for line in head.split("\r\n") if line.split(":")[0] in ("From", "To", "Subject"))
        headers = MIMEText(head + "\r\n", "rfc822-headers", "utf-8")  # utf-8: base64 on the wire
        for part in ([status_part, headers, human] if human_last else [human, status_part, headers]):
            report.attach(part)
        return report.as_bytes()

    return make_bounce


good = make()

MISTAKES = {
    "no Date:": (make(no_date=True), "report", "Date"),
    "Remote-MTA for every recipient (empty where none)": (make(remote_everywhere=True), "per-recipient",
                                                          "Remote-MTA"),
    "Remote-MTA names this host": (make(remote_is_me=True), "per-recipient", "Remote-MTA"),
    "Final-Recipient in angle brackets": (make(angle_recipient=True), "per-recipient", "without <>"),
    "Status from the reply's first digit": (make(status_from_code=True), "status", "not the reply code"),
    "only From, To and Subject of the original": (make(headers_only_some=True), "original", "Message-ID"),
    "the explanation last": (make(human_last=True), "report", "in order"),
    "no report-type": (make(no_report_type=True), "report", "report-type=delivery-status"),
    "the delivery-status part's payload a str (the email package cannot write it)": (
        make(status_as_str=True), "report", "list of header blocks"),
}
