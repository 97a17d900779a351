"""`labkit world` as other programs see it: the JSON line, signals, restarts, state."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import lecture_config
from labkit.config import ConfigError, load_config
from labkit.state import load_world_info
from labkit.world import World, WorldBusy
from world_process import WorldProcess, topology

HELLO = b"From: albert@awesome.com\r\nSubject: queued\r\n\r\nbody %d\r\n"


def test_json_contract_and_clean_shutdown(tmp_path):
    with WorldProcess(tmp_path / "state") as world:
        info = world.info
        assert set(info) == {"dns", "hosts", "mailboxes", "state_dir", "control"}  # "web" only with --web
        assert info["control"] == {"socket": str(tmp_path / "state" / "control.sock")}
        assert set(info["dns"]) == {"host", "port"}
        brilliant = info["hosts"]["smtp.brilliant.com"]
        assert brilliant["address"] == "1.2.3.5"
        assert {"smtp", "submission", "pop3", "imap"} <= set(brilliant["services"])
        assert info["mailboxes"]["betty@brilliant.com"]["password"] == "betty-password"
        assert Path(info["mailboxes"]["betty@brilliant.com"]["maildir"], "new").is_dir()
        # every listed service accepts connections right away
        with smtplib.SMTP(*world.endpoint("smtp.brilliant.com", "smtp"), timeout=10) as client:
            assert client.noop()[0] == 250
        assert load_world_info(tmp_path / "state") == info  # others find it via the state dir
        code, rest = world.stop(signal.SIGTERM)
        assert code == 0
        assert rest == ""  # exactly one line on stdout
    assert not (tmp_path / "state" / "world.json").exists()
    assert not (tmp_path / "state" / "control.sock").exists()


def test_sigint_also_stops_cleanly(tmp_path):
    with WorldProcess(tmp_path / "state") as world:
        assert world.stop(signal.SIGINT)[0] == 0


def test_a_world_process_is_killed_when_its_block_fails(tmp_path):
    with pytest.raises(AssertionError, match="a failed assert"):
        with WorldProcess(tmp_path / "state") as world:
            raise AssertionError("a failed assert")
    assert world.proc.returncode == -signal.SIGKILL


def test_killed_mta_resumes_its_queue_and_delivers_once(tmp_path):
    """Messages queued when the MTA is killed (-9) are all delivered after a restart,
    none twice. A 250 means "on disk", so the kill comes right after the last 250."""
    state = tmp_path / "state"
    with WorldProcess(state, topology(tmp_path, **{'behaviour = "normal"': 'behaviour = "down"'})) as world:
        with smtplib.SMTP(*world.endpoint("smtp.awesome.com", "submission"), timeout=10) as client:
            client.login("albert", "albert-password")
            for i in range(5):
                client.sendmail("albert@awesome.com", ["chuck@chaos.com"], HELLO % i)
        world.kill()
    spool = state / "spool" / "smtp.awesome.com"
    assert len([p for p in spool.iterdir() if p.name[0] != "." and not p.name.endswith(".state")]) == 5
    with World(lecture_config(), state_dir=state) as restarted:  # chaos.com is up again
        restarted.wait_for_delivery("chuck@chaos.com", count=5)
        restarted.wait_for(lambda e: e.kind == "delivered" and e.server == "smtp.awesome.com", count=5)
        bodies = sorted(m.split(b"\r\n\r\n", 1)[1] for m in restarted.messages("chuck@chaos.com"))
    assert bodies == [b"body %d\r\n" % i for i in range(5)]  # all five, none twice
    assert list(spool.iterdir()) == []


def test_two_worlds_cannot_share_a_state_dir(tmp_path):
    with World(state_dir=tmp_path / "s"):
        with pytest.raises(WorldBusy, match="already running"):
            World(state_dir=tmp_path / "s").start()


def test_worlds_run_side_by_side(tmp_path):
    with World(state_dir=tmp_path / "a") as a, World(state_dir=tmp_path / "b") as b:
        assert a.info()["dns"]["port"] != b.info()["dns"]["port"]


def _free_block(size: int = 80) -> int:
    """A base port whose next ``size`` ports are free, below Linux's ephemeral range
    (32768+), so no test's port-0 socket can take one meanwhile."""
    import random
    import socket

    for _ in range(50):  # bounded
        base = random.randrange(20000, 32000 - size, 10)
        try:
            for port in range(base, base + size):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", base))
        except OSError:
            continue
        return base
    pytest.fail("no free block of 80 ports below 32000 on this machine")


def test_fixed_ports_on_request(tmp_path):
    base = _free_block()
    with World(state_dir=tmp_path / "s", base_port=base) as world:
        info = world.info()
    assert info["dns"]["port"] == base
    assert info["hosts"]["smtp.awesome.com"]["services"]["smtp"]["port"] == base + 10
    assert info["hosts"]["smtp.brilliant.com"]["services"]["imap"]["port"] == base + 23


def test_bad_topology_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[dns\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    bad.write_text(topology(tmp_path).read_text().replace('addresses = ["1.2.3.5"]', 'addresses = ["smtp"]'))
    with pytest.raises(ConfigError, match="smtp.brilliant.com.*'smtp' is not an IP address"):
        load_config(bad)
    run = subprocess.run([sys.executable, "-m", "labkit.cli", "world", "--config", str(bad), "--state-dir",
                          str(tmp_path / "s")], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "is not an IP address" in run.stderr


def test_world_without_json_prints_a_summary_and_the_trace(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "world", "--state-dir", str(tmp_path / "s")],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    lines = [proc.stdout.readline() for _ in range(3)]
    assert lines[0].startswith("lab world running")
    assert "dig @127.0.0.1" in lines[1]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_async_world_for_asyncio_code(tmp_path):
    import asyncio

    from labkit.world import AsyncWorld

    async def main() -> str:
        async with AsyncWorld(state_dir=tmp_path / "s") as world:
            endpoint = world.host("brilliant.com").services["smtp"]
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            greeting = await reader.readline()
            writer.write(b"QUIT\r\n")
            await reader.readline()
            writer.close()
            return greeting.decode()

    assert asyncio.run(main()).startswith("220 smtp.brilliant.com")


def test_a_labkit_command_leaves_its_objects_to_the_exit_not_to_the_collector(tmp_path):
    """Every `labkit` command freezes what it made when the process ends (the
    interpreter's teardown would collect it all again, 0.2 s after `labkit grade`'s
    summary), and still runs what was registered to run at exit: a hook registered
    before the command runs after the freeze, and sees it."""
    seen = tmp_path / "seen"
    script = ("import atexit, gc, sys\n"
              f"atexit.register(lambda: open({str(seen)!r}, 'w').write(str(gc.get_freeze_count())))\n"
              "from labkit.cli import main\n"
              "sys.exit(main(['muttrc', 'betty@brilliant.com', '--state-dir', sys.argv[1]]))\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "no-world")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1, done.stderr  # no world there: the command's own error
    assert "labkit:" in done.stderr
    assert int(seen.read_text()) > 1000  # the command's modules and objects, frozen
