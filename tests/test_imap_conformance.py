"""IMAP conformance fixes found by Dovecot's imaptest (issue #10), each over real
sockets: keywords, \\Recent, concurrent flag changes, address search, odd mailbox
names, messages expunged by another session, deep SEARCH, MOVE, ID and NAMESPACE."""

from __future__ import annotations

import imaplib
import os

import imap_helpers
import pytest
from imap_helpers import RawIMAP, Server, ok

import labkit

accounts, maildir, server = imap_helpers.accounts, imap_helpers.maildir, imap_helpers.server  # the fixtures

SYSTEM = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded"


def two_selected(server: Server) -> tuple[imaplib.IMAP4, imaplib.IMAP4]:
    """Two sessions with INBOX selected; the first claims the \\Recent messages."""
    first, second = server.imaplib(), server.imaplib()
    first.select("INBOX")
    second.select("INBOX")
    return first, second


def told(client: imaplib.IMAP4, name: str = "FETCH") -> list[bytes]:
    """The untagged responses ``name`` the client has had since last asked."""
    return client.untagged_responses.pop(name, [])


def test_keywords_are_kept_announced_and_searchable(server: Server) -> None:
    one, two = two_selected(server)  # one has the \Recent messages, two none
    assert two.untagged_responses["FLAGS"] == [b"(" + SYSTEM + b")"]
    assert two.untagged_responses["OK"][0].startswith(b"[PERMANENTFLAGS (" + SYSTEM + b" \\*)]")
    assert ok(one.store("2", "+FLAGS", "($hello $world)")) == [b"2 (FLAGS (\\Recent $hello $world))"]
    assert ok(one.store("1", "+FLAGS", "NIL")) == [b"1 (FLAGS (\\Recent NIL))"]  # NIL is a keyword here
    told(two)
    ok(two.noop())  # told of the new keywords before a FETCH shows them
    assert two.untagged_responses["FLAGS"][-1] == b"(" + SYSTEM + b" $hello $world NIL)"
    assert told(two) == [b"1 (FLAGS (NIL))", b"2 (FLAGS ($hello $world))"]
    assert ok(two.search(None, "KEYWORD", "$HELLO")) == [b"2"]  # keywords match in any case
    assert ok(two.search(None, "UNKEYWORD", "NIL")) == [b"2 3"]
    assert ok(two.store("2", "-FLAGS", "($hello)")) == [b"2 (FLAGS ($world))"]
    with pytest.raises(imaplib.IMAP4.error, match="keyword bad%keyword contains '%'"):
        two.store("1", "+FLAGS", "(bad%keyword)")
    one.logout(), two.logout()
    again = server.imaplib()
    again.select("INBOX")
    assert ok(again.fetch("1:3", "(FLAGS)")) == [b"1 (FLAGS (NIL))", b"2 (FLAGS ($world))", b"3 (FLAGS ())"]
    assert sorted(name.rpartition(":2,")[2] for name in os.listdir(server.maildir / "cur")) == ["", "b", "c"]
    again.logout()


def test_a_full_keyword_table_answers_no_limit(server: Server) -> None:
    client = server.imaplib()
    client.select("INBOX")
    ok(client.store("1", "FLAGS", "(" + " ".join(f"k{n}" for n in range(26)) + ")"))
    typ, data = client.store("2", "+FLAGS", "(\\Seen k27)")
    assert typ == "NO" and data[0].startswith(b"[LIMIT] no room for keyword k27")
    assert ok(client.fetch("2", "(FLAGS)")) == [b"2 (FLAGS (\\Recent))"]  # nothing was changed
    client.select("INBOX")
    assert client.untagged_responses["OK"][0].startswith(b"[PERMANENTFLAGS (" + SYSTEM + b" k0 ")
    assert b"\\*" not in client.untagged_responses["OK"][0]  # no new keywords now
    client.logout()


def test_two_sessions_changing_one_message_keep_both_changes(server: Server) -> None:
    one, two = two_selected(server)
    ok(one.store("1", "FLAGS", "(\\Seen)"))
    ok(two.noop())
    told(two)
    ok(one.store("1", "+FLAGS", "(\\Answered)"))
    assert ok(two.store("1", "-FLAGS", "(\\Seen)")) == [b"1 (FLAGS (\\Answered))"]  # applied to the disk, not a stale copy
    told(one)
    ok(one.check())
    assert told(one) == [b"1 (FLAGS (\\Answered \\Recent))"]  # two's change, reported
    ok(one.store("1", "+FLAGS.SILENT", "(\\Flagged)"))
    news = ok(two.store("1", "+FLAGS.SILENT", "(\\Draft)"))  # silent, but one's \Flagged is news
    assert news == [b"1 (FLAGS (\\Answered \\Flagged \\Draft))"]
    one.logout(), two.logout()


