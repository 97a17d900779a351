"""The outside verdict: each autograded test cell's checks, run in the grader's process.

A lab's test cells call ``labkit.checks`` (``checks.send_mail.check(send_mail,
["delivers"])``). The grader reads those calls from the cell as the course wrote it
(restored from the source notebook, so a student's edit changes nothing), and runs the
same checks here, against the student's objects in their kernel (:mod:`.remote`). A
cell's outside verdict is what the gradebook gets; a cell with no such call (a plain
``assert``) keeps its in-notebook result.

:func:`suspicious` reads the student's own cells for what a submission must not do
(reach into labkit's internals, patch the checks, open the course's files).
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass, field

from ..checks import Report, Result
from .remote import REMOTE_SEAMS, AgentClient, StudentRaised, remote_part


@dataclass
class CheckCall:
    """One ``checks.<module>.check(...)`` statement of a test cell."""

    module: str
    args: list[str]  # source text of each positional argument
    keywords: dict[str, str] = field(default_factory=dict)


def check_calls(source: str) -> tuple[list[CheckCall], bool]:
    """The check calls of a test cell, and whether it has other statements too."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [], True
    calls, other = [], False
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        func = getattr(call, "func", None)
        if (isinstance(call, ast.Call) and isinstance(func, ast.Attribute) and func.attr in ("check", "run")
                and isinstance(func.value, ast.Attribute) and isinstance(func.value.value, ast.Name)
                and func.value.value.id == "checks"):
            calls.append(CheckCall(func.value.attr, [ast.unparse(a) for a in call.args],
                                   {k.arg: ast.unparse(k.value) for k in call.keywords if k.arg}))
        else:
            other = True
    return calls, other


def outside(source: str, agent: AgentClient, *, deadline: float) -> tuple[bool | None, list[Report], str]:
    """Run the cell's checks here: (passed, or None when they cannot run outside;
    their reports; why not, if not)."""
    calls, other = check_calls(source)
    if not calls:
        return None, [], "no labkit check in this cell"
    reports = []
    for call in calls:
        try:
            report = _run(call, agent, deadline)
        except StudentRaised as error:
            report = _broken(call, "looking them up in your notebook", "they are defined",
                             f"{error.remote_type}: {error}")
        except (OSError, ConnectionError, ValueError) as error:  # the kernel is gone or wedged
            report = _broken(call, "reaching your notebook's kernel", "a kernel that answers",
                             f"{type(error).__name__}: {error} (the kernel died, or hit a limit of the sandbox)")
        if report is None:
            return None, [], f"checks.{call.module} cannot run outside the notebook"
        reports.append(report)
    return all(r.passed for r in reports), reports, ""


def _broken(call: CheckCall, step: str, expected: str, got: str) -> Report:
    report = Report(call.module)
    report.add(Result(f"the objects this cell checks ({', '.join(call.args)})", "fail", step=step,
                      expected=expected, got=got))
    return report


def _run(call: CheckCall, agent: AgentClient, deadline: float) -> Report | None:
    checks = importlib.import_module(f"labkit.checks.{call.module}")
    if call.module == "story":
        events, copy = (agent.eval(a) for a in call.args[:2])
        return checks.run(events, copy, **{name: agent.eval(expr) for name, expr in call.keywords.items()})
    if call.module not in REMOTE_SEAMS or not call.args:
        return None
    impl = remote_part(call.module, agent, agent.handle(call.args[0]))
    rules = ast.literal_eval(call.args[1]) if len(call.args) > 1 else None
    return checks.run(impl, rules, deadline=deadline)


# -- what a submission must not do ---------------------------------------------------------
# labkit modules a student's code may use; the rest are labkit's own answers and machinery.
ALLOWED = ("labkit.lab", "labkit.world", "labkit.notebook", "labkit.checks", "labkit.imap.parser")
_FORBIDDEN_NAMES = {"__wrapped__": "unwraps a fenced function", "sys.modules": "reaches into loaded modules",
                    "gc.get_referents": "walks the interpreter's objects", "gc.get_objects": "walks the "
                    "interpreter's objects", "ctypes": "uses ctypes", "sys.setprofile": "changes the profiler",
                    "sys.settrace": "changes the tracer", "importlib.reload": "reloads modules"}


def suspicious(source: str) -> list[str]:
    """What the student's own code does that it must not (one sentence each)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: list[str] = []

    def note(text: str) -> None:
        if text not in found:
            found.append(text)

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.startswith("labkit") and not name.startswith(ALLOWED) and name != "labkit":
                    note(f"imports {name}, labkit's own code")
                if name == "ctypes":
                    note("uses ctypes")
        dotted = _dotted(node)
        if dotted:
            if dotted.startswith("labkit.") and not dotted.startswith(ALLOWED):
                note(f"uses {dotted}, labkit's own code")
            if dotted.startswith("checks.") and isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)):
                note(f"changes {dotted}: the checks")
            for name, why in _FORBIDDEN_NAMES.items():
                if dotted == name or dotted.endswith("." + name):
                    note(why)
        if isinstance(node, ast.Attribute) and node.attr == "__wrapped__":
            note(_FORBIDDEN_NAMES["__wrapped__"])
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "gradebook" in node.value:
            note("names the gradebook")
    return found


def _dotted(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return ""
