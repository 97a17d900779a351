"""POP3: the sans-IO session alone, then over real sockets with poplib, curl and fetchmail."""

from __future__ import annotations

import base64
import os
import poplib
import queue
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from conftest import observed_server

from labkit.accounts import Account, Accounts
from labkit.maildir import deliver
from labkit.pop3 import MAX_LINE, POP3Session, apop_digest, dot_stuff, top_of
from labkit.session import PeerInfo, Session
from labkit.store import MailStore

HOST = "pop.brilliant.com"
FIRST = b"From: albert@awesome.com\r\nTo: betty@brilliant.com\r\nSubject: first\r\n\r\nHello Betty\r\n"
DOTTED = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n"
UTF8 = "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße, 你好 — ok\r\n".encode()


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    return Accounts([Account("betty@brilliant.com", "pw", tmp_path / "betty"), Account("albert@brilliant.com", "secret word", tmp_path / "albert")])


@pytest.fixture
def maildir(accounts: Accounts) -> Path:
    path = accounts.find("betty").maildir
    for message in (FIRST, DOTTED, UTF8):
        deliver(path, message)
    return path


def session(accounts: Accounts, **kw) -> POP3Session:
    s = POP3Session(PeerInfo("127.0.0.1", 4000, HOST), accounts, hostname=HOST, **kw)
    assert s.start().startswith(b"+OK")
    return s


def logged_in(accounts: Accounts) -> POP3Session:
    s = session(accounts)
    assert s.receive(b"USER betty\r\nPASS pw\r\n").splitlines()[-1].startswith(b"+OK betty's maildrop has 3 messages")
    return s


def lines(reply: bytes) -> list[str]:
    return reply.decode().split("\r\n")[:-1]


# ---------------------------------------------------------------- sans-IO


def test_what_may_be_answered_on_the_event_loop(accounts: Accounts, maildir: Path, monkeypatch) -> None:
    """in_memory(data) says whether receive(data) works from the login snapshot (the
    adapter then spares a thread): never a login, QUIT (it updates the maildrop) or the
    read of a big message."""
    s = session(accounts)
    assert s.in_memory(b"CAPA\r\nUSER betty\r\n") and not s.in_memory(b"USER betty\r\nPASS pw\r\n")
    s = logged_in(accounts)
    assert s.in_memory(b"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nDELE 3\r\nRSET\r\nNOOP\r\n")
    assert s.in_memory(b"RETR 9\r\n") and s.in_memory(b"RET")  # no such message: an -ERR; half a line: nothing
    assert not s.in_memory(b"QUIT\r\n") and not s.in_memory(b"NOOP\r\nQUIT\r\n")
    monkeypatch.setattr("labkit.pop3.INLINE_READ", 10)
    assert not s.in_memory(b"RETR 1\r\n") and s.in_memory(b"LIST 1\r\n")


def test_session_implements_the_protocol(accounts: Accounts) -> None:
    assert isinstance(session(accounts), Session)


def test_pipelined_commands_answered_in_order(accounts: Accounts, maildir: Path) -> None:
    s = session(accounts)
    out = lines(s.receive(b"user betty\r\npass pw\r\nStat\r\nLIST 2\r\nnoop\r\nUIDL 1\r\n"))
    sizes = [len(MailStore(maildir).folder("INBOX").read(uid)) for uid in (1, 2, 3)]
    assert out[0].startswith("+OK send PASS")
    assert out[2] == f"+OK 3 {sum(sizes)}"
    assert out[3] == f"+OK 2 {sizes[1]}"
    assert out[4] == "+OK"
    assert out[5].startswith("+OK 1 ") and out[5].endswith(".1")


def test_commands_split_across_receives(accounts: Accounts, maildir: Path) -> None:
    s = logged_in(accounts)
    replies = [s.receive(bytes([b])) for b in b"STAT\r\n"]
    assert replies[:-1] == [b""] * 5 and replies[-1].startswith(b"+OK 3 ")


