"""What labs 4 to 7 teach, read off their student releases as nbgrader generates them:
every rule of every seam the lab grades runs in a visible test cell, and the hidden
tests only run the same rules in other situations (a rule's ``variant_of``), in the
cell that shows the rule itself. A student whose visible checks all pass loses points
only to a situation, never to a rule they did not see."""

from __future__ import annotations

import importlib

import pytest

from submissions import meta, source, text

LABS = {"4-relaying": ("route", "received_header", "next_retry", "make_bounce"),
        "5-storing-and-pop3": ("deliver", "pop3_session"), "6-imap": ("imap_session",), "7-unix-mail": ("sendmail",)}


def authored_rules(lab: str) -> dict[str, dict[str, list[str]]]:
    """grade id -> seam -> rules, in the authored notebook (hidden tests too)."""
    from labkit.grade import verdict

    cells = {}
    for cell in source(lab)["cells"]:
        if cell["cell_type"] == "code" and meta(cell).get("grade") and not meta(cell).get("solution"):
            for call in verdict.parse(text(cell)):
                cells.setdefault(meta(cell)["grade_id"], {}).setdefault(call.module, []).extend(call.rules or [])
    return cells


@pytest.mark.parametrize("lab", LABS)
def test_every_rule_is_visible_and_hidden_tests_only_vary_one_shown_above_them(lab, visible_rules):
    shown = visible_rules(lab)
    for seam in LABS[lab]:
        rules = importlib.import_module(f"labkit.checks.{seam}").RULES
        assert {r.name for r in rules if not r.variant_of} == shown[seam], seam
        assert not any(r.name in shown[seam] for r in rules if r.variant_of), seam
    for cell, seams in authored_rules(lab).items():
        for seam, names in seams.items():
            variant_of = {r.name: r.variant_of for r in importlib.import_module(f"labkit.checks.{seam}").RULES}
            visible = [name for name in names if not variant_of[name]]
            assert all(variant_of[name] in visible for name in names if variant_of[name]), (cell, names)
