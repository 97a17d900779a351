"""`labkit check --batch students.csv`: every student's setup, in parallel, into a CSV
of the grader's shape (``student,assignment,score,max_score,status,reason``).

Every row has the same ``max_score`` (one rubric for the class). The reason says what
failed and what came back, the setup's failures apart from the roster's (a password the
servers all refuse: status ``check roster``); rules that could not run because of
another are not listed again."""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import IO

from .rubric import BECAUSE_TIME, AuditReport, rubric
from .run import check
from .target import Target

COLUMNS = ("student", "assignment", "score", "max_score", "status", "reason")
ASSIGNMENT = "mail-setup"
REASON_RULES = 4  # failed rules named in the reason column; the rest are counted
REASON_GOT = 90  # characters of what came back, per failed rule


def read_students(stream: IO[str]) -> list[dict[str, str]]:
    """Rows of a students CSV (student, domain, dns, user, password, …), keys lower-cased."""
    return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(stream)]


def grade(row: dict[str, str], make_target: Callable[[dict[str, str]], Target]) -> dict[str, str]:
    """One student's grade row; never raises."""
    out = {"student": row.get("student", ""), "assignment": ASSIGNMENT, "score": "0", "max_score": "0"}
    try:
        target = make_target({**row, "domain": row.get("domain") or "missing.invalid"})
        out["max_score"] = f"{sum(r.points for r in rubric(target.services)):g}"
        if not row.get("domain"):
            return {**out, "status": "missing", "reason": "no domain given"}
        report = check(target)
    except Exception as error:  # a bug or a bad row must not stop the batch
        return {**out, "status": "crashed", "reason": f"{type(error).__name__}: {error}"}
    return {**out, **grade_of(report)}


def grade_of(report: AuditReport) -> dict[str, str]:
    """The score, status and reason columns of one report."""
    status = "timed out" if report.timed_out else "check roster" if report.roster else "graded"
    return {"score": f"{report.score:g}", "max_score": f"{report.max_score:g}", "status": status,
            "reason": reason(report)}


def reason(report: AuditReport) -> str:
    """``roster: …; setup: RULE — what came back; …; time limit: …`` (only the parts there are)."""
    parts = [f"roster: {report.roster}"] if report.roster else []
    failed = [f"{r.rule} — {_short(r.got or r.expected)}" for r in report.failures]
    if failed:
        more = f" (+{len(failed) - REASON_RULES} more)" if len(failed) > REASON_RULES else ""
        parts.append("setup: " + "; ".join(failed[:REASON_RULES]) + more)
    if report.timed_out:
        cut = sum(1 for r in report.unchecked if getattr(r, "cause", "") == BECAUSE_TIME)
        parts.append(f"time limit reached: {cut} rule{'s' * (cut != 1)} not checked")
    return "; ".join(parts)


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_GOT else line[:REASON_GOT - 1] + "…"


class Progress:
    """A bar on a terminal, one plain line per student otherwise."""

    def __init__(self, total: int, out: IO[str] | None = None, width: int = 30) -> None:
        self.total, self.out, self.width = total, out or sys.stderr, width
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.done = 0

    def step(self, label: str) -> None:
        self.done += 1
        if self.tty:
            filled = self.width * self.done // max(1, self.total)
            self.out.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {label[:40]:40}")
        else:
            self.out.write(f"checked {self.done}/{self.total}: {label}\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def run_batch(rows: list[dict[str, str]], make_target: Callable[[dict[str, str]], Target], out: IO[str], *,
              jobs: int = 4, progress: Progress | None = None) -> list[dict[str, str]]:
    """Grade ``rows`` with at most ``jobs`` checks at once; write the CSV in input order."""
    progress = progress or Progress(len(rows))
    results: list[dict[str, str] | None] = [None] * len(rows)
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="labkit-check") as pool:
        futures = {pool.submit(grade, row, make_target): i for i, row in enumerate(rows)}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            progress.step(f"{results[index]['student']} {results[index]['status']}")
    progress.close()
    graded = [r for r in results if r is not None]
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(graded)
    return graded


def deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds
