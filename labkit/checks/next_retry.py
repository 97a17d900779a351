"""Checks for ``next_retry``, the queue's retry policy (RFC 5321 §4.5.4.1).

A pure function, so every rule just asks it: after this many failed attempts, with the
message queued this long, how long until the next try, or give up (None, and the
message bounces)? The schedule is a Postfix-like one in seconds, not the lab's. ::

    from labkit import checks
    checks.next_retry.run(next_retry)
"""

from __future__ import annotations

from .harness import Broken, Probe, Rule, entry_points

SCHEDULE = (60.0, 300.0, 1200.0, 3600.0)
MAX_QUEUE_TIME = 4 * 24 * 3600.0  # four days (Postfix: maximal_queue_lifetime = 5d)
ONE_STEP = (30.0,)  # a schedule of one delay, repeated


def _ask(probe: Probe, attempts: int, queued_for: float, schedule: tuple[float, ...] = SCHEDULE,
         max_queue_time: float = MAX_QUEUE_TIME) -> tuple[str, float | None]:
    """(how the call reads, its answer)."""
    step = f"next_retry({attempts}, {queued_for:g}, schedule={schedule}, max_queue_time={max_queue_time:g})"
    return step, probe(attempts, queued_for, schedule=schedule, max_queue_time=max_queue_time,
                       step=step)


def _runs(schedule: tuple[float, ...], attempts: int) -> list[tuple[int, float]]:
    """(attempts, queued_for) of a message that failed ``attempts`` times on the schedule."""
    queued, runs = 0.0, []
    for n in range(1, attempts + 1):
        runs.append((n, queued))
        queued += schedule[min(n, len(schedule)) - 1]
    return runs


def _delay(probe: Probe, attempts: int, queued_for: float, expected: float,
           schedule: tuple[float, ...] = SCHEDULE, hint: str = "") -> None:
    step, delay = _ask(probe, attempts, queued_for, schedule)
    if delay is None or abs(delay - expected) > 1e-6:
        raise Broken(step, f"{expected:g} seconds", repr(delay), hint=hint)


# -- the rules ---------------------------------------------------------------------------
def follows_schedule(probe: Probe) -> None:
    for attempts, queued_for in _runs(SCHEDULE, len(SCHEDULE)):
        _delay(probe, attempts, queued_for, SCHEDULE[attempts - 1],
               hint="after the first failed attempt wait schedule[0], after the second schedule[1], ...")


def last_repeats(probe: Probe) -> None:
    hint = "past the end of the schedule its last delay repeats until the message expires"
    for attempts, queued_for in _runs(SCHEDULE, 40)[len(SCHEDULE):]:
        _delay(probe, attempts, queued_for, SCHEDULE[-1], hint=hint)
    for attempts, queued_for in _runs(ONE_STEP, 4):
        _delay(probe, attempts, queued_for, ONE_STEP[0], ONE_STEP, hint=hint)


def non_decreasing(probe: Probe) -> None:
    for schedule in (SCHEDULE, ONE_STEP):
        delays = [_ask(probe, attempts, queued_for, schedule)[1] for attempts, queued_for in _runs(schedule, 30)]
        if None in delays or delays != sorted(delays):
            raise Broken(f"attempts 1 to 30 on the schedule {schedule}", "delays that never shrink",
                         ", ".join(f"{d:g}" if d is not None else "None" for d in delays),
                         hint="a server that failed just now is not more likely to be back sooner")


def gives_up(probe: Probe) -> None:
    for attempts, queued_for, schedule, max_queue_time in ((97, MAX_QUEUE_TIME, SCHEDULE, MAX_QUEUE_TIME),
                                                           (98, MAX_QUEUE_TIME + 1, SCHEDULE, MAX_QUEUE_TIME),
                                                           (500, 10 * MAX_QUEUE_TIME, SCHEDULE, MAX_QUEUE_TIME),
                                                           (9, 20.0, (0.2, 0.5, 1.0, 2.0), 20.0)):
        step, delay = _ask(probe, attempts, queued_for, schedule, max_queue_time)
        if delay is not None:
            raise Broken(step, "None: queued for max_queue_time, time to give up and bounce", repr(delay),
                         hint="give up once queued_for >= max_queue_time; a message must not stay queued forever")


def not_early(probe: Probe) -> None:
    for attempts, queued_for in ((1, 0.0), (4, MAX_QUEUE_TIME / 2), (60, MAX_QUEUE_TIME - 1)):
        step, delay = _ask(probe, attempts, queued_for)
        if delay is None:
            raise Broken(step, "a delay: the message has not expired yet", "None (give up, bounce)",
                         hint="give up only when queued_for >= max_queue_time, however many attempts failed; "
                              "the next try may well be the one that works")


RULES: list[Rule] = [
    Rule("follows-schedule", "the n-th retry waits the schedule's n-th delay", "RFC 5321 §4.5.4.1",
         follows_schedule),
    Rule("last-repeats", "past the schedule's end, its last delay repeats", "RFC 5321 §4.5.4.1", last_repeats),
    Rule("non-decreasing", "delays never shrink, and are never negative", "RFC 5321 §4.5.4.1", non_decreasing),
    Rule("gives-up", "None (bounce) once queued for max_queue_time or longer", "RFC 5321 §4.5.4.1", gives_up),
    Rule("not-early", "never gives up before max_queue_time", "RFC 5321 §4.5.4.1", not_early),
]

run, check = entry_points("next_retry", RULES)
