"""Hardening the mail servers (issue #10): the world as a real process, killed, starved
of reads, flooded; every wait bounded, nothing sleeps to wait for an event."""

from __future__ import annotations

import collections
import fcntl
import imaplib
import json
import os
import poplib
import re
import select
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import dns.message
import dns.query
import pytest

from conftest import lecture_config
from imap_helpers import RawIMAP
from labkit import maildir
from labkit.accounts import Account, Accounts
from labkit.config import AuthConfig, ConfigError, load_config
from labkit.imap.session import IMAPSession
from labkit.session import CHUNK_SIZE, PeerInfo, stream
from labkit.smtp.server import SMTPServerSession
from labkit.trace import delivered_to
from labkit.world import World
from world_process import WorldProcess, topology

BETTY, CAROL = "betty@brilliant.com", "carol@careful.com"
BETTY_PASSWORD = "betty-password"


def remaining_recipients(spool: Path) -> int:
    """Recipients a (dead) host still has to deliver to: its spool's state files, or
    the envelope of a message not tried yet."""
    left = 0
    for path in spool.iterdir():
        if path.name.startswith(".") or path.name.endswith(".state"):
            continue
        state = spool / f"{path.name}.state"
        envelope = json.loads(state.read_text()) if state.exists() else json.loads(path.open("rb").readline())
        left += len(envelope["recipients"])
    return left


def copies(world: World, address: str) -> collections.Counter:
    """How many copies of each numbered message (X-Seq) ``address`` has."""
    return collections.Counter(int(re.search(rb"X-Seq: (\d+)", m).group(1)) for m in world.messages(address))


def all_stored(world: World, address: str, count: int) -> None:
    """Wait until ``address`` has each of the ``count`` numbered messages: a receiving
    host stores a message after its 250, from its spool (as Postfix does)."""
    def complete(_event=None) -> bool:
        return set(copies(world, address)) >= set(range(count))

    if not complete():
        world.wait_for(lambda e: delivered_to(address)(e) and complete(), timeout=30)


# -- 1. repeats after a crash ---------------------------------------------------------------
def test_kill_9_repeats_at_most_the_delivery_in_flight(tmp_path):
    """Messages for Betty and Carol (two domains); Carol's host tarpits, so when the world
    is killed (-9) after the last 250 every message has reached Betty and is still being
    relayed to careful.com. Progress is saved per domain (delivery._save_progress), so
    after a restart Betty gets none again but the one whose delivery was in flight at the
    kill (the last but one may be; the last is not past DNS yet), and Carol gets each once."""
    state = tmp_path / "state"
    slow_carol = {'users = { carol = "carol-password" }': 'users = { carol = "carol-password" }\nbehaviour = "tarpit"'}
    with WorldProcess(state, topology(tmp_path, **slow_carol)) as world:
        count = 12  # fewer than the 16 deliveries in flight a host allows: none waits for a slot
        betty = RawIMAP(world.endpoint("smtp.brilliant.com", "imap"), BETTY, "betty-password")
        betty.command("SELECT INBOX")
        betty.sock.sendall(b"i IDLE\r\n")
        assert betty.line().startswith(b"+")
        with smtplib.SMTP(*world.endpoint("smtp.awesome.com", "submission"), timeout=10) as client:
            client.login("albert", "albert-password")
            for seq in range(count):
                message = b"From: albert@awesome.com\r\nX-Seq: %d\r\nSubject: two domains\r\n\r\nbody\r\n" % seq
                client.sendmail("albert@awesome.com", [BETTY, CAROL], message)
                if seq < count - 1:
                    betty.wait_exists(seq + 1)  # one relay to Betty at a time
            world.kill()  # right after the last 250
        betty.close()
    left = remaining_recipients(state / "spool" / "smtp.awesome.com")
    with World(lecture_config(), state_dir=state) as restarted:  # careful.com answers at once now
        restarted.wait_for(lambda e: e.kind == "delivered" and e.server == "smtp.awesome.com", count=left)
        for address in (BETTY, CAROL):
            all_stored(restarted, address, count)
        got = {address: copies(restarted, address) for address in (BETTY, CAROL)}
    for address, counted in got.items():
        assert sorted(counted) == list(range(count)), f"{address} is missing messages"
    duplicates = sum(n - 1 for counted in got.values() for n in counted.values())
    assert duplicates <= 1, got
    assert not unfinished(state / "mail" / BETTY)


