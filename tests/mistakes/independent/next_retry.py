"""``next_retry`` as a student writes it, and its one-mistake variants: some keep state
between calls (a counter, the last delay), which one message at a time never shows."""

from __future__ import annotations

import itertools


def make(*, counter=False, remembers_last=False, by_time=False, exponential_tail=False, zero_based=False):
    calls = itertools.count(1)
    last = {"delay": None}

    def next_retry(attempts, queued_for, *, schedule, max_queue_time):
        if queued_for >= max_queue_time:
            return None
        if counter:  # "how many times was I asked?"
            attempts = next(calls)
        if by_time:  # where in the schedule is a message queued this long?
            elapsed = 0.0
            for delay in schedule:
                elapsed += delay
                if queued_for < elapsed:
                    return delay
            return schedule[-1]
        if zero_based:
            step = min(attempts, len(schedule) - 1)
        else:
            step = min(attempts, len(schedule)) - 1
        delay = schedule[step]
        if exponential_tail and attempts > len(schedule):
            delay = schedule[-1] * 2 ** (attempts - len(schedule))
        if remembers_last and last["delay"] is not None and delay < last["delay"]:
            delay = last["delay"]  # delays never shrink...
        last["delay"] = delay
        return delay

    return next_retry


def good(attempts, queued_for, *, schedule, max_queue_time):
    if queued_for >= max_queue_time:
        return None
    return float(schedule[min(attempts, len(schedule)) - 1])


MISTAKES = {
    "counts its own calls instead of the message's attempts": (make(counter=True), "two-messages",
                                                               "a counter of calls"),
    "keeps the last delay of any message": (make(remembers_last=True), "two-messages", "remembered"),
    "finds the step from the time queued": (make(by_time=True), "follows-schedule", "count attempts, not time"),
    "doubles past the end of the schedule": (make(exponential_tail=True), "last-repeats", "last delay repeats"),
    "counts attempts from 0": (make(zero_based=True), "follows-schedule", "schedule[0]"),
}
