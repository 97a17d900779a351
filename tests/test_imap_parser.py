"""IMAP parsing and message structure, without sockets: framing (literals, LITERAL+,
limits), the command grammar, FETCH/SEARCH arguments, ENVELOPE and BODYSTRUCTURE."""

from __future__ import annotations

import datetime

import pytest

from labkit.imap.address import GROUP_END, Address, parse_address_list
from labkit.imap.fetch import FetchItem, MessageData, Section, parse_fetch_items
from labkit.imap.mime import find_part, parse, select_fields, split_multipart
from labkit.imap.parser import (
    Command,
    CommandReader,
    Continue,
    Cursor,
    ParseError,
    RawLine,
    Refused,
    resolve_sequence_set,
)
from labkit.imap.search import BadCharset, Candidate, parse_search
from labkit.imap.structure import body_structure, envelope
from labkit.imap.wire import astring, decode_mailbox, encode_mailbox, string
from labkit.store import MailStore, MessageInfo


def events(reader: CommandReader, data: bytes) -> list:
    reader.feed(data)
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


def feed_bytewise(data: bytes, split: int) -> list:
    """Feed ``data`` in two pieces cut at ``split``; all events."""
    reader = CommandReader()
    return events(reader, data[:split]) + events(reader, data[split:])


def cursor(text: bytes, *literals: bytes) -> Cursor:
    segments = text.split(b"\0")
    assert len(segments) == len(literals) + 1
    return Cursor(Command(segments, list(literals)))


# ---------------------------------------------------------------- framing


@pytest.mark.parametrize(
    "data, segments, literals, synchronising",
    [
        (b"a1 LOGIN {5}\r\nbetty {2}\r\npw\r\n", [b"a1 LOGIN ", b" ", b""], [b"betty", b"pw"], 2),
        (b"a2 APPEND INBOX (\\Seen) {11}\r\nHi\r\nthere\r\n\r\n", [b"a2 APPEND INBOX (\\Seen) ", b""], [b"Hi\r\nthere\r\n"], 1),
        (b"a3 SEARCH SUBJECT {3+}\r\n{1}\r\n", [b"a3 SEARCH SUBJECT ", b""], [b"{1}"], 0),
    ],
)
def test_literals_split_at_every_byte(data: bytes, segments: list[bytes], literals: list[bytes], synchronising: int) -> None:
    for split in range(len(data) + 1):
        got = feed_bytewise(data, split)
        commands = [e for e in got if isinstance(e, Command)]
        assert commands == [Command(segments, literals)], split
        assert sum(isinstance(e, Continue) for e in got) == synchronising, split


def test_literal_plus_sends_no_continuation_and_pipelines() -> None:
    got = events(CommandReader(), b"a LOGIN {5+}\r\nbetty {2+}\r\npw\r\nb NOOP\r\n")
    assert got == [Command([b"a LOGIN ", b" ", b""], [b"betty", b"pw"]), Command([b"b NOOP"])]


def test_synchronising_literal_too_big_is_refused_without_continuation() -> None:
    reader = CommandReader(max_literal=100)
    got = events(reader, b"a1 LOGIN {101}\r\n")
    assert got == [Refused("a1", got[0].text)] and "101 octets is too big" in got[0].text
    # the client never sends the literal; the next command is read normally
    assert events(reader, b"a2 NOOP\r\n") == [Command([b"a2 NOOP"])]


def test_append_too_big_is_no_toobig() -> None:
    reader = CommandReader(max_append_literal=1000)
    [refused] = events(reader, b"a APPEND INBOX {99999999999}\r\n")
    assert isinstance(refused, Refused) and refused.no and refused.text.startswith("[TOOBIG]")
    assert events(reader, b"b NOOP\r\n") == [Command([b"b NOOP"])]


def test_non_synchronising_literal_too_big_is_skipped_unbuffered() -> None:
    reader = CommandReader(max_literal=10)
    got = events(reader, b"a1 SEARCH TEXT {50+}\r\n" + b"x" * 20)
    assert [type(e) for e in got] == [Refused] and got[0].tag == "a1"
    assert len(reader._buf) == 0  # nothing kept while skipping
    got = events(reader, b"y" * 30 + b" ALL\r\na2 NOOP\r\n")
    assert got == [Command([b"a2 NOOP"])]


