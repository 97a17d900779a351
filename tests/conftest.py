"""Shared fixtures: a running lab world per test, on ephemeral loopback ports."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from labkit.config import MTAConfig, WorldConfig, load_config
from labkit.world import World

FAST_MTA = MTAConfig(retry_schedule=(0.1, 0.2, 0.4), max_queue_time=20.0, tarpit_delay=0.05)


def lecture_config(**mta: object) -> WorldConfig:
    """The lecture's world with quick retries (and any MTA settings overridden)."""
    config = load_config()
    return dataclasses.replace(config, mta=dataclasses.replace(FAST_MTA, **mta))


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


def run_in_pty(argv: list[str], env: dict[str, str], timeout: float = 30) -> tuple[int, bytes]:
    """Run an interactive client on a pseudo-terminal (mutt wants one); (status, screen)."""
    import os
    import pty
    import subprocess
    import threading

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
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
