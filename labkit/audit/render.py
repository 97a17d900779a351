"""The report for people and for scripts: terminal text (coloured on a terminal,
plain when piped), JSON, and a standalone HTML page for a hand-in (it prints: long
hints and transcripts wrap, nothing hides behind a scroll bar)."""

from __future__ import annotations

import html
import json
import os
from typing import IO

from ..checks.result import MARKS, Result
from .rubric import AuditReport, earned

_COLOURS = {"PASS": "32", "FAIL": "1;31", "WARN": "33", "SKIP": "2", "----": "2"}
_HTML_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "skip": "#6e7781", "unchecked": "#6e7781"}


def wants_colour(out: IO[str], colour: bool | None = None) -> bool:
    """Colour on a terminal unless NO_COLOR is set; ``colour`` forces either way."""
    if colour is not None:
        return colour
    return hasattr(out, "isatty") and out.isatty() and not os.environ.get("NO_COLOR")


def text(report: AuditReport, *, colour: bool = False) -> str:
    """The report as :class:`Report` prints it, with coloured marks if asked."""
    lines = [report.summary()]
    for result in report:
        row = result.text()
        if colour:
            mark = row[1:5]
            row = f"\x1b[{_COLOURS[mark]}m[{mark}]\x1b[0m{row[6:]}"
        lines.append(row)
    if colour:
        lines[0] = f"\x1b[1m{lines[0]}\x1b[0m"
    return "\n".join(lines)


def to_json(report: AuditReport) -> str:
    return json.dumps(report.to_json(), indent=1)


_STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#1f2328}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}h3{font-size:1em;margin:1.2em 0 .3em}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d0d7de;padding:.25em .5em;
text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f6f8fa}
.settings th{width:11em;font-weight:600}.rfc{min-width:9em}.status{font-weight:700;white-space:nowrap}.num{text-align:right;
white-space:nowrap}.info{color:#57606a;font-size:.9em}dl{display:grid;grid-template-columns:6em 1fr;gap:.1em .8em;
margin:.3em 0}dt{font-weight:600}dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
pre{background:#f6f8fa;padding:.5em;font-size:13px;white-space:pre-wrap;overflow-wrap:anywhere}
@media print{body{margin:0;max-width:none}pre{page-break-inside:avoid}}"""


def html_page(report: AuditReport) -> str:
    """A standalone page: the heading, what the check was run with, the rubric with each
    rule's points, and the whole story of every row that did not pass."""
    e = html.escape
    when = report.checked_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    settings = [("checked at", when), *report.settings.items()]
    if report.roster:
        settings.append(("roster", report.roster))
    head = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in settings)
    rows, details = [], []
    rfcs = {rule.title: rule.rfc for rule in report.rules}
    for index, row in enumerate(report):
        colour, mark = _HTML_COLOURS[row.status], MARKS[row.status]
        points = f"{earned(row):g} / {row.points:g}" if row.points else "—"
        detailed = row.status not in ("pass", "unchecked")
        name = f"<a href='#row{index}'>{e(row.rule)}</a>" if detailed else e(row.rule)
        info = f"<div class='info'>{e(row.info)}</div>" if row.info else ""
        rows.append(f"<tr><td class='status' style='color:{colour}'>{mark}</td><td>{name}{info}</td>"
                    f"<td class='rfc'>{e(row.rfc or rfcs.get(row.rule, ''))}</td><td class='num'>{points}</td></tr>")
        if detailed:
            details.append(_detail(index, row, colour, mark))
    title = e(report.title)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>labkit check: {title}</title>"
            f"<style>{_STYLE}</style></head><body><h1>labkit check: {title}</h1>"
            f"<p><b>{e(report.summary())}</b></p><table class='settings'>{head}</table>"
            f"<h2>Rubric</h2><table><tr><th></th><th>rule</th><th>RFC</th><th class='num'>points</th></tr>"
            f"{''.join(rows)}</table>" + (f"<h2>Details</h2>{''.join(details)}" if details else "") +
            "</body></html>\n")


def _detail(index: int, row: Result, colour: str, mark: str) -> str:
    e = html.escape
    fields = "".join(f"<dt>{label}</dt><dd>{e(value)}</dd>" for label, value in
                     (("step", row.step), ("expected", row.expected), ("got", row.got), ("hint", row.hint),
                      ("RFC", row.rfc)) if value)
    transcript = "\n".join(f"{d}: {line}" for d, line in row.transcript)
    shown = f"<pre>{e(transcript)}</pre>" if transcript else ""
    return (f"<section id='row{index}'><h3><span style='color:{colour}'>{mark}</span> {e(row.rule)}</h3>"
            f"<dl>{fields}</dl>{shown}</section>")