def test_overlong_line_refused_without_buffering(accounts: Accounts, maildir: Path) -> None:
    s = logged_in(accounts)
    assert s.receive(b"X" * (MAX_LINE + 1)) == b"-ERR line too long (more than 1000 octets)\r\n"
    assert s.receive(b"Y" * 100_000) == b""
    assert len(s._buffer) == 0  # nothing of it kept
    assert s.receive(b"ZZZ\r\nNOOP\r\n") == b"+OK\r\n"


def test_wrong_state_unknown_and_syntax_errors(accounts: Accounts, maildir: Path) -> None:
    s = session(accounts)
    assert s.receive(b"STAT\r\n") == b"-ERR STAT is not valid in the AUTHORIZATION state\r\n"
    assert s.receive(b"PASS pw\r\n") == b"-ERR PASS must follow a successful USER\r\n"
    assert s.receive(b"FROB\r\n") == b"-ERR unknown command 'FROB'\r\n"
    s = logged_in(accounts)
    assert s.receive(b"RETR\r\n") == b"-ERR syntax: RETR msg\r\n"
    assert s.receive(b"RETR x\r\n") == b"-ERR invalid message number 'x'\r\n"
    assert s.receive(b"RETR 4\r\n") == b"-ERR no such message, only 3 messages in maildrop\r\n"
    assert s.receive(b"TOP 1 -1\r\n").startswith(b"-ERR invalid line count '-1'")
    assert s.receive(b"USER betty\r\n") == b"-ERR USER is not valid in the TRANSACTION state\r\n"


def test_wrong_password_and_too_many_failures(accounts: Accounts, maildir: Path) -> None:
    s = session(accounts)
    assert s.receive(b"USER betty\r\nPASS nope\r\n").endswith(b"-ERR [AUTH] invalid user name or password\r\n")
    assert s.receive(b"USER nobody\r\nPASS pw\r\n").endswith(b"-ERR [AUTH] invalid user name or password\r\n")
    assert s.receive(b"USER betty\r\nPASS nope\r\nNOOP\r\n").endswith(b"-ERR [AUTH] too many failed logins, closing connection\r\n")
    assert s.closed


def test_password_with_spaces_and_apop(accounts: Accounts) -> None:
    s = session(accounts)
    assert s.receive(b"USER albert\r\nPASS secret word\r\n").endswith(b"+OK albert's maildrop has 0 messages (0 octets)\r\n")
    s.connection_lost()
    s = session(accounts)
    digest = apop_digest(s.banner, "secret word")
    assert s.banner.startswith("<") and s.banner.endswith(f"@{HOST}>") and s.banner.encode() in s.start()
    assert s.receive(f"APOP albert {'0' * 32}\r\n".encode()).startswith(b"-ERR [AUTH]")
    assert s.receive(f"APOP albert {digest}\r\n".encode()).startswith(b"+OK albert's maildrop")