# -- 2. what a killed writer leaves in tmp/ -----------------------------------------------
def unfinished(folder: Path) -> list[str]:
    """The files in a Maildir's tmp/ (the committer's empty spares aside)."""
    return sorted(name for name in os.listdir(folder / "tmp") if not name.startswith(".spare."))


THIS_HOST = maildir.unique_name().split(".", 2)[2]  # as maildir(5) names write it


def half_delivery(folder: Path, pid: int, *, host: str = THIS_HOST, age: float = 0.0) -> str:
    """A message left in ``folder/tmp`` by process ``pid`` of ``host`` (named as
    labkit.maildir.unique_name names files), last touched ``age`` seconds ago."""
    name = f"{int(time.time())}.M{len(os.listdir(folder / 'tmp')):06d}P{pid}Q000001.{host}"
    path = folder / "tmp" / name
    path.write_bytes(b"Subject: half a delivery\r\n\r\n")
    os.utime(path, (time.time() - age, time.time() - age))
    return name


def test_stale_tmp_files_are_swept_at_start_and_by_readers(tmp_path):
    state = tmp_path / "state"
    inbox = maildir.create(state / "mail" / BETTY)
    sent = maildir.create(inbox / ".Sent")
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(exited.stdout)
    alive = half_delivery(inbox, os.getpid())  # the test's own: a writer still at work
    half_delivery(inbox, dead)
    half_delivery(sent, dead)
    half_delivery(inbox, 12345, host="elsewhere.example", age=37 * 3600)  # another host's: only age tells
    with WorldProcess(state) as world:
        assert unfinished(inbox) == [alive] and unfinished(sent) == []
        old = half_delivery(inbox, os.getpid(), age=37 * 3600)  # a reader removes it, whoever wrote it
        with imaplib.IMAP4(*world.endpoint("smtp.brilliant.com", "imap")) as client:
            client.login(BETTY, "betty-password")
            client.select("INBOX")
        assert old not in unfinished(inbox) and unfinished(inbox) == [alive]


# -- 3. the event loop never waits for the disk -----------------------------------------------
def fill_maildir(folder: Path, count: int, size: int = 2000) -> None:
    """``count`` messages written straight into ``folder/cur`` (the store indexes them)."""
    maildir.create(folder)
    for i in range(count):
        body = b"From: albert@awesome.com\r\nSubject: number %d\r\n\r\n" % i + b"x" * size + b"\r\n"
        (folder / "cur" / f"{1700000000 + i}.M{i:06d}P1Q1.filled:2,").write_bytes(body)


class Reply:
    """The reply to a command a test sent on a raw socket, read only when it is there."""

    def __init__(self, sock: socket.socket, end: bytes) -> None:
        self.sock, self.end, self.data = sock, end, b""

    def arrived(self, wait: float = 0.0) -> bool:
        """Whether all of it has come, waiting at most ``wait`` seconds for more."""
        while not self.data.endswith(b"\r\n") or self.end not in b"\n" + self.data:
            if not select.select([self.sock], [], [], wait)[0]:
                return False
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed; got {self.data[-200:]!r}"
            self.data += chunk
        return True


class Responsiveness:
    """Whether the rest of the world answers: another host's SMTP and POP3 greetings and
    a DNS query. A round made while a command provably waits for a lock of the store
    (``during``) is answered only if that wait is off the event loop: on the loop, the
    loop itself would wait until the lock is released, which ``during`` does only after.
    Timeouts are generous (10 s): a slow machine makes a round slower, never wrong."""

    def __init__(self, world: WorldProcess) -> None:
        self.world = world
        self.dns = world.info["dns"]

    def round(self) -> None:
        for host, service in (("mx2.careful.com", "smtp"), ("plain.com", "pop3")):
            with socket.create_connection(self.world.endpoint(host, service), timeout=10) as sock:
                assert sock.recv(100)[:1] in (b"2", b"+")
        query = dns.message.make_query("brilliant.com", "MX")
        assert dns.query.udp(query, self.dns["host"], port=self.dns["port"], timeout=10).answer

    def during(self, lock: Path, send: Callable[[], Reply]) -> bytes:
        """Hold the store's ``lock``, send a command that needs it, and probe the world
        while the command is seen waiting for the lock (in /proc/locks, so its session
        call is there, off the loop) and then doing its work, until its reply arrives."""
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            reply = send()
            waiter = f"-> FLOCK  ADVISORY  WRITE {self.world.proc.pid} "
            inode = f":{os.fstat(fd).st_ino} "
            for _ in range(1000):  # bounded: the command reaches the lock in a few rounds
                self.round()
                if any(waiter in line and inode in line for line in Path("/proc/locks").read_text().splitlines()):
                    break
            else:
                raise AssertionError(f"the command never waited for {lock}")
            self.round()
        finally:
            os.close(fd)  # releases the lock
        for _ in range(10_000):  # bounded
            if reply.arrived(wait=0.01):  # a round each 10 ms, leaving the world time to work
                return reply.data
            self.round()
        raise AssertionError("no reply")


