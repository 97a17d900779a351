"""State diagrams of labkit's SMTP client and server, and of its POP3 and IMAP servers,
drawn from the tables they run.

    from labkit.notebook import state_diagram
    state_diagram("smtp-client")     # labkit.smtp.client.TRANSITIONS: what the relay's client does
    state_diagram("smtp-server")     # labkit.smtp.server.COMMANDS: where each command may come
    state_diagram("pop3", taught=["USER", "PASS", ...])   # labkit.pop3.COMMANDS (RFC 1939 §3)
    state_diagram("imap", taught=["LOGIN", "SELECT", ...])  # labkit.imap.session.COMMANDS (RFC 3501 §3)

The tables are the reference implementations' own (so the picture is what the code
does), imported when a diagram is drawn; in a graded notebook they are not there (the
kernel holds no answer key), and the picture says so in words. POP3's and IMAP's tables
say where each command is allowed; which of them moves the session to another state is
the RFCs' diagram (:data:`MOVES`).
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable

from .picture import Picture

BOX_WIDTH, BOX_HEIGHT, ROW = 150, 26, 58
LANE = 16  # between two side lanes of arrows
COLOUR, LOOP, BACK = "#1f6feb", "#6e7781", "#cf222e"
Edge = tuple[str, str, str]  # from, label, to


Machine = tuple[str, list[str], list[Edge], str]  # title, states in order, edges, a footnote


def _client() -> Machine:
    client = importlib.import_module("labkit.smtp.client")
    names = {state: _client_name(state) for state in client.State}
    edges = [(names[state], label, names[to]) for state, step in client.TRANSITIONS.items()
             for to, label in step.leads_to if label != "else"]
    order = [names[s] for s in client.State]
    return ("the SMTP client (labkit.smtp.client.TRANSITIONS): in each state it waits for one reply", order, edges,
            "any other reply (and a 421 in any state, RFC 5321 §3.8): the transaction failed: QUIT")


def _client_name(state: Any) -> str:
    return {"GREETING": "connected: greeting?", "BODY": "sent the message", "DONE": "done"}.get(
        state.name, f"sent {state.value}")


def _server() -> Machine:
    server = importlib.import_module("labkit.smtp.server")
    state = server.State
    edges: list[Edge] = []
    for name, command in server.COMMANDS.items():
        if command.then is not None and command.then is not state.CLOSED:
            edges += [(s.value, name, command.then.value) for s in sorted(command.states, key=_order(state))]
    edges += [(s.value, "RSET", state.READY.value) for s in (state.MAIL, state.RCPT)]
    edges += [(a.value, label, b.value) for a, label, b in (*server.AUTH_EDGES, server.DATA_END)]
    seen, unique = set(), []
    for edge in edges:  # HELO and EHLO, several states: one arrow each
        if edge not in seen and not (edge[0] == edge[2] and edge[1] in ("HELO", "EHLO")):
            seen.add(edge)
            unique.append(edge)
    order = [s.value for s in state if s is not state.CLOSED]
    return ("the SMTP server session (labkit.smtp.server.COMMANDS)", order, unique,
            "a command where no arrow allows it gets 503 and changes nothing; QUIT, in any state: 221, then close")


def _order(state: Any):
    ranks = {s: i for i, s in enumerate(state)}
    return lambda s: ranks[s]


# Where a command moves a session (state, command) -> the next state, None: it closes the
# connection; every other command allowed in a state leaves the session there.
MOVES: dict[str, dict[tuple[str, str], str | None]] = {
    "pop3": {("AUTHORIZATION", "PASS"): "TRANSACTION", ("AUTHORIZATION", "APOP"): "TRANSACTION",
             ("AUTHORIZATION", "AUTH"): "TRANSACTION", ("AUTHORIZATION", "QUIT"): None,
             ("TRANSACTION", "QUIT"): "UPDATE"},
    "imap": {("not authenticated", "LOGIN"): "authenticated", ("not authenticated", "AUTHENTICATE"): "authenticated",
             ("authenticated", "SELECT"): "selected", ("authenticated", "EXAMINE"): "selected",
             ("selected", "CLOSE"): "authenticated", ("selected", "UNSELECT"): "authenticated",
             **{(state, "LOGOUT"): None for state in ("not authenticated", "authenticated", "selected")}},
}


def _table(protocol: str, module: str, title: str, extra: dict[str, Any], footnote: str) -> Machine:
    """A server's command table as a machine: an arrow per command and state it is
    allowed in (``extra``: commands the table names elsewhere, with their states)."""
    table = importlib.import_module(module)
    allowed = {name: spec.states for name, spec in table.COMMANDS.items()} | extra
    order = _order(table.State)
    moves = MOVES[protocol]
    edges = [(state.value, name, moves.get((state.value, name), state.value))
             for name, states in allowed.items() for state in sorted(states, key=order)]
    drawn = [(a, n, b) for a, n, b in edges if b is not None]
    # the states an arrow touches (not IMAP's logout, which LOGOUT reaches as the connection closes)
    states = [s.value for s in table.State if any(s.value in (a, b) for a, _, b in drawn)]
    return title, states, drawn, footnote


def _pop3() -> Machine:
    return _table("pop3", "labkit.pop3", "a POP3 session (labkit.pop3.COMMANDS; the moves: RFC 1939 §3)", {},
                  "a command where no arrow allows it gets -ERR and changes nothing; QUIT in AUTHORIZATION closes "
                  "at once\nUPDATE removes what DELE marked, then the connection closes")


def _imap() -> Machine:
    selected = importlib.import_module("labkit.imap.session").SELECTED
    return _table("imap", "labkit.imap.session",
                  "an IMAP session (labkit.imap.session.COMMANDS; the moves: RFC 3501 §3)", {"UID": selected},
                  "a command where no arrow allows it gets BAD (or NO) and changes nothing; a SELECT that fails "
                  "leaves no mailbox selected\nLOGOUT, in any state: * BYE (the logout state), then the connection "
                  "closes")


MACHINES = {"smtp-client": _client, "smtp-server": _server, "pop3": _pop3, "imap": _imap}
CHAR = 6.3  # the width of a character of the labels, about (sans-serif at 11)


def state_diagram(machine: str, taught: Iterable[str] = ()) -> Picture:
    """The state diagram of ``machine`` (``"smtp-client"``, ``"smtp-server"``, ``"pop3"``
    or ``"imap"``): states top to bottom, a transition to the next state straight down,
    others in lanes at the side (forward on the right, back on the left), each with its
    label. ``taught``: the commands a lab teaches, in its order; only their arrows are
    drawn, and the footnote names the others the server knows."""
    try:
        title, states, edges, footnote = MACHINES[machine]()
    except KeyError:
        raise ValueError(f"no state machine {machine!r}: {', '.join(MACHINES)}") from None
    except ImportError:
        return Picture(360, 24, f"({machine}: the diagram is drawn from labkit's own code, which a graded notebook "
                                "does not hold)")
    if taught:
        lesson = [name.upper() for name in taught]
        others = sorted({label for _, label, _ in edges} - set(lesson))
        edges = sorted((e for e in edges if e[1] in lesson), key=lambda e: lesson.index(e[1]))
        footnote += ("\nlabkit's server also knows " + ", ".join(others)) if others else ""
    edges = _merged(edges)
    notes = footnote.split("\n")
    rank = {name: i for i, name in enumerate(states)}
    forward = [e for e in edges if rank[e[2]] > rank[e[0]] + 1]
    backward = [e for e in edges if rank[e[2]] < rank[e[0]]]
    left = 60 + LANE * len(backward) + 150
    loops = [len(label) for source, label, target in edges if source == target]
    width = int(max(left + BOX_WIDTH + 60 + LANE * len(forward) + 170, left + BOX_WIDTH + 40 + CHAR * max(loops or [0]),
                    20 + CHAR * max(len(line) for line in [title, *notes])))
    height = 70 + ROW * len(states) + 16 * (len(notes) - 1)
    picture = Picture(width, height)
    picture.label(10, 16, title, bold=True)
    top = {name: 40 + ROW * i for i, name in enumerate(states)}
    middle = left + BOX_WIDTH / 2
    text = [title]
    for name in states:
        picture.box(left, top[name], BOX_WIDTH, BOX_HEIGHT, COLOUR, "#ddf4ff")
        picture.label(middle, top[name] + 17, name, anchor="middle")
    leaving: dict[tuple[str, str], int] = {}  # (state, side) -> arrows that left there so far

    def start(name: str, side: str) -> float:
        k = leaving[(name, side)] = leaving.get((name, side), -1) + 1
        return top[name] + 6 + 8 * k

    for source, label, target in edges:
        text.append(f"  {source:24} --{label}--> {target}")
        if source == target:  # a loop on the right
            x, y0 = left + BOX_WIDTH, start(source, "right")
            picture.arrow((x, y0), (x + 22, y0), (x + 22, y0 + 10), (x, y0 + 10), colour=LOOP)
            picture.label(x + 26, y0 + 9, label, LOOP)
        elif rank[target] == rank[source] + 1:  # straight down
            picture.arrow((middle, top[source] + BOX_HEIGHT), (middle, top[target]), colour=COLOUR)
            picture.label(middle + 6, top[source] + BOX_HEIGHT + 18, label, COLOUR)
        elif rank[target] > rank[source]:  # a lane on the right, the label where it leaves
            x, y0 = left + BOX_WIDTH + 50 + LANE * forward.index((source, label, target)), start(source, "right")
            y1 = top[target] + BOX_HEIGHT - 6
            picture.arrow((left + BOX_WIDTH, y0), (x, y0), (x, y1), (left + BOX_WIDTH, y1), colour=COLOUR)
            picture.label(x + 4, y0 + 4, label, COLOUR)
        else:  # a lane on the left, back up
            x, y0 = left - 40 - LANE * backward.index((source, label, target)), start(source, "left")
            y1 = top[target] + 6
            picture.arrow((left, y0), (x, y0), (x, y1), (left, y1), colour=BACK)
            picture.label(x - 4, y0 + 4, label, BACK, anchor="end")
    for i, note in enumerate(notes):
        picture.label(10, height - 12 - 16 * (len(notes) - 1 - i), note, LOOP, italic=True)
        text.append(f"  ({note})")
    picture.text = "\n".join(text)
    return picture


def _merged(edges: list[Edge]) -> list[Edge]:
    """One arrow per pair of states, its labels joined ("HELO, EHLO")."""
    labels: dict[tuple[str, str], list[str]] = {}
    for source, label, target in edges:
        labels.setdefault((source, target), [])
        if label not in labels[(source, target)]:
            labels[(source, target)].append(label)
    return [(source, ", ".join(names), target) for (source, target), names in labels.items()]