def test_overlong_line_refused_then_next_command_works() -> None:
    reader = CommandReader(max_line=64)
    got = events(reader, b"t1 FETCH " + b"1," * 100)
    assert got == [Refused("t1", got[0].text)] and "too long" in got[0].text
    assert len(reader._buf) == 0
    assert events(reader, b"2,3 FLAGS\r\nt2 NOOP\r\n") == [Command([b"t2 NOOP"])]


def test_too_many_literals_refused() -> None:
    reader = CommandReader()
    data = b"a SEARCH" + b" TEXT {1+}\r\nx" * 70 + b"\r\n"
    got = events(reader, data + b"b NOOP\r\n")
    assert isinstance(got[0], Refused) and "too many literals" in got[0].text
    assert got[-1] == Command([b"b NOOP"])


def test_raw_lines_mode_for_idle_done() -> None:
    reader = CommandReader()
    reader.raw_lines = True
    assert events(reader, b"DONE\r\n") == [RawLine(b"DONE")]


# ---------------------------------------------------------------- grammar


def test_quoted_strings_with_escapes() -> None:
    c = cursor(rb'"a \"quoted\" \\ string" next')
    assert c.quoted() == b'a "quoted" \\ string'
    c.sp()
    assert c.atom() == "next"
    with pytest.raises(ParseError, match="may only escape"):
        cursor(rb'"bad \n escape"').quoted()
    with pytest.raises(ParseError, match="unterminated"):
        cursor(b'"open').quoted()


def test_astring_forms() -> None:
    c = cursor(b'INBOX "two words" \0 x]y', b"lit\r\neral")
    assert c.astring() == b"INBOX"
    c.sp()
    assert c.astring() == b"two words"
    c.sp()
    assert c.astring() == b"lit\r\neral"
    c.sp()
    assert c.astring() == b"x]y"
    c.end()


@pytest.mark.parametrize(
    "text, ranges, resolved",
    [
        (b"1", [(1, 1)], [(1, 1)]),
        (b"1:*", [(1, None)], [(1, 10)]),
        (b"2,4:7", [(2, 2), (4, 7)], [(2, 2), (4, 7)]),
        (b"*:3", [(None, 3)], [(3, 10)]),
        (b"12:5,*", [(12, 5), (None, None)], [(5, 12), (10, 10)]),
    ],
)
def test_sequence_sets(text: bytes, ranges: list, resolved: list) -> None:
    c = cursor(text)
    assert c.sequence_set() == ranges
    c.end()
    assert resolve_sequence_set(ranges, 10) == resolved


@pytest.mark.parametrize("text", [b"0", b"1:", b",1", b"a", b"99999999999"])
def test_bad_sequence_sets(text: bytes) -> None:
    with pytest.raises(ParseError):
        cursor(text).sequence_set()


def test_flags_dates_and_mailbox_names() -> None:
    c = cursor(rb'(\seen \Flagged $Forwarded) "17-Jul-1996 02:44:25 -0700" Entw&APw-rfe')
    assert c.flag_list() == ["\\Seen", "\\Flagged", "$Forwarded"]
    c.sp()
    moment = c.date_time()
    assert moment == datetime.datetime(1996, 7, 17, 9, 44, 25, tzinfo=datetime.timezone.utc)
    c.sp()
    assert c.mailbox() == "Entwürfe"
    with pytest.raises(ParseError, match="unknown system flag"):
        cursor(rb"(\Bogus)").flag_list()
    with pytest.raises(ParseError, match="bad date"):
        cursor(b"32-Foo-2020").date()


def test_modified_utf7_round_trip() -> None:
    for name in ("INBOX", "Entwürfe", "a&b", "日本語/メール", "~peter/mail/台北/日本語"):
        assert decode_mailbox(encode_mailbox(name)) == name
    assert encode_mailbox("~peter/mail/台北/日本語") == b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"  # RFC 3501 §5.1.3
    with pytest.raises(ValueError):
        decode_mailbox(b"&Jjo")


