"""A ready muttrc for a world user: read over IMAP (or the Maildir), send with
labkit-sendmail, as the lecture's Unix users do."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from urllib.parse import quote


# mutt's own default is "/usr/sbin/sendmail -oem -oi": without -oi a line holding only
# "." in a message would end it there (sendmail(8) -i).
MUTT_OPTIONS = "-oem -oi"


def sendmail_command(state_dir: str, program: str | None = None) -> str:
    """The sendmail command line mutt should run to submit into this world: labkit's
    own, or ``program`` (a student's), told where the world is by $LABKIT_STATE_DIR,
    with mutt's usual options."""
    if program is not None:
        return f"env LABKIT_STATE_DIR={shlex.quote(state_dir)} {shlex.quote(program)} {MUTT_OPTIONS}"
    # The labkit-sendmail script by its absolute path: its #! line names the venv's Python, so
    # mutt finds labkit with a bare PATH. (Not "python -m labkit.sendmail": mutt runs it with
    # argv[0] "python", and Python then finds its home through PATH, not the venv.)
    script = Path(sys.executable).parent / "labkit-sendmail"
    found = str(script) if script.exists() else shutil.which("labkit-sendmail")
    base = shlex.quote(found) if found else f"{shlex.quote(sys.executable)} -m labkit.sendmail"
    return f"{base} --state-dir {shlex.quote(state_dir)} {MUTT_OPTIONS}"


def muttrc(info: dict, address: str, *, maildir: bool = False, sendmail: str | None = None) -> str:
    """The muttrc text for ``address`` in the world described by ``info`` (world.json);
    ``sendmail``: the submission program to use instead of labkit-sendmail."""
    box = info["mailboxes"].get(address.lower())
    if box is None:
        raise KeyError(f"no mailbox {address!r} in this world; mailboxes: {', '.join(info['mailboxes'])}")
    lines = [
        f"# mutt for {address} in the lab world at {info['state_dir']}",
        "# run: mutt -F THIS_FILE",
        f'set from="{address}"',
        "set use_from=yes",
        f'set sendmail="{sendmail_command(info["state_dir"], sendmail)}"',
        'set record=""',
        "set charset=utf-8",
        "set send_charset=utf-8",
    ]
    if maildir:
        lines += [
            "# read the Maildir directly, as a user logged in on the mail server would",
            "set mbox_type=Maildir",
            f'set folder="{box["maildir"]}"',
            'set spoolfile="+/"',
        ]
    else:
        imap = info["hosts"][box["host"]]["services"]["imap"]
        lines += [
            "# read over IMAP (the lab has no TLS: never do this on a real network)",
            f'set folder="imap://{quote(address, safe="")}@{imap["host"]}:{imap["port"]}/"',
            'set spoolfile="+INBOX"',
            f'set imap_user="{address}"',
            f'set imap_pass="{box["password"]}"',
            "set ssl_starttls=no",
            "set ssl_force_tls=no",
            "set imap_check_subscribed=no",
        ]
    return "\n".join(lines) + "\n"
