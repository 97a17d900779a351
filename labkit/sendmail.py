"""labkit-sendmail: the ``/usr/sbin/sendmail`` interface (mutt, cron, scripts) for a
running lab world.

Reads a message on standard input, finds the sender's mailbox in the world's
``world.json``, and submits the message to the sender's host's submission service with
AUTH, through :func:`labkit.smtp.send.send_mail`. Exit codes are sysexits.h's.

    labkit-sendmail [--state-dir DIR] [-t] [-i|-oi] [-f ADDR] [-F NAME] [--] [RCPT...]
"""

from __future__ import annotations

import getopt
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from pathlib import Path
from typing import BinaryIO

from .state import STATE_FILE, default_state_dir, load_world_info
from .smtp.client import SMTPPermanentError, SMTPTransientError, has_control
from .smtp.send import connect, send_mail

PROG = "labkit-sendmail"

# sysexits.h (os.EX_* is missing on Windows)
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78

# getopt letters as real sendmail has them; the ones taking a value are followed by ":".
SHORT_OPTIONS = "B:b:e:F:f:iN:o:R:r:tV:v"
LONG_OPTIONS = ["state-dir="]
# Harmless values of options that mutt, s-nail and scripts pass: accepted and ignored.
IGNORED_VALUES = {
    "-o": {"em", "ee", "ep", "eq", "ew", "di", "db", "dq", "m"},  # error and delivery modes
    "-e": {"m", "e", "p", "q", "w"},  # error modes
    "-b": {"m"},  # "deliver mail", the default and only mode
    "-B": {"8BITMIME", "7BIT"},  # body type: the client picks BODY= itself
}
IGNORED_ANY_VALUE = {"-N", "-R", "-V"}  # DSN notify, return, envelope id
# RFC 5322 §2.2: a header field name is printable ASCII but ":".
HEADER_FIELD = re.compile(rb"[!-9;-~]+:")


class Failure(Exception):
    """Ends the command with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Options:
    recipients: list[str] = field(default_factory=list)
    from_headers: bool = False  # -t
    ignore_dots: bool = False  # -i, -oi
    sender: str = ""  # -f, -r
    full_name: str = ""  # -F
    state_dir: Path | None = None


def parse_args(argv: list[str]) -> Options:
    """Parse sendmail's options (GNU getopt: options and recipients may mix; ``--``
    ends options). Raises :class:`Failure` with EX_USAGE."""
    try:
        pairs, args = getopt.gnu_getopt(argv, SHORT_OPTIONS, LONG_OPTIONS)
    except getopt.GetoptError as exc:
        raise Failure(EX_USAGE, f"{exc}; usage: {PROG} [-t] [-i] [-f ADDR] [-F NAME] [--] RCPT...") from exc
    opts = Options()
    for name, value in pairs:
        if name == "--state-dir":
            opts.state_dir = Path(value)
        elif name == "-t":
            opts.from_headers = True
        elif name == "-i" or (name == "-o" and value == "i"):
            opts.ignore_dots = True
        elif name in ("-f", "-r"):
            opts.sender = address_of(printable(value, name))
        elif name == "-F":
            opts.full_name = printable(value, name)
        elif name == "-v" or name in IGNORED_ANY_VALUE or value in IGNORED_VALUES.get(name, ()):
            continue
        else:
            raise Failure(EX_USAGE, f"option {name}{value} is not supported")
    opts.recipients = [a for arg in args for a in addresses_in(printable(arg, "recipient"))]
    return opts


def printable(arg: str, what: str) -> str:
    """``arg`` if it has no control character: an address is printable (RFC 5321 §4.1.2),
    and a NUL or line break in a name or address would end up in the envelope or the
    header. Raises :class:`Failure` with EX_USAGE."""
    if has_control(arg):
        raise Failure(EX_USAGE, f"{what} {arg!r} contains a control character")
    return arg


def addresses_in(text: str) -> list[str]:
    """The addresses in a recipient argument (``a@x``, ``A <a@x>``, ``a@x, b@y``)."""
    return [addr for _, addr in getaddresses([text]) if addr] or ([text.strip()] if text.strip() else [])


def address_of(text: str) -> str:
    found = addresses_in(text)
    return found[0] if found else ""


# -- the message ----------------------------------------------------------------------
def read_message(stream: BinaryIO, ignore_dots: bool) -> bytes:
    """Standard input up to EOF, or (without -i) up to a line with only "."."""
    if ignore_dots:
        return stream.read()
    lines = []
    for line in iter(stream.readline, b""):
        if line.rstrip(b"\r\n") == b".":
            break
        lines.append(line)
    return b"".join(lines)


def split_message(message: bytes) -> tuple[list[bytes], bytes]:
    """The header lines and the rest (the empty line and the body, RFC 5322 §2.1)."""
    lines = message.splitlines(keepends=True)
    if not lines or not HEADER_FIELD.match(lines[0]):
        return [], message
    for i, line in enumerate(lines):
        if line in (b"\n", b"\r\n", b"\r"):
            return lines[:i], b"".join(lines[i:])
        if not HEADER_FIELD.match(line) and line[:1] not in (b" ", b"\t"):
            return lines[:i], b"\n" + b"".join(lines[i:])  # a body line: the empty line was missing
    return lines, b""


def field_name(line: bytes) -> str:
    return line.split(b":", 1)[0].decode("ascii", "replace").lower() if HEADER_FIELD.match(line) else ""


def header_addresses(header_lines: list[bytes], names: tuple[str, ...]) -> list[str]:
    """The addresses in the named header fields (To, Cc, Bcc, From)."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(b"".join(header_lines) + b"\n")
    found: list[str] = []
    for name in names:
        for value in headers.get_all(name, []):
            found.extend(a.addr_spec for a in getattr(value, "addresses", ()) if a.addr_spec)
    return found


