"""The next_retry checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from checking import caught, fails_with, passes_every_rule
from labkit import checks
from labkit.mta.retry import next_retry as labkits_own
from mistakes.next_retry import MISTAKES, good
from mistakes.independent import next_retry as independent


def test_a_right_policy_passes_every_rule():
    passes_every_rule(checks.next_retry, good)


CORPORA = {"labkit's": MISTAKES, "independent": independent.MISTAKES}


def test_an_independently_written_right_answer_passes_every_rule():
    passes_every_rule(checks.next_retry, independent.good)


@pytest.mark.parametrize("corpus, mistake", [(c, m) for c, mistakes in CORPORA.items() for m in mistakes])
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(corpus, mistake, visible_rules):
    visible = visible_rules("4-relaying")["next_retry"]
    assert caught(checks.next_retry, CORPORA[corpus], mistake, visible=visible).rfc == "RFC 5321 §4.5.4.1"


@pytest.mark.parametrize("impl, says", [
    (lambda attempts, queued_for, *, schedule, max_queue_time: schedule[attempts * 10], "IndexError"),
    (lambda attempts, queued_for, **kw: "soon", "seconds (a number) or None"),
    (lambda attempts, queued_for, **kw: time.sleep(30), "longer than 0.5s"),
    (lambda attempts, queued_for, **kw: labkits_own(attempts, queued_for, **kw), "yours to write"),
])
def test_broken_policies_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.next_retry, impl, ["follows-schedule", "gives-up"], says)


@pytest.mark.parametrize("rule", ["two-messages", "in-the-world"])
def test_an_off_by_one_is_blamed_on_the_schedule_not_on_two_messages(rule):
    """schedule[attempts] is wrong for one message alone: the rows where two messages
    meet say so (compare with the schedule), not 'a counter of calls mixes them up'."""
    result = checks.next_retry.run(MISTAKES["off by one"][0], only=[rule]).results[0]
    assert result.status == "fail"
    assert "wrong on its own" in result.hint and "not schedule[1]" in result.hint
    assert "counter" not in result.hint


def test_a_counter_of_calls_is_still_blamed_for_mixing_up_two_messages():
    for rule in ("two-messages", "in-the-world"):  # each on a fresh counter (one past the schedule's end is
        result = checks.next_retry.run(independent.make(counter=True), only=[rule]).results[0]  # constant)
        assert result.status == "fail" and "a counter of calls" in result.hint, (rule, result.hint)
