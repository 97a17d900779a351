"""Mail-reader benchmarks: labkit's IMAP and POP3 against Dovecot, and the world's memory.

Both servers read identical Maildirs of 1,000, 10,000 and 50,000 messages with the same
client code (stdlib imaplib and poplib); only the endpoint differs. labkit's world runs
in its own process, as Dovecot does (a client in the same process would share its GIL);
Dovecot runs in the foreground from a throw-away configuration on free loopback ports
(benchmarks/dovecot.py). Every answer is checked (counts, sizes, Message-IDs, search
results, bytes) so a broken server cannot look fast.

Figures, each a time (labkit's / Dovecot's, in interleaved rounds, benchmarks/rounds.py):
IMAP SELECT (cold: the first ever; warm), FETCH 1:* (FLAGS RFC822.SIZE) and
(ENVELOPE), SEARCH TEXT, POP3 PASS+STAT, LIST and RETR of the whole mailbox. Target: at
most 1.5x Dovecot's time for RETR, LIST, FETCH and SEARCH. Then how each grows from 1k
to 50k messages, and the world's memory (RSS) before, while and after it served two
50,000-message mailboxes (target: back under 80 MB).

Run with ``python -m benchmarks mail`` (or ``make bench ARGS=mail``);
``LABKIT_BENCH_MAIL_SIZES=1000,10000`` measures fewer sizes.
"""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.dovecot import Dovecot, dovecot_version, find_dovecot
from benchmarks.rounds import Figure, interleave
from labkit.net import Endpoint

SIZES = tuple(int(n) for n in os.environ.get("LABKIT_BENCH_MAIL_SIZES", "1000,10000,50000").split(","))
ROUNDS = {1_000: 5, 10_000: 3}  # rounds per size; larger ones get one
USER, PASSWORD = "betty@brilliant.com", "betty-password"
OTHER = "pat@plain.com"  # the second 50k mailbox of the memory figure
TARGET = 1.5  # labkit may take at most this many times Dovecot's time
MEMORY_TARGET_MB = 80.0
MEMORY_SIZE = int(os.environ.get("LABKIT_BENCH_MEMORY_SIZE", "50000"))
TIMEOUT = 300.0  # seconds, per client socket operation
BASE_TIME = 1_700_000_000  # delivery times of the generated messages (Nov 2023)
NEEDLE = "zebra"  # in the body of every 100th message: what SEARCH TEXT looks for

WORDS = ("mail", "server", "lecture", "queue", "relay", "header", "envelope", "mailbox", "protocol", "student",
         "message", "delivery", "the", "a", "of", "to", "and", "is", "with", "for")


@dataclass(frozen=True)
class Servers:
    """Where one implementation's IMAP and POP3 listen, and who logs in."""

    name: str
    imap: Endpoint
    pop3: Endpoint
    user: str
    password: str


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
    if i % 100 == 0:
        lines.append(f"see the {NEEDLE} in this one\r\n")
    while length < target:
        line = " ".join(rng.choices(WORDS, k=rng.randint(6, 12))) + "\r\n"
        lines.append(line)
        length += len(line)
    return "".join(lines).encode()


def make_messages(count: int, rcpt: str) -> list[bytes]:
    """Deterministic (seeded) messages, in delivery order."""
    rng = random.Random(count)
    return [make_message(i, rcpt, rng, (1000, 4000)) for i in range(count)]


MESSAGE_ID = re.compile(rb"<bench\.(\d+)@awesome\.com>")