def test_the_loop_never_waits_for_the_disk(tmp_path):
    """SELECT of a big folder, COPY, APPEND, EXPUNGE, RENAME INBOX and POP3's QUIT do
    their store work off the event loop: while each waits for a lock of the store (held
    here) and then works on 2,017 messages, DNS, SMTP and POP3 of other hosts answer."""
    state = tmp_path / "state"
    inbox = state / "mail" / BETTY
    fill_maildir(inbox, 2017)
    folder_lock, t_lock, store_lock = (inbox / "labkit-uidlist.lock", inbox / ".t" / "labkit-uidlist.lock",
                                       inbox / "labkit-store.lock")
    with WorldProcess(state) as world:
        probe = Responsiveness(world)
        imap = RawIMAP(world.endpoint("smtp.brilliant.com", "imap"), BETTY, "betty-password")
        pop3 = socket.create_connection(world.endpoint("smtp.brilliant.com", "pop3"), timeout=10)

        def imap_sends(command: bytes) -> Callable[[], Reply]:
            return lambda: (imap.sock.sendall(b"t " + command + b"\r\n"), Reply(imap.sock, b"\nt "))[1]

        def pop3_says(command: bytes) -> bytes:
            pop3.sendall(command + b"\r\n")
            reply = Reply(pop3, b"\n")
            while not reply.arrived():
                select.select([pop3], [], [], 10)
            return reply.data

        try:
            assert b"* 2017 EXISTS" in probe.during(folder_lock, imap_sends(b"SELECT INBOX"))  # the first index
            imap.command("CREATE t")
            assert b"COPYUID" in probe.during(t_lock, imap_sends(b"COPY 1:* t"))
            assert b"APPENDUID" in probe.during(t_lock, imap_sends(b"APPEND t (\\Seen) {7+}\r\nHello\r\n"))
            imap.command("SELECT t")
            imap.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")
            assert b"* 2018 EXPUNGE" in probe.during(t_lock, imap_sends(b"EXPUNGE"))
            assert b"t OK" in probe.during(store_lock, imap_sends(b"RENAME INBOX old"))
            imap.command("APPEND INBOX {5+}\r\nPOP3\r\n")
            pop3.recv(1000)  # the greeting
            assert pop3_says(b"USER betty").startswith(b"+OK") and pop3_says(b"PASS betty-password").startswith(b"+OK")
            assert pop3_says(b"DELE 1").startswith(b"+OK")
            assert b"1 messages deleted" in probe.during(folder_lock, lambda: (pop3.sendall(b"QUIT\r\n"),
                                                                                 Reply(pop3, b"\n+OK"))[1])
        finally:
            imap.close()
            pop3.close()


# -- 4. bounded memory under any input ------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used (utime + stime in /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_fetch(file, messages: dict[int, bytes], tag: bytes, items: int) -> None:
    """Read the responses to one ``FETCH 1:* (BODY.PEEK[]<0.N> ...)`` and check every
    literal: each message in order, ``items`` copies of its bytes, then ``tag OK``."""
    for msn in sorted(messages):
        line = file.readline()
        assert line.startswith(b"* %d FETCH (" % msn), line[:80]
        for _ in range(items):
            size = int(re.search(rb"\{(\d+)\}\r\n$", line).group(1))
            assert file.read(size) == messages[msn]
            line = file.readline()
        assert line == b")\r\n", line[:80]
    assert file.readline().startswith(tag + b" OK")


