"""The message after DATA taken in chunks (labkit.smtp.data), and a big one end to end."""

from __future__ import annotations

import smtplib

import pytest

from labkit.smtp.data import DataReader

BODY = b"Subject: dots\r\n\r\n.one dot\r\n..two dots\r\nplain\r\n.\r\nx"  # a lone "." line inside: stuffed below


def stuffed(message: bytes) -> bytes:
    """What a client sends for ``message`` (RFC 5321 §4.5.2), with the end marker."""
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b"\r\n.\r\n"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_any_split_gives_the_same_message_and_what_followed(size):
    message = BODY + b"\r\n"
    wire = stuffed(BODY) + b"QUIT\r\n"
    reader = DataReader(max_size=0, max_line=1001)
    rest = None
    for at in range(0, len(wire), size):
        rest = reader.feed(wire[at:at + size])
        if rest is not None:
            rest += wire[at + size:]
            break
    assert reader.message == message and rest == b"QUIT\r\n" and not reader.problem


def test_an_empty_message_and_a_lone_dot_line():
    reader = DataReader(max_size=0, max_line=1001)
    assert reader.feed(b".\r\n") == b"" and reader.message == b""
    reader = DataReader(max_size=0, max_line=1001)
    assert reader.feed(b"..\r\n.\r\n") == b"" and reader.message == b".\r\n"


def test_limits_are_told_once_the_end_has_come():
    too_much = DataReader(max_size=10, max_line=1001)
    assert too_much.feed(b"0123456789") is None
    assert too_much.feed(b"abc\r\n.\r\n") == b"" and too_much.message is None and too_much.problem == "too much"
    too_long = DataReader(max_size=0, max_line=10)
    assert too_long.feed(b"short\r\n" + b"x" * 9 + b"\r\n.\r\n") == b""
    assert too_long.message is None and too_long.problem == "line too long"
    fits = DataReader(max_size=0, max_line=10)
    assert fits.feed(b"x" * 8 + b"\r\n.\r\n") == b"" and fits.message == b"x" * 8 + b"\r\n"


def test_a_big_message_arrives_byte_for_byte(world):
    """1 MB through the aiosmtpd front end, lines starting with dots across the chunks
    it is read in: stored once, unstuffed, exactly."""
    lines = [b"Subject: big", b""] + [(b"." if i % 7 == 0 else b"") + b"line %06d " % i + b"x" * 60
                                    for i in range(15_000)]
    message = b"\r\n".join(lines) + b"\r\n"
    endpoint = world.host("smtp.brilliant.com").services["smtp"]
    with smtplib.SMTP(endpoint.host, endpoint.port, timeout=30) as client:
        client.sendmail("albert@awesome.com", ["betty@brilliant.com"], message)
    world.wait_for_delivery("betty@brilliant.com")
    stored = world.messages("betty@brilliant.com")[0]
    assert stored.endswith(b"\r\n" + message) and len(message) > 1_000_000
