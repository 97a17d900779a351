"""labkit-sendmail, run as a subprocess the way mutt, s-nail and scripts run
/usr/sbin/sendmail, against a fake world.json that points at an aiosmtpd submission
server with AUTH."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_smtp_client import USERS, RecordingHandler, aiosmtpd_server, authenticator, loop  # noqa: F401

from labkit.aio import BackgroundLoop
from labkit.sendmail import EX_CONFIG, EX_NOUSER, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE
from labkit.sendmail import main as sendmail_main

SENDMAIL = [sys.executable, "-m", "labkit.sendmail"]
MESSAGE = b"From: Albert <albert@awesome.com>\nTo: betty@brilliant.com\nSubject: hi\n\nHello Betty\n"


@dataclass
class World:
    state_dir: Path
    handler: RecordingHandler
    home: Path

    def write(self, port: int, **password: str) -> None:
        """world.json as a running world writes it (password overrides by local part)."""
        services = {"smtp": {"host": "127.0.0.1", "port": port}, "submission": {"host": "127.0.0.1", "port": port}}
        world = {
            "dns": {"host": "127.0.0.1", "port": 1},
            "hosts": {
                "smtp.awesome.com": {
                    "address": "1.2.3.4",
                    "addresses": ["1.2.3.4"],
                    "domains": ["awesome.com"],
                    "services": services,
                },
                "smtp.brilliant.com": {
                    "address": "1.2.3.5",
                    "addresses": ["1.2.3.5"],
                    "domains": ["brilliant.com"],
                    "services": services,
                },
            },
            "mailboxes": {
                address: {
                    "password": password.get(address.partition("@")[0], secret),
                    "maildir": str(self.home / address / "Maildir"),
                    "host": "smtp." + address.partition("@")[2],
                }
                for address, secret in USERS.items()
            },
            "state_dir": str(self.state_dir),
        }
        (self.state_dir / "world.json").write_text(json.dumps(world), encoding="utf-8")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
        return env | {"HOME": str(self.home)} | extra

    def run(self, command: list[str], message: bytes = MESSAGE, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a program (sendmail, a mail client) with HOME in the test's directory."""
        return subprocess.run(command, input=message, capture_output=True, timeout=30, env=env or self.env())

    def sendmail(self, *args: str, message: bytes = MESSAGE, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.run([*SENDMAIL, "--state-dir", str(self.state_dir), *args], message, env)

    def delivered(self) -> bytes:
        (envelope,) = self.handler.envelopes
        return envelope.original_content


@pytest.fixture
def world(tmp_path: Path, loop: BackgroundLoop) -> Iterator[World]:  # noqa: F811
    handler = RecordingHandler()
    with aiosmtpd_server(loop, handler, authenticator=authenticator) as port:
        state_dir = tmp_path / "state"
        state_dir.mkdir()
        lab = World(state_dir, handler, tmp_path)
        lab.write(port)
        yield lab


def ok(run: subprocess.CompletedProcess) -> None:
    assert (run.returncode, run.stderr) == (0, b"")


def test_recipients_as_arguments(world: World) -> None:
    ok(world.sendmail("betty@brilliant.com", "Carol <carol@careful.com>"))
    (envelope,) = world.handler.envelopes
    assert envelope.mail_from == "albert@awesome.com"  # from the From: header
    assert envelope.rcpt_tos == ["betty@brilliant.com", "carol@careful.com"]
    assert world.handler.logins == [b"albert@awesome.com"]  # AUTH with the mailbox's password
    headers, _, body = envelope.original_content.partition(b"\r\n\r\n")
    assert body == b"Hello Betty\r\n"
    assert headers.startswith(MESSAGE.partition(b"\n\n")[0].replace(b"\n", b"\r\n"))
    assert b"\r\nDate: " in headers and b"\r\nMessage-Id: <" in headers and headers.endswith(b"@awesome.com>")


def test_t_takes_recipients_from_headers_and_removes_bcc(world: World) -> None:
    message = (
        b"From: albert@awesome.com\nTo: Betty <betty@brilliant.com>\nCc: carol@careful.com\n"
        b"Bcc: dave@plain.com,\n  eve@plain.com\nSubject: secret\n\nbody\n"
    )
    ok(world.sendmail("-t", message=message))
    (envelope,) = world.handler.envelopes
    assert envelope.rcpt_tos == ["betty@brilliant.com", "carol@careful.com", "dave@plain.com", "eve@plain.com"]
    content = envelope.original_content
    assert b"Bcc" not in content and b"dave" not in content and b"eve@" not in content
    assert b"To: Betty <betty@brilliant.com>\r\nCc: carol@careful.com\r\nSubject: secret\r\n" in content


@pytest.mark.parametrize("flag", ["-i", "-oi"])
def test_i_keeps_lone_dot_lines(world: World, flag: str) -> None:
    ok(world.sendmail(flag, "betty@brilliant.com", message=MESSAGE + b".\nafter the dot\n"))
    assert world.delivered().endswith(b"Hello Betty\r\n.\r\nafter the dot\r\n")


def test_lone_dot_ends_input_without_i(world: World) -> None:
    ok(world.sendmail("betty@brilliant.com", message=MESSAGE + b".\nnever read\n"))
    assert world.delivered().endswith(b"Hello Betty\r\n")


@pytest.mark.parametrize(
    "args",
    [["-f", "betty@brilliant.com"], ["-fbetty@brilliant.com"], ["-r", "<betty@brilliant.com>"]],
    ids=["-f ADDR", "-fADDR", "-r"],
)
def test_envelope_sender_option(world: World, args: list[str]) -> None:
    ok(world.sendmail(*args, "carol@careful.com"))
    assert world.handler.envelopes[0].mail_from == "betty@brilliant.com"
    assert world.handler.logins == [b"betty@brilliant.com"]
    assert b"From: Albert <albert@awesome.com>\r\n" in world.delivered()  # the header is left alone


def test_full_name_and_sender_from_environment(world: World) -> None:
    env = world.env(LABKIT_USER="albert")  # a local part names the mailbox too
    ok(world.sendmail("-F", "Albert Einstein", "betty@brilliant.com", message=b"Subject: hi\n\nbody\n", env=env))
    assert world.handler.envelopes[0].mail_from == "albert@awesome.com"
    assert b"\r\nFrom: Albert Einstein <albert@awesome.com>\r\n" in world.delivered()


def test_state_dir_from_environment(world: World) -> None:
    ok(world.run([*SENDMAIL, "-i", "betty@brilliant.com"], env=world.env(LABKIT_STATE_DIR=str(world.state_dir))))
    assert len(world.handler.envelopes) == 1


def test_as_mutt_and_s_nail_invoke_it(world: World) -> None:
    ok(world.sendmail("-oem", "-oi", "--", "betty@brilliant.com", "carol@careful.com"))  # mutt
    ok(world.sendmail("-i", "--", "betty@brilliant.com"))  # s-nail
    harmless = ["-oee", "-odi", "-odb", "-B8BITMIME", "-N", "never", "-R", "hdrs", "-V", "id1", "-v", "-bm", "-em"]
    ok(world.sendmail(*harmless, "betty@brilliant.com"))
    assert [e.rcpt_tos for e in world.handler.envelopes] == [
        ["betty@brilliant.com", "carol@careful.com"],
        ["betty@brilliant.com"],
        ["betty@brilliant.com"],
    ]


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["nobody@brilliant.com"], EX_NOUSER, b"nobody@brilliant.com: refused: 550 5.1.1"),
        (["busy@brilliant.com"], EX_TEMPFAIL, b"busy@brilliant.com: refused: 451 4.3.0"),
        (["-X"], EX_USAGE, b"option -X not recognized"),
        (["-oQ/tmp", "betty@brilliant.com"], EX_USAGE, b"option -oQ/tmp is not supported"),
        (["-bs"], EX_USAGE, b"option -bs is not supported"),
        ([], EX_USAGE, b"no recipients"),  # as Postfix's sendmail: EX_USAGE
        (["-f", "mallory@evil.com", "betty@brilliant.com"], EX_NOUSER, b"mallory@evil.com (from -f) is not a mailbox"),
        # a control character in an address (or a name) is a usage error: nothing is sent
        (["bet\x01ty@brilliant.com"], EX_USAGE, b"recipient 'bet\\x01ty@brilliant.com' contains a control character"),
        (["betty@brilliant.com\r\nRCPT TO:<eve@example.org>"], EX_USAGE, b"contains a control character"),
        (["-f", "albert\x7f@awesome.com", "betty@brilliant.com"], EX_USAGE, b"-f 'albert\\x7f@awesome.com' contains"),
        (["-F", "Albert\nBcc: eve@example.org", "betty@brilliant.com"], EX_USAGE, b"-F 'Albert\\nBcc"),
    ],
)
def test_exit_codes(world: World, args: list[str], code: int, says: bytes) -> None:
    run = world.sendmail(*args)
    assert run.returncode == code, run.stderr
    assert says in run.stderr and run.stderr.count(b"\n") == 1
    assert world.handler.envelopes == []


