"""Where a running world says what runs where: ``STATE_DIR/world.json``.

Kept apart from :mod:`labkit.world` so small programs (labkit-sendmail, muttrc) can find
a world without importing the servers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "world.json"


def default_state_dir() -> Path:
    """Where `labkit world` keeps its state unless told: $LABKIT_STATE_DIR or ~/.labkit/world."""
    return Path(os.environ.get("LABKIT_STATE_DIR") or Path.home() / ".labkit" / "world")


def load_world_info(state_dir: Path | str | None = None) -> dict[str, Any]:
    """Read a running world's ``world.json``; FileNotFoundError names the directory."""
    state_dir = Path(state_dir) if state_dir else default_state_dir()
    path = state_dir / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"no lab world running in {state_dir}: start one with `labkit world`")
    return json.loads(path.read_text(encoding="utf-8"))
