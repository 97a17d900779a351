"""Checks for ``next_retry``, the queue's retry policy (RFC 5321 §4.5.4.1).

A pure function, so most rules just ask it: after this many failed attempts, with the
message queued this long, how long until the next try, or give up (None, and the
message bounces)? The schedule is a Postfix-like one in seconds, not the lab's. Two
messages may be in the queue at once, so the rules ask about several, interleaved, as
the queue does; the last rule has smtp.awesome.com retry two greylisted messages with it. ::

    from labkit import checks
    checks.next_retry.run(next_retry)
"""

from __future__ import annotations

from .harness import ALBERT, Broken, Probe, Rule, entry_points

SCHEDULE = (60.0, 300.0, 1200.0, 3600.0)
LAB_SCHEDULE = (0.2, 0.5, 1.0, 2.0)  # the lab world's (worlds/lecture/world.toml)
RELAY = "smtp.awesome.com"
GREYLISTED = ("chuck@chaos.com", "postmaster@chaos.com")  # two triplets: both deferred at their first try
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


MIXES_UP = ("two messages (or more) are in the queue at once, and each has its own attempts: answer from the "
            "arguments alone; a counter of calls, or a delay remembered from an earlier call, mixes up two messages")


def _cause(probe: Probe, attempts: int, queued_for: float, schedule: tuple[float, ...], got: float | None) -> str:
    """Why a message got the wrong delay among others: asked the same again, around
    another question, a function that gives the same wrong answer is wrong for that
    message on its own (compare with the schedule); one whose answer moved keeps state
    between calls."""
    far = _ask(probe, 2 * len(schedule) + 3, queued_for, schedule)[1]  # moves a counter, a remembered delay
    again = [_ask(probe, attempts, queued_for, schedule)[1] for _ in range(2)]
    if far is None or any(a != got for a in again):
        return MIXES_UP
    index = min(attempts, len(schedule)) - 1
    which = [f"schedule[{i}]" for i, d in enumerate(schedule) if got is not None and abs(d - got) < 1e-6]
    return (f"asked again, it answers {got!r} again: this message's delay is wrong on its own, not mixed up with "
            f"another's. Compare with the schedule: after {attempts} failed attempt(s) wait schedule[{index}] = "
            f"{schedule[index]:g}" + (f", not {which[0]}" if which else "") + " (the rule follows-schedule)")


# -- the rules ---------------------------------------------------------------------------
def follows_schedule(probe: Probe, schedule: tuple[float, ...] = SCHEDULE) -> None:
    for attempts, queued_for in _runs(schedule, len(schedule)):
        _delay(probe, attempts, queued_for, schedule[attempts - 1], schedule,
               hint="after the first failed attempt wait schedule[0], after the second schedule[1], ...")
    late = 5000.0 * schedule[0] / SCHEDULE[0]  # a restart, a long outage: far behind the schedule
    _delay(probe, 2, late, schedule[1], schedule, hint="count attempts, not time: the n-th retry waits "
           "schedule[n-1] however long the message has waited (a stopped queue, a restart)")


def two_messages(probe: Probe) -> None:
    """Three messages' retries, interleaved as a queue makes them: each gets its own delay."""
    runs = {name: iter(_runs(SCHEDULE, 6)) for name in "ABC"}
    for name in "AABACBBCACAB":
        attempts, queued_for = next(runs[name])
        step, delay = _ask(probe, attempts, queued_for)
        expected = SCHEDULE[min(attempts, len(SCHEDULE)) - 1]
        if delay is None or abs(delay - expected) > 1e-6:
            raise Broken(f"message {name}, in the queue with two others: {step}", f"{expected:g} seconds",
                         repr(delay), hint=_cause(probe, attempts, queued_for, SCHEDULE, delay))


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


def in_the_world(probe: Probe) -> None:
    world = probe.world(host=RELAY)
    world.set_behaviour("smtp.chaos.com", "greylist")
    schedule = tuple(world.config.mta.retry_schedule)
    for rcpt in GREYLISTED:
        world.send(ALBERT, [rcpt], f"Subject: for {rcpt}\r\n\r\ngreylisted once\r\n".encode())
    for rcpt in GREYLISTED:
        probe.delivered(world, rcpt, step=f"{RELAY} (your next_retry) -> smtp.chaos.com (greylisting) -> {rcpt}")
    waited = {rcpt: [e.data.get("retry_in") for e in world.tracer.events() if e.kind == "deferred"
                     and e.data.get("recipient") == rcpt] for rcpt in GREYLISTED}
    for rcpt, waits in waited.items():
        if waits != [schedule[0]]:
            hint = MIXES_UP  # the same question (1 attempt) for both, and two answers
            if all(w == waits for w in waited.values()):  # the same wrong answer: ask about one message alone
                first = _ask(probe, 1, 0.0, schedule, world.config.mta.max_queue_time)[1]
                if first is None or abs(first - schedule[0]) > 1e-6:
                    hint = _cause(probe, 1, 0.0, schedule, first)
            raise Broken(f"{RELAY}: the message to {rcpt}, greylisted (451) at its first try, with another message "
                         "in the queue", f"one retry, after schedule[0] = {schedule[0]:g}s",
                         f"retries after {', '.join(f'{w:g}s' for w in waits) or 'none'}", hint=hint)


RULES: list[Rule] = [
    Rule("follows-schedule", "the n-th retry waits the schedule's n-th delay (counting attempts, not time)",
         "RFC 5321 §4.5.4.1", follows_schedule),
    Rule("two-messages", "two messages in the queue at once: each waits by its own attempts", "RFC 5321 §4.5.4.1",
         two_messages),
    Rule("last-repeats", "past the schedule's end, its last delay repeats", "RFC 5321 §4.5.4.1", last_repeats),
    Rule("non-decreasing", "delays never shrink, and are never negative", "RFC 5321 §4.5.4.1", non_decreasing),
    Rule("gives-up", "None (bounce) once queued for max_queue_time or longer", "RFC 5321 §4.5.4.1", gives_up),
    Rule("not-early", "never gives up before max_queue_time", "RFC 5321 §4.5.4.1", not_early),
    Rule("in-the-world", f"on {RELAY}: two greylisted messages, each retried after schedule[0], both delivered",
         "RFC 5321 §4.5.4.1, RFC 6647", in_the_world),
    Rule("follows-schedule-lab", "the lab world's schedule too: the n-th retry waits its n-th delay",
         "RFC 5321 §4.5.4.1", lambda probe: follows_schedule(probe, LAB_SCHEDULE), variant_of="follows-schedule"),
]

run, check = entry_points("next_retry", RULES)
