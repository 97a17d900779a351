"""What every seam's check tests assert about its corpus of implementations."""

from __future__ import annotations

from types import ModuleType
from typing import Any


def assert_passes_every_rule(checks: ModuleType, good: Any, deadline: float = 3.0) -> None:
    report = checks.run(good, deadline=deadline)
    assert report.passed, str(report)
    assert len(report) == len(checks.RULES)


def assert_caught(checks: ModuleType, mistakes: dict, mistake: str, deadline: float = 1.0):
    """The mistake's rule fails, and its message has the expected word; returns the row."""
    impl, rule, word = mistakes[mistake]
    titles = {r.name: r.title for r in checks.RULES}
    result = checks.run(impl, only=[rule], deadline=deadline).result(titles[rule])
    assert result.status == "fail", f"{mistake}: {rule} passed"
    assert word in result.text(), result.text()
    return result
