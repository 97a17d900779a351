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


def run_in_pty(argv: list[str], env: dict[str, str] | None = None, timeout: float = 30,
               keys: bytes = b"") -> tuple[int, bytes]:
    """Run an interactive program on a pseudo-terminal (mutt wants one), typing
    ``keys`` first; returns (status, screen)."""
    import os
    import pty
    import subprocess
    import threading

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    if keys:
        os.write(master, keys)
    screen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the client has gone
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        status = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
        os.close(master)
    return status, bytes(screen)


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
