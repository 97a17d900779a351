"""Mail-reader benchmarks: IMAP SELECT and FETCH over 10,000 messages, POP3 RETR rate.

labkit's IMAP and POP3 servers against Dovecot (the baseline), both measured in the same
run on identical Maildirs with the same client code (stdlib imaplib and poplib); only
the endpoint differs. Dovecot runs in the foreground from a throw-away configuration in a
temporary directory, on free loopback ports, without TLS (benchmarks/dovecot.py). Every
answer is checked (message count, sizes, Message-IDs, bytes) so a broken server cannot
look fast.
Target: labkit within 3x of Dovecot (its times / Dovecot's, Dovecot's rate / its rate).

Run with ``python -m benchmarks mail`` (or ``make bench ARGS=mail``).
"""

from __future__ import annotations

import imaplib
import os
import poplib
import random
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.dovecot import Dovecot, dovecot_version, find_dovecot
from labkit.net import Endpoint
from labkit.world import World

IMAP_MESSAGES = 10_000
POP3_MESSAGES = 2_000
IMAP_USER = "betty@brilliant.com"  # the 10,000-message mailbox
POP3_USER = "pat@plain.com"  # the 2,000-message mailbox
TARGET = 3.0  # labkit may be at most this many times slower than Dovecot
REPEATS = 3  # warm IMAP figures and the RETR rate are medians of this many sessions
TIMEOUT = 120.0  # seconds, per client socket operation
FETCH_ITEMS = "(FLAGS ENVELOPE RFC822.SIZE)"
BASE_TIME = 1_700_000_000  # delivery times of the generated messages (Nov 2023)

WORDS = ("mail", "server", "lecture", "queue", "relay", "header", "envelope", "mailbox", "protocol", "student",
         "message", "delivery", "the", "a", "of", "to", "and", "is", "with", "for")


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


@dataclass(frozen=True)
class Servers:
    """Where one implementation's IMAP and POP3 listen, and who logs in."""

    imap: Endpoint
    pop3: Endpoint
    imap_login: Credentials
    pop3_login: Credentials


@dataclass
class Figures:
    select_cold_s: float = 0.0
    fetch_cold_s: float = 0.0
    select_warm_s: float = 0.0
    fetch_warm_s: float = 0.0
    pop3_login_s: float = 0.0
    retr_msg_s: float = 0.0
    retr_mb_s: float = 0.0


# ---------------------------------------------------------------- the mailboxes


def make_message(i: int, rcpt: str, rng: random.Random, size: tuple[int, int]) -> bytes:
    """A plausible message of about ``size`` octets with CRLF line endings."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(BASE_TIME + i))
    header = (f"Return-Path: <albert@awesome.com>\r\n"
              f"Received: from smtp.awesome.com (smtp.awesome.com [1.2.3.4])\r\n\tby smtp.brilliant.com; {date}\r\n"
              f"From: Albert Sender <albert@awesome.com>\r\nTo: {rcpt}\r\n"
              f"Subject: Lecture notes part {i}: {' '.join(rng.choices(WORDS, k=4))}\r\n"
              f"Date: {date}\r\nMessage-ID: <bench.{i}@awesome.com>\r\nMIME-Version: 1.0\r\n"
              f"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    target = rng.randint(*size)
    lines = [header]
    length = len(header)
    while length < target:
        line = " ".join(rng.choices(WORDS, k=rng.randint(6, 12))) + "\r\n"
        lines.append(line)
        length += len(line)
    return "".join(lines).encode()


def make_messages(count: int, rcpt: str, size: tuple[int, int]) -> dict[bytes, bytes]:
    """Message-ID -> message bytes, deterministic (seeded)."""
    rng = random.Random(count)
    messages = (make_message(i, rcpt, rng, size) for i in range(count))
    return {message_id(m): m for m in messages}


MESSAGE_ID = re.compile(rb"<bench\.\d+@awesome\.com>")


def message_id(data: bytes) -> bytes:
    found = MESSAGE_ID.search(data)
    if found is None:
        raise AssertionError(f"no bench Message-ID in {data[:200]!r}")
    return found.group()


def fill_maildir(root: Path, messages: dict[bytes, bytes]) -> None:
    """Drop the messages into ``root/new`` as an MTA would, oldest first."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(messages.values()):
        path = root / "new" / f"{BASE_TIME + i}.bench{i}.labkit"
        path.write_bytes(data)
        os.utime(path, (BASE_TIME + i, BASE_TIME + i))


