"""IMAP: the sans-IO session alone, then over real sockets with imaplib, imapclient,
curl and mutt, on Maildirs the MTA's delivery function fills."""

from __future__ import annotations

import imaplib
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import imap_helpers
from conftest import need, run_in_pty
from imap_helpers import FIRST, HOST, MESSAGES, MIXED, UTF8, Server, ok

from labkit.accounts import Accounts
from labkit.imap import IMAPSession
from labkit.maildir import deliver
from labkit.session import PeerInfo, Session
from labkit.store import MailStore

accounts, maildir, server = imap_helpers.accounts, imap_helpers.maildir, imap_helpers.server  # the fixtures


def session(accounts: Accounts) -> IMAPSession:
    s = IMAPSession(PeerInfo("127.0.0.1", 4000, HOST), accounts, hostname=HOST)
    assert s.start().startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    return s


def selected(accounts: Accounts) -> IMAPSession:
    s = session(accounts)
    assert b"a OK" in s.receive(b"a LOGIN betty pw\r\n")
    assert b"b OK [READ-WRITE]" in s.receive(b"b SELECT INBOX\r\n")
    return s


def tagged(reply: bytes, tag: str) -> str:
    """The tagged completion line for ``tag``."""
    return next(line for line in reply.decode("utf-8", "replace").split("\r\n") if line.startswith(tag + " "))


# ---------------------------------------------------------------- sans-IO


def test_session_implements_the_protocol(accounts: Accounts) -> None:
    assert isinstance(session(accounts), Session)


def test_garbage_wrong_state_and_unknown_commands_get_bad(accounts: Accounts, maildir: Path) -> None:
    s = session(accounts)
    out = s.receive(b"\r\n(((\r\na1 FROB\r\na2 SELECT INBOX\r\na3 LOGIN\r\na4 FETCH 1 FLAGS\r\n\x00\x01\r\n")
    lines = out.decode().split("\r\n")
    assert lines[0] == "* BAD empty command line"
    assert lines[1].startswith("* BAD command without a tag")
    assert lines[2] == "a1 BAD unknown command FROB"
    assert lines[3] == "a2 BAD SELECT is not allowed in the not authenticated state: LOGIN or AUTHENTICATE first"
    assert lines[4].startswith("a3 BAD LOGIN: expected a space")
    assert lines[5] == "a4 BAD FETCH is not allowed in the not authenticated state: LOGIN or AUTHENTICATE first"
    assert lines[6].startswith("* BAD command without a tag") and not s.closed
    s.receive(b"a5 LOGIN betty pw\r\n")
    assert tagged(s.receive(b"a6 FETCH 1 FLAGS\r\n"), "a6") == "a6 BAD FETCH is not allowed in the authenticated state: SELECT a mailbox first"
    assert tagged(s.receive(b"a7 LOGIN betty pw\r\n"), "a7").endswith("already logged in")
    s.receive(b"a8 SELECT INBOX\r\n")
    assert tagged(s.receive(b"a9 FETCH 4 FLAGS\r\n"), "a9") == "a9 BAD FETCH: message number 4 is out of range: the mailbox has 3 messages"
    assert tagged(s.receive(b"b1 FETCH 1 (FLAGS BODY[NOPE])\r\n"), "b1").startswith("b1 BAD FETCH: unknown section 'NOPE'")
    assert tagged(s.receive(b"b2 STORE 1 FLAGS (\\Bogus)\r\n"), "b2") == "b2 BAD STORE: unknown system flag \\Bogus"
    assert tagged(s.receive(b"b3 SEARCH CHARSET KOI8-R ALL\r\n"), "b3").startswith("b3 NO [BADCHARSET (UTF-8 US-ASCII)]")


def test_commands_with_literals_fed_one_byte_at_a_time(accounts: Accounts, maildir: Path) -> None:
    script = (b"a LOGIN {5}\r\nbetty {2}\r\npw\r\nb SELECT INBOX\r\n"
              b'c APPEND INBOX (\\Seen) " 7-Feb-2024 10:00:00 +0000" {11+}\r\nSubject: x\r\n\r\n'
              b"d UID SEARCH SUBJECT {1}\r\nx\r\n")
    s = session(accounts)
    replies = [s.receive(script[i : i + 1]) for i in range(len(script))]
    out = b"".join(replies)
    assert out.count(b"+ Ready for literal\r\n") == 3  # {5}, {2} and {1}; not for {11+}
    assert [line[:4] for line in out.split(b"\r\n") if line[:1] in b"abcd" and line] == [b"a OK", b"b OK", b"c OK", b"d OK"]
    assert re.search(rb"c OK \[APPENDUID \d+ 4\]", out) and b"* SEARCH 4\r\nd OK" in out
    assert replies[script.index(b"betty") - 1] == b"+ Ready for literal\r\n"  # sent as soon as "{5}\r\n" is in


