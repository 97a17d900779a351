"""A protocol's state diagram, drawn from labkit's own server's state table."""

from __future__ import annotations

import pytest

from labkit import pop3
from labkit.imap import session as imap
from labkit.statechart import chart, state_diagram

TAUGHT = ["USER", "PASS", "CAPA", "QUIT", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP"]


def test_the_pop3_chart_is_the_servers_table():
    drawn = chart("pop3", TAUGHT)
    assert drawn.states == ["AUTHORIZATION", "TRANSACTION", "UPDATE"]
    for state in drawn.states:
        allowed = {name for name, spec in pop3.COMMANDS.items() if state in {s.value for s in spec.states}}
        assert set(drawn.commands[state]) | set(drawn.others[state]) == allowed
    assert drawn.commands["TRANSACTION"][:3] == ["CAPA", "QUIT", "STAT"]  # in the order the lab teaches
    assert drawn.others["AUTHORIZATION"] == ["APOP", "AUTH"] and drawn.commands["UPDATE"] == []


@pytest.mark.parametrize("protocol, states", [("pop3", pop3.State), ("imap", imap.State)])
def test_the_diagram_names_every_state_and_move(protocol, states):
    shown = state_diagram(protocol, ["LOGIN", "SELECT", "FETCH", "USER", "PASS"])
    for state in states:
        assert f">{state.value}</text>" in shown.html and state.value in shown.text
    assert shown.html.startswith("<svg") and shown.html.count("marker-end") >= 2


def test_where_the_servers_table_is_not_the_diagram_says_why(monkeypatch):
    """A graded notebook's kernel holds no server of labkit's: the notebook still runs."""
    monkeypatch.setitem(__import__("labkit.statechart").statechart.REFERENCE, "pop3", "labkit.no_such_module")
    shown = state_diagram("pop3", TAUGHT)
    assert "not in a notebook being graded" in shown.text and "<svg" not in shown.html