@pytest.mark.parametrize("msn, item, flags, after", [
    ("1", "+FLAGS.SILENT", "(junk)", b"(\\Recent Junk)"),
    ("1", "-FLAGS.SILENT", "(JUNK)", b"(\\Recent)"),
    ("1", "FLAGS.SILENT", "(jUNK JUNK \\Seen)", b"(\\Seen \\Recent Junk)"),
    ("2", "+FLAGS.SILENT", "(junk)", b"(\\Recent Junk)"),  # the folder's spelling, from message 1
])
def test_a_silent_store_of_a_keyword_in_another_case_is_no_news(server: Server, msn: str, item: str, flags: str,
                                                                 after: bytes) -> None:
    """Keywords compare case-insensitively (the first spelling kept): the session's view
    after a .SILENT STORE must agree with the store's, or the session tells the client
    of a change nobody made."""
    client = server.imaplib()
    client.select("INBOX")
    ok(client.store("1", "+FLAGS", "(Junk)"))
    assert ok(client.store(msn, item, flags)) == [None]
    ok(client.noop())
    assert told(client) == []
    assert ok(client.fetch(msn, "(FLAGS)")) == [msn.encode() + b" (FLAGS " + after + b")"]
    client.logout()


def test_recent_belongs_to_the_first_read_write_session(server: Server) -> None:
    looker = server.imaplib()
    looker.select("INBOX", readonly=True)  # EXAMINE must not take \Recent away (RFC 3501 6.3.2)
    assert looker.untagged_responses["RECENT"] == [b"3"]
    assert ok(looker.search(None, "RECENT")) == [b"1 2 3"] and ok(looker.search(None, "OLD")) == [b""]
    asker = server.imaplib()
    assert ok(asker.status("INBOX", "(RECENT)")) == [b"INBOX (RECENT 3)"]
    first = server.imaplib()
    first.select("INBOX")
    assert first.untagged_responses["RECENT"] == [b"3"]
    ok(first.store("1", "+FLAGS", "(\\Seen)"))
    assert ok(first.search(None, "NEW")) == [b"2 3"]
    assert ok(asker.status("INBOX", "(RECENT)")) == [b"INBOX (RECENT 0)"]
    second = server.imaplib()
    second.select("INBOX")
    assert second.untagged_responses["RECENT"] == [b"0"] and ok(second.search(None, "RECENT")) == [b""]
    typ, data = second.append("INBOX", None, None, b"Subject: appended\r\n\r\nhi\r\n")
    assert second.untagged_responses["RECENT"][-1] == b"1"  # the appender's session saw it first
    ok(first.noop())
    assert first.untagged_responses["EXISTS"][-1] == b"4" and first.untagged_responses["RECENT"][-1] == b"3"
    for client in (looker, asker, first, second):
        client.logout()


def test_search_from_matches_the_envelope_address(server: Server) -> None:
    client = server.imaplib()
    for sender in (b"<user-from (comment)@ (comment) domain.org>", b"user-from@domain.org (Real From)",
                   b"=?utf-8?q?J=C3=BCrgen?= <user-from@domain.org>", b"other@domain.org"):
        ok(client.append("INBOX", None, None, b"From: " + sender + b"\r\nSubject: s\r\n\r\nbody\r\n"))
    client.select("INBOX")
    assert ok(client.search(None, "FROM", "user-from@domain.org")) == [b"4 5 6"]
    assert ok(client.search(None, "FROM", '"Real From <user-from@"')) == [b"5"]
    client.literal = "Jürgen <user".encode()  # sent as a literal after the command
    assert ok(client.search("UTF-8", "FROM")) == [b"6"]
    assert ok(client.search(None, "TO", "betty@brilliant.com")) == [b"1"]
    client.logout()


def test_mailbox_names_that_are_not_modified_utf7_get_no(server: Server) -> None:
    client = server.imaplib()
    odd = "!#$&'+,-.0123456789:;<=>?@^_`|[}"  # atom-specials aside, every character an atom may have
    typ, data = client._simple_command("SELECT", odd)
    assert typ == "NO" and data[0].startswith(b"[CANNOT] bad modified UTF-7")  # understood: NO, not BAD
    assert client._simple_command("CREATE", "a&b")[0] == "NO"
    ok(client._simple_command("LIST", '""', odd + "%*"))
    assert "LIST" not in client.untagged_responses  # a pattern no name can match
    assert ok(client.list()) == [b'(\\HasNoChildren) "/" INBOX']
    client.logout()


