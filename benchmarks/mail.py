"""Mail-reader benchmarks: IMAP SELECT and FETCH over 10,000 messages, POP3 RETR rate.

labkit's IMAP and POP3 servers against Dovecot (the baseline), both measured in the same
run on identical Maildirs with the same client code (stdlib imaplib and poplib); only
the endpoint differs. Dovecot runs in the foreground from a throw-away configuration in a
temporary directory, on free loopback ports, without TLS. Every answer is checked
(message count, sizes, Message-IDs, bytes) so a broken server cannot look fast.
Target: labkit within 3x of Dovecot (its times / Dovecot's, Dovecot's rate / its rate).

Run with ``python -m benchmarks mail`` (or ``make bench ARGS=mail``).
"""

from __future__ import annotations

import imaplib
import os
import poplib
import pwd
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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

# Dovecot's settings as of 2.3 and as renamed in 2.4 (see "Upgrading Dovecot CE from 2.3
# to 2.4"); the {PLAIN} prefix in the passwd file names the scheme in both.
DOVECOT_COMMON = """\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
auth_mechanisms = plain login
first_valid_uid = 1
default_internal_user = {internal}
default_login_user = {login}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""

DOVECOT_23 = DOVECOT_COMMON + """\
disable_plaintext_auth = no
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
"""

DOVECOT_24 = "dovecot_config_version = {version}\ndovecot_storage_version = {version}\n" + DOVECOT_COMMON + """\
auth_allow_cleartext = yes
mail_driver = maildir
mail_path = {root}/mail/%{{user}}
passdb passwd-file {{
  passwd_file_path = {root}/passwd
}}
userdb static {{
  fields {{
    uid = {uid}
    gid = {gid}
    home = {root}/home/%{{user}}
  }}
}}
"""


def find_dovecot() -> str | None:
    return shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None)


def dovecot_version(binary: str) -> str:
    """``2.3.19.1`` from ``dovecot --version`` (which prints ``2.3.19.1 (9b53102964)``)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    return out.split()[0]


def free_port() -> int:
    """A port nobody listens on right now (bind port 0, read it, close)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def system_user(*names: str) -> pwd.struct_passwd:
    """The first of ``names`` that exists on this system (Dovecot refuses unknown users)."""
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"none of the users {', '.join(names)} exists, Dovecot needs one")


def mail_owner() -> pwd.struct_passwd:
    """Who Dovecot's mail processes run as: ourselves, or ``nobody`` when we are root
    (Dovecot refuses to access mail as uid 0)."""
    return system_user("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())


def chown_tree(root: Path, owner: pwd.struct_passwd) -> None:
    if os.getuid() != 0:
        return
    for path in [root, *root.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def wait_until_listening(proc: subprocess.Popen, endpoints: list[Endpoint], log: Path, timeout: float = 15.0) -> None:
    """Bounded wait until every endpoint accepts a connection (or Dovecot died)."""
    deadline = time.monotonic() + timeout
    pending = list(endpoints)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"Dovecot exited with {proc.returncode}: {dovecot_log(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Dovecot did not listen on {', '.join(map(str, pending))} within {timeout:g} s")
        try:
            socket.create_connection((pending[0].host, pending[0].port), timeout=0.2).close()
            pending.pop(0)
        except OSError:
            proc_wait(proc, 0.05)  # a short bounded pause that also notices an exit


def proc_wait(proc: subprocess.Popen, seconds: float) -> None:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


def dovecot_log(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except FileNotFoundError:
        return "(no log)"


@contextmanager
def dovecot(binary: str, root: Path, users: dict[str, str]) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Run Dovecot in the foreground from a config in ``root``; yields (IMAP, POP3).

    Users' Maildirs are ``root/mail/<user>``; fill them before logging in."""
    version = dovecot_version(binary)
    imap, pop3 = Endpoint("127.0.0.1", free_port()), Endpoint("127.0.0.1", free_port())
    template = DOVECOT_23 if tuple(map(int, version.split(".")[:2])) < (2, 4) else DOVECOT_24
    owner = mail_owner()
    config = template.format(root=root, version=".".join(version.split(".")[:3]), uid=owner.pw_uid,
                             gid=owner.pw_gid, internal=system_user("dovecot", "nobody").pw_name,
                             login=system_user("dovenull", "nobody").pw_name, imap=imap.port, pop3=pop3.port)
    for sub in ("run", "state", "home", "mail"):
        (root / sub).mkdir(exist_ok=True)
    for sub in ("home", "mail"):
        chown_tree(root / sub, owner)
    root.chmod(0o755)  # the login processes run as dovenull
    (root / "passwd").write_text("".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in users.items()))
    (root / "dovecot.conf").write_text(config)
    log = root / "dovecot.log"  # its log_path; its own start-up complaints go there too
    with open(log, "ab") as errors:
        proc = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.DEVNULL,
                                stderr=errors)
    try:
        wait_until_listening(proc, [imap, pop3], log)
        yield imap, pop3
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_dovecot(binary: str, imap_mail: dict[bytes, bytes], pop3_mail: dict[bytes, bytes]) -> Figures:
    root = Path(tempfile.mkdtemp(prefix="labkit-bench-dovecot-"))
    imap_login, pop3_login = Credentials(IMAP_USER, "imap-bench"), Credentials(POP3_USER, "pop3-bench")
    try:
        for login, mail in ((imap_login, imap_mail), (pop3_login, pop3_mail)):
            fill_maildir(root / "mail" / login.user, mail)
        with dovecot(binary, root, {imap_login.user: imap_login.password, pop3_login.user: pop3_login.password}) as (
                imap, pop3):
            return measure(Servers(imap, pop3, imap_login, pop3_login), imap_mail, pop3_mail)
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