def test_auth_plain_initial_continuation_and_cancel(accounts: Accounts, maildir: Path) -> None:
    token = base64.b64encode(b"\0betty\0pw")
    s = session(accounts)
    assert s.receive(b"AUTH PLAIN " + token + b"\r\n").startswith(b"+OK betty's maildrop has 3")
    s.connection_lost()
    s = session(accounts)
    assert s.receive(b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert s.receive(b"*\r\n") == b"-ERR AUTH cancelled by the client\r\n"
    assert s.receive(b"AUTH PLAIN\r\n!!!\r\n").startswith(b"+ \r\n-ERR [AUTH] malformed AUTH PLAIN")
    assert s.receive(b"AUTH CRAM-MD5\r\n").startswith(b"-ERR unsupported SASL mechanism 'CRAM-MD5'")
    assert s.receive(b"AUTH PLAIN\r\n" + token + b"\r\n") == b"+ \r\n+OK betty's maildrop has 3 messages (%d octets)\r\n" % s._totals()[1]


def test_dele_rset_and_deleted_messages_hidden(accounts: Accounts, maildir: Path) -> None:
    s = logged_in(accounts)
    assert s.receive(b"DELE 2\r\n") == b"+OK message 2 deleted\r\n"
    assert s.receive(b"RETR 2\r\n") == b"-ERR message 2 already deleted\r\n"
    assert s.receive(b"LIST 2\r\n") == b"-ERR message 2 already deleted\r\n"
    assert s.receive(b"UIDL 2\r\n") == b"-ERR message 2 already deleted\r\n"
    assert [line.split()[0] for line in lines(s.receive(b"LIST\r\n"))[1:-1]] == ["1", "3"]
    assert s.receive(b"STAT\r\n").startswith(b"+OK 2 ")
    assert s.receive(b"RSET\r\n").startswith(b"+OK maildrop has 3 messages")
    assert s.receive(b"RETR 2\r\n").startswith(b"+OK")


def test_quit_deletes_and_marks_seen(accounts: Accounts, maildir: Path) -> None:
    s = logged_in(accounts)
    s.receive(b"RETR 1\r\nTOP 3 0\r\nDELE 2\r\n")
    assert s.receive(b"QUIT\r\n") == b"+OK pop.brilliant.com POP3 server signing off (1 messages deleted)\r\n"
    assert s.closed
    s.connection_lost()
    left = MailStore(maildir).folder("INBOX").messages()
    assert [(m.uid, m.flags) for m in left] == [(1, {"\\Seen"}), (3, frozenset())]


def test_dropped_connection_or_timeout_deletes_nothing(accounts: Accounts, maildir: Path) -> None:
    s = logged_in(accounts)
    s.receive(b"RETR 1\r\nDELE 1\r\nDELE 2\r\n")
    s.connection_lost()
    s = logged_in(accounts)  # the lock was released
    s.receive(b"DELE 3\r\n")
    assert s.timed_out() == b"-ERR autologout: idle for 600 seconds, nothing deleted\r\n" and s.closed
    s.connection_lost()
    left = MailStore(maildir).folder("INBOX").messages()
    assert [(m.uid, m.flags) for m in left] == [(1, frozenset()), (2, frozenset()), (3, frozenset())]


def test_second_session_gets_in_use(accounts: Accounts, maildir: Path) -> None:
    first = logged_in(accounts)
    second = session(accounts)
    assert second.receive(b"USER betty\r\nPASS pw\r\n").endswith(b"-ERR [IN-USE] mailbox locked by another session\r\n")
    first.receive(b"QUIT\r\n")
    assert second.receive(b"USER betty\r\nPASS pw\r\n").endswith(b"+OK betty's maildrop has 3 messages (%d octets)\r\n" % first._totals()[1])


def test_snapshot_at_login(accounts: Accounts, maildir: Path) -> None:
    s = logged_in(accounts)
    deliver(maildir, FIRST)
    assert s.receive(b"STAT\r\n").startswith(b"+OK 3 ")
    assert s.receive(b"RETR 4\r\n") == b"-ERR no such message, only 3 messages in maildrop\r\n"
    s.receive(b"QUIT\r\n")
    assert logged_in_count(accounts) == 4


def logged_in_count(accounts: Accounts) -> int:
    s = session(accounts)
    reply = s.receive(b"USER betty\r\nPASS pw\r\nSTAT\r\nQUIT\r\n")
    return int(lines(reply)[2].split()[1])


def test_message_expunged_by_imap_meanwhile(accounts: Accounts, maildir: Path) -> None:
    s = logged_in(accounts)
    imap = MailStore(maildir).folder("INBOX")
    imap.expunge([2])
    assert s.receive(b"RETR 2\r\n").startswith(b"-ERR message 2 is no longer in the maildrop: message UID 2")
    assert s.receive(b"RETR 1\r\n").startswith(b"+OK")


def test_snapshot_keeps_sizes_of_a_message_deleted_after_login(accounts: Accounts, maildir: Path) -> None:
    MailStore(maildir).folder("INBOX")  # an IMAP client saw the messages, no size measured yet
    s = logged_in(accounts)
    (doomed,) = [name for name in os.listdir(maildir / "cur") if b"dots" in (maildir / "cur" / name).read_bytes()]
    os.unlink(maildir / "cur" / doomed)  # mutt deletes it
    assert lines(s.receive(b"LIST\r\n"))[1:4] == [f"1 {len(FIRST)}", f"2 {len(DOTTED)}", f"3 {len(UTF8)}"]
    assert s.receive(b"RETR 2\r\n").startswith(b"-ERR message 2 is no longer in the maildrop")


def test_lf_message_sizes_match_retr(accounts: Accounts) -> None:
    deliver(accounts.find("betty").maildir, b"Subject: lf\n\n.x\nbody\n")
    s = logged_in_n(accounts)
    size = int(lines(s.receive(b"LIST 1\r\n"))[0].split()[2])
    retr = s.receive(b"RETR 1\r\n")
    assert retr == b"+OK %d octets\r\nSubject: lf\r\n\r\n..x\r\nbody\r\n.\r\n" % size
    assert size == len(b"Subject: lf\r\n\r\n.x\r\nbody\r\n")


def logged_in_n(accounts: Accounts) -> POP3Session:
    s = session(accounts)
    assert s.receive(b"USER betty\r\nPASS pw\r\n").splitlines()[-1].startswith(b"+OK")
    return s


def test_dot_stuffing_and_top_helpers() -> None:
    assert dot_stuff(b".a\r\nb\r\n.\r\n") == b"..a\r\nb\r\n..\r\n.\r\n"
    assert dot_stuff(b"no final newline") == b"no final newline\r\n.\r\n"
    message = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
    assert top_of(message, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top_of(message, 2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
    assert top_of(message, 99) == message


# ---------------------------------------------------------------- real sockets


@dataclass
class Server:
    port: int
    maildir: Path
    ended: "queue.Queue[POP3Session]"  # sessions whose connection has ended

    def client(self, user: str = "betty", password: str = "pw") -> poplib.POP3:
        client = poplib.POP3("127.0.0.1", self.port, timeout=10)
        client.user(user)
        client.pass_(password)
        return client

    def wait_ended(self) -> POP3Session:
        return self.ended.get(timeout=10)


@pytest.fixture
def server(accounts: Accounts, maildir: Path) -> Iterator[Server]:
    with observed_server(POP3Session, accounts, protocol="pop3", hostname=HOST) as (port, ended):
        yield Server(port, maildir, ended)


def test_poplib_stat_list_retr_exact_sizes(server: Server) -> None:
    client = server.client()
    count, total = client.stat()
    _, listing, _ = client.list()
    sizes = {int(n): int(size) for n, size in (entry.split() for entry in listing)}
    assert count == 3 and total == sum(sizes.values())
    for n, message in enumerate((FIRST, DOTTED, UTF8), 1):
        _, got, octets = client.retr(n)
        assert b"\r\n".join(got) + b"\r\n" == message  # dot-stuffing undone by poplib
        assert octets == sizes[n] == len(message)
    assert client.list(2).split() == [b"+OK", b"2", str(sizes[2]).encode()]
    client.quit()


def test_poplib_top_uidl_capa_noop(server: Server) -> None:
    client = server.client()
    _, top, _ = client.top(1, 0)
    assert top == [b"From: albert@awesome.com", b"To: betty@brilliant.com", b"Subject: first", b""]
    capa = client.capa()
    assert {"TOP", "UIDL", "USER", "SASL", "RESP-CODES", "PIPELINING"} <= capa.keys() and capa["SASL"] == ["PLAIN"]
    assert client.noop().startswith(b"+OK")
    _, uidls, _ = client.uidl()
    client.quit()
    again = server.client()
    assert again.uidl()[1] == uidls and len(set(uidls)) == 3  # unique and persistent
    again.quit()


def test_poplib_apop(server: Server, accounts: Accounts) -> None:
    client = poplib.POP3("127.0.0.1", server.port, timeout=10)
    assert client.apop("albert", "secret word").startswith(b"+OK albert's maildrop")
    client.quit()
    client = poplib.POP3("127.0.0.1", server.port, timeout=10)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        client.apop("betty", "wrong")
    client.quit()


def test_poplib_dele_quit_deletes(server: Server) -> None:
    client = server.client()
    client.dele(1)
    client.retr(2)
    assert client.quit().endswith(b"(1 messages deleted)")
    server.wait_ended()
    left = MailStore(server.maildir).folder("INBOX").messages()
    assert [(m.uid, m.flags) for m in left] == [(2, {"\\Seen"}), (3, frozenset())]
    assert server.client().stat()[0] == 2


def test_poplib_dele_then_drop_deletes_nothing(server: Server) -> None:
    client = server.client()
    client.dele(1)
    client.dele(2)
    client.close()  # no QUIT
    server.wait_ended()
    assert len(MailStore(server.maildir).folder("INBOX").messages()) == 3
    assert server.client().stat()[0] == 3


def test_poplib_rset(server: Server) -> None:
    client = server.client()
    client.dele(3)
    assert client.stat()[0] == 2
    client.rset()
    assert client.stat()[0] == 3
    client.quit()
    server.wait_ended()
    assert len(MailStore(server.maildir).folder("INBOX").messages()) == 3


def test_poplib_lock_in_use(server: Server) -> None:
    first = server.client()
    with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\] mailbox locked by another session"):
        server.client()
    first.quit()  # the lock is released before the QUIT reply is sent
    assert server.client().stat()[0] == 3


def test_poplib_wrong_password(server: Server) -> None:
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        server.client(password="nope")


def test_poplib_utf8_body_intact(server: Server) -> None:
    client = server.client()
    _, got, _ = client.retr(3)
    assert "Grüße, 你好 — ok".encode() in got
    client.quit()


def test_commands_sent_while_a_login_runs_are_answered_after_it(accounts: Accounts, maildir: Path) -> None:
    """PASS runs in a worker thread; STAT, LIST and RETR sent meanwhile (one packet each)
    wait for it, though each alone would be answered right as it arrives."""
    entered, proceed = threading.Event(), threading.Event()

    class SlowLogin(POP3Session):
        def _pass(self, password: str) -> str:
            entered.set()
            proceed.wait(10)
            return super()._pass(password)

    with observed_server(SlowLogin, accounts, protocol="pop3", hostname=HOST) as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.recv(1000)  # the greeting
            sock.sendall(b"USER betty\r\nPASS pw\r\n")
            assert entered.wait(10)
            for command in (b"STAT\r\n", b"LIST 1\r\n", b"RETR 2\r\n"):
                sock.sendall(command)
                time.sleep(0.05)  # not a wait for an event: each is read on its own, a wrong answer goes out
            proceed.set()
            file = sock.makefile("rb")
            replies = b"".join(iter(file.readline, b".\r\n")) + b".\r\n"  # up to RETR's end
            sock.sendall(b"QUIT\r\n")
            replies += file.read()
            file.close()
    total = len(FIRST + DOTTED + UTF8)
    assert replies == (b"+OK send PASS for betty\r\n+OK betty's maildrop has 3 messages (%d octets)\r\n"
                       b"+OK 3 %d\r\n+OK 1 %d\r\n+OK %d octets\r\n%s"
                       b"+OK pop.brilliant.com POP3 server signing off (0 messages deleted)\r\n"
                       % (total, total, len(FIRST), len(DOTTED), dot_stuff(DOTTED)))


def test_a_client_that_does_not_read_holds_up_its_own_replies(accounts: Accounts, maildir: Path) -> None:
    """RETRs of a 50 kB message, one packet each, from a client that reads nothing:
    answered while the socket takes the replies, then no more (bounded memory) until
    the client reads; then every reply comes, whole and in order."""
    big = b"Subject: big\r\n\r\n" + b"%s\r\n" % (b"x" * 78) * 640
    deliver(maildir, big)
    answered = []

    class Counting(POP3Session):
        def _retr(self, arg: str) -> bytes:
            answered.append(arg)
            return super()._retr(arg)

    count = 2000  # 100 MB of replies
    with observed_server(Counting, accounts, protocol="pop3", hostname=HOST) as (port, _):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            file = sock.makefile("rb")
            file.readline()
            sock.sendall(b"USER betty\r\nPASS pw\r\n")
            file.readline(), file.readline()
            sent = 0
            while sent < count:  # one command at a time, each once the one before is answered
                sock.sendall(b"RETR 4\r\n")
                sent += 1
                for _ in range(500):  # bounded (0.5 s): it answers at once while the socket takes more
                    if len(answered) == sent:
                        break
                    time.sleep(0.001)  # sampling, not waiting for an event: there is none to wait for
                else:
                    break  # it stopped: it waits for us to read
            assert len(answered) < 400, f"{len(answered)} replies of 50 kB made for a client that reads nothing"
            while sent < count:
                sock.sendall(b"RETR 4\r\n")
                sent += 1
            sock.sendall(b"QUIT\r\n")
            for _ in range(count):
                assert file.readline() == b"+OK %d octets\r\n" % len(big)
                lines = iter(file.readline, b".\r\n")
                assert b"".join(lines) == big
            assert file.readline().startswith(b"+OK pop.brilliant.com POP3 server signing off")
            file.close()
    assert len(answered) == count


class ShortTimeout(POP3Session):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, timeout=1.0, **kw)


def test_autologout_counts_from_the_last_answer(accounts: Accounts, maildir: Path) -> None:
    """NOOPs (answered as they arrive) keep a session with a 1 s timeout alive for 2 s;
    then it is idle, and autologged out."""
    with observed_server(ShortTimeout, accounts, protocol="pop3", hostname=HOST) as (port, ended):
        client = poplib.POP3("127.0.0.1", port, timeout=10)
        client.user("betty")
        client.pass_("pw")
        for _ in range(20):
            assert client.noop() == b"+OK"
            time.sleep(0.1)
        with pytest.raises(poplib.error_proto, match="autologout: idle for 1 seconds, nothing deleted"):
            client._getresp()
        ended.get(timeout=10)
        client.close()


def run_client(argv: list[str], **kw) -> subprocess.CompletedProcess[bytes]:
    if not shutil.which(argv[0]):
        pytest.skip(f"{argv[0]} not installed")
    return subprocess.run(argv, capture_output=True, timeout=30, **kw)


def test_curl_retrieves_and_lists(server: Server, accounts: Accounts) -> None:
    url = f"pop3://127.0.0.1:{server.port}"
    got = run_client(["curl", "-sv", f"{url}/2", "-u", "betty:pw"])
    assert got.returncode == 0, got.stderr
    assert got.stdout == DOTTED  # curl undoes the dot-stuffing too
    assert b"> AUTH PLAIN" in got.stderr  # curl picks SASL PLAIN from CAPA
    listing = run_client(["curl", "-s", f"{url}/", "-u", "betty:pw"])
    assert [line.split()[0] for line in listing.stdout.splitlines()] == [b"1", b"2", b"3"]
    assert listing.stdout.split(b"\r\n")[0] == b"1 %d" % len(FIRST)
    deliver(accounts.find("albert").maildir, FIRST)
    apop = run_client(["curl", "-sv", f"{url}/1", "-u", "albert:secret word", "--login-options", "AUTH=+APOP"])
    assert (apop.returncode, apop.stdout) == (0, FIRST), apop.stderr
    assert b"> APOP albert " in apop.stderr
    wrong = run_client(["curl", "-s", f"{url}/1", "-u", "betty:nope"])
    assert wrong.returncode == 67  # CURLE_LOGIN_DENIED


def test_fetchmail_keep_uses_uidl(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    rc = home / "fetchmailrc"
    rc.write_text(f"poll 127.0.0.1 service {server.port} protocol pop3 user \"betty\" password \"pw\" keep sslproto ''\n")
    rc.chmod(0o600)
    out = home / "mbox"
    argv = ["fetchmail", "-f", str(rc), "--nosslcertck", "--mda", f"cat >> {out}", "--pidfile", str(home / "pid")]
    env = {**os.environ, "HOME": str(home)}
    first = run_client(argv, env=env)
    assert first.returncode == 0, first.stderr
    assert "Hello Betty" in out.read_text() and "Grüße, 你好" in out.read_text()
    server.wait_ended()
    second = run_client(argv, env=env)
    assert second.returncode == 1, second.stderr  # PS_NOMAIL: UIDL told it all is old
    assert len(MailStore(server.maildir).folder("INBOX").messages()) == 3  # keep
