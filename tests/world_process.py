"""`labkit world --json` in a child process, as a TA's script or a crash test sees it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from labkit.config import LECTURE_WORLD


class WorldProcess:
    """`labkit world --json` in a child process, read the way a TA's script would.

    Use it with ``with``: a world still running at the end of the block (a failed
    assert, or a test that does not stop it) is killed."""

    def __init__(self, state_dir: Path, config: Path | None = None) -> None:
        args = [sys.executable, "-m", "labkit.cli", "world", "--json", "--state-dir", str(state_dir)]
        if config:
            args += ["--config", str(config)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # blocks until the world is ready (or died)
        if not line:
            _, errors = self.proc.communicate(timeout=20)
            raise AssertionError(f"world died: {errors}")
        self.info = json.loads(line)

    def __enter__(self) -> WorldProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()

    def endpoint(self, host: str, service: str) -> tuple[str, int]:
        e = self.info["hosts"][host]["services"][service]
        return e["host"], e["port"]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=20)
        return self.proc.returncode, out

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        self.proc.kill()
        self.proc.communicate(timeout=20)

    def rss(self) -> int:
        """The world's resident memory now, in bytes (Linux: VmRSS in /proc/PID/status)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")


def topology(tmp_path: Path, **replace: str) -> Path:
    """A copy of the lecture topology with text replaced and the zones path absolute."""
    text = LECTURE_WORLD.read_text().replace('zones = "zones"', f'zones = "{LECTURE_WORLD.parent / "zones"}"')
    text = text.replace("max_queue_time = 20.0", "max_queue_time = 60.0")
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / f"world-{len(list(tmp_path.glob('world-*.toml')))}.toml"
    path.write_text(text)
    return path
