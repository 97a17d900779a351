"""mutt, driven from Python, as the notebooks show it and the tests use it.

mutt reads mail on a screen, so :func:`on_terminal` runs it on a pseudo-terminal, typing
keys for it; :func:`pager_text` is what its pager shows of a folder's newest message
(the few header fields a reader sees, then each MIME part as mutt presents it, decoded),
caught with mutt's own ``display_filter``. Sending needs no screen: ``mutt -s SUBJECT
RCPT < body`` hands the message to the ``sendmail`` a muttrc names. ::

    text = pager_text(world.muttrc("albert@awesome.com", maildir=True))
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

# mutt marks where each attachment's description starts: ESC ] 9 ; ... BEL
_MARKER = re.compile(r"\x1b\][^\x07]*\x07")
SHOWN_FIELDS = ("from", "to", "cc", "subject", "date")


def installed() -> str | None:
    """mutt's path, or None where it is not installed (apt install mutt)."""
    return shutil.which("mutt")


def on_terminal(argv: list[str], env: dict[str, str] | None = None, timeout: float = 30,
                keys: bytes = b"") -> tuple[int, bytes]:
    """Run an interactive program on a pseudo-terminal (mutt wants one), typing
    ``keys`` first; returns (status, screen). Killed after ``timeout`` seconds."""
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
            except OSError:  # EIO: the program has gone
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


def pager_text(muttrc: str, *, timeout: float = 30) -> str:
    """What mutt's pager shows of the newest message in the folder ``muttrc`` opens."""
    mutt = installed()
    if mutt is None:
        raise FileNotFoundError("mutt is not installed here (apt install mutt)")
    with tempfile.TemporaryDirectory(prefix="labkit-mutt-") as scratch:
        shown, rc = Path(scratch) / "shown", Path(scratch) / "muttrc"
        rc.write_text(muttrc + "\n".join([
            f'set display_filter="cat > {shown}"', "set wait_key=no", "set move=no", "set sort=date",
            "ignore *", f"unignore {' '.join(SHOWN_FIELDS)}", ""]))
        try:
            status, screen = on_terminal([mutt, "-n", "-F", str(rc), "-e",
                                          "push <last-entry><display-message><exit><quit>"],
                                         {**os.environ, "TERM": "vt100"}, timeout)
        except subprocess.TimeoutExpired:  # an empty folder: mutt stops at the error, waiting for keys
            status, screen = None, b"(no message to show)"
        if not shown.exists():
            raise RuntimeError(f"mutt showed nothing (status {status}): {_MARKER.sub('', screen.decode(errors='replace'))[-300:]}")
        return _MARKER.sub("", shown.read_text(errors="replace"))