def test_a_nul_in_an_address_is_a_usage_error(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """A NUL cannot come through exec's arguments, but main() may be called with one."""
    assert sendmail_main(["--state-dir", str(world.state_dir), "nul\0byte@example.org"]) == EX_USAGE
    assert "'nul\\x00byte@example.org' contains a control character" in capsys.readouterr().err
    assert world.handler.envelopes == []


def test_some_refused_is_still_reported(world: World) -> None:
    run = world.sendmail("betty@brilliant.com", "nobody@brilliant.com")
    assert run.returncode == EX_NOUSER
    assert b"nobody@brilliant.com: refused: 550" in run.stderr and b"sent to the other 1 recipient" in run.stderr
    assert world.handler.envelopes[0].rcpt_tos == ["betty@brilliant.com"]


def test_no_world_running(world: World, tmp_path: Path) -> None:
    run = world.run([*SENDMAIL, "betty@brilliant.com"])  # HOME=tmp_path: no ~/.labkit/world
    assert run.returncode == EX_TEMPFAIL
    expected = f"no lab world running in {tmp_path / '.labkit' / 'world'}: start one with `labkit world`"
    assert expected.encode() in run.stderr


def test_world_gone_and_broken_world_files(world: World) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    world.write(closed_port)
    run = world.sendmail("betty@brilliant.com")
    assert run.returncode == EX_TEMPFAIL and b"cannot connect to 127.0.0.1:%d" % closed_port in run.stderr
    assert b"message not sent" in run.stderr
    (world.state_dir / "world.json").write_text("{not json")
    run = world.sendmail("betty@brilliant.com")
    assert run.returncode == EX_CONFIG and b"cannot read" in run.stderr


def test_wrong_password_is_unavailable(world: World) -> None:
    port = json.loads((world.state_dir / "world.json").read_text())["hosts"]["smtp.awesome.com"]["services"]
    world.write(port["submission"]["port"], albert="not-the-password")
    run = world.sendmail("betty@brilliant.com")
    assert run.returncode == EX_UNAVAILABLE
    assert b"AUTH: authentication failed (server said: 535" in run.stderr and b"message not sent" in run.stderr


def send_with_client(world: World, command: list[str], body: bytes) -> bytes:
    """Send ``body`` to Betty with a mail client; return the message the server got."""
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} not installed")
    run = world.run([*command, "-s", "Lunch?", "betty@brilliant.com"], body)
    assert run.returncode == 0, run.stderr
    (envelope,) = world.handler.envelopes
    assert envelope.mail_from == "albert@awesome.com" and envelope.rcpt_tos == ["betty@brilliant.com"]
    assert b"\r\nSubject: Lunch?\r\n" in envelope.original_content
    return envelope.original_content