def without_fields(header_lines: list[bytes], name: str) -> list[bytes]:
    """The header lines less every ``name`` field, continuation lines included."""
    kept, dropping = [], False
    for line in header_lines:
        if line[:1] not in (b" ", b"\t"):
            dropping = field_name(line) == name
        if not dropping:
            kept.append(line)
    return kept


def complete_message(header_lines: list[bytes], rest: bytes, sender: str, full_name: str) -> bytes:
    """The message as submitted: Bcc removed (its recipients must not see each other),
    From, Date and Message-ID added if missing (RFC 5322 §3.6)."""
    lines = without_fields(header_lines, "bcc")
    present = {field_name(line) for line in lines}
    eol = b"\r\n" if lines and lines[0].endswith(b"\r\n") else b"\n"
    lines = [line if line.endswith((b"\n", b"\r")) else line + eol for line in lines]
    added = {
        "from": lambda: formataddr((full_name, sender)),
        "date": lambda: formatdate(localtime=True),
        "message-id": lambda: make_msgid(domain=sender.rpartition("@")[2] or "labkit.invalid"),
    }
    for name, value in added.items():
        if name not in present:
            lines.append(f"{name.title()}: {value()}".encode() + eol)
    if not rest.startswith((b"\n", b"\r")):
        rest = eol + rest
    return b"".join(lines) + rest


# -- the world ------------------------------------------------------------------------
def state_dir_of(opts: Options) -> Path:
    return opts.state_dir if opts.state_dir is not None else default_state_dir()


