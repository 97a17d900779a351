"""What an autograded cell asks, read from the course's own copy of it; and what a
student's cells do that a TA should hear of.

Every autograded test cell of a lab is one or more check calls, in one of two forms::

    checks.send_mail.check(send_mail, ["delivers", "helo-fallback"])    # a seam's rules
    checks.story.check(world, awesome_queue_id=awesome_queue_id)         # answers about a run

:func:`parse` reads them with :mod:`ast` (never running the cell): the names in it are
looked up in the student's kernel by the judge, the rules are literals. A cell with any
other statement cannot be judged outside the notebook; ``tests/test_grading.py`` keeps
every lab's cells in these forms.

:func:`suspicious` reads a student's solution cells for what a TA should look at (an
import of labkit's own answer, a patch of the checks). It decides nothing: in grading
the answer is not in the kernel at all (see :mod:`labkit.grade.pod`).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import pkgutil
import sys
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import labkit

from ..checks import SEAM_CHECKS
from ..lab import STUDENT_MODULES


_AST = threading.Lock()  # CPython 3.11's ast counts its recursion per interpreter: one parse at a time


def parse_python(source: str) -> ast.Module:
    """``ast.parse``, one at a time in this process."""
    with _AST:
        return ast.parse(source)


class NotJudgeable(ValueError):
    """The cell is not in a form the judge can run outside the notebook."""


@dataclass(frozen=True)
class CheckCall:
    """One ``checks.<module>.check(...)`` of an autograded cell."""

    module: str  # send_mail, story, ...
    target: str  # the name of the student's part (or world) in their notebook
    rules: list[str] | None = None  # the rules to run (None: every rule)
    answers: dict[str, str] = field(default_factory=dict)  # story: question -> the name holding the answer


def parse(source: str) -> list[CheckCall]:
    """The check calls of an autograded cell, or :class:`NotJudgeable` saying why not."""
    try:
        tree = parse_python(source)
    except SyntaxError as error:
        raise NotJudgeable(f"it is not Python ({error.msg})") from None
    calls = [_call(statement) for statement in tree.body]
    if not calls:
        raise NotJudgeable("it has no check")
    return calls


def _call(statement: ast.stmt) -> CheckCall:
    call = statement.value if isinstance(statement, ast.Expr) else None
    func = getattr(call, "func", None)
    if not (isinstance(call, ast.Call) and isinstance(func, ast.Attribute) and func.attr in ("check", "run")
            and isinstance(func.value, ast.Attribute) and isinstance(func.value.value, ast.Name)
            and func.value.value.id == "checks" and func.value.attr in SEAM_CHECKS):
        raise NotJudgeable(f"line {statement.lineno} is not a labkit check: {ast.unparse(statement)[:80]}")
    module = func.value.attr
    if not call.args or not isinstance(call.args[0], ast.Name):
        raise NotJudgeable(f"line {statement.lineno}: the first argument must be a name in the notebook")
    target = call.args[0].id
    if module == "story":
        if len(call.args) != 1 or not all(k.arg and isinstance(k.value, ast.Name) for k in call.keywords):
            raise NotJudgeable(f"line {statement.lineno}: checks.story.check(world, question=name, ...)")
        return CheckCall(module, target, answers={k.arg: k.value.id for k in call.keywords if k.arg})
    rules = None
    if len(call.args) > 1:
        try:
            rules = ast.literal_eval(call.args[1])
        except ValueError:
            raise NotJudgeable(f"line {statement.lineno}: the rules must be a literal list") from None
        if not (isinstance(rules, list) and all(isinstance(r, str) for r in rules)):
            raise NotJudgeable(f"line {statement.lineno}: the rules must be a list of names")
    if len(call.args) > 2 or call.keywords:
        raise NotJudgeable(f"line {statement.lineno}: only checks.{module}.check(part, [rules])")
    return CheckCall(module, target, rules)


# -- what a submission's own code does ----------------------------------------------------------
_FORBIDDEN_NAMES = {"__wrapped__": "unwraps a fenced function", "sys.modules": "reaches into loaded modules",
                    "gc.get_referents": "walks the interpreter's objects", "gc.get_objects": "walks the "
                    "interpreter's objects", "ctypes": "uses ctypes", "sys.setprofile": "changes the profiler",
                    "sys.settrace": "changes the tracer", "importlib.reload": "reloads modules"}


@cache
def allowed_names() -> frozenset[tuple[str, str]]:
    """(module, name) pairs a student may import from labkit: everything in the student
    modules, and each of labkit.lab's types under every module name labkit gives it
    (``from labkit.smtp.client import Reply`` is ``labkit.lab.Reply``). Finding them
    imports every labkit module (0.4 s of a grading run's start), so they are kept in
    ``~/.labkit/cache``, under a name that changes with any of labkit's sources."""
    package = Path(labkit.__file__).parent
    sources = sorted(package.rglob("*.py"))
    key = hashlib.sha256(repr((sys.version, [(str(p.relative_to(package)), p.stat().st_size, p.stat().st_mtime_ns)
                                             for p in sources])).encode()).hexdigest()[:20]
    kept = Path.home() / ".labkit" / "cache" / f"allowed-names-{key}.json"
    try:
        return frozenset((module, name) for module, name in json.loads(kept.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    found = _allowed_names()
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_name(f"{kept.name}.{os.getpid()}")
        partial.write_text(json.dumps(sorted(found)))
        os.replace(partial, kept)
        for old in kept.parent.glob("allowed-names-*.json"):  # what earlier sources gave
            if old != kept:
                old.unlink(missing_ok=True)
    except OSError:  # a home we cannot write: found again next time
        pass
    return found


def _allowed_names() -> frozenset[tuple[str, str]]:
    from .. import lab

    types = {id(getattr(lab, name)): name for name in lab.__all__}
    allowed = set()
    for info in pkgutil.walk_packages(labkit.__path__, "labkit."):
        if info.name.startswith(("labkit.grade", "labkit.audit")):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: S112 - a module that cannot be imported here offers nothing
            continue
        for name, value in vars(module).items():
            if id(value) in types and getattr(lab, types[id(value)]) is value:
                allowed.add((info.name, name))
    return frozenset(allowed)


def _is_student_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in STUDENT_MODULES) or name == "labkit"


def suspicious(source: str) -> list[str]:
    """What the student's own code does that a TA should look at (one sentence each)."""
    try:
        tree = parse_python(source)
    except SyntaxError:
        return []
    found: list[str] = []

    def note(text: str) -> None:
        if text not in found:
            found.append(text)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labkit"):
            module = node.module or ""
            if not _is_student_module(module):
                for alias in node.names:
                    if (module, alias.name) not in allowed_names():
                        note(f"imports {module}.{alias.name}, labkit's own code")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("labkit.") and not _is_student_module(alias.name):
                    note(f"imports {alias.name}, labkit's own code")
                if alias.name == "ctypes":
                    note("uses ctypes")
        dotted = _dotted(node)
        if dotted:
            if dotted.startswith("checks.") and isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)):
                note(f"changes {dotted}: the checks")
            for name, why in _FORBIDDEN_NAMES.items():
                if dotted == name or dotted.endswith("." + name):
                    note(why)
        if isinstance(node, ast.Attribute) and node.attr == "__wrapped__":
            note(_FORBIDDEN_NAMES["__wrapped__"])
    return found


def _dotted(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return ""