def test_a_client_that_does_not_read_cannot_take_the_memory(tmp_path):
    """Five pipelined FETCHes of 100 full copies of 300 messages each (300 MB of
    responses, 11 kB asked) from a client that does not read: the world stops making
    them once the socket is full, stays under 200 MB, and then sends every byte right."""
    state = tmp_path / "state"
    inbox = state / "mail" / BETTY
    fill_maildir(inbox, 300)
    messages = {i + 1: path.read_bytes() for i, path in enumerate(sorted((inbox / "cur").iterdir()))}
    with WorldProcess(state) as world:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.settimeout(20)
        sock.connect(world.endpoint("smtp.brilliant.com", "imap"))
        file = sock.makefile("rb", buffering=1 << 20)
        try:
            file.readline()
            for command in (b"a LOGIN betty betty-password", b"b SELECT INBOX"):
                sock.sendall(command + b"\r\n")
                while not file.readline().startswith(command[:2]):
                    pass
            fetch = b"FETCH 1:* (" + b" ".join(b"BODY.PEEK[]<0.%d>" % (10_000 + i) for i in range(100)) + b")"
            sock.sendall(b"".join(b"f%d %s\r\n" % (i, fetch) for i in range(5)))
            rss, still, cpu = [], 0, -1.0
            for _ in range(400):  # bounded: until the world has stopped working (it waits for us)
                rss.append(world.rss())
                assert rss[-1] < 200e6, f"{rss[-1] / 1e6:.0f} MB with nothing read"
                used = cpu_seconds(world.proc.pid)
                still, cpu = (still + 1 if used == cpu else 0), used
                if still == 5:
                    break
                time.sleep(0.02)  # sampling, not waiting for an event: there is none to wait for
            else:
                raise AssertionError("the world never stopped working for a client that does not read")
            for i in range(5):
                read_fetch(file, messages, b"f%d" % i, 100)
                rss.append(world.rss())
            assert max(rss) < 200e6
        finally:
            file.close()
            sock.close()


def test_stream_makes_each_chunk_when_it_is_taken():
    made = []

    def pieces(count: int):
        for i in range(count):
            made.append(i)
            yield b"x" * 1000

    assert stream(pieces(3)) == b"x" * 3000 and made == [0, 1, 2]  # small: plain bytes, one call
    made.clear()
    chunks = stream(pieces(200))
    assert len(made) == CHUNK_SIZE // 1000 + 1  # the first chunk only
    first = next(chunks)
    assert len(first) >= CHUNK_SIZE and len(made) == CHUNK_SIZE // 1000 + 1
    assert len(first) + len(b"".join(chunks)) == 200_000 and len(made) == 200


def test_imap_runs_the_next_command_only_once_the_reply_before_is_taken(tmp_path):
    betty = Account(BETTY, "pw", tmp_path / "betty")
    fill_maildir(betty.maildir, 50)
    session = IMAPSession(PeerInfo("1.2.3.4", 1234, "imap.test"), Accounts([betty]), hostname="imap.test")
    session.start()
    assert b"a OK" in session.receive(b"a LOGIN betty pw\r\nb SELECT INBOX\r\n")
    reply = session.receive(b"f FETCH 1:* (BODY.PEEK[] BODY.PEEK[]<0.9999>)\r\nz LOGOUT\r\n")
    assert not isinstance(reply, bytes)
    first = next(reply)
    assert first.startswith(b"* 1 FETCH (BODY[] {") and not session.closed  # LOGOUT not read yet
    whole = first + b"".join(reply)
    assert whole.count(b" FETCH (") == 50 and b"f OK" in whole and whole.endswith(b"z OK LOGOUT completed\r\n")
    assert session.closed


# -- 6. guessing passwords ------------------------------------------------------------------
DELAY = 0.2  # a failed login's first wait in these tests (the lecture world: 2 s, as Dovecot)
REFUSED = (imaplib.IMAP4.error, poplib.error_proto, smtplib.SMTPAuthenticationError)


def login_time(world: World, service: str, password: str) -> tuple[float, bool]:
    """How long Betty's login with ``password`` took over a real client (from the
    command to its reply; the connection made before), and whether it succeeded."""
    endpoint = world.host("brilliant.com").services[service]

    def timed(login: Callable[[], object]) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            login()
        except REFUSED:
            return time.perf_counter() - started, False
        return time.perf_counter() - started, True

    if service == "imap":
        with imaplib.IMAP4(endpoint.host, endpoint.port, timeout=10) as imap:
            return timed(lambda: imap.login(BETTY, password))
    if service == "pop3":
        pop3 = poplib.POP3(endpoint.host, endpoint.port, timeout=10)
        try:
            pop3.user(BETTY)
            return timed(lambda: pop3.pass_(password))
        finally:
            pop3.quit()
    with smtplib.SMTP(endpoint.host, endpoint.port, timeout=10) as smtp:
        smtp.ehlo("client.example")
        smtp.user, smtp.password = BETTY, password  # one mechanism: login() would try PLAIN, then LOGIN
        return timed(lambda: smtp.auth("PLAIN", smtp.auth_plain))


