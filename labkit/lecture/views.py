"""What the lecture page shows besides the diagram, as plain data: the mailboxes (each
message's headers, its Received chain read bottom-up, the hosts each hop names) and the
queue (what waits, why, when it is tried again). Reading a Maildir is blocking: call
:func:`mailboxes` off the event loop; :func:`queue` reads the hosts' queues, on it.
"""

from __future__ import annotations

import email.parser
import email.policy
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..world import AsyncWorld

SHOWN_MESSAGES = 6  # the newest messages of a mailbox the page shows
HEADER_BYTES = 32 * 1024  # a message's header is read up to this much
RAW_BYTES = 256 * 1024  # the raw source the page shows, at most
SHOWN_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "Return-Path", "Delivered-To")

# RFC 5321 §4.4: "from" Extended-Domain, "by" Extended-Domain, [via] [with] [id] [for],
# then ";" date-time. A clause's value, then an optional comment (the TCP-info of "from").
_CLAUSE = re.compile(r"\b(from|by|via|with|id|for)\s+(<[^>]*>|[^\s;()]+)(?:\s*\(([^()]*)\))?", re.IGNORECASE)
_ADDRESS = re.compile(r"\[([0-9A-Fa-f.:]+)\]")


@dataclass(frozen=True)
class Hop:
    """One Received field: who handed the message to whom."""

    raw: str  # the field's value, unfolded
    sender: str = ""  # "from": the name the client gave (HELO/EHLO)
    sender_info: str = ""  # what the receiver saw of it: "smtp.awesome.com [1.2.3.4]"
    receiver: str = ""  # "by"
    protocol: str = ""  # "with": SMTP, ESMTP, ESMTPA, ...
    queue_id: str = ""  # "id"
    recipient: str = ""  # "for"
    date: str = ""

    @property
    def names(self) -> list[str]:
        """The hosts and addresses this hop names, to highlight."""
        found = [self.sender, self.receiver, *_ADDRESS.findall(self.sender_info)]
        found += [w for w in self.sender_info.replace("[", " ").replace("]", " ").split() if "." in w]
        return [n for n in dict.fromkeys(found) if n]


def received_hop(value: str) -> Hop:
    """Read one Received field's value (as much as it follows RFC 5321 §4.4)."""
    raw = " ".join(value.split())
    clauses, _, date = raw.rpartition(";") if ";" in raw else (raw, "", "")
    found: dict[str, tuple[str, str]] = {}
    for match in _CLAUSE.finditer(clauses):
        found.setdefault(match.group(1).lower(), (match.group(2), match.group(3) or ""))
    return Hop(raw, found.get("from", ("", ""))[0], found.get("from", ("", ""))[1], found.get("by", ("", ""))[0],
               found.get("with", ("", ""))[0], found.get("id", ("", ""))[0],
               found.get("for", ("", ""))[0].strip("<>"), date.strip())


def read_message(path: Path) -> dict[str, Any]:
    """A stored message as the page lists it: headers, and the Received chain read
    bottom-up (hop 1 is where the message started)."""
    with open(path, "rb") as file:
        head = file.read(HEADER_BYTES)
    header = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    hops = [received_hop(str(v)) for v in reversed(header.get_all("Received") or [])]
    return {
        "name": path.name,
        "headers": [[name, " ".join(str(header[name]).split())] for name in SHOWN_HEADERS if header[name]],
        "hops": [{**asdict(hop), "names": hop.names} for hop in hops],
        "subject": " ".join(str(header["Subject"] or "(no subject)").split()),
        "sender": " ".join(str(header["From"] or "").split()),
        "seen": "S" in path.name.rpartition(":2,")[2],
        "time": path.stat().st_mtime,
    }


def maildir_files(maildir: Path) -> list[os.DirEntry]:
    """A Maildir INBOX's messages (new and cur), oldest first."""
    entries = []
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as it:
                entries += [e for e in it if e.is_file() and not e.name.startswith(".")]
        except FileNotFoundError:
            continue
    return sorted(entries, key=lambda e: (e.stat().st_mtime, e.name))


def mailboxes(world: "AsyncWorld") -> list[dict[str, Any]]:
    """Every user's INBOX: how many messages, and the newest ones read."""
    shown = []
    for name, host in world.hosts.items():
        for account in host.accounts:
            files = maildir_files(account.maildir)
            newest = []
            for entry in reversed(files[-SHOWN_MESSAGES:]):
                try:
                    newest.append(read_message(Path(entry.path)))
                except FileNotFoundError:  # moved (new -> cur) or expunged as we read: next time
                    continue
            shown.append({"address": account.address, "host": name, "count": len(files), "messages": newest})
    return shown


def raw_message(world: "AsyncWorld", address: str, name: str) -> bytes:
    """One message's raw source (its first RAW_BYTES). KeyError: no such message
    (``name`` must be a file of that user's INBOX, nothing else)."""
    maildir = world.mailbox(address).maildir
    for entry in maildir_files(maildir):
        if entry.name == name:
            with open(entry.path, "rb") as file:
                return file.read(RAW_BYTES)
    raise KeyError(f"no message {name!r} in the INBOX of {address}")


def queue(world: "AsyncWorld") -> list[dict[str, Any]]:
    """The messages that wait in the hosts' queues: why (the last reply) and when they
    are tried again. (On the world's loop.)"""
    now = time.time()
    waiting = []
    for name, host in world.hosts.items():
        for entry in host.queue.waiting():
            waiting.append({"host": name, "queue_id": entry.queue_id, "from": entry.mail_from,
                            "recipients": [{"address": r, "why": entry.last_error.get(r, "")} for r in entry.recipients],
                            "attempts": entry.attempts, "retry_in": max(entry.next_attempt - now, 0.0),
                            "queued_for": now - entry.arrived})
    return sorted(waiting, key=lambda w: w["retry_in"])
