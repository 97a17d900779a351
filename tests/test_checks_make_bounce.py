"""The make_bounce checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.mta.bounce import make_bounce as labkits_own
from mistakes.make_bounce import MISTAKES, good
from mistakes.independent import make_bounce as independent


def test_a_right_bounce_passes_every_rule():
    passes_every_rule(checks.make_bounce, good)


CORPORA = {"labkit's": MISTAKES, "independent": independent.MISTAKES}


def test_an_independently_written_right_answer_passes_every_rule():
    passes_every_rule(checks.make_bounce, independent.good)


@pytest.mark.parametrize("corpus, mistake", [(c, m) for c, mistakes in CORPORA.items() for m in mistakes])
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(corpus, mistake, visible_rules):
    visible = visible_rules("4-relaying")["make_bounce"]
    assert caught(checks.make_bounce, CORPORA[corpus], mistake, visible=visible).rfc.startswith("RFC ")


@pytest.mark.parametrize("impl, says", [
    (lambda **kw: kw["failures"][0].reason, "AttributeError"),
    (lambda **kw: "Subject: sorry\r\n\r\nit failed", "as bytes"),
    (lambda **kw: time.sleep(30), "longer than 0.5s"),
    (lambda **kw: labkits_own(**kw), "yours to write"),
])
def test_broken_bounces_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.make_bounce, impl, ["report", "in-the-world"], says)