def fill_maildir(root: Path, messages: list[bytes]) -> None:
    """Drop the messages into ``root/new`` as an MTA would, oldest first."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(messages):
        path = root / "new" / f"{BASE_TIME + i}.bench{i}.labkit"
        path.write_bytes(data)
        os.utime(path, (BASE_TIME + i, BASE_TIME + i))


# ---------------------------------------------------------------- the clients


def check(condition: bool, problem: str) -> None:
    if not condition:
        raise AssertionError(problem)


def imap_session(servers: Servers, messages: list[bytes]) -> dict[str, float]:
    """SELECT, FETCH 1:* (FLAGS RFC822.SIZE), FETCH 1:* (ENVELOPE), SEARCH TEXT: seconds
    of each, after checking the answers."""
    times = {}
    with imaplib.IMAP4(servers.imap.host, servers.imap.port, timeout=TIMEOUT) as imap:
        imap.login(servers.user, servers.password)
        t0 = time.perf_counter()
        typ, data = imap.select("INBOX")
        times["select"] = time.perf_counter() - t0
        check(typ == "OK" and data == [str(len(messages)).encode()], f"SELECT said {typ} {data}")
        t0 = time.perf_counter()
        typ, fetched = imap.fetch("1:*", "(FLAGS RFC822.SIZE)")
        times["fetch_flags"] = time.perf_counter() - t0
        blob = b"".join(b"".join(item) if isinstance(item, tuple) else item for item in fetched)
        sizes = [int(s) for s in re.findall(rb"RFC822\.SIZE (\d+)", blob)]
        check(typ == "OK" and sizes == [len(m) for m in messages], "FETCH RFC822.SIZE: wrong count or values")
        t0 = time.perf_counter()
        typ, fetched = imap.fetch("1:*", "(ENVELOPE)")
        times["fetch_envelope"] = time.perf_counter() - t0
        blob = b"".join(b"".join(item) if isinstance(item, tuple) else item for item in fetched)
        ids = [int(i) for i in MESSAGE_ID.findall(blob)]
        check(typ == "OK" and ids == list(range(len(messages))), "FETCH ENVELOPE lacks or repeats Message-IDs")
        t0 = time.perf_counter()
        typ, found = imap.search(None, "TEXT", NEEDLE)
        times["search_text"] = time.perf_counter() - t0
        expected = [str(n).encode() for n in range(1, len(messages) + 1, 100)]
        check(typ == "OK" and found[0].split() == expected, f"SEARCH TEXT found {found[0][:80]!r}")
        imap.logout()
    return times


def pop3_session(servers: Servers, messages: list[bytes]) -> dict[str, float]:
    """PASS+STAT, LIST, and RETR of every message in one session: seconds of each,
    after checking every message byte for byte."""
    times = {}
    client = poplib.POP3(servers.pop3.host, servers.pop3.port, timeout=TIMEOUT)
    try:
        client.user(servers.user)
        t0 = time.perf_counter()
        client.pass_(servers.password)
        count, _ = client.stat()
        times["pass_stat"] = time.perf_counter() - t0
        check(count == len(messages), f"STAT says {count} messages, expected {len(messages)}")
        t0 = time.perf_counter()
        _, listing, _ = client.list()
        times["list"] = time.perf_counter() - t0
        check([int(line.split()[1]) for line in listing] == [len(m) for m in messages], "LIST: wrong sizes")
        t0 = time.perf_counter()
        answers = [client.retr(n) for n in range(1, count + 1)]
        times["retr"] = time.perf_counter() - t0
        client.quit()
    finally:
        client.close()
    for (_, lines, octets), message in zip(answers, messages):
        check(b"\r\n".join(lines) + b"\r\n" == message and octets == len(message), "RETR differs from the message")
    return times


def session_figures(servers: Servers, messages: list[bytes]) -> dict[str, float]:
    return {**imap_session(servers, messages), **pop3_session(servers, messages)}


# ---------------------------------------------------------------- the servers


def start_world(state: Path) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "world", "--json", "--quiet", "--state-dir",
                             str(state)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        raise RuntimeError("the labkit world did not start")
    return proc, json.loads(line)


def world_servers(info: dict, user: str) -> Servers:
    mailbox = info["mailboxes"][user]
    services = info["hosts"][mailbox["host"]]["services"]
    return Servers("labkit", Endpoint(**services["imap"]), Endpoint(**services["pop3"]), user, mailbox["password"])


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------- the figures

LABELS = {
    "select_cold": "IMAP SELECT, cold",
    "select": "IMAP SELECT, warm",
    "fetch_flags": "IMAP FETCH 1:* (FLAGS RFC822.SIZE), warm",
    "fetch_envelope": "IMAP FETCH 1:* (ENVELOPE), warm",
    "search_text": "IMAP SEARCH TEXT",
    "pass_stat": "POP3 PASS+STAT",
    "list": "POP3 LIST",
    "retr": "POP3 RETR of every message",
}
TARGETED = {"fetch_flags", "search_text", "list", "retr"}


def compare(size: int, root: Path, dovecot: str | None) -> dict[str, Figure]:
    """Every figure at ``size`` messages, labkit and Dovecot turn about."""
    messages = make_messages(size, USER)
    figures = {key: Figure(f"{label}, {size // 1000}k msgs (ms)", "ms", False,
                           TARGET if key in TARGETED else None, "Dovecot") for key, label in LABELS.items()}
    lab_proc, info = start_world(root / f"labkit-{size}")
    peer = None
    try:
        fill_maildir(Path(info["mailboxes"][USER]["maildir"]), messages)
        contenders = [("mine", world_servers(info, USER))]
        if dovecot:
            peer_root = Path(tempfile.mkdtemp(prefix="labkit-bench-dovecot-"))
            fill_maildir(peer_root / "mail" / USER, messages)
            peer = Dovecot(dovecot, peer_root, {USER: PASSWORD})
            peer.start()
            contenders.append(("theirs", Servers("Dovecot", peer.imap, peer.pop3, USER, PASSWORD)))

        def measure(side: str, servers: Servers):
            def run() -> None:
                for key, seconds in session_figures(servers, messages).items():
                    getattr(figures[key], side).append(seconds * 1000)
            return run

        for side, servers in contenders:  # the first session ever: cold
            got = session_figures(servers, messages)
            getattr(figures["select_cold"], side).append(got["select"] * 1000)
        interleave(ROUNDS.get(size, 1), [measure(side, servers) for side, servers in contenders])
    finally:
        stop(lab_proc)
        if peer is not None:
            peer.stop()
            shutil.rmtree(peer.root, ignore_errors=True)
    return figures


def memory(root: Path) -> dict[str, float]:
    """The world's RSS (MB): started; after it served two 50k mailboxes over IMAP and
    POP3; and once they sat unused for a while (the lowest seen over 45 s: a folder's
    state is kept 30 s after its last session, labkit.store.KEEP_UNUSED)."""
    messages = make_messages(MEMORY_SIZE, USER)
    proc, info = start_world(root / "memory")
    try:
        out = {"start": rss_mb(proc.pid)}
        for user in (USER, OTHER):
            fill_maildir(Path(info["mailboxes"][user]["maildir"]), messages)
        peak = 0.0
        for user in (USER, OTHER):
            servers = world_servers(info, user)
            with imaplib.IMAP4(servers.imap.host, servers.imap.port, timeout=TIMEOUT) as imap:
                imap.login(servers.user, servers.password)
                imap.select("INBOX")
                imap.fetch("1:*", "(FLAGS RFC822.SIZE ENVELOPE)")
                imap.search(None, "TEXT", NEEDLE)
                peak = max(peak, rss_mb(proc.pid))
                imap.logout()
            client = poplib.POP3(servers.pop3.host, servers.pop3.port, timeout=TIMEOUT)
            client.user(servers.user)
            client.pass_(servers.password)
            client.list()
            client.quit()
            peak = max(peak, rss_mb(proc.pid))
        out["served"] = peak
        lowest = rss_mb(proc.pid)
        for _ in range(90):
            time.sleep(0.5)
            lowest = min(lowest, rss_mb(proc.pid))
        out["after"] = lowest
        return out
    finally:
        stop(proc)


def main() -> None:
    binary = find_dovecot()
    version = dovecot_version(binary) if binary else None
    print(f"== Mail readers (IMAP, POP3): labkit against Dovecot {version or '(not installed)'} ==")
    if binary is None:
        print("Dovecot is not installed (no dovecot on PATH or in /usr/sbin): labkit's figures alone, no ratios")
    root = Path(tempfile.mkdtemp(prefix="labkit-bench-mail-"))
    try:
        scale: dict[int, dict[str, Figure]] = {}
        for size in SIZES:
            scale[size] = compare(size, root, binary)
            for figure in scale[size].values():
                print(figure.line())
        print_scale(scale)
        m = memory(root)
        print(f"world memory (RSS): started {m['start']:.0f} MB, serving two {MEMORY_SIZE:,}-message mailboxes "
              f"{m['served']:.0f} MB, after them {m['after']:.0f} MB"
              f"   target < {MEMORY_TARGET_MB:g} MB: {'OK' if m['after'] < MEMORY_TARGET_MB else 'MISSED'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def print_scale(scale: dict[int, dict[str, Figure]]) -> None:
    """How each figure grows with the mailbox: medians, labkit (Dovecot) in ms."""
    import statistics

    sizes = sorted(scale)
    print(f"{'scale (median ms, labkit / Dovecot)':44}" + "".join(f"{s:>20,}" for s in sizes))
    for key, label in LABELS.items():
        cells = []
        for size in sizes:
            figure = scale[size][key]
            mine = statistics.median(figure.mine)
            theirs = f"{statistics.median(figure.theirs):.0f}" if figure.theirs else "-"
            cells.append(f"{mine:.0f} / {theirs}".rjust(20))
        print(f"  {label:42}" + "".join(cells))