def test_move_id_and_namespace(server: Server) -> None:
    client = server.imapclient()
    assert {b"MOVE", b"ID", b"NAMESPACE"} <= set(client.capabilities())
    assert client.id_({"name": "labkit-test"}) == ((b"name", b"labkit", b"version", labkit.__version__.encode()),)
    namespace = client.namespace()
    assert (namespace.personal, namespace.other, namespace.shared) == ((("", "/"),), None, None)
    client.create_folder("Archive")
    client.select_folder("INBOX")
    client.move([1, 3], "Archive")  # UID MOVE
    assert client.search() == [2]  # imapclient speaks UIDs
    client.select_folder("Archive")
    assert [data[b"ENVELOPE"].subject for data in client.fetch(client.search(), ["ENVELOPE"]).values()] == [b"first", b"report"]
    client.logout()
    raw = server.imaplib()
    raw.select("INBOX")
    typ, data = raw._simple_command("MOVE", "1", "INBOX")  # to itself: a new UID
    assert typ == "OK" and raw.untagged_responses["OK"][-1].startswith(b"[COPYUID ")
    assert raw.untagged_responses["EXPUNGE"] == [b"1"] and raw.untagged_responses["EXISTS"][-1] == b"1"
    assert ok(raw.uid("SEARCH", None, "ALL")) == [b"4"]
    with pytest.raises(imaplib.IMAP4.error, match="ID: expected a space"):  # a field needs its value
        raw._simple_command("ID", '("name")')
    raw.logout()


def test_fetch_and_store_of_a_message_expunged_elsewhere_answer_ok(server: Server) -> None:
    mine, other = two_selected(server)
    ok(other.store("2", "+FLAGS", "(\\Deleted)"))
    ok(other.expunge())
    told(mine)
    typ, data = mine._simple_command("FETCH", "1:3", "(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[])")
    assert typ == "OK" and data[0].startswith(b"[EXPUNGEISSUED] FETCH completed")  # not NO: RFC 2180 4.1.1
    gone = next(line for line in told(mine) if isinstance(line, bytes) and line.startswith(b"2 "))
    assert gone == b"2 (UID 2 FLAGS (\\Recent) RFC822.SIZE 0 ENVELOPE (" + b" ".join([b"NIL"] * 10) + b") BODY[] NIL)"
    typ, data = mine._simple_command("STORE", "1:3", "+FLAGS", "(\\Flagged)")
    assert typ == "OK" and data[0].startswith(b"[EXPUNGEISSUED] STORE completed")
    assert [line[:2] for line in told(mine)] == [b"1 ", b"3 "]  # 2 was not changed: no FETCH for it
    assert "EXPUNGE" not in mine.untagged_responses  # not during FETCH or STORE (RFC 3501 7.4.1)
    ok(mine.noop())
    assert mine.untagged_responses["EXPUNGE"] == [b"2"]
    mine.logout(), other.logout()


def test_deeply_nested_search_is_answered(server: Server) -> None:
    client = server.imaplib()
    client.select("INBOX")
    ok(client.store("2", "+FLAGS", "(\\Seen)"))
    deep = {
        "NOT " * 5000 + "SEEN": b"2",  # an even number of NOTs
        "NOT " * 4999 + "SEEN": b"1 3",
        "(" * 5000 + "SEEN" + ")" * 5000: b"2",
        "OR " * 3000 + "SEEN" + " DELETED" * 3000: b"2",  # OR OR OR ... a b c d
        "OR DELETED " * 3000 + "SEEN": b"2",  # OR a OR b OR c ...
        "(NOT (" * 2000 + "UNSEEN" + "))" * 2000: b"1 3",
    }
    for keys, found in deep.items():
        typ, data = client._simple_command("SEARCH", keys)
        assert typ == "OK" and client.untagged_responses.pop("SEARCH") == [found], keys[:40]
    alternating = "OR SEEN NOT " * 60 + "ALL"  # OR and NOT alternate: 120 levels
    with pytest.raises(imaplib.IMAP4.error, match="nested too deeply: at most 100 levels"):
        client._simple_command("SEARCH", alternating)
    assert ok(client.search(None, "OR SEEN NOT " * 49 + "ALL")) == [b"2"]  # 98 levels: answered
    client.logout()


def test_repeated_fetch_items_are_answered_once(server: Server) -> None:
    client = server.imaplib()
    client.select("INBOX")
    typ, data = client._simple_command("FETCH", "1", "(" + "FLAGS " * 10_000 + "UID)")
    assert typ == "OK" and told(client) == [b"1 (FLAGS (\\Recent) UID 1)"]
    data = ok(client.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY[HEADER.FIELDS (SUBJECT)] FLAGS)"))
    assert len(data) == 2 and data[0][0].startswith(b"2 (BODY[HEADER.FIELDS (SUBJECT)] {") and data[1] == b" FLAGS (\\Seen \\Recent))"
    client.logout()


def test_a_keyword_set_elsewhere_is_announced_before_a_fetch_shows_it(server: Server) -> None:
    one = server.imaplib()
    one.select("INBOX")
    with RawIMAP(("127.0.0.1", server.port), "betty", "pw") as raw:
        raw.command("SELECT INBOX")
        ok(one.store("1", "+FLAGS", "($new)"))
        lines = raw.command("FETCH 1 (BODY[TEXT])")  # sets \Seen: the flags come from the disk, $new too
        flags = next(i for i, line in enumerate(lines) if line.startswith(b"* FLAGS "))
        fetch = next(i for i, line in enumerate(lines) if line.startswith(b"* 1 FETCH "))
        assert flags < fetch and b"$new" in lines[flags] and lines[fetch + 2] == b" FLAGS (\\Seen $new))\r\n"
    one.logout()
