"""A student's ``next_retry``, right, and wrong in each of the usual ways.

:func:`make` builds the retry policy a careful student writes; each keyword turns on one
classic mistake, so every wrong one differs from the right one in one place.
"""

from __future__ import annotations


def make(*, off_by_one=False, doubling=False, no_clamp=False, wraps_around=False, never_gives_up=False,
         strictly_after=False, gives_up_with_schedule=False, gives_up_before_deadline=False, minus_waited=False):
    def next_retry(attempts, queued_for, *, schedule, max_queue_time):
        expired = queued_for > max_queue_time if strictly_after else queued_for >= max_queue_time
        if expired and not never_gives_up:
            return None
        if gives_up_with_schedule and attempts > len(schedule):
            return None
        if doubling:
            return schedule[0] * 2 ** (attempts - 1)
        if off_by_one:
            index = min(attempts, len(schedule) - 1)
        elif wraps_around:
            index = (attempts - 1) % len(schedule)
        elif no_clamp:
            index = attempts - 1
        else:
            index = min(attempts, len(schedule)) - 1
        delay = schedule[index]
        if gives_up_before_deadline and queued_for + delay > max_queue_time:
            return None
        return delay - queued_for if minus_waited else delay

    return next_retry


good = make()

# Each mistake and the rule that must catch it (with a word its message must contain).
MISTAKES = {
    "off by one": (make(off_by_one=True), "follows-schedule", "60 seconds"),
    "doubles instead of following the schedule": (make(doubling=True), "follows-schedule", "schedule[1]"),
    "runs off the end of the schedule": (make(no_clamp=True), "last-repeats", "IndexError"),
    "starts the schedule again": (make(wraps_around=True), "non-decreasing", "never shrink"),
    "subtracts the time already waited": (make(minus_waited=True), "non-decreasing", "between 0"),
    "never gives up": (make(never_gives_up=True), "gives-up", "forever"),
    "gives up only after max_queue_time": (make(strictly_after=True), "gives-up", ">="),
    "gives up when the schedule runs out": (make(gives_up_with_schedule=True), "not-early", "however many"),
    "gives up when the next try would be late": (make(gives_up_before_deadline=True), "not-early", "None"),
}