# ---------------------------------------------------------------- the clients


def check(condition: bool, problem: str) -> None:
    if not condition:
        raise AssertionError(problem)


def imap_session(endpoint: Endpoint, login: Credentials, expected: dict[bytes, bytes]) -> tuple[float, float]:
    """Log in, SELECT INBOX and FETCH every message's FLAGS ENVELOPE RFC822.SIZE;
    returns (select seconds, fetch seconds) after checking the answers."""
    with imaplib.IMAP4(endpoint.host, endpoint.port, timeout=TIMEOUT) as imap:
        imap.login(login.user, login.password)
        t0 = time.perf_counter()
        typ, data = imap.select("INBOX")
        t1 = time.perf_counter()
        typ_f, fetched = imap.fetch("1:*", FETCH_ITEMS)
        t2 = time.perf_counter()
        imap.logout()
    check(typ == "OK" and data == [str(len(expected)).encode()], f"SELECT said {typ} {data}, expected {len(expected)}")
    check(typ_f == "OK", f"FETCH failed: {typ_f} {fetched[:3]}")
    blob = b"".join(b"".join(item) if isinstance(item, tuple) else item for item in fetched)
    sizes = sorted(int(s) for s in re.findall(rb"RFC822\.SIZE (\d+)", blob))
    check(sizes == sorted(map(len, expected.values())), f"FETCH gave {len(sizes)} RFC822.SIZEs: wrong count or values")
    check(len(re.findall(rb"FLAGS \(", blob)) == len(expected), "FETCH did not return FLAGS for every message")
    ids = MESSAGE_ID.findall(blob)
    check(len(ids) == len(expected) and set(ids) == expected.keys(), "FETCH ENVELOPEs lack or repeat Message-IDs")
    return t1 - t0, t2 - t1


def pop3_session(endpoint: Endpoint, login: Credentials, expected: dict[bytes, bytes]) -> tuple[float, float, int]:
    """Log in, STAT, and RETR every message in one session; returns (PASS + STAT seconds,
    RETR seconds, octets retrieved) after checking every message byte for byte."""
    client = poplib.POP3(endpoint.host, endpoint.port, timeout=TIMEOUT)
    try:
        client.user(login.user)
        t0 = time.perf_counter()
        client.pass_(login.password)
        count, _ = client.stat()
        t1 = time.perf_counter()
        check(count == len(expected), f"STAT says {count} messages, expected {len(expected)}")
        t2 = time.perf_counter()
        answers = [client.retr(n) for n in range(1, count + 1)]
        t3 = time.perf_counter()
        client.quit()
    finally:
        client.close()
    seen = set()
    for _, lines, octets in answers:
        data = b"\r\n".join(lines) + b"\r\n"
        mid = message_id(data)
        check(data == expected[mid] and octets == len(data), f"RETR of {mid!r} differs from the message delivered")
        seen.add(mid)
    check(seen == expected.keys(), "RETR did not return every message once")
    return t1 - t0, t3 - t2, sum(octets for _, _, octets in answers)


def measure(servers: Servers, imap_mail: dict[bytes, bytes], pop3_mail: dict[bytes, bytes]) -> Figures:
    """All the figures for one implementation (its mailboxes already filled, never read)."""
    f = Figures()
    f.select_cold_s, f.fetch_cold_s = imap_session(servers.imap, servers.imap_login, imap_mail)
    warm = [imap_session(servers.imap, servers.imap_login, imap_mail) for _ in range(REPEATS)]
    f.select_warm_s = statistics.median(select for select, _ in warm)
    f.fetch_warm_s = statistics.median(fetch for _, fetch in warm)
    pop3 = [pop3_session(servers.pop3, servers.pop3_login, pop3_mail) for _ in range(REPEATS)]
    f.pop3_login_s = pop3[0][0]
    retr_s = statistics.median(retr for _, retr, _ in pop3)
    f.retr_msg_s, f.retr_mb_s = len(pop3_mail) / retr_s, pop3[0][2] / retr_s / 1e6
    return f


