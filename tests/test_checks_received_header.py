"""The received_header checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.mta.received import received_header as labkits_own
from mistakes.received_header import MISTAKES, good
from mistakes.independent import received_header as independent


def test_a_right_stamp_passes_every_rule():
    passes_every_rule(checks.received_header, good)


CORPORA = {"labkit's": MISTAKES, "independent": independent.MISTAKES}


def test_an_independently_written_right_answer_passes_every_rule():
    passes_every_rule(checks.received_header, independent.good)


@pytest.mark.parametrize("corpus, mistake", [(c, m) for c, mistakes in CORPORA.items() for m in mistakes])
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(corpus, mistake, visible_rules):
    visible = visible_rules("4-relaying")["received_header"]
    assert caught(checks.received_header, CORPORA[corpus], mistake, visible=visible).rfc.startswith("RFC 532")


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


def test_a_value_the_contract_refuses_is_shown_with_what_is_wrong_with_it():
    """Folded with a bare LF: the row names the problem (RFC 5322 §2.2.3, header
    injection) and shows the field the student's function returned."""
    result = checks.received_header.run(MISTAKES["folded with a bare LF"][0], only=["field"]).results[0]
    assert result.status == "fail"
    assert "RFC 5322 §2.2.3" in result.got and "header injection" in result.got
    assert r"'Received: from smtp.awesome.com (smtp.awesome.com [1.2.3.4])\n\tby smtp.brilliant.com" in result.got
    assert "returned" in result.hint
