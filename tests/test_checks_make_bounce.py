"""The make_bounce checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.mta.bounce import make_bounce as labkits_own
from mistakes.make_bounce import MISTAKES, good


def test_a_right_bounce_passes_every_rule():
    passes_every_rule(checks.make_bounce, good)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_caught_with_its_message(mistake):
    assert caught(checks.make_bounce, MISTAKES, mistake).rfc.startswith("RFC ")


@pytest.mark.parametrize("impl, says", [
    (lambda **kw: kw["failures"][0].reason, "AttributeError"),
    (lambda **kw: "Subject: sorry\r\n\r\nit failed", "as bytes"),
    (lambda **kw: time.sleep(30), "longer than 0.5s"),
    (lambda **kw: labkits_own(**kw), "yours to write"),
])
def test_broken_bounces_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.make_bounce, impl, ["report", "in-the-world"], says)