# ---------------------------------------------------------------- labkit


def run_labkit(imap_mail: dict[bytes, bytes], pop3_mail: dict[bytes, bytes]) -> Figures:
    with World() as world:
        logins = []
        for user, mail in ((IMAP_USER, imap_mail), (POP3_USER, pop3_mail)):
            account = world.mailbox(user)
            fill_maildir(account.maildir, mail)
            logins.append(Credentials(account.address, account.password))
        servers = Servers(world.host(IMAP_USER.partition("@")[2]).services["imap"],
                          world.host(POP3_USER.partition("@")[2]).services["pop3"], *logins)
        return measure(servers, imap_mail, pop3_mail)


# ---------------------------------------------------------------- Dovecot


def run_dovecot(binary: str, imap_mail: dict[bytes, bytes], pop3_mail: dict[bytes, bytes]) -> Figures:
    root = Path(tempfile.mkdtemp(prefix="labkit-bench-dovecot-"))
    imap_login, pop3_login = Credentials(IMAP_USER, "imap-bench"), Credentials(POP3_USER, "pop3-bench")
    try:
        for login, mail in ((imap_login, imap_mail), (pop3_login, pop3_mail)):
            fill_maildir(root / "mail" / login.user, mail)
        with Dovecot(binary, root, {imap_login.user: imap_login.password, pop3_login.user: pop3_login.password}) as d:
            return measure(Servers(d.imap, d.pop3, imap_login, pop3_login), imap_mail, pop3_mail)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- report


def verdict(ratio: float) -> str:
    return f"ratio {ratio:5.2f}   target <= {TARGET:g}: {'OK' if ratio <= TARGET else 'MISSED'}"


def report(lab: Figures, base: Figures | None) -> None:
    times = (
        (f"IMAP SELECT {IMAP_MESSAGES:,} msgs, cold", "select_cold_s", 1000, "ms"),
        (f"IMAP FETCH 1:* {IMAP_MESSAGES:,}, cold", "fetch_cold_s", 1, "s "),
        (f"IMAP SELECT {IMAP_MESSAGES:,} msgs, warm", "select_warm_s", 1000, "ms"),
        (f"IMAP FETCH 1:* {IMAP_MESSAGES:,}, warm", "fetch_warm_s", 1, "s "),
        (f"POP3 PASS+STAT {POP3_MESSAGES:,} msgs, cold", "pop3_login_s", 1000, "ms"),
    )
    for label, field, scale, unit in times:
        mine = getattr(lab, field)
        line = f"{label:34} labkit {mine * scale:8.2f} {unit}"
        if base is not None:
            theirs = getattr(base, field)
            line += f"  Dovecot {theirs * scale:8.2f} {unit}  {verdict(mine / theirs)}"
        print(line)
    label = f"POP3 RETR {POP3_MESSAGES:,} msgs, one session"
    line = f"{label:34} labkit {lab.retr_msg_s:8.0f} msg/s ({lab.retr_mb_s:.1f} MB/s)"
    if base is not None:
        line += (f"  Dovecot {base.retr_msg_s:8.0f} msg/s ({base.retr_mb_s:.1f} MB/s)"
                 f"  {verdict(base.retr_msg_s / lab.retr_msg_s)}")
    print(line)


def main() -> None:
    imap_mail = make_messages(IMAP_MESSAGES, IMAP_USER, (1000, 4000))
    pop3_mail = make_messages(POP3_MESSAGES, POP3_USER, (2000, 4000))
    binary = find_dovecot()
    version = dovecot_version(binary) if binary else None
    print(f"== Mail readers (IMAP, POP3): labkit against Dovecot {version or '(not installed)'} ==")
    lab = run_labkit(imap_mail, pop3_mail)
    base = None
    if binary is None:
        print("Dovecot is not installed (no dovecot on PATH or in /usr/sbin): labkit's figures alone, no ratios")
    else:
        try:
            base = run_dovecot(binary, imap_mail, pop3_mail)
        except RuntimeError as error:  # it would not start: say why, still show labkit's figures
            print(f"Dovecot baseline failed, labkit's figures alone: {error}")
    report(lab, base)
