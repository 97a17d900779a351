"""A real Dovecot on loopback, from a throw-away configuration: the mail benchmark's
baseline and the IMAP/POP3 server of ``labkit check``'s tests (tests/real_servers.py).

Dovecot runs in the foreground, in its own session, with IMAP and POP3 on loopback
ports and no TLS; users log in with plain passwords from a passwd file and their
Maildirs are ``<mail>/<user>``. The configuration is written for the installed
version: 2.3's settings, or 2.4's renamed ones. Also here, because the tests' Postfix
needs them too: free ports, a bounded wait for a greeting, and stopping a process group.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from labkit.net import Endpoint

# Dovecot's settings as of 2.3 and as renamed in 2.4 (see "Upgrading Dovecot CE from 2.3
# to 2.4"); the {PLAIN} prefix in the passwd file names the scheme in both.
DOVECOT_COMMON = """\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
auth_mechanisms = plain login
first_valid_uid = 1
default_internal_user = {internal}
default_login_user = {login}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""

DOVECOT_23 = DOVECOT_COMMON + """\
disable_plaintext_auth = no
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
"""

DOVECOT_24 = "dovecot_config_version = {version}\ndovecot_storage_version = {version}\n" + DOVECOT_COMMON + """\
auth_allow_cleartext = yes
mail_driver = maildir
mail_path = {mail}/%{{user}}
passdb passwd-file {{
  passwd_file_path = {root}/passwd
}}
userdb static {{
  fields {{
    uid = {uid}
    gid = {gid}
    home = {root}/home/%{{user}}
  }}
}}
"""


def find_command(name: str, *places: str) -> str | None:
    """``name`` on PATH, else the first of ``places`` that is executable."""
    return shutil.which(name) or next((p for p in places if os.access(p, os.X_OK)), None)


def find_dovecot() -> str | None:
    return find_command("dovecot", "/usr/sbin/dovecot")


def dovecot_version(binary: str) -> str:
    """``2.3.19.1`` from ``dovecot --version`` (which prints ``2.3.19.1 (9b53102964)``)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    return out.split()[0]


def free_ports(count: int) -> list[int]:
    """Distinct ports nobody listens on right now (held open together, so they differ)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def system_user(*names: str) -> pwd.struct_passwd:
    """The first of ``names`` that exists on this system (Dovecot refuses unknown users)."""
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"none of the users {', '.join(names)} exists, Dovecot needs one")


def mail_owner() -> pwd.struct_passwd:
    """Who Dovecot's mail processes run as: ourselves, or ``nobody`` when we are root
    (Dovecot refuses to access mail as uid 0)."""
    return system_user("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())


def chown_tree(root: Path, owner: pwd.struct_passwd) -> None:
    if os.getuid() != 0:
        return
    for path in [root, *root.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except FileNotFoundError:
        return "(no log)"


def wait_until_listening(proc: subprocess.Popen, endpoints: list[Endpoint], what: str, log: Path,
                         timeout: float = 15.0) -> None:
    """Bounded wait until every endpoint greets (or ``proc`` died); fail with the log.
    A whole greeting is read, so no half-served connection is left behind."""
    deadline = time.monotonic() + timeout
    pending = list(endpoints)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {', '.join(map(str, pending))} within {timeout:g} s:\n"
                               f"{log_tail(log)}")
        try:
            with socket.create_connection((pending[0].host, pending[0].port), timeout=2) as sock:
                if sock.recv(512):
                    pending.pop(0)
                    continue
        except OSError:
            pass
        try:  # a short bounded pause that also notices an exit
            proc.wait(0.05)
        except subprocess.TimeoutExpired:
            pass


def stop(proc: subprocess.Popen | None, group: int | None = None) -> None:
    """SIGTERM a process group we started (the Popen child's own session, or
    ``group``), then wait for the child; SIGKILL the group if that is not enough."""
    if proc is None or proc.poll() is not None:
        return
    for sig, patience in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(group or proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=patience)
            return
        except subprocess.TimeoutExpired:
            continue


class Dovecot:
    """Dovecot from a configuration in ``root``, for ``users`` (address -> password).

    ``mail`` holds the Maildirs (default ``root/mail``); fill them before logging in.
    ``extra`` is appended to the configuration. Start and stop it with ``with``, or
    :meth:`start` and :meth:`stop` (again and again: the ports stay the same)."""

    def __init__(self, binary: str, root: Path, users: dict[str, str], *, mail: Path | None = None,
                 ports: tuple[int, int] | None = None, extra: str = "", timeout: float = 15.0) -> None:
        self.binary, self.root, self.timeout = binary, root, timeout
        self.version = dovecot_version(binary)
        imap, pop3 = ports or free_ports(2)
        self.imap, self.pop3 = Endpoint("127.0.0.1", imap), Endpoint("127.0.0.1", pop3)
        self.log = root / "dovecot.log"  # its log_path; its own start-up complaints go there too
        self.proc: subprocess.Popen | None = None
        mail = mail or root / "mail"
        owner = mail_owner()
        template = DOVECOT_23 if tuple(map(int, self.version.split(".")[:2])) < (2, 4) else DOVECOT_24
        config = template.format(root=root, mail=mail, version=".".join(self.version.split(".")[:3]),
                                 uid=owner.pw_uid, gid=owner.pw_gid,
                                 internal=system_user("dovecot", "nobody").pw_name,
                                 login=system_user("dovenull", "nobody").pw_name, imap=imap, pop3=pop3)
        for sub in ("run", "state", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        mail.mkdir(parents=True, exist_ok=True)
        for tree in (root / "home", mail):
            chown_tree(tree, owner)
        root.chmod(0o755)  # the login processes run as dovenull
        (root / "passwd").write_text("".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in users.items()))
        (root / "dovecot.conf").write_text(config + extra)

    def start(self) -> None:
        with open(self.log, "ab") as errors:
            self.proc = subprocess.Popen([self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                         start_new_session=True)
        try:
            wait_until_listening(self.proc, [self.imap, self.pop3], "Dovecot", self.log, self.timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
