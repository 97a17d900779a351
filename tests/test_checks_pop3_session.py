"""The pop3_session checks catch each classic mistake, with its message, and pass every legal answer."""

from __future__ import annotations

import re
import time

import pytest

from checking import caught, fails_with, passes_every_rule, with_receive
from labkit import checks
from labkit.pop3 import POP3Session as LabkitsOwn
from mistakes.pop3_session import MISTAKES, good
from mistakes.independent import pop3_session as independent

CORPORA = {"labkit's": MISTAKES, "independent": independent.MISTAKES}
LAB = "5-storing-and-pop3"


def test_a_right_session_passes_every_rule():
    passes_every_rule(checks.pop3_session, good)


def test_an_independently_written_right_answer_passes_every_rule():
    passes_every_rule(checks.pop3_session, independent.good)


def test_labkits_own_session_passes_every_rule(monkeypatch):
    """labkit's server (APOP, SASL, its own UIDL and lock) is a legal answer: the checks
    must accept it, the fence lifted."""
    monkeypatch.setattr("labkit.fence.check_fence", lambda *args: None)
    passes_every_rule(checks.pop3_session, LabkitsOwn)


@pytest.mark.parametrize("corpus, mistake", [(c, m) for c, mistakes in CORPORA.items() for m in mistakes])
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(corpus, mistake, visible_rules):
    visible = visible_rules(LAB)["pop3_session"]
    caught_by = caught(checks.pop3_session, CORPORA[corpus], mistake, visible=visible)
    assert caught_by.rfc.startswith(("RFC 1939", "RFC 2449"))


@pytest.mark.parametrize("impl, says", [
    (with_receive(good, lambda self, data: {}[data]), "KeyError"),
    (with_receive(good, lambda self, data: "+OK a str"), "must return bytes, got str"),
    (with_receive(good, lambda self, data: time.sleep(30)), "longer than 0.5s"),
    (type("Mine", (LabkitsOwn,), {}), "yours to write"),
])
def test_broken_sessions_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.pop3_session, impl, ["login", "drop-keeps", "uidl"], says)


def test_a_crash_shows_the_students_traceback_and_the_wire():
    result = checks.pop3_session.run(with_receive(good, lambda self, data: {}[data]), only=["login"]).results[0]
    assert "in <lambda>" in result.got and "KeyError: b'STAT\\r\\n'" in result.got
    assert any(line.endswith("-ERR [SYS/TEMP] smtp.brilliant.com: internal error in the POP3 session "
                             "(raised: KeyError: b'STAT\\r\\n')") for _, line in result.transcript), result.transcript


def test_a_changed_unique_id_is_shown_beside_the_one_it_was():
    """A UIDL of the whole file name changes when a reader renames NAME to NAME:2,S: the
    row shows the ids before (the transcript's first UIDL is cut off by then), so the
    student sees the ':2,S' that came."""
    result = checks.pop3_session.run(independent.MISTAKES["UIDL is the whole file name"][0], only=["uidl"]).results[0]
    assert result.status == "fail"
    renamed = re.findall(r"(\S+):2,S", result.got)
    assert renamed and all(name in result.expected and f"{name}:2,S" not in result.expected for name in renamed), (
        result.expected, result.got)
