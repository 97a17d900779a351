"""The received_header checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.mta.received import received_header as labkits_own
from mistakes.received_header import MISTAKES, good


def test_a_right_stamp_passes_every_rule():
    passes_every_rule(checks.received_header, good)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_caught_with_its_message(mistake):
    assert caught(checks.received_header, MISTAKES, mistake).rfc.startswith("RFC 532")


@pytest.mark.parametrize("impl, says", [
    (lambda hop: 1 / 0, "ZeroDivisionError"),
    (lambda hop: b"Received: from x", "must return a str"),
    (lambda hop: time.sleep(30), "longer than 0.5s"),
    (lambda hop: labkits_own(hop), "yours to write"),
])
def test_broken_stamps_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.received_header, impl, ["from", "in-the-world"], says)


def test_a_failure_in_the_world_shows_the_students_traceback():
    def received_header(hop):
        return "Received: " + hop.helo_name

    result = checks.received_header.run(received_header, only=["in-the-world"]).results[0]
    assert "AttributeError" in result.got and 'return "Received: " + hop.helo_name' in result.got
    assert ("S", "smtp.brilliant.com -> smtp.awesome.com: 250 2.1.5 Recipient OK") in result.transcript  # the server's