def test_login_failures_then_bye(accounts: Accounts) -> None:
    s = session(accounts)
    assert tagged(s.receive(b"a LOGIN betty wrong\r\n"), "a") == "a NO [AUTHENTICATIONFAILED] Invalid user name or password"
    assert tagged(s.receive(b'b LOGIN "nobody" "pw"\r\n'), "b").startswith("b NO [AUTHENTICATIONFAILED]")
    out = s.receive(b"c LOGIN betty nope\r\nd NOOP\r\n")
    assert out.startswith(b"* BYE Too many failed logins") and b"d OK" not in out and s.closed


def test_authenticate_plain_continuation_initial_response_and_cancel(accounts: Accounts, maildir: Path) -> None:
    s = session(accounts)
    assert s.receive(b"a AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert tagged(s.receive(b"*\r\n"), "a") == "a BAD AUTHENTICATE: AUTHENTICATE cancelled by the client"
    assert s.receive(b"b AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert tagged(s.receive(b"not base64!\r\n"), "b").startswith("b NO [AUTHENTICATIONFAILED] Malformed")
    assert tagged(s.receive(b"c AUTHENTICATE CRAM-MD5\r\n"), "c").startswith("c NO Unsupported SASL mechanism")
    assert tagged(s.receive(b"d AUTHENTICATE PLAIN AGJldHR5AHB3\r\n"), "d").startswith("d OK")  # \0betty\0pw
    assert s.state.value == "authenticated"


def test_oversized_literal_refused_without_continuation(accounts: Accounts, maildir: Path) -> None:
    s = selected(accounts)
    out = s.receive(b"a SEARCH TEXT {999999}\r\n")
    assert out.startswith(b"a BAD literal of 999999 octets is too big") and b"+ " not in out
    out = s.receive(b"b APPEND INBOX {104857600}\r\n")
    assert out.startswith(b"b NO [TOOBIG] message of 104857600 octets")
    assert tagged(s.receive(b"c NOOP\r\n"), "c") == "c OK NOOP completed"
    before_login = session(accounts)  # no big literals before a login
    assert before_login.receive(b"x APPEND INBOX {100000}\r\n").startswith(b"x NO [TOOBIG]")
    assert before_login.receive(b"y AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert before_login.receive(b"A" * 70000 + b"\r\n").startswith(b"y BAD command line too long")


def test_path_traversal_refused(accounts: Accounts, maildir: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    s = selected(accounts)
    for n, command in enumerate([b'CREATE "../evil"', b"CREATE /etc/evil", b"SELECT ../albert", b'RENAME INBOX "a/../../x"',
                                 b'CREATE "x/../../y"', b"CREATE {5+}\r\na\x00b/c", b'DELETE ".."', b'APPEND "../albert" {1+}\r\nx']):
        reply = tagged(s.receive(b"t%d " % n + command + b"\r\n"), f"t{n}")
        assert reply.startswith(f"t{n} NO ") or reply.startswith(f"t{n} BAD "), reply
    assert tagged(s.receive(b'x1 CREATE "../evil"\r\n'), "x1") == (
        "x1 NO [CANNOT] folder name part '..' is not allowed (it would escape the store)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not any(".." in p.name or "evil" in p.name for p in maildir.iterdir())


def test_sizes_fetched_together_and_one_whose_file_went_unmeasured(accounts: Accounts, maildir: Path) -> None:
    """FETCH (UID FLAGS RFC822.SIZE), a client's first look: each response made whole from
    the store's info; a message expunged elsewhere before anyone measured it says 0."""
    a, b = selected(accounts), selected(accounts)
    b.receive(b"s STORE 2 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\n")
    out = a.receive(b"f FETCH 1:3 (UID FLAGS RFC822.SIZE)\r\n")
    sizes = [len(m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) for m in MESSAGES]
    assert out.split(b"\r\n")[:3] == [b"* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE %d)" % sizes[0],
                                      b"* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE 0)",
                                      b"* 3 FETCH (UID 3 FLAGS (\\Recent) RFC822.SIZE %d)" % sizes[2]]
    assert tagged(out, "f").startswith("f OK [EXPUNGEISSUED]")


def test_expunge_from_elsewhere_waits_until_allowed(accounts: Accounts, maildir: Path) -> None:
    a, b = selected(accounts), selected(accounts)
    b.receive(b"s STORE 1 +FLAGS (\\Deleted)\r\n")
    assert b"* 1 EXPUNGE" in b.receive(b"e EXPUNGE\r\n")
    out = a.receive(b"f FETCH 1:3 (UID FLAGS)\r\n")  # RFC 3501 7.4.1: no EXPUNGE during FETCH
    assert b"EXPUNGE" not in out and b"* 1 FETCH (UID 1 FLAGS (\\Recent))" in out
    assert b"* 3 FETCH (UID 3 " in out and tagged(out, "f").startswith("f OK")
    out = a.receive(b"g FETCH 1 BODY[]\r\n")  # the message itself is gone from disk: NIL, as Dovecot says
    assert out.startswith(b"* 1 FETCH (BODY[] NIL)\r\n") and tagged(out, "g").startswith("g OK [EXPUNGEISSUED]")
    out = a.receive(b"h SEARCH ALL\r\nh2 SEARCH BODY betty\r\n")  # numbers unchanged; the gone body cannot match
    assert b"EXPUNGE" not in out and b"* SEARCH 1 2 3\r\nh OK" in out and b"* SEARCH\r\nh2 OK" in out
    out = a.receive(b"n NOOP\r\n")
    assert out.startswith(b"* 1 EXPUNGE\r\n")
    assert b"* SEARCH 1 2\r\n" in a.receive(b"i SEARCH ALL\r\n")


def test_selected_mailbox_deleted_elsewhere_ends_the_session(accounts: Accounts, maildir: Path) -> None:
    a, b = session(accounts), session(accounts)
    a.receive(b"a LOGIN betty pw\r\na2 CREATE Work\r\na3 SELECT Work\r\n")
    b.receive(b"b LOGIN betty pw\r\n")
    assert tagged(a.receive(b"a4 DELETE Work\r\n"), "a4").startswith("a4 NO [INUSE]")
    assert tagged(b.receive(b"b2 DELETE Work\r\n"), "b2") == "b2 OK DELETE completed"
    out = a.receive(b"a5 NOOP\r\n")
    assert out.startswith(b"* BYE The selected mailbox Work no longer exists") and a.closed


def test_big_append_and_status_of_the_selected_mailbox(accounts: Accounts, maildir: Path) -> None:
    s = selected(accounts)
    big = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 65536 + b"\r\n"  # 1 MiB body
    out = s.receive(b"a APPEND INBOX {%d}\r\n" % len(big))
    assert out == b"+ Ready for literal\r\n"
    out = b"".join(s.receive(big[i : i + 65536]) for i in range(0, len(big), 65536)) + s.receive(b"\r\n")
    assert re.search(rb"a OK \[APPENDUID \d+ 4\]", out) and b"* 4 EXISTS\r\n* 4 RECENT\r\n" in out
    out = s.receive(b"b STATUS inbox (MESSAGES UNSEEN RECENT)\r\nc FETCH 4 RFC822.SIZE\r\n")
    assert b"* STATUS INBOX (MESSAGES 4 UNSEEN 4 RECENT 4)\r\n" in out
    assert b"* 4 FETCH (RFC822.SIZE %d)" % len(big) in out


def test_idle_reports_new_mail_sans_io(accounts: Accounts, maildir: Path) -> None:
    s = selected(accounts)
    woken = threading.Event()
    unwatch = s.watch(woken.set)
    assert s.receive(b"i IDLE\r\n") == b"+ idling, send DONE to stop\r\n"
    deliver(maildir, b"Subject: fourth\r\n\r\nnews\r\n")
    assert woken.wait(5)
    assert s.mailbox_changed() == b"* 4 EXISTS\r\n* 4 RECENT\r\n"
    out = s.receive(b"DONE\r\nj NOOP\r\n")
    assert out == b"i OK IDLE terminated\r\nj OK NOOP completed\r\n"
    unwatch()
    s.receive(b"k IDLE\r\n")
    assert s.receive(b"NOT DONE\r\n") == b"k BAD expected DONE to end IDLE\r\n"


def test_new_mail_reported_after_commands_and_timeout(accounts: Accounts, maildir: Path) -> None:
    s = selected(accounts)
    deliver(maildir, b"Subject: fourth\r\n\r\nnews\r\n")
    assert s.mailbox_changed() == b""  # not idling: told after the next command
    out = s.receive(b"f FETCH 1 FLAGS\r\n")
    assert b"* 4 EXISTS\r\n* 4 RECENT\r\nf OK" in out
    assert s.timed_out().startswith(b"* BYE Autologout") and s.closed


def test_changes_by_mutt_and_the_mta_reported_after_the_next_command(accounts: Accounts, maildir: Path) -> None:
    s = selected(accounts)
    assert s.receive(b"a NOOP\r\n") == b"a OK NOOP completed\r\n"  # nothing changed: nothing to tell
    first, second, _ = MailStore(maildir).folder("INBOX").messages()
    cur = maildir / "cur"
    os.rename(cur / f"{first.key}:2,", cur / f"{first.key}:2,S")  # mutt marks it read
    os.unlink(cur / f"{second.key}:2,")  # and deletes another
    fourth = b"Subject: fourth\r\n\r\nnews\r\n"
    deliver(maildir, fourth)
    out = s.receive(b"f FETCH 1 (FLAGS)\r\n")  # the answer, then the news; no EXPUNGE during FETCH (RFC 3501 7.4.1)
    assert out == (b"* 1 FETCH (FLAGS (\\Recent))\r\n* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n"
                   b"* 4 EXISTS\r\n* 4 RECENT\r\nf OK FETCH completed\r\n")
    assert s.receive(b"n NOOP\r\n") == b"* 2 EXPUNGE\r\nn OK NOOP completed\r\n"
    out = s.receive(b"u UID FETCH 1:* (UID RFC822.SIZE)\r\n")
    sizes = [int(n) for n in re.findall(rb"RFC822\.SIZE (\d+)", out)]
    assert re.findall(rb"UID (\d+)", out) == [b"1", b"3", b"4"] and sizes == [len(FIRST), len(MIXED), len(fourth)]


# ---------------------------------------------------------------- real sockets


def test_imaplib_select_search_fetch_exact_sizes(server: Server) -> None:
    client = server.imaplib()
    assert ok(client.select("INBOX")) == [b"3"]
    assert client.untagged_responses["UIDVALIDITY"][0].isdigit()
    assert ok(client.search(None, "ALL")) == [b"1 2 3"]
    assert ok(client.search(None, "FROM", "carol")) == [b"3"]
    assert ok(client.search("UTF-8", "SUBJECT", "Grüße".encode())) == [b"2"]
    data = ok(client.fetch("1:3", "(RFC822.SIZE BODY.PEEK[])"))
    for (envelope, body), message in zip(data[::2], MESSAGES):
        assert body == message  # 8-bit UTF-8 intact, CRLF as delivered
        assert int(re.search(rb"RFC822.SIZE (\d+)", envelope).group(1)) == len(message)
    assert ok(client.fetch("2", "(FLAGS)")) == [b"2 (FLAGS (\\Recent))"]  # PEEK left \Seen alone
    client.logout()


def test_imaplib_store_flags_land_in_maildir_names(server: Server) -> None:
    client = server.imaplib()
    client.select("INBOX")
    ok(client.fetch("1", "(BODY[TEXT])"))  # not PEEK: sets \Seen
    data = ok(client.store("2", "+FLAGS", "(\\Flagged \\Answered)"))
    assert b"\\Flagged" in data[0] and b"\\Answered" in data[0]
    ok(client.store("2", "-FLAGS.SILENT", "(\\Answered)"))
    names = sorted(os.listdir(server.maildir / "cur"))
    assert [n.rpartition(":2,")[2] for n in names] == ["S", "F", ""]
    assert ok(client.fetch("1:2", "(FLAGS)")) == [b"1 (FLAGS (\\Seen \\Recent))", b"2 (FLAGS (\\Flagged \\Recent))"]
    client.logout()


def test_imaplib_copy_expunge_append_and_uids(server: Server) -> None:
    client = server.imaplib()
    ok(client.create("Archive"))
    client.select("INBOX")
    typ, data = client._simple_command("UID", "COPY", "1:2", "Archive")  # the tagged reply's text
    assert typ == "OK" and re.search(rb"\[COPYUID \d+ 1:2 1:2\]", data[0])
    ok(client.store("1", "+FLAGS", "\\Deleted"))
    assert ok(client.expunge()) == [b"1"]
    assert ok(client.uid("SEARCH", None, "ALL")) == [b"2 3"]
    assert ok(client.uid("FETCH", "3", "(FLAGS)")) == [b"2 (UID 3 FLAGS (\\Recent))"]
    typ, data = client.append("Archive", "(\\Seen)", imaplib.Time2Internaldate(1700000000), b"Subject: appended\r\n\r\nhi\r\n")
    assert typ == "OK" and re.search(rb"\[APPENDUID \d+ 3\]", data[0])
    assert ok(client.select("Archive")) == [b"3"]
    data = ok(client.fetch("3", "(FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert b"FLAGS (\\Seen \\Recent)" in data[0][0] and data[0][1] == b"Subject: appended\r\n\r\n"  # new here
    assert imaplib.Internaldate2tuple(data[0][0]) == time.localtime(1700000000)
    assert ok(client.uid("FETCH", "1", "(BODY.PEEK[])"))[0][1] == FIRST
    ok(client.uid("STORE", "2", "+FLAGS", "(\\Deleted)"))
    typ, data = client._simple_command("UID", "EXPUNGE", "1:2")  # UIDPLUS
    assert typ == "OK" and client.untagged_responses.get("EXPUNGE") == [b"2"]
    client.logout()


def test_imaplib_mailbox_management_and_status(server: Server) -> None:
    client = server.imaplib()
    ok(client.create("Work/Projects"))
    ok(client.create("Entw&APw-rfe"))  # "Entwürfe" in modified UTF-7
    assert (server.maildir / ".Entwürfe" / "cur").is_dir() and (server.maildir / ".Work.Projects").is_dir()
    listing = ok(client.list())
    assert listing == [
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\HasNoChildren) "/" Entw&APw-rfe',
        b'(\\HasChildren) "/" Work',
        b'(\\HasNoChildren) "/" Work/Projects',
    ]
    assert ok(client.list('""', "%")) == listing[:3]
    assert ok(client.list("Work/", "%")) == listing[3:]
    ok(client.rename("Work", "Jobs"))
    assert ok(client.list('""', "Jobs*")) == [b'(\\HasChildren) "/" Jobs', b'(\\HasNoChildren) "/" Jobs/Projects']
    ok(client.delete("Jobs/Projects"))
    assert client.delete("Nope")[0] == "NO" and client.create("INBOX")[0] == "NO"
    ok(client.subscribe("Jobs"))
    assert ok(client.lsub()) == [b'() "/" Jobs']
    ok(client.unsubscribe("Jobs"))
    assert ok(client.lsub()) == [None]
    assert ok(client.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")) == [b"INBOX (MESSAGES 3 UNSEEN 3 UIDNEXT 4)"]
    assert client.select("Nope")[0] == "NO"
    client.logout()


def test_uids_stable_across_sessions_and_stores(server: Server) -> None:
    client = server.imaplib()
    client.select("INBOX")
    validity = client.untagged_responses["UIDVALIDITY"][0]
    client.store("1", "+FLAGS", "\\Deleted")
    client.expunge()
    client.logout()
    deliver(server.maildir, b"Subject: fourth\r\n\r\nnew\r\n")
    assert [m.uid for m in MailStore(server.maildir).folder("INBOX").messages()] == [2, 3, 4]
    client = server.imaplib()
    client.select("INBOX")
    assert client.untagged_responses["UIDVALIDITY"][0] == validity
    assert ok(client.uid("SEARCH", None, "ALL")) == [b"2 3 4"]
    client.logout()


def test_literal_plus_and_refused_literal_over_a_raw_socket(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock, sock.makefile("rb") as f:
        assert f.readline().startswith(b"* OK")
        sock.sendall(b"a LOGIN {5+}\r\nbetty {2+}\r\npw\r\n")
        assert f.readline().startswith(b"a OK")
        sock.sendall(b"b APPEND INBOX {999999999}\r\n")
        assert f.readline().startswith(b"b NO [TOOBIG]")  # and no "+": the client sends nothing
        sock.sendall(b"c SELECT INBOX\r\nd FETCH * (BODY.PEEK[TEXT]<7.5>)\r\n")
        lines = [f.readline() for _ in range(8)]
        assert lines[-1].startswith(b"c OK [READ-WRITE]")
        assert f.readline() == b'* 3 FETCH (BODY[TEXT]<7> "Conte")\r\n'
        assert f.readline().startswith(b"d OK")
    assert server.wait_ended().state.value == "selected"


def test_imapclient_envelope_and_bodystructure(server: Server) -> None:
    client = server.imapclient()
    client.select_folder("INBOX")
    data = client.fetch([1, 2, 3], ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE"])
    first = data[1][b"ENVELOPE"]
    assert first.subject == b"first" and first.message_id == b"<first@awesome.com>"
    assert first.from_[0].name == b"Albert" and first.from_[0].mailbox == b"albert" and first.from_[0].host == b"awesome.com"
    assert first.to[0].name == b"Betty" and first.date.year == 2024
    assert data[2][b"ENVELOPE"].subject == b"=?utf-8?q?Gr=C3=BC=C3=9Fe?="
    structure = data[3][b"BODYSTRUCTURE"]
    assert structure.is_multipart and structure[1] == b"MIXED"
    text, pdf = structure[0]
    assert text[:2] == (b"TEXT", b"PLAIN") and text[6] == len(b"See attached.")
    assert pdf[:2] == (b"APPLICATION", b"PDF") and pdf[5] == b"BASE64" and pdf[8] == (b"ATTACHMENT", (b"FILENAME", b"r.pdf"))
    assert client.fetch([3], ["BODY[2]"])[3][b"BODY[2]"] == b"JVBERi0xLjQK"
    assert data[2][b"RFC822.SIZE"] == len(UTF8)
    client.logout()


def test_imapclient_idle_wakes_on_delivery(server: Server) -> None:
    client = server.imapclient()
    client.select_folder("INBOX")
    client.idle()
    threading.Thread(target=deliver, args=(server.maildir, b"Subject: during idle\r\n\r\nhi\r\n")).start()
    responses = client.idle_check(timeout=10)
    client.idle_done()
    assert (4, b"EXISTS") in responses
    assert client.search(["SUBJECT", "during idle"]) == [4]
    client.logout()


def test_concurrent_delivery_while_fetching(server: Server) -> None:
    client = server.imaplib()
    client.select("INBOX")
    count = 40
    done = threading.Event()

    def deliver_many() -> None:
        for n in range(count):
            deliver(server.maildir, b"Subject: burst %d\r\n\r\nbody\r\n" % n)
        done.set()

    def known(seen: int) -> int:
        exists = client.untagged_responses.pop("EXISTS", None)
        return int(exists[-1]) if exists else seen

    threading.Thread(target=deliver_many).start()
    seen = 3
    for _ in range(10_000):  # bounded: fetch everything the client knows of while mail arrives
        if done.is_set():
            break
        data = ok(client.fetch(f"1:{seen}", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        assert len([d for d in data if isinstance(d, tuple)]) == seen
        seen = known(seen)
        ok(client.noop())
        seen = known(seen)
    assert done.wait(30)
    ok(client.noop())
    assert known(seen) == 3 + count
    assert ok(client.search(None, "SUBJECT", "burst")) == [" ".join(str(n) for n in range(4, 4 + count)).encode()]
    client.logout()


def test_curl_fetches_by_uid_and_searches(server: Server) -> None:
    curl = need("curl")
    url = f"imap://127.0.0.1:{server.port}/INBOX"

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([curl, "-s", *args], capture_output=True, timeout=30)

    result = run(f"{url};UID=2", "-u", "betty:pw")
    assert result.returncode == 0 and result.stdout == UTF8
    result = run(url, "-u", "betty:pw", "-X", "SEARCH SUBJECT report")
    assert result.returncode == 0 and result.stdout.strip() == b"* SEARCH 3"
    assert run(f"imap://127.0.0.1:{server.port}/", "-u", "betty:wrong").returncode != 0




def test_mutt_opens_the_mailbox_and_marks_read(server: Server, tmp_path: Path) -> None:
    url = f"imap://127.0.0.1:{server.port}/INBOX"
    rc = tmp_path / "muttrc"
    rc.write_text(
        f"set imap_user=betty\nset imap_pass=pw\nset ssl_starttls=no\nset ssl_force_tls=no\n"
        f"set folder={tmp_path}\nset spoolfile={url}\nset header_cache=''\nset message_cachedir=''\n"
        "set mark_old=no\nset wait_key=no\n"
    )
    # open INBOX, show message 1 (mutt marks it \Seen), leave the pager, quit (syncs)
    status, screen = run_in_pty(
        [need("mutt"), "-n", "-F", str(rc), "-f", url, "-e", "push <display-message><exit><quit>"],
        env={**os.environ, "HOME": str(tmp_path), "TERM": "vt100"},
    )
    assert status == 0, screen[-500:]
    assert b"Albert" in screen and b"first" in screen  # the index showed the message
    assert server.wait_ended().account is not None
    flags = sorted(n.rpartition(":2,")[2] for n in os.listdir(server.maildir / "cur"))
    assert flags == ["", "", "S"]
