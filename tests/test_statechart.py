"""POP3's and IMAP's state diagrams, drawn from labkit's own servers' command tables."""

from __future__ import annotations

import pytest

from labkit import pop3
from labkit.imap import session as imap
from labkit.statechart import state_diagram

POP3_TAUGHT = ["USER", "PASS", "CAPA", "QUIT", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP"]


def arrows(machine: str, taught=()) -> dict[tuple[str, str], list[str]]:
    """The diagram's arrows as its text tells them: (from, to) -> the commands on it."""
    found = {}
    for line in str(state_diagram(machine, taught)).splitlines()[1:]:
        if "--" in line and "-->" in line:
            source, rest = line.strip().split("--", 1)
            labels, target = rest.split("-->")
            found[(source.strip(), target.strip())] = labels.split(", ")
    return found


def test_every_command_of_the_pop3_table_is_drawn_where_the_server_allows_it():
    drawn = arrows("pop3")
    for name, spec in pop3.COMMANDS.items():
        where = {source for (source, _), labels in drawn.items() if name in labels}
        assert where == {s.value for s in spec.states} - ({"AUTHORIZATION"} if name == "QUIT" else set()), name
    assert drawn[("AUTHORIZATION", "TRANSACTION")] == ["PASS", "APOP", "AUTH"]
    assert drawn[("TRANSACTION", "UPDATE")] == ["QUIT"]


def test_a_lab_draws_what_it_teaches_in_its_order_and_names_the_rest():
    shown = state_diagram("pop3", POP3_TAUGHT)
    drawn = arrows("pop3", POP3_TAUGHT)
    assert drawn[("TRANSACTION", "TRANSACTION")] == ["CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET",
                                                     "NOOP"]
    assert drawn[("AUTHORIZATION", "TRANSACTION")] == ["PASS"]
    assert "labkit's server also knows APOP, AUTH" in str(shown)
    assert "APOP" not in str(state_diagram("pop3", [*POP3_TAUGHT, "APOP", "AUTH"])).splitlines()[-1]


def test_the_imap_diagram_has_the_rfcs_moves_and_logout_in_words():
    drawn = arrows("imap", ["CAPABILITY", "LOGIN", "SELECT", "EXAMINE", "FETCH", "CLOSE", "LOGOUT", "UID"])
    assert drawn[("not authenticated", "authenticated")] == ["LOGIN"]
    assert drawn[("authenticated", "selected")] == ["SELECT", "EXAMINE"]
    assert drawn[("selected", "authenticated")] == ["CLOSE"]
    assert drawn[("selected", "selected")] == ["CAPABILITY", "SELECT", "EXAMINE", "FETCH", "UID"]
    assert not any("logout" in pair for pair in drawn)
    for name, spec in imap.COMMANDS.items():  # every command of the table, where it is allowed
        where = {source for (source, _), labels in arrows("imap").items() if name in labels}
        assert where == ({s.value for s in spec.states} if name != "LOGOUT" else set()), name
    assert "LOGOUT, in any state" in str(state_diagram("imap"))


@pytest.mark.parametrize("machine", ["pop3", "imap"])
def test_the_diagram_is_a_picture_with_every_state(machine):
    shown = state_diagram(machine, ["LOGIN", "SELECT", "USER", "PASS", "QUIT"])
    svg = shown.svg()
    states = pop3.State if machine == "pop3" else [s for s in imap.State if s is not imap.State.LOGOUT]
    for state in states:
        assert f">{state.value}</text>" in svg
    assert shown.png().startswith(b"\x89PNG") and shown.width > 400
