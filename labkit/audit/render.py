"""The report for people and for scripts: terminal text (coloured on a terminal,
plain when piped), JSON, and a standalone HTML page for a student's hand-in."""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from typing import IO

from ..checks.result import Report

_COLOURS = {"PASS": "32", "FAIL": "1;31", "WARN": "33", "SKIP": "2"}


def wants_colour(out: IO[str], colour: bool | None = None) -> bool:
    """Colour on a terminal unless NO_COLOR is set; ``colour`` forces either way."""
    if colour is not None:
        return colour
    return hasattr(out, "isatty") and out.isatty() and not os.environ.get("NO_COLOR")


def text(report: Report, *, colour: bool = False) -> str:
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


def to_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=1)


_STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em}
pre{background:#f6f8fa;padding:.5em;overflow-x:auto;font-size:13px}h1{font-size:1.4em}"""


def html_page(report: Report) -> str:
    """A standalone page: the report's own HTML, with a heading and the time of the run."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = html.escape(report.title)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>labkit check: {title}</title>"
            f"<style>{_STYLE}</style></head><body><h1>labkit check: {title}</h1><p>Checked {when}.</p>"
            f"{report._repr_html_()}</body></html>\n")
