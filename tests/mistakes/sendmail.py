"""A student's sendmail program, right, and wrong in each of the usual ways.

The program is a short Python script (smtplib, the world's world.json). :func:`make`
writes it, executable, with one classic mistake turned on per keyword, and returns its
path: every wrong one differs from the right one in one place.
"""

from __future__ import annotations

from mistakes.programs import program_maker

SCRIPT = r'''#!{python}
"""my sendmail: the message on stdin goes to the lab world, like /usr/sbin/sendmail."""
import json, os, smtplib, sys
from email.parser import BytesHeaderParser
from email.utils import getaddresses

{flags}


def fail(code, why):
    print(f"sendmail: {why}", file=sys.stderr)
    sys.exit(1 if EXIT_ONE else code)


def without_bcc(message):
    head, blank, body = message.partition(b"\n\n")
    if BCC_FIRST_LINE_ONLY:  # "drop the line that starts with Bcc:"
        return b"\n".join(l for l in head.split(b"\n") if not l.lower().startswith(b"bcc:")) + blank + body
    kept, dropping = [], False
    for line in head.split(b"\n"):
        if not line[:1].isspace():
            dropping = line.lower().startswith(b"bcc:")
        if not dropping:
            kept.append(line)
    return b"\n".join(kept) + blank + body


args, sender, use_headers, ignore_dots, recipients = sys.argv[1:], "", False, False, []
while args:
    arg = args.pop(0)
    if arg == "-f":
        sender = args.pop(0)
    elif arg == "-t":
        use_headers = not IGNORES_T
    elif arg in ("-i", "-oi"):
        ignore_dots = not STOPS_AT_DOT
    elif arg == "--":
        recipients += args
        break
    elif not arg.startswith("-"):
        recipients.append(arg)

if ignore_dots:
    message = sys.stdin.buffer.read()
else:
    lines = []
    for line in sys.stdin.buffer:
        if line.rstrip(b"\r\n") == b".":
            break
        lines.append(line)
    message = b"".join(lines)
header = BytesHeaderParser().parsebytes(message)
if not sender:  # mutt gives no -f: the sender is the author
    sender = next((address for _, address in getaddresses(header.get_all("From", []))), "")
if use_headers:
    fields = header.get_all("To", []) + header.get_all("Cc", []) + header.get_all("Bcc", [])
    recipients += [address for _, address in getaddresses(fields) if address]
if not KEEPS_BCC and (use_headers or not BCC_ONLY_WITH_T):
    message = without_bcc(message)
if not recipients:
    fail(64, "no recipients")
if not BARE_LF:  # SMTP lines end in CRLF; smtplib sends bytes as they are
    message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

if CRASHES_WITHOUT_WORLD:
    world = json.load(open(os.path.join(os.environ["LABKIT_STATE_DIR"], "world.json")))
else:
    try:
        world = json.load(open(os.path.join(os.environ["LABKIT_STATE_DIR"], "world.json")))
    except (KeyError, OSError, ValueError):
        fail(75, "no lab world is running")
mailbox = world["mailboxes"].get(sender)
if mailbox is None:
    fail(67, f"{sender} has no mailbox")
service = world["hosts"][mailbox["host"]]["services"]["submission"]
try:
    with smtplib.SMTP(service["host"], service["port"], local_hostname="student-pc", timeout=30) as smtp:
        if not NO_AUTH:
            smtp.login(sender, mailbox["password"])
        refused = smtp.sendmail(sender, recipients, message)
except smtplib.SMTPRecipientsRefused as error:
    refused = error.recipients
except (OSError, smtplib.SMTPException) as error:
    fail(75, f"cannot send: {error}")
if refused and not IGNORES_REFUSALS:
    for rcpt, (code, text) in refused.items():
        print(f"sendmail: {rcpt}: {code} {text.decode()}", file=sys.stderr)
    sys.exit(67 if NOUSER_ON_4XX or any(code >= 500 for code, _ in refused.values()) else 75)
'''

MISTAKE_FLAGS = ("stops_at_dot", "bare_lf", "ignores_t", "keeps_bcc", "exit_one", "crashes_without_world",
                 "no_auth", "ignores_refusals", "bcc_only_with_t", "bcc_first_line_only", "nouser_on_4xx")
make = program_maker(SCRIPT, MISTAKE_FLAGS, "labkit-student-sendmail-")
"""make(**mistakes): the path of the program with the MISTAKE_FLAGS named on."""


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "a lone '.' ends the message despite -oi": (make(stops_at_dot=True), "lone-dot", "-oi"),
    "bare LF line endings over SMTP": (make(bare_lf=True), "lone-dot", "CRLF"),
    "ignores -t": (make(ignores_t=True), "t-option", "To:, Cc: and Bcc:"),
    "keeps the Bcc: header": (make(keeps_bcc=True), "t-option", "blind copies"),
    "exit 1 for every error": (make(exit_one=True), "no-recipient", "EX_USAGE"),
    "a traceback when no world runs": (make(crashes_without_world=True), "no-world", "FileNotFoundError"),
    "no AUTH (the world trusts loopback)": (make(no_auth=True), "delivers", "ESMTPA"),
    "exit 0 although a recipient was refused": (make(ignores_refusals=True), "unknown-recipient", "EX_NOUSER"),
    "removes Bcc: only with -t": (make(bcc_only_with_t=True), "bcc-removed", "with or without -t"),
    "leaves a folded Bcc:'s next lines": (make(bcc_first_line_only=True), "t-option", "folded lines"),
    "exit 67 for a 4xx too": (make(nouser_on_4xx=True), "tempfail", "EX_TEMPFAIL"),
}
