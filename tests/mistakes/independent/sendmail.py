"""A sendmail program as a student writes it (getopt, the email package's parser,
smtplib's send_message), and its one-mistake variants. :func:`make` writes the script,
executable, with one mistake turned on, and returns its path."""

from __future__ import annotations

from mistakes.programs import program_maker

SCRIPT = r'''#!{python}
"""sendmail for the lab world: reads a message, submits it to the sender's mail host."""
import getopt, json, os, smtplib, sys
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses

{flags}

EX_OK, EX_USAGE, EX_NOUSER, EX_TEMPFAIL, EX_SOFTWARE = 0, 64, 67, 75, 70


def die(status, text):
    sys.stderr.write(f"sendmail: {text}\n")
    sys.exit(status)


try:
    options, recipients = getopt.getopt(sys.argv[1:], "f:F:io:tB:N:R:")
except getopt.GetoptError as error:
    die(EX_USAGE, str(error))
if LAST_ARGUMENT_ONLY:
    recipients = recipients[-1:]
sender, headers_say, dots_end = "", False, True
for option, value in options:
    if option == "-f":
        sender = value
    elif option == "-t":
        headers_say = True
    elif option == "-i" or (option == "-o" and value == "i"):
        dots_end = False
    elif option == "-o" and ONLY_OI:
        die(EX_USAGE, f"unknown option -o{value}")

if dots_end and not READS_TO_EOF:
    lines = []
    for line in sys.stdin.buffer:
        if line in (b".\n", b".\r\n"):
            break
        lines.append(line)
    raw = b"".join(lines)
else:
    raw = sys.stdin.buffer.read()
message = BytesParser(policy=policy.SMTP).parsebytes(raw)

if headers_say:
    if FIRST_LINES_ONLY:
        found = [line.split(":", 1)[1] for line in raw.decode().split("\n")
                 if line.lower().startswith(("to:", "cc:", "bcc:"))]
    else:
        found = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    recipients += [address for _, address in getaddresses(found) if address]
if not recipients:
    die(EX_USAGE, "no recipients: name them, or use -t")
if not sender or FROM_HEADER_WINS:
    from_header = getaddresses([str(message.get("From", ""))])
    sender = from_header[0][1] if from_header and (FROM_HEADER_WINS or not sender) else sender
if REWRITES_FROM:
    del message["From"]
    message["From"] = sender

try:
    with open(os.path.join(os.environ["LABKIT_STATE_DIR"], "world.json")) as f:
        world = json.load(f)
except (KeyError, OSError, ValueError) as error:
    die(EX_TEMPFAIL, f"no lab world running: {error}")
account = world["mailboxes"].get(sender.lower())
if account is None:
    die(EX_NOUSER, f"{sender or 'no sender'}: not a mailbox of the lab world")
service = world["hosts"][account["host"]]["services"]["submission"]

try:
    with smtplib.SMTP(service["host"], service["port"], timeout=20) as smtp:
        smtp.login(sender, account["password"])
        if STOPS_AT_FIRST_REFUSAL:
            refused = {}
            smtp.ehlo_or_helo_if_needed()
            smtp.mail(sender)
            for rcpt in recipients:
                code, text = smtp.rcpt(rcpt)
                if code >= 400:
                    smtp.rset()
                    die(EX_NOUSER, f"{rcpt}: {code} {text.decode()}")
            del message["Bcc"]
            smtp.data(message.as_bytes())
        else:
            refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
except smtplib.SMTPRecipientsRefused as error:
    for rcpt, (code, text) in error.recipients.items():
        sys.stderr.write(f"sendmail: {rcpt}: {code} {text.decode()}\n")
    sys.exit(EX_NOUSER if any(code >= 500 for code, _ in error.recipients.values()) else EX_TEMPFAIL)
except (OSError, smtplib.SMTPException) as error:
    die(EX_TEMPFAIL, f"could not send: {error}")
if refused and not IGNORES_PARTIAL_REFUSAL:
    for rcpt, (code, text) in refused.items():
        sys.stderr.write(f"sendmail: {rcpt}: {code} {text.decode()}\n")
    sys.exit(EX_NOUSER if any(code >= 500 for code, _ in refused.values()) else EX_TEMPFAIL)
sys.exit(EX_OK)
'''

FLAGS = ("last_argument_only", "only_oi", "reads_to_eof", "first_lines_only", "from_header_wins", "rewrites_from",
         "stops_at_first_refusal", "ignores_partial_refusal")
make = program_maker(SCRIPT, FLAGS, "labkit-independent-sendmail-")
"""make(**mistakes): the path of the program with the FLAGS named on."""


good = make()

MISTAKES = {
    "only the last recipient argument": (make(last_argument_only=True), "delivers", "every recipient"),
    "knows -oi but no other -o option (mutt's -oem)": (make(only_oi=True), "as-mutt", "-oem"),
    "always reads to the end of input": (make(reads_to_eof=True), "lone-dot", "without -i"),
    "-t reads only the first line of each field": (make(first_lines_only=True), "t-option", "folded"),
    "the envelope sender from From:, not -f": (make(from_header_wins=True), "envelope-sender", "Return-Path"),
    "From: rewritten to the -f address": (make(rewrites_from=True), "envelope-sender", "From:"),
    "stops at the first refused recipient": (make(stops_at_first_refusal=True), "some-refused", "the others"),
    "exit 0 when one of several recipients was refused": (make(ignores_partial_refusal=True), "some-refused",
                                                          "EX_NOUSER"),
}