@pytest.mark.parametrize("service, smtp_session", [("imap", None), ("pop3", None), ("submission", None),
                                                   ("submission", SMTPServerSession)],
                         ids=["IMAP", "POP3", "SMTP AUTH (aiosmtpd)", "SMTP AUTH (sans-IO)"])
def test_failed_logins_wait_longer_each_time_and_a_right_one_not_at_all(tmp_path, service, smtp_session):
    config = lecture_config(auth=AuthConfig(failure_delay=DELAY, max_failure_delay=4 * DELAY))
    with World(config, state_dir=tmp_path / "state") as world:
        world.use(host="smtp.brilliant.com", smtp_session=smtp_session)
        first, second, right, again = [login_time(world, service, p) for p in ("guess", "guess2", BETTY_PASSWORD,
                                                                                "guess3")]
    assert not first[1] and DELAY <= first[0] < 2 * DELAY
    assert not second[1] and 2 * DELAY <= second[0] < 4 * DELAY  # in a row from one address: twice as long
    assert right[1] and right[0] < DELAY / 2  # the right password: at once
    assert not again[1] and DELAY <= again[0] < 2 * DELAY  # and that cleared the count


def test_a_failed_login_waits_on_the_loop_holding_no_thread(tmp_path):
    """40 POP3 clients fail at once (more than the 32 worker threads): all their replies
    come after one delay, not two, and meanwhile another host greets at once."""
    config = lecture_config(auth=AuthConfig(failure_delay=0.5, max_failure_delay=0.5))
    with World(config, state_dir=tmp_path / "state") as world:
        endpoint = world.host("brilliant.com").services["pop3"]
        clients = [socket.create_connection((endpoint.host, endpoint.port), timeout=10) for _ in range(40)]
        files = [client.makefile("rb") for client in clients]
        for client, file in zip(clients, files):
            file.readline()
            client.sendall(b"USER betty\r\n")
            assert file.readline().startswith(b"+OK")
        started = time.perf_counter()
        for client in clients:
            client.sendall(b"PASS guess\r\n")
        other = world.host("careful.com").services["pop3"]
        with socket.create_connection((other.host, other.port), timeout=10) as sock:
            assert sock.recv(100).startswith(b"+OK")
            greeted = time.perf_counter() - started
        answered = []
        for file in files:
            assert file.readline().startswith(b"-ERR [AUTH]")
            answered.append(time.perf_counter() - started)
        for client in clients:
            client.close()
    assert greeted < 0.1
    assert 0.5 <= min(answered) and max(answered) < 0.9


@pytest.mark.parametrize("old, new, says", [
    ("failure_delay = 2.0 ", "failure_delay = -1 ", "'failure_delay' must be seconds between 0 and 3600, not -1"),
    ("failure_delay = 2.0 ", "failure_delay = true ", "'failure_delay' must be seconds"),
    ("max_failure_delay = 15.0", "max_failure_delay = 1.0", "'max_failure_delay' (1) is less than 'failure_delay'"),
    ("[auth]\n", "[auth]\ndelay = 2\n", "unknown [auth] keys ['delay']"),
])
def test_the_topology_says_how_long_failed_logins_wait(tmp_path, old, new, says):
    assert load_config().auth == AuthConfig(failure_delay=2.0, max_failure_delay=15.0)  # the lecture's, Dovecot's
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(topology(tmp_path, **{old: new}))


def test_every_socket_a_world_serves_is_read_in_heap_sized_pieces(world):
    """asyncio reads a socket with recv(256 KiB): a new mapping of memory (mmap, mremap,
    munmap) for every six-byte command, a fifth of the SMTP front end's CPU per message.
    Every server of the world (SMTP through aiosmtpd, POP3 and IMAP through the serving
    edge, DNS over UDP) reads at most labkit.aio.READ_SIZE at a time."""
    from labkit.aio import READ_SIZE

    host = world.host("brilliant.com")
    port = {service: endpoint.port for service, endpoint in host.services.items()}
    with smtplib.SMTP("127.0.0.1", port["smtp"], timeout=30) as smtp:
        pop = poplib.POP3("127.0.0.1", port["pop3"], timeout=30)
        imap = imaplib.IMAP4("127.0.0.1", port["imap"], timeout=30)
        try:
            assert smtp.noop()[0] == 250 and pop.capa() and imap.noop()[0] == "OK"
            transports = [t for server in host._servers for t in server.transports]
        finally:
            pop.quit()
            imap.logout()
    assert len(transports) == 3
    assert [t.max_size for t in transports] == [READ_SIZE] * 3
    assert world.dns._udp.max_size == READ_SIZE
