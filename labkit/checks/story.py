"""Checks for the answers of "The life of an e-mail": questions about one run of the
world, judged against that run's own record, its trace and Betty's Maildir (queue IDs
differ from run to run, so only the student's own output has the answer). When the lab
is graded, the world is the grader's, so the record is the grader's own.

    report = checks.story.run(world, brilliant_queue_id="1F122369", hops=2)
"""

from __future__ import annotations

import email
import re
from typing import Any, Callable

from ..trace import TraceEvent
from .harness import BETTY
from .result import Report, Result

_A_RECORD = re.compile(r"^(\S+)\.\s+\d+\s+IN\s+A\s+(\S+)$")


def _queued_by(events: list[TraceEvent], host: str) -> str:
    """The queue ID ``host`` gave the message (its "queued as" reply or note)."""
    for e in events:
        if e.server == host and e.kind in ("queued", "delivered") and e.data.get("queue_id"):
            return e.data["queue_id"]
    return ""


def _relay_mx(events: list[TraceEvent]) -> str:
    """The mail exchanger the relaying MTA handed the message to."""
    for e in events:
        if e.kind == "delivered" and e.data.get("remote"):
            return e.data["remote"]
    return ""


def _address_of(events: list[TraceEvent], host: str) -> str:
    for e in events:
        match = _A_RECORD.match(e.line) if e.protocol == "dns" and e.direction == "S" else None
        if match and match.group(1).lower() == host:
            return match.group(2)
    return ""


def _hops(message: bytes) -> int:
    return len(email.message_from_bytes(message).get_all("Received") or [])


COPY = "copy it from your own output above, not from the lecture's slides"

# answer name -> (question, where to find it, a hint, the value in this run)
QUESTIONS: dict[str, tuple[str, str, str, Callable[[list[TraceEvent], bytes], Any]]] = {
    "awesome_queue_id": ("the queue ID smtp.awesome.com gave Albert's message",
                         "the '250 2.0.0 OK queued as …' reply to Albert's client", COPY,
                         lambda ev, msg: _queued_by(ev, "smtp.awesome.com")),
    "brilliant_queue_id": ("the queue ID smtp.brilliant.com gave it",
                           "the '250 … queued as …' reply in the relay's dialogue (smtp.awesome.com -> "
                           "smtp.brilliant.com)", COPY, lambda ev, msg: _queued_by(ev, "smtp.brilliant.com")),
    "mx_host": ("the mail exchanger smtp.awesome.com relayed to", "the DNS answer for brilliant.com. IN MX",
                "the name after the preference in the MX record, without the final dot",
                lambda ev, msg: _relay_mx(ev)),
    "mx_address": ("that mail exchanger's address", "the DNS answer for its A record",
                   "the A record of the MX host, not of ns.lab", lambda ev, msg: _address_of(ev, _relay_mx(ev))),
    "hops": ("the number of Received header fields in Betty's copy (one per hop)", "Betty's copy, from the top",
             "count the lines that start with 'Received:' (folded lines go with the one above)",
             lambda ev, msg: _hops(msg)),
}


def run(world: Any, **answers: Any) -> Report:
    """One row per answer given: right, or what this run of ``world`` says instead."""
    events, copies = world.tracer.events(), world.messages(BETTY)
    betty_copy = copies[0] if copies else b""
    report = Report("the life of an e-mail")
    for name, answer in answers.items():
        if name not in QUESTIONS:
            raise KeyError(f"no question {name!r}; the questions: {', '.join(QUESTIONS)}")
        question, where, hint, value = QUESTIONS[name]
        right = value(list(events), betty_copy)
        if answer is None or answer == ...:
            report.add(Result(question, "fail", step=name, expected=f"your answer (look at {where})",
                              got="no answer yet", hint=f"set {name} = … in the answer cell"))
        elif str(answer).strip().lower() == str(right).lower():
            report.add(Result(question, "pass"))
        else:
            report.add(Result(question, "fail", step=name, expected=f"this run's value (see {where})",
                              got=repr(answer), hint=hint))
    return report


def check(world: Any, **answers: Any) -> None:
    """For a test cell: :func:`run`, then raise :class:`~labkit.checks.CheckFailed` if
    an answer is wrong, else show the rows."""
    run(world, **answers).assert_passed()
