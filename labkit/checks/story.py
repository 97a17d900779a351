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
QUEUE_IDS = ("each server that takes the message gives it its own queue ID, in its '250 … queued as …' reply: "
             "smtp.awesome.com's to Albert's client, smtp.brilliant.com's to smtp.awesome.com; " + COPY)
LECTURE = {"ffdc3387": "that is the queue ID on the lecture's slides, not this run's",
           "1.2.3.4": "that is smtp.awesome.com's address (the relay itself)",
           "1.2.3.100": "that is Albert's PC's address",
           "127.0.0.1": "that is the lab's real loopback address; the lecture's addresses are in the DNS answers"}

# answer name -> (question, where to find it, a hint, the value in this run)
QUESTIONS: dict[str, tuple[str, str, str, Callable[[list[TraceEvent], bytes], Any]]] = {
    "awesome_queue_id": ("the queue ID smtp.awesome.com gave Albert's message",
                         "the '250 2.0.0 OK queued as …' reply to Albert's client", QUEUE_IDS,
                         lambda ev, msg: _queued_by(ev, "smtp.awesome.com")),
    "brilliant_queue_id": ("the queue ID smtp.brilliant.com gave it",
                           "the '250 … queued as …' reply in the relay's dialogue (smtp.awesome.com -> "
                           "smtp.brilliant.com)", QUEUE_IDS, lambda ev, msg: _queued_by(ev, "smtp.brilliant.com")),
    "mx_host": ("the mail exchanger smtp.awesome.com relayed to", "the DNS answer for brilliant.com. IN MX",
                "the name after the preference in the MX record, without the final dot",
                lambda ev, msg: _relay_mx(ev)),
    "mx_address": ("that mail exchanger's address", "the DNS answer for its A record",
                   "the A record of the MX host, not of ns.lab", lambda ev, msg: _address_of(ev, _relay_mx(ev))),
    "hops": ("the number of Received header fields in Betty's copy (one per hop)", "Betty's copy, from the top",
             "count the lines that start with 'Received:' (folded lines go with the one above)",
             lambda ev, msg: _hops(msg)),
}


def _normal(value: Any) -> str:
    """An answer as compared: text without surrounding space or quotes, any case, a host
    name's final dot dropped (``smtp.brilliant.com.`` is the same name)."""
    return str(value).strip().strip("'\"<>[]").rstrip(".").lower()


def _what_it_is(name: str, answer: Any, events: list[TraceEvent], copy: bytes) -> str:
    """What a wrong answer is, when it is something of this run (or of the lecture): the
    other hop's queue ID, the relay's address, ..., so the row names the mix-up."""
    given = _normal(answer)
    ids = {"smtp.awesome.com": _queued_by(events, "smtp.awesome.com"),
           "smtp.brilliant.com": _queued_by(events, "smtp.brilliant.com")}
    for host, queue_id in ids.items():
        if queue_id and given == queue_id.lower():
            return (f"that is the queue ID {host} gave it (in the "
                    + ("'250 … queued as' reply to Albert's client" if host == "smtp.awesome.com" else
                       "relay's dialogue, smtp.awesome.com -> smtp.brilliant.com") + ")")
    if given in LECTURE:
        return LECTURE[given]
    if name == "mx_address" and given == _address_of(events, "ns.lab"):
        return "that is the name server's address"
    if name == "mx_host" and given in ("ns.lab", "brilliant.com", "smtp.awesome.com"):
        return {"ns.lab": "that is the name server that answered, not the host its MX record names",
                "brilliant.com": "that is the domain; its MX record names the host that takes its mail",
                "smtp.awesome.com": "that is the relay itself, which looked the MX up"}[given]
    if name == "hops" and isinstance(answer, int):
        shown = _hops(copy)
        if answer == shown + 1:
            return "did you count Return-Path or Delivered-To? Only the lines that start with 'Received:' count"
        if answer > shown:
            return "a folded Received field goes on over several lines (those starting with a tab): it is still one"
        return "count every line that starts with 'Received:', the bottom one too (Albert's PC -> smtp.awesome.com)"
    if name == "hops" and not isinstance(answer, int):
        return f"a number (an int, without quotes), not {type(answer).__name__}"
    return ""


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
        elif _normal(answer) == _normal(right) and (name != "hops" or isinstance(answer, int)):
            report.add(Result(question, "pass"))
        else:
            mixed_up = _what_it_is(name, answer, list(events), betty_copy)
            report.add(Result(question, "fail", step=name, expected=f"this run's value (see {where})",
                              got=repr(answer) + (f": {mixed_up}" if mixed_up else ""), hint=hint))
    return report


def check(world: Any, **answers: Any) -> None:
    """For a test cell: :func:`run`, then raise :class:`~labkit.checks.CheckFailed` if
    an answer is wrong, else show the rows."""
    run(world, **answers).assert_passed()
