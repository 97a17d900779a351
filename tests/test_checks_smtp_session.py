"""The smtp_session checks catch each classic mistake, with its message."""

from __future__ import annotations

import time

import pytest

from labkit import checks
from labkit.smtp.server import SMTPServerSession
from checking import Greets, caught, fails_with, passes_every_rule
from mistakes.smtp_session import MISTAKES, good


def test_a_right_implementation_passes_every_rule():
    passes_every_rule(checks.smtp_session, good)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_fails_a_visible_check_of_the_release_with_its_message(mistake, visible_rules):
    visible = visible_rules("3-receiving-mail")["smtp_session"]
    result = caught(checks.smtp_session, MISTAKES, mistake, deadline=1.0, visible=visible)
    assert result.rfc.startswith("RFC 5321")


class Raises(Greets):
    def receive(self, data):
        raise RuntimeError("my state machine")


class ReturnsStr(Greets):
    def receive(self, data):
        return "250 OK\r\n"


class Hangs(Greets):
    def receive(self, data):
        time.sleep(30)


class Subclassed(SMTPServerSession):
    pass


@pytest.mark.parametrize("impl, says", [
    (Raises, "RuntimeError: my state machine"),
    (ReturnsStr, "receive() must return bytes, got str"),
    (Hangs, "longer than 0.5s"),
    (SMTPServerSession, "yours to write"),
    (Subclassed, "yours to write"),
])
def test_broken_sessions_fail_with_the_boundarys_message(impl, says):
    fails_with(checks.smtp_session, impl, ["ehlo", "smtplib"], says)


def test_the_failure_shows_the_students_traceback():
    result = checks.smtp_session.run(Raises, only=["ehlo"], deadline=0.5).results[0]
    assert 'raise RuntimeError("my state machine")' in result.got
    assert any("internal error in the SMTP session" in line for _, line in result.transcript)


def test_a_session_with_the_wrong_signature_fails_at_plugging_in():
    report = checks.smtp_session.run(lambda peer: None, only=["greeting"])
    assert "must be callable as smtp_session(peer, mta, *, hostname)" in report.results[0].got


def test_a_failure_shows_the_dialogue():
    impl, rule, _ = MISTAKES["RSET keeps the recipients"]
    result = checks.smtp_session.run(impl, only=[rule], deadline=1.0).results[0]
    assert ("C", "RSET") in result.transcript and ("C", "DATA") in result.transcript
    assert ("S", "354 End data with <CR><LF>.<CR><LF>") == result.transcript[-1]
    assert result.step == "DATA" and result.expected.startswith("503")
