"""What every seam's check tests assert: the right part passes, each mistake is caught
by its rule with its message, and a broken part fails with the boundary's words."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from labkit.checks import Result
from labkit.lab import Session


def passes_every_rule(checks: ModuleType, impl: Any, *, deadline: float = 2.0) -> None:
    report = checks.run(impl, deadline=deadline)
    assert report.passed, str(report)
    assert len(report) == len(checks.RULES)


def caught(checks: ModuleType, mistakes: dict, mistake: str, *, deadline: float = 1.0,
           visible: set[str] | None = None) -> Result:
    """The row of the rule that must catch ``mistake``: failed, saying its word; with
    ``visible`` (the rules the student's release runs where they can see them), that
    rule is one of them."""
    impl, rule, word = mistakes[mistake]
    if visible is not None:
        assert rule in visible, f"{mistake}: {rule} is not a visible check of the release ({sorted(visible)})"
    title = next(r.title for r in checks.RULES if r.name == rule)
    result = checks.run(impl, only=[rule], deadline=deadline).result(title)
    assert result.status == "fail", f"{mistake}: {rule} passed"
    assert word in result.text(), result.text()
    return result


def fails_with(checks: ModuleType, impl: Any, rules: list[str], says: str, *, deadline: float = 0.5) -> None:
    """Every one of ``rules`` fails for ``impl``, each saying ``says``."""
    report = checks.run(impl, only=rules, deadline=deadline)
    assert len(report) == len(rules) and not any(r.passed for r in report), str(report)
    assert all(says in r.text() for r in report), str(report)


def with_receive(session_class: type, receive: Any) -> type:
    """``session_class`` with another ``receive`` (a broken one)."""
    return type("Broken", (session_class,), {"receive": receive})


class Greets(Session):
    """An SMTP session that greets properly (mta.greeting()); what receive() does is up
    to the subclass."""

    def __init__(self, peer, mta, *, hostname):
        self.mta = mta

    def start(self):
        return (self.mta.greeting() + "\r\n").encode()