def test_strings_on_the_wire() -> None:
    assert string("plain") == b'"plain"'
    assert string('a"b\\') == b'"a\\"b\\\\"'
    assert string("Grüße") == b"{7}\r\nGr\xc3\xbc\xc3\x9fe"
    assert string(b"two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert astring("INBOX") == b"INBOX" and astring("NIL") == b'"NIL"' and astring("a b") == b'"a b"'


# ---------------------------------------------------------------- FETCH items


def test_fetch_items() -> None:
    assert parse_fetch_items(cursor(b"ALL")) == [FetchItem(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")]
    assert parse_fetch_items(cursor(b"uid")) == [FetchItem("UID")]
    items = parse_fetch_items(
        cursor(b"(FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.512> BODY[1.2.MIME] BODY[] BODY[3] BODY[TEXT]<5.10> BODY)")
    )
    assert items == [
        FetchItem("FLAGS"),
        FetchItem("BODY", Section((), "HEADER.FIELDS", ("From", "To")), peek=True, partial=(0, 512)),
        FetchItem("BODY", Section((1, 2), "MIME")),
        FetchItem("BODY", Section()),
        FetchItem("BODY", Section((3,))),
        FetchItem("BODY", Section((), "TEXT"), partial=(5, 10)),
        FetchItem("BODY"),
    ]
    assert [i.sets_seen for i in items] == [False, False, True, True, True, True, False]
    assert str(items[1].section) == "HEADER.FIELDS (From To)"


@pytest.mark.parametrize(
    "text, problem",
    [(b"(FLAGS", "expected"), (b"BODY[MIME]", "needs a part"), (b"BODY[1.]", "unknown section"),
     (b"BODY[HEADER.FIELDS ()]", "must not be empty"), (b"BODY[TEXT]<1>", "'.'"), (b"FOO", "unknown fetch")],
)
def test_bad_fetch_items(text: bytes, problem: str) -> None:
    with pytest.raises(ParseError, match=problem):
        parse_fetch_items(cursor(text))


# ---------------------------------------------------------------- messages

SIMPLE = (
    b"From: \"Doe, Albert\" <albert@awesome.com>\r\nTo: betty@brilliant.com, undisclosed-recipients:;\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n from the lab\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n"
    b"Message-ID: <m1@awesome.com>\r\n\r\nHello Betty\r\nSecond line\r\n"
)
NESTED = (
    b"Subject: nested\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
    b"preamble\r\n--outer\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + "Grüße\r\n".encode()
    + b"\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nFrom: a@b.c\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
    b"--in\r\nContent-Type: text/plain\r\n\r\nplain\r\n--in\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--in--\r\n"
    b"\r\n--outer\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--outer--\r\nepilogue\r\n"
)


def test_address_lists_with_groups_and_routes() -> None:
    assert parse_address_list('"Doe, J" <j@x.org>, team: a@x, B <b@y>;, <@r1,@r2:u@h>, old@style (Old Name)') == [
        Address("Doe, J", None, "j", "x.org"),
        Address(None, None, "team", None),
        Address(None, None, "a", "x"),
        Address("B", None, "b", "y"),
        GROUP_END,
        Address(None, "@r1,@r2", "u", "h"),
        Address("Old Name", None, "old", "style"),
    ]


def test_envelope() -> None:
    assert envelope(parse(SIMPLE)) == (
        b'("Tue, 2 Jan 2024 10:00:00 +0100" "=?utf-8?q?Gr=C3=BC=C3=9Fe?= from the lab"'
        b' (("Doe, Albert" NIL "albert" "awesome.com")) (("Doe, Albert" NIL "albert" "awesome.com"))'
        b' (("Doe, Albert" NIL "albert" "awesome.com"))'
        b' ((NIL NIL "betty" "brilliant.com")(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
        b' NIL NIL NIL "<m1@awesome.com>")'
    )


def test_body_structure_simple() -> None:
    assert body_structure(parse(SIMPLE)) == b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 26 2 NIL NIL NIL NIL)'
    assert body_structure(parse(SIMPLE), extensible=False) == b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 26 2)'


def test_body_structure_nested() -> None:
    structure = body_structure(parse(NESTED))
    assert structure.startswith(b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 9 1 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL')
    assert b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 11 1 NIL NIL NIL NIL) "ALTERNATIVE"' in structure
    assert b'("APPLICATION" "PDF" ("NAME" "r.pdf") NIL NIL "BASE64" 8 NIL ("ATTACHMENT" ("FILENAME" "r.pdf")) NIL NIL)' in structure
    assert structure.endswith(b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)')
    assert structure.count(b"(") == structure.count(b")")


def test_sections_of_a_nested_message() -> None:
    message = MessageData(MessageInfo(1, "k-nested", len(NESTED), frozenset(), 0.0), lambda: NESTED)
    assert message.section(Section((1,))) == "Grüße\r\n".encode()
    assert message.section(Section((2, 2))) == b"<b>html</b>"
    assert message.section(Section((2, 1), "MIME")) == b"Content-Type: text/plain\r\n\r\n"
    assert message.section(Section((2,), "HEADER.FIELDS", ("subject",))) == b"Subject: inner\r\n\r\n"
    assert message.section(Section((2,), "TEXT")).startswith(b"--in\r\n")
    assert message.section(Section((), "HEADER.FIELDS.NOT", ("Content-Type", "MIME-Version"))) == b"Subject: nested\r\n\r\n"
    assert message.section(Section((9,))) == b"" and message.section(Section((1,), "TEXT")) == b""
    assert message.section(Section()) == NESTED


def test_multipart_split_keeps_exact_octets() -> None:
    body = b"pre\r\n--b\r\none\r\n--b \r\n\r\ntwo\r\n\r\n--b--\r\nafter"
    assert split_multipart(body, b"b") == [b"one", b"\r\ntwo\r\n"]
    part = find_part(parse(SIMPLE), [1])
    assert part is not None and part.body == b"Hello Betty\r\nSecond line\r\n"
    assert select_fields(parse(SIMPLE).header, ["SUBJECT"]).endswith(b" from the lab\r\n\r\n")


# ---------------------------------------------------------------- SEARCH


def candidates(*messages: tuple[bytes, frozenset[str]]) -> list[Candidate]:
    out = []
    for n, (data, flags) in enumerate(messages, 1):
        info = MessageInfo(n * 10, f"k-search-{n}", len(data), flags, 1704186000.0 + n * 86400)
        out.append(Candidate(n, MessageData(info, lambda d=data: d, recent=n == 2), len(messages), len(messages) * 10))
    return out


def search(text: bytes, *literals: bytes) -> list[int]:
    matches = parse_search(cursor(text, *literals))
    pool = candidates((SIMPLE, frozenset({"\\Seen"})), (NESTED, frozenset()), (b"Subject: third\r\n\r\nbody", frozenset({"\\Deleted"})))
    return [c.msn for c in pool if matches(c)]


@pytest.mark.parametrize(
    "text, found",
    [
        (b"ALL", [1, 2, 3]),
        (b"SEEN", [1]),
        (b"UNSEEN DELETED", [3]),
        (b"NEW", [2]),
        (b"OLD", [1, 3]),
        (b"FROM albert", [1]),
        (b"TO \"undisclosed\"", [1]),
        (b"SUBJECT gr\xc3\xbc\xc3\x9fe", [1]),  # matched against the decoded encoded-word
        (b"HEADER Message-ID m1@", [1]),
        (b"BODY html", [2]),
        (b"TEXT nested", [2]),
        (b"NOT SEEN", [2, 3]),
        (b"OR SEEN DELETED", [1, 3]),
        (b"(SEEN) OR (DELETED) (FLAGGED)", []),
        (b"2:*", [2, 3]),
        (b"UID 20:*", [2, 3]),
        (b"LARGER 100 SMALLER 300", [1]),
        (b"SENTSINCE 2-Jan-2024 SENTBEFORE 3-Jan-2024", [1]),
        (b"CHARSET US-ASCII SUBJECT third", [3]),
    ],
)
def test_search_keys(text: bytes, found: list[int]) -> None:
    assert search(text) == found


def test_search_literal_and_errors() -> None:
    assert search(b"CHARSET UTF-8 BODY \0", "grüße".encode()) == [2]
    with pytest.raises(BadCharset):
        search(b"CHARSET KOI8-R ALL")
    with pytest.raises(ParseError, match="unknown search key"):
        search(b"BOGUS")
    with pytest.raises(ParseError):
        search(b"SINCE yesterday")


def test_structure_cache_keeps_mailboxes_apart(tmp_path) -> None:
    """Two users' files may share a Maildir name (copied between hosts): never mix them
    up. The cache of what is derived from a message is its folder's."""
    envelopes = []
    for user, subject in (("a", b"A"), ("b", b"B")):
        store = MailStore(tmp_path / user)
        (store.root / "cur" / "k-same:2,").write_bytes(b"Subject: " + subject + b"\r\n\r\n")
        folder = store.folder("INBOX")
        info = folder.messages()[0]
        envelopes.append(MessageData(info, lambda: folder.read(info.uid), cache=lambda: folder.cache(info)).envelope())
    assert b'"A"' in envelopes[0] and b'"B"' in envelopes[1]