"""The route checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.mta.routing import route as labkits_own
from mistakes.route import MISTAKES, good
from mistakes.independent import route as independent


def test_a_right_route_passes_every_rule():
    passes_every_rule(checks.route, good)


CORPORA = {"labkit's": MISTAKES, "independent": independent.MISTAKES}


def test_an_independently_written_right_answer_passes_every_rule():
    passes_every_rule(checks.route, independent.good)


@pytest.mark.parametrize("corpus, mistake", [(c, m) for c, mistakes in CORPORA.items() for m in mistakes])
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(corpus, mistake, visible_rules):
    visible = visible_rules("4-relaying")["route"]
    assert caught(checks.route, CORPORA[corpus], mistake, visible=visible).rfc.startswith("RFC ")


def test_an_open_relay_is_caught_in_the_world_too():
    result = checks.route.run(MISTAKES["relays for anyone"][0], only=["in-the-world"]).results[0]
    assert result.status == "fail" and "open relay" in result.hint
    assert result.got == "250 2.1.5 Recipient OK"


@pytest.mark.parametrize("impl, says", [
    (lambda request: request.recipient.split("@")[2], "IndexError"),
    (lambda request: "local", "Local(mailbox), Relay() or Refuse(reply)"),
    (lambda request: time.sleep(30), "longer than 0.5s"),
    (lambda request: labkits_own(request), "yours to write"),
])
def test_broken_routes_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.route, impl, ["local-user", "in-the-world"], says)