def test_mutt_batch_mode(world: World) -> None:
    muttrc = world.home / "muttrc"
    muttrc.write_text(
        f'set sendmail="{sys.executable} -m labkit.sendmail --state-dir {world.state_dir}"\n'
        'set from="albert@awesome.com"\nset realname="Albert"\nset use_from=yes\n'
        f'set copy=no\nset record=""\nset folder="{world.home}/Mail"\nset spoolfile=""\n'
    )
    content = send_with_client(world, ["mutt", "-n", "-F", str(muttrc)], b"Shall we?\n.dotted\nSee you\n")
    assert content.endswith(b"\r\n\r\nShall we?\r\n.dotted\r\nSee you\r\n")


def test_s_nail_batch_mode(world: World) -> None:
    mta = world.home / "sendmail"  # a wrapper, as installed: s-nail puts its own options first
    mta.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m labkit.sendmail "$@"\n')
    mta.chmod(0o755)
    settings = {"mta": str(mta), "mta-arguments": f"--state-dir {world.state_dir}", "from": "albert@awesome.com"}
    options = [arg for name, value in settings.items() for arg in ("-S", f"{name}={value}")]
    content = send_with_client(world, ["s-nail", "-:/", "-#", *options], b"Shall we?\n.\nSee you\n")
    assert content.endswith(b"\r\n\r\nShall we?\r\n.\r\nSee you\r\n")  # s-nail passes -i
