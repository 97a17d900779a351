"""The capstone's parts from the earlier labs' notebooks: found by the seams their test
cells check, run without the worlds those notebooks start, stubs left out, saying why."""

from __future__ import annotations

import json
from pathlib import Path

from labkit import checks
from labkit.parts import earlier_parts

ROOT = Path(__file__).resolve().parent.parent


def notebook(folder: Path, cells: list[tuple[str, dict, str]]) -> None:
    """A lab notebook as nbgrader authors it: (cell type, nbgrader metadata, source)."""
    folder.mkdir(parents=True)
    (folder / "lab.ipynb").write_text(json.dumps({"cells": [
        {"cell_type": kind, "metadata": {"nbgrader": meta}, "source": source.splitlines(keepends=True)}
        for kind, meta, source in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


ANSWER = {"solution": True, "grade": False}
TEST = {"grade": True, "solution": False, "points": 1}


def test_the_parts_the_test_cells_name_come_with_their_imports_not_their_worlds(tmp_path):
    started = tmp_path / "a world was started"
    notebook(tmp_path / "4-relaying", [
        ("code", {}, f"import re\nfrom labkit.lab import Local, Refuse, Relay\nDOMAIN = 'brilliant.com'\n"
                     f"open({str(started)!r}, 'w')   # as World().start() would\n"),
        ("code", ANSWER, "def route(request):\n    if re.fullmatch(r'.*', request.domain) and "
                         "request.domain in request.local_domains:\n        return Local(request.recipient.lower())"
                         "\n    return Refuse('454 4.7.1 no relaying')\n"),
        ("code", ANSWER, "def next_retry(attempts, queued_for, *, schedule, max_queue_time):\n"
                         "    # YOUR CODE HERE\n    raise NotImplementedError()\n"),
        ("code", ANSWER, "received_header = lambda hop: 1 / 0\nraise ValueError('half written')\n"),
        ("code", TEST, "checks.route.check(route, ['local-user'])\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS"),
        ("code", TEST, "checks.next_retry.check(next_retry, ['follows-schedule'])"),
        ("code", TEST, "checks.received_header.check(received_header, ['field'])"),
        ("code", TEST, "checks.make_bounce.check(make_bounce, ['report'])"),
        ("markdown", ANSWER, "YOUR ANSWER HERE"),
    ])
    notebook(tmp_path / "7-unix-mail", [("code", TEST, "checks.sendmail.check(sendmail, ['delivers'])")])
    parts = earlier_parts(tmp_path, here=tmp_path / "7-unix-mail")
    assert not started.exists()
    assert set(parts.found) == {"route"} and parts.found["route"].lab == "4-relaying"
    assert checks.route.run(parts.get("route"), only=["local-user"]).passed
    assert "not written yet" in parts.missing["next_retry"]
    assert "failed here (ValueError: half written)" in parts.missing["received_header"]
    assert "no answer cell defining make_bounce" in parts.missing["make_bounce"]
    assert "sendmail" not in parts.missing and parts.get("sendmail") is None  # this lab's own is left out
    report = parts.report(["resolve_mx", "route"])
    assert report.splitlines()[1:3] == ["  resolve_mx       labkit's own: no earlier lab next to this one has it",
                                        "  route            yours: route from 4-relaying"]


def test_the_courses_own_labs_give_working_parts():
    """The authored labs, read as the capstone reads a student's: each part found passes
    a rule of its checks (the model answers, run from another notebook's kernel)."""
    parts = earlier_parts(ROOT / "notebooks", here=ROOT / "notebooks" / "7-unix-mail")
    assert {"send_mail", "resolve_mx", "smtp_session", "route", "received_header", "next_retry",
            "make_bounce", "deliver", "pop3_session", "imap_session"} <= set(parts.found), parts.report()
    for seam, rules in {"route": ["no-open-relay"], "received_header": ["from"], "next_retry": ["two-messages"],
                        "make_bounce": ["per-recipient"], "resolve_mx": ["preference-order"], "deliver": ["parallel"],
                        "pop3_session": ["uidl"], "imap_session": ["uid"]}.items():
        assert getattr(checks, seam).run(parts.get(seam), rules).passed, seam
