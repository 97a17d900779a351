"""Student programs (a sendmail) written from a script template with one mistake on."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable


def program_maker(script: str, flags: tuple[str, ...], prefix: str) -> Callable[..., str]:
    """``make(**mistakes)``: the path of ``script`` (``{python}``: this Python, ``{flags}``:
    one ``FLAG = True/False`` line per name of ``flags``) written executable, with the
    ``mistakes`` named on; the files go when the tests end."""
    folder: list[Path] = []

    def make(**mistakes: bool) -> str:
        unknown = set(mistakes) - set(flags)
        assert not unknown, f"no such mistake: {unknown}"
        if not folder:
            folder.append(Path(tempfile.mkdtemp(prefix=prefix)))
            atexit.register(shutil.rmtree, folder[0], True)
        lines = "\n".join(f"{flag.upper()} = {bool(mistakes.get(flag))}" for flag in flags)
        path = folder[0] / ("sendmail-" + ("-".join(sorted(mistakes)) or "good"))
        path.write_text(script.replace("{python}", sys.executable).replace("{flags}", lines))
        path.chmod(0o755)
        return str(path)

    return make
