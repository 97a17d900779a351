"""A real Postfix and Dovecot for tests: loopback high ports, a temporary configuration.

Postfix's master must start as root (it drops to the ``postfix`` user), so these skip
elsewhere, and where the packages are missing (apt: postfix, dovecot-imapd,
dovecot-pop3d; `.ci/run` installs them). Everything lives in one directory under
/tmp that the unprivileged daemons can enter; :meth:`Servers.close` stops both and
removes it.

Postfix serves the virtual domain ``student.test``: ``sam@student.test`` (Maildir,
written by Postfix's virtual(8) agent as ``nobody``), ``postmaster`` an alias of sam.
Its master.cf runs several smtpd listeners, one good and each other deliberately
misconfigured with ``-o`` overrides, so every misconfiguration is one port away and
no reload is needed. Dovecot (benchmarks.dovecot's, the mail benchmark's baseline, with
this module's additions) reads the same Maildirs over IMAP and POP3 and answers
Postfix's SASL questions for the submission port.

With ``tls`` (a certificate and its key), both are set up as real setups often are:
Postfix offers STARTTLS on port 25, AUTH only after it (``smtpd_tls_auth_only``),
submission on 587 only over STARTTLS and on an implicit-TLS port (465's role, RFC 8314
§3.3); Dovecot has ``ssl = required`` (no login without TLS), STARTTLS on its IMAP and
POP3 ports and implicit-TLS IMAP and POP3 ports (993's and 995's roles).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.dovecot import (Dovecot, dovecot_version, find_command, find_dovecot, free_ports, stop,
                                wait_until_listening)
from labkit.net import Endpoint

DOMAIN = "student.test"
USER, PASSWORD = f"sam@{DOMAIN}", "sam-password"
SMTPD_VARIANTS = {
    "good": "",
    "open relay": "-o mynetworks=127.0.0.0/8",  # the checker's address is "ours"
    "catch-all": "-o virtual_alias_maps=texthash:{conf}/valias-catchall",
    "no postmaster": "-o virtual_alias_maps=",
    # says 250 for sam's mail, then drops it: the test message never arrives
    "discards": "-o smtpd_recipient_restrictions=check_recipient_access,texthash:{conf}/discard",
}
START_TIMEOUT = 20.0
# Beside benchmarks.dovecot's configuration: the SASL socket for Postfix, no delays.
DOVECOT_EXTRA = """auth_failure_delay = 0
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
# No growing delay after failed logins from one address (the checker fails on purpose):
# the auth process finds no penalty socket and goes on without it.
service anvil {
  unix_listener anvil-auth-penalty {
    path = anvil-auth-penalty-off
  }
}
"""


# Dovecot's TLS settings, as of 2.3 and as renamed in 2.4; `ssl = required`: no
# authentication at all without TLS.
DOVECOT_TLS_23 = """ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
"""
DOVECOT_TLS_24 = """ssl = required
ssl_server_cert_file = {cert}
ssl_server_key_file = {key}
auth_allow_cleartext = no
"""
# Dovecot counts a client on the server's own address as secure and lets it log in in
# clear even so: with TLS it listens on another loopback address, where a client's
# address (127.0.0.1) differs from the server's.
DOVECOT_TLS_ADDRESS = "127.0.0.2"
DOVECOT_TLS_PORTS = """listen = {address}
service imap-login {{
  inet_listener imaps {{
    port = {imaps}
  }}
}}
service pop3-login {{
  inet_listener pop3s {{
    port = {pop3s}
  }}
}}
"""


@dataclass(frozen=True)
class TLSFiles:
    """A server certificate (PEM, leaf first) and its private key."""

    cert: Path
    key: Path


def require_servers() -> tuple[str, str]:
    """The postfix and dovecot commands, or skip saying what is missing."""
    postfix = find_command("postfix", "/usr/sbin/postfix")
    dovecot = find_dovecot()
    if postfix is None:
        pytest.skip("postfix is not installed (apt: postfix; .ci/run installs it)")
    if dovecot is None or not all(os.access(f"/usr/lib/dovecot/{p}", os.X_OK) for p in ("imap", "pop3")):
        pytest.skip("dovecot IMAP/POP3 is not installed (apt: dovecot-imapd dovecot-pop3d; .ci/run installs them)")
    if os.geteuid() != 0:
        pytest.skip("Postfix's master starts only as root (CI runs as root)")
    return postfix, dovecot


class Servers:
    def __init__(self, tls: TLSFiles | None = None) -> None:
        self.postfix_cmd, self.dovecot_cmd = require_servers()
        self.tls = tls
        self.mail_address = DOVECOT_TLS_ADDRESS if tls else "127.0.0.1"  # where Dovecot listens
        ports = free_ports(len(SMTPD_VARIANTS) + 7)
        self.smtp = dict(zip(SMTPD_VARIANTS, ports))
        # nowhere: the relayhost, where nothing listens, so mail for elsewhere stays queued;
        # the implicit-TLS ports (465's, 993's and 995's roles) listen only with tls
        (self.submission, self.imap, self.pop3, self.nowhere,
         self.submissions, self.imaps, self.pop3s) = ports[len(SMTPD_VARIANTS):]
        self.root = Path(tempfile.mkdtemp(prefix="labkit-postfix-", dir="/tmp"))
        self.root.chmod(0o755)  # the daemons run as postfix, dovecot and nobody
        self.postfix: subprocess.Popen | None = None
        self.dovecot: Dovecot | None = None
        try:
            self._configure()
            self.start_postfix()
            self.start_dovecot()
        except BaseException:
            self.close()
            raise

    # -- configuration ------------------------------------------------------------------
    def _configure(self) -> None:
        root, conf = self.root, self.root / "postfix"
        nobody, postfix = pwd.getpwnam("nobody"), pwd.getpwnam("postfix")
        for sub in ("postfix", "queue", "data", "mail"):
            (root / sub).mkdir(parents=True)
        os.chown(root / "data", postfix.pw_uid, postfix.pw_gid)
        os.chown(root / "mail", nobody.pw_uid, nobody.pw_gid)
        auth_socket = root / "dovecot/run/auth-postfix"
        (conf / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = /dev/stdout
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 192.0.2.1/32
alias_maps =
alias_database =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_alias_maps = texthash:{conf}/valias
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
default_transport = smtp
relay_transport = smtp
relayhost = [127.0.0.1]:{self.nowhere}
smtpd_sasl_type = dovecot
smtpd_sasl_path = {auth_socket}
""" + (f"""smtpd_tls_cert_file = {self.tls.cert}
smtpd_tls_key_file = {self.tls.key}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
""" if self.tls else ""))
        (conf / "vmailbox").write_text(f"{USER} {USER}/\n")
        (conf / "valias").write_text(f"postmaster@{DOMAIN} {USER}\n")
        (conf / "valias-catchall").write_text(f"postmaster@{DOMAIN} {USER}\n@{DOMAIN} {USER}\n")
        (conf / "discard").write_text(f"{USER} DISCARD\n")
        listeners = [f"127.0.0.1:{self.smtp[name]} inet n - n - - smtpd {extra.format(conf=conf)}"
                     for name, extra in SMTPD_VARIANTS.items()]
        submission = "-o smtpd_sasl_auth_enable=yes -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
        if self.tls:  # RFC 8314 §3.3: implicit TLS; 587 only after STARTTLS
            listeners.append(f"127.0.0.1:{self.submissions} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes "
                             f"{submission}")
            submission = f"-o smtpd_tls_security_level=encrypt {submission}"
        listeners.append(f"127.0.0.1:{self.submission} inet n - n - - smtpd {submission}")
        services = """postlog unix-dgram n - n - 1 postlogd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
smtp unix - - n - - smtp
retry unix - - n - - error
discard unix - - n - - discard
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
tlsmgr unix - - n 1000? 1 tlsmgr
"""
        (conf / "master.cf").write_text("\n".join(listeners) + "\n" + services)
        # Dovecot reads the Maildirs Postfix writes (<mail>/<user>/, see vmailbox) and answers
        # Postfix's SASL questions on auth_socket.
        extra = DOVECOT_EXTRA
        if self.tls:
            modern = tuple(map(int, dovecot_version(self.dovecot_cmd).split(".")[:2])) >= (2, 4)
            extra += (DOVECOT_TLS_24 if modern else DOVECOT_TLS_23).format(cert=self.tls.cert, key=self.tls.key)
            extra += DOVECOT_TLS_PORTS.format(address=self.mail_address, imaps=self.imaps, pop3s=self.pop3s)
        self.dovecot = Dovecot(self.dovecot_cmd, root / "dovecot", {USER: PASSWORD}, mail=root / "mail",
                               ports=(self.imap, self.pop3), extra=extra, timeout=START_TIMEOUT)
        self.dovecot.imap, self.dovecot.pop3 = Endpoint(self.mail_address, self.imap), Endpoint(self.mail_address,
                                                                                                 self.pop3)

    # -- life cycle ---------------------------------------------------------------------
    def start_postfix(self) -> None:
        log = self.root / "postfix.log"
        self.postfix = subprocess.Popen([self.postfix_cmd, "-c", str(self.root / "postfix"), "start-fg"],
                                        stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        wait_until_listening(self.postfix, [Endpoint("127.0.0.1", self.smtp["good"])], "Postfix", log, START_TIMEOUT)

    def start_dovecot(self) -> None:
        assert self.dovecot is not None
        self.dovecot.start()

    def stop_dovecot(self) -> None:
        if self.dovecot is not None:
            self.dovecot.stop()

    def close(self) -> None:
        # Postfix's master makes its own session: signal it by its pid file; it stops its children.
        master = self.root / "queue/pid/master.pid"
        if self.postfix is not None and master.exists():
            stop(self.postfix, int(master.read_text().split()[0]))
        stop(self.postfix)  # and postfix-script, which waits for it
        self.postfix = None
        self.stop_dovecot()
        shutil.rmtree(self.root, ignore_errors=True)
