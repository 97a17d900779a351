"""A real Postfix on loopback, from a throw-away configuration: the MTA benchmark's peer.

One instance is smtpd on a free loopback port, cleanup and qmgr, and either the virtual(8)
agent writing each user's Maildir (``<root>/mail/<user>/``, as ``nobody``) or, with
``relayhost``, the smtp(8) client passing everything on (two instances chained are the
two hops of the lecture's story). Postfix keeps its promise as labkit does: the queue
file is fsynced before the 250 and the Maildir file before it counts as delivered.

Postfix's master starts only as root (it drops to the ``postfix`` user): :func:`available`
says whether this machine can run one (apt: postfix; the benchmarks run as root in CI).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.dovecot import find_command, free_ports, stop, wait_until_listening
from labkit.net import Endpoint

# master.cf: the daemons one instance needs, "type private unpriv chroot wakeup maxproc command"
DAEMONS = {
    "postlog": "unix-dgram n - n - 1 postlogd", "cleanup": "unix n - n - 0 cleanup", "qmgr": "unix n - n 300 1 qmgr",
    "rewrite": "unix - - n - - trivial-rewrite", "bounce": "unix - - n - 0 bounce", "defer": "unix - - n - 0 bounce",
    "trace": "unix - - n - 0 bounce", "verify": "unix - - n - 1 verify", "proxymap": "unix - - n - - proxymap",
    "error": "unix - - n - - error", "retry": "unix - - n - - error", "discard": "unix - - n - - discard",
    "smtp": "unix - - n - - smtp", "virtual": "unix - n n - - virtual", "anvil": "unix - - n - 1 anvil",
    "scache": "unix - - n - 1 scache",
}
SERVICES = "".join(f"{name} {line}\n" for name, line in DAEMONS.items())


def find_postfix() -> str | None:
    return find_command("postfix", "/usr/sbin/postfix")


def available() -> str | None:
    """Why no Postfix can run here, or None when one can."""
    if find_postfix() is None:
        return "Postfix is not installed (apt: postfix)"
    if os.geteuid() != 0:
        return "Postfix's master starts only as root"
    return None


class Postfix:
    """One Postfix instance. ``domain`` and ``users`` (local parts) get Maildirs under
    ``mail``; with ``relayhost`` (an Endpoint) every message goes there instead, and
    ``mynetworks`` (loopback) may relay through it. Use with ``with``."""

    def __init__(self, domain: str, users: list[str], *, relayhost: Endpoint | None = None,
                 root: Path | None = None) -> None:
        self.binary = find_postfix()
        assert self.binary, "Postfix is not installed"
        self.root = Path(tempfile.mkdtemp(prefix="labkit-bench-postfix-", dir=root))
        self.root.chmod(0o755)  # the daemons run as postfix and nobody
        self.domain = domain
        self.smtp = Endpoint("127.0.0.1", free_ports(1)[0])
        self.mail = self.root / "mail"
        self.proc: subprocess.Popen | None = None
        conf = self.root / "postfix"
        nobody, postfix = pwd.getpwnam("nobody"), pwd.getpwnam("postfix")
        for sub in ("postfix", "queue", "data", "mail"):
            (self.root / sub).mkdir()
        os.chown(self.root / "data", postfix.pw_uid, postfix.pw_gid)
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        transport = f"relayhost = [{relayhost.host}]:{relayhost.port}\n" if relayhost else ""
        (conf / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = /dev/stdout
myhostname = mx.{domain}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
alias_maps =
alias_database =
virtual_mailbox_domains = {'' if relayhost else domain}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
message_size_limit = 20480000
{transport}""")
        (conf / "vmailbox").write_text("".join(f"{u}@{domain} {u}/\n" for u in users))
        (conf / "master.cf").write_text(f"127.0.0.1:{self.smtp.port} inet n - n - - smtpd\n" + SERVICES)

    def maildir(self, user: str) -> Path:
        return self.mail / user

    def start(self) -> None:
        log = self.root / "postfix.log"
        assert self.binary
        self.proc = subprocess.Popen([self.binary, "-c", str(self.root / "postfix"), "start-fg"],
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_until_listening(self.proc, [self.smtp], "Postfix", log, 20.0)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # The master makes its own session: signal it by its pid file; it stops its children.
        master = self.root / "queue/pid/master.pid"
        if self.proc is not None and master.exists():
            stop(self.proc, int(master.read_text().split()[0]))
        stop(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Postfix":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
