"""A protocol's states, the moves between them, and the commands each state allows,
drawn for a notebook from the state table of labkit's own server (RFC 1939 §3, RFC 3501 §3)::

    state_diagram("pop3", taught=("USER", "PASS", "STAT", ...))

The moves are the RFCs' diagrams; which command is allowed where is read from
``labkit.pop3.COMMANDS`` or ``labkit.imap.session.COMMANDS``. Those are labkit's answers,
which a graded notebook does not hold: there the diagram says so instead.
"""

from __future__ import annotations

import html
import importlib
from dataclasses import dataclass
from typing import Iterable

MOVES = {
    "pop3": [("AUTHORIZATION", "TRANSACTION", "USER, PASS accepted: the maildrop locked"),
             ("TRANSACTION", "UPDATE", "QUIT: what DELE marked is deleted"),
             ("AUTHORIZATION", "", "QUIT: nothing changes"), ("UPDATE", "", "then the connection closes")],
    "imap": [("not authenticated", "authenticated", "LOGIN accepted"),
             ("authenticated", "selected", "SELECT, EXAMINE accepted"),
             ("selected", "authenticated", "CLOSE (or a SELECT that fails)"),
             ("selected", "logout", "LOGOUT (in any state): * BYE"),
             ("logout", "", "then the connection closes")],
}
REFERENCE = {"pop3": "labkit.pop3", "imap": "labkit.imap.session"}
BOX, GAP, LINE = 230, 120, 16


@dataclass(frozen=True)
class Chart:
    states: list[str]
    commands: dict[str, list[str]]  # per state, the taught ones first
    others: dict[str, list[str]]  # per state, what labkit's server knows beyond them
    moves: list[tuple[str, str, str]]


def chart(protocol: str, taught: Iterable[str]) -> Chart:
    """The states of ``protocol`` and what the reference allows in each (ImportError where
    the reference is not installed: a graded notebook)."""
    module = importlib.import_module(REFERENCE[protocol])
    states = [state.value for state in module.State]
    taught = [name.upper() for name in taught]
    commands: dict[str, list[str]] = {state: [] for state in states}
    others: dict[str, list[str]] = {state: [] for state in states}
    for name, spec in module.COMMANDS.items():
        for state in spec.states:
            (commands if name in taught else others)[state.value].append(name)
    for state in states:
        commands[state].sort(key=lambda name: taught.index(name))
        others[state].sort()
    return Chart(states, commands, others, MOVES[protocol])


def state_diagram(protocol: str, taught: Iterable[str] = ()) -> "Shown":
    """The diagram (SVG, and text for print()); ``taught``: the commands the lab teaches,
    in the order it does (the reference's other commands are listed in grey)."""
    from .notebook import Shown

    try:
        drawn = chart(protocol, taught)
    except ImportError:
        text = ("(the state diagram is drawn from labkit's own server, which is not in a notebook being graded: "
                "see it in your own)")
        return Shown(f"<i>{html.escape(text)}</i>", text)
    return Shown(_svg(drawn), _text(drawn))


def _text(drawn: Chart) -> str:
    lines = [" -> ".join(drawn.states)]
    lines += [f"  {a} -> {b or 'the end'}: {label}" for a, b, label in drawn.moves]
    for state in drawn.states:
        if drawn.commands[state] or drawn.others[state]:
            lines.append(f"  in {state}: {', '.join(drawn.commands[state])}"
                         + (f" (labkit's server also knows {', '.join(drawn.others[state])})"
                            if drawn.others[state] else ""))
    return "\n".join(lines)


def _svg(drawn: Chart) -> str:
    x = {state: 20 + i * (BOX + GAP) for i, state in enumerate(drawn.states)}
    rows = max(len(drawn.commands[s]) + (1 if drawn.others[s] else 0) for s in drawn.states)
    top, height = 70, 60 + 36 + LINE * (rows + 1) + 90
    width = 40 + len(drawn.states) * (BOX + GAP) - GAP
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' "
           "font-size='12'><defs><marker id='s' markerWidth='8' markerHeight='8' refX='8' refY='4' orient='auto'>"
           "<path d='M0,0 L8,4 L0,8 z' fill='#24292f'/></marker></defs>"]
    for state in drawn.states:
        left = x[state]
        out.append(f"<rect x='{left}' y='{top}' width='{BOX}' height='36' rx='8' fill='#ddf4ff' stroke='#0969da'/>"
                   f"<text x='{left + BOX / 2}' y='{top + 23}' text-anchor='middle' font-weight='bold'>"
                   f"{html.escape(state)}</text>")
        y = top + 36 + LINE + 4
        for name in drawn.commands[state]:
            out.append(f"<text x='{left + 8}' y='{y}'>{html.escape(name)}</text>")
            y += LINE
        if drawn.others[state]:
            more = ", ".join(drawn.others[state])
            out.append(f"<text x='{left + 8}' y='{y}' fill='#8c959f' font-size='10'>labkit also: "
                       f"{html.escape(more if len(more) < 40 else more[:37] + '...')}</text>")
    below = top + 36 + LINE * (rows + 1) + 30
    for i, (a, b, label) in enumerate(drawn.moves):
        if b and x[b] > x[a]:  # forward: above the boxes
            x1, x2, y = x[a] + BOX, x[b], top + 18
            out.append(f"<line x1='{x1}' y1='{y}' x2='{x2}' y2='{y}' stroke='#24292f' marker-end='url(#s)'/>"
                       f"<text x='{(x1 + x2) / 2}' y='{top - 8 - 14 * (i % 2)}' text-anchor='middle' "
                       f"font-size='11'>{html.escape(label)}</text>")
        elif b:  # back: under the boxes
            x1, x2 = x[a] + BOX / 2, x[b] + BOX / 2
            out.append(f"<path d='M{x1},{top + 36} L{x1},{below} L{x2},{below} L{x2},{top + 36}' fill='none' "
                       f"stroke='#24292f' marker-end='url(#s)'/><text x='{(x1 + x2) / 2}' y='{below + 14}' "
                       f"text-anchor='middle' font-size='11'>{html.escape(label)}</text>")
        else:  # the end
            out.append(f"<text x='{x[a] + BOX / 2}' y='{below + 44}' text-anchor='middle' font-size='11' "
                       f"fill='#57606a'>{html.escape(a)}: {html.escape(label)}</text>")
    return "".join(out) + "</svg>"