def load_world(state_dir: Path) -> dict:
    path = state_dir / STATE_FILE
    try:
        world = load_world_info(state_dir)
    except FileNotFoundError as exc:
        raise Failure(EX_TEMPFAIL, str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise Failure(EX_CONFIG, f"cannot read {path}: {exc}") from exc
    if not isinstance(world, dict) or not isinstance(world.get("mailboxes"), dict):
        raise Failure(EX_CONFIG, f"{path} is malformed: no mailboxes")
    return world


def find_mailbox(world: dict, address: str) -> tuple[str, dict] | None:
    """The mailbox ``address`` names: exact, case-insensitive, or a unique local part."""
    mailboxes: dict = world["mailboxes"]
    if address in mailboxes:
        return address, mailboxes[address]
    matches = [a for a in mailboxes if a.lower() == address.lower()]
    if not matches and "@" not in address:
        matches = [a for a in mailboxes if a.partition("@")[0].lower() == address.lower()]
    return (matches[0], mailboxes[matches[0]]) if len(matches) == 1 else None


def submission_endpoint(world: dict, mailbox: dict) -> tuple[str, int]:
    try:
        service = world["hosts"][mailbox["host"]]["services"]["submission"]
        return str(service["host"]), int(service["port"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Failure(EX_CONFIG, f"world.json is malformed: no submission service for {mailbox.get('host')!r}") from exc


# -- the command ----------------------------------------------------------------------
def choose_sender(opts: Options, header_lines: list[bytes], world: dict) -> tuple[str, dict]:
    """-f, else the From: header's address, else $LABKIT_USER; it must be a mailbox."""
    candidates = [
        ("-f", opts.sender),
        ("From:", next(iter(header_addresses(header_lines, ("from",))), "")),
        ("LABKIT_USER", os.environ.get("LABKIT_USER", "").strip()),
    ]
    origin, sender = next(((o, s) for o, s in candidates if s), ("", ""))
    if not sender:
        raise Failure(EX_NOUSER, "no sender: give -f ADDR, a From: header, or set LABKIT_USER")
    found = find_mailbox(world, sender)
    if found is None:
        raise Failure(EX_NOUSER, f"sender {sender} (from {origin}) is not a mailbox in this lab world")
    return found


def submit(opts: Options, message: bytes) -> int:
    header_lines, rest = split_message(message)
    recipients = list(opts.recipients)
    if opts.from_headers:
        recipients += header_addresses(header_lines, ("to", "cc", "bcc"))
    recipients = list(dict.fromkeys(recipients))
    if not recipients:
        raise Failure(EX_USAGE, "no recipients given (name them as arguments, or use -t with To:/Cc:/Bcc:)")
    world = load_world(state_dir_of(opts))
    sender, mailbox = choose_sender(opts, header_lines, world)
    host, port = submission_endpoint(world, mailbox)
    message = complete_message(header_lines, rest, sender, opts.full_name)
    try:
        with connect(host, port) as sock:
            result = send_mail(
                sock,
                helo=socket.gethostname() or "localhost",
                mail_from=sender,
                rcpt_to=recipients,
                message=message,
                auth=(sender, str(mailbox.get("password", ""))),
            )
    except SMTPTransientError as exc:
        raise Failure(EX_TEMPFAIL, f"{exc} (temporary: try again later)") from exc
    except SMTPPermanentError as exc:
        raise Failure(EX_UNAVAILABLE, str(exc)) from exc
    except ValueError as exc:  # an address the client will not put on the wire
        raise Failure(EX_DATAERR, str(exc)) from exc
    if not result.refused:
        return EX_OK
    fate = f"sent to the other {len(result.accepted)} recipient(s)" if result.accepted else "not sent"
    for recipient, reply in result.refused.items():
        error(f"{recipient}: refused: {reply.one_line()}; message {fate}")
    return EX_NOUSER if any(r.permanent for r in result.refused.values()) else EX_TEMPFAIL


def error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except Failure as exc:
        error(str(exc))
        return exc.code
    try:
        return submit(opts, read_message(sys.stdin.buffer, opts.ignore_dots))
    except Failure as exc:  # nothing is lost silently: say so
        error(f"{exc}; message not sent")
        return exc.code
    except Exception as exc:  # a bug
        error(f"internal error: {exc!r}; message not sent")
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
