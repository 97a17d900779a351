"""The resolve_mx checks catch each classic mistake, with its message."""

from __future__ import annotations

import pytest

from labkit import checks
from labkit.dns.mx import resolve_mx as labkits_own
from labkit.lab import NextHop
from checking import caught, fails_with, passes_every_rule
from mistakes.resolve_mx import MISTAKES, good

def test_a_right_implementation_passes_every_rule():
    passes_every_rule(checks.resolve_mx, good)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(mistake, visible_rules):
    visible = visible_rules("2-where-does-mail-go")["resolve_mx"]
    result = caught(checks.resolve_mx, MISTAKES, mistake, deadline=3, visible=visible)
    assert result.rfc.startswith("RFC")


def test_labkits_own_resolver_earns_nothing():
    result = checks.resolve_mx.run(labkits_own, only=["preference-order"]).results[0]
    assert result.status == "fail" and "yours to write" in result.text()


@pytest.mark.parametrize("impl, says", [
    (lambda domain, resolver: None, "got None"),
    (lambda domain, resolver: ["first.mx.test"], "is the string"),
    (lambda domain, resolver: [NextHop("first.mx.test", "10", ("127.0.2.1",))], "must be an int"),
])
def test_wrong_answers_fail_with_the_contracts_message(impl, says):
    fails_with(checks.resolve_mx, impl, ["preference-order", "in-the-world"], says, deadline=1)


def test_a_failure_shows_the_dns_dialogue():
    impl, rule, _ = MISTAKES["takes DNS's order"]
    result = checks.resolve_mx.run(impl, only=[rule]).results[0]
    assert ("C", "ordered.mx.test. IN MX") in result.transcript
    assert any(d == "S" and "MX 10 first.mx.test." in line for d, line in result.transcript)
