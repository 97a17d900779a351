"""When to try a deferred message again, and when to give up (a seam, pure).

RFC 5321 §4.5.4.1: retry at intervals ("at least 30 minutes" on the Internet; the lab
uses seconds), and give up after a time ("at least 4-5 days"), then bounce.
"""

from __future__ import annotations


def next_retry(attempts: int, queued_for: float, *, schedule: tuple[float, ...],
               max_queue_time: float) -> float | None:
    """Seconds until the next try after ``attempts`` failed tries of a message queued
    ``queued_for`` seconds ago; ``None``: it has been queued too long, bounce it.
    The schedule's delays are used in turn; its last one repeats."""
    if queued_for >= max_queue_time:
        return None
    return schedule[min(attempts, len(schedule)) - 1] if attempts > 0 else 0.0
