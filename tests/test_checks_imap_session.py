"""The imap_session checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from checking import caught, fails_with, passes_every_rule, with_receive
from labkit import checks
from labkit.imap.session import IMAPSession as LabkitsOwn
from mistakes.imap_session import MISTAKES, good


def test_a_right_session_passes_every_rule():
    passes_every_rule(checks.imap_session, good)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_caught_with_its_message(mistake):
    assert caught(checks.imap_session, MISTAKES, mistake).rfc.startswith("RFC 3501")


def broken(receive):
    return with_receive(good, receive)


@pytest.mark.parametrize("impl, says", [
    (broken(lambda self, data: data.decode().split()[5]), "IndexError"),
    (broken(lambda self, data: "* OK a str"), "must return bytes, got str"),
    (broken(lambda self, data: time.sleep(30)), "longer than 0.5s"),
    (type("Mine", (LabkitsOwn,), {}), "yours to write"),
])
def test_broken_sessions_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.imap_session, impl, ["login", "logout"], says)


def test_the_wire_shows_the_servers_bye():
    result = checks.imap_session.run(broken(lambda self, data: 1 / 0), only=["logout"]).results[0]
    assert any("* BYE [SERVERBUG] smtp.brilliant.com: internal error in the IMAP session" in line
               for _, line in result.transcript), result.transcript
