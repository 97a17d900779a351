"""What each lab's checks teach, read off the student's release as nbgrader generates it:
every rule of the lab's seam runs in a visible test cell, and the hidden tests only run
the same rules in other situations (a rule's ``variant_of``), in the cell that shows the
rule itself. A student whose visible checks all pass loses points only to a situation."""

from __future__ import annotations

import collections
import importlib

import pytest

from submissions import Course, check_rules, source

pytest.importorskip("nbgrader")

SEAMS = {"1-smtp-by-hand": "send_mail", "2-where-does-mail-go": "resolve_mx", "3-receiving-mail": "smtp_session"}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    return Course(tmp_path_factory.mktemp("course"))


@pytest.mark.parametrize("lab", SEAMS)
def test_every_rule_is_visible_and_hidden_tests_only_vary_it(lab, course):
    rules = importlib.import_module(f"labkit.checks.{SEAMS[lab]}").RULES
    variant_of = {rule.name: rule.variant_of for rule in rules}
    released, authored = check_rules(course.release(lab)), check_rules(source(lab))
    shown = {name for names in released.values() for name in names}
    assert {rule.name for rule in rules if not rule.variant_of} <= shown
    for cell, names in authored.items():
        hidden = collections.Counter(names) - collections.Counter(released[cell])
        assert all(not variant_of[name] for name in released[cell]), (cell, released[cell])
        assert all(variant_of[name] in released[cell] for name in hidden), (cell, sorted(hidden))
