"""Shared fixtures: a running lab world per test, on ephemeral loopback ports."""

from __future__ import annotations

import dataclasses
import queue
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from labkit.aio import BackgroundLoop
from labkit.config import AuthConfig, MTAConfig, WorldConfig, load_config
from labkit.mutt import on_terminal as run_in_pty  # noqa: F401 - the tests' name for it
from labkit.serve import serve_session
from labkit.world import World

FAST_MTA = MTAConfig(retry_schedule=(0.1, 0.2, 0.4), max_queue_time=20.0, tarpit_delay=0.05)
NO_LOGIN_DELAY = AuthConfig(failure_delay=0.0)


def lecture_config(auth: AuthConfig = NO_LOGIN_DELAY, **mta: object) -> WorldConfig:
    """The lecture's world with quick retries and failed logins answered at once (and
    any MTA settings overridden)."""
    config = load_config()
    return dataclasses.replace(config, mta=dataclasses.replace(FAST_MTA, **mta), auth=auth)


@pytest.fixture
def world(tmp_path: Path):
    with World(lecture_config(), state_dir=tmp_path / "state") as w:
        yield w


def need(tool: str) -> str:
    """The path of a command-line client, or skip the test saying it is missing."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    return path


@contextmanager
def observed_server(session_class: type, accounts, *, protocol: str, hostname: str) -> Iterator[tuple[int, queue.Queue]]:
    """Serve ``session_class`` on a free loopback port; yields (port, ended), where
    ``ended`` receives each session once its connection is over (tests wait on it)."""
    ended: queue.Queue = queue.Queue()

    class Observed(session_class):  # the real session; the test learns when it ends
        def connection_lost(self) -> None:
            super().connection_lost()
            ended.put(self)

    async def close(server) -> None:
        server.close()
        await server.wait_closed()

    with BackgroundLoop() as loop:
        server = loop.run(serve_session(lambda peer: Observed(peer, accounts, hostname=hostname),
                                        protocol=protocol, server_name=hostname))
        yield server.sockets[0].getsockname()[1], ended
        loop.run(close(server))


@pytest.fixture(scope="session")
def visible_rules(tmp_path_factory):
    """``visible_rules(lab)``: the check rules the student's release of ``lab`` (as nbgrader
    generates it, hidden tests gone) runs where the student sees them, by seam."""
    pytest.importorskip("nbgrader")
    from labkit.grade import verdict
    from submissions import Course, meta, text

    course = Course(tmp_path_factory.mktemp("course"))

    def rules(lab: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for cell in course.release(lab)["cells"]:
            if cell["cell_type"] == "code" and meta(cell).get("grade") and not meta(cell).get("solution"):
                for call in verdict.parse(text(cell)):
                    found.setdefault(call.module, set()).update(call.rules or [])
        return found

    return rules


@contextmanager
def chromium_page(viewport: dict[str, int]) -> Iterator:
    """A page of Debian's chromium driven by Playwright (skips where chromium is not
    installed: apt chromium, which .ci/run installs); never a browser download."""
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("chromium is not installed (apt: chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        try:
            yield browser.new_page(viewport=viewport)
        finally:
            browser.close()
