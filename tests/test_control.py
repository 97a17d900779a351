"""A running world controlled from a shell: `labkit behave`, `labkit dns-fault`, and the
control channel under them (labkit.control), as a lecturer types them beside
`labkit world`, checked with real clients (smtplib, dnspython)."""

from __future__ import annotations

import json
import os
import pwd
import smtplib
import stat
import subprocess
import sys
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from labkit.control import request
from labkit.world import World
from world_process import WorldProcess


def labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True, text=True, timeout=60)


def rcpt_reply(world: WorldProcess, recipient: str) -> int:
    """What smtp.chaos.com's port 25 says to RCPT TO (then RSET): a real SMTP client."""
    with smtplib.SMTP(*world.endpoint("smtp.chaos.com", "smtp"), timeout=10) as client:
        client.ehlo("smtp.awesome.com")
        client.mail("albert@awesome.com")
        code, _ = client.rcpt(recipient)
        client.rset()
    return code


def mx_rcode(world: WorldProcess, name: str, timeout: float = 2.0) -> int:
    dns_server = world.info["dns"]
    query = dns.message.make_query(name, "MX")
    return dns.query.udp(query, dns_server["host"], port=dns_server["port"], timeout=timeout).rcode()


def test_behave_switches_a_host_of_the_running_world(tmp_path):
    state = str(tmp_path / "state")
    with WorldProcess(Path(state)) as world:
        assert rcpt_reply(world, "chuck@chaos.com") == 250
        run = labkit("behave", "chaos.com", "refuse", "--state-dir", state)  # a domain names its host too
        assert (run.returncode, run.stdout, run.stderr) == (0, "smtp.chaos.com now behaves: refuse (was normal)\n", "")
        assert rcpt_reply(world, "chuck@chaos.com") == 550
        assert labkit("behave", "smtp.chaos.com", "greylist", "--state-dir", state).returncode == 0
        assert rcpt_reply(world, "chuck@chaos.com") == 451  # a first try is deferred (RFC 6647)...
        assert rcpt_reply(world, "chuck@chaos.com") == 250  # ...and the same triplet passes the next time
        assert labkit("behave", "smtp.chaos.com", "normal", "--state-dir", state).returncode == 0
        assert rcpt_reply(world, "chuck@chaos.com") == 250


def test_dns_fault_breaks_and_heals_one_name(tmp_path):
    state = str(tmp_path / "state")
    with WorldProcess(Path(state)) as world:
        run = labkit("dns-fault", "brilliant.com", "servfail", "--state-dir", state)
        assert (run.returncode, run.stdout) == (0, "DNS: queries for brilliant.com now get servfail\n")
        assert mx_rcode(world, "brilliant.com") == dns.rcode.SERVFAIL
        assert mx_rcode(world, "awesome.com") == dns.rcode.NOERROR  # only that name
        assert labkit("dns-fault", "brilliant.com", "timeout", "--state-dir", state).returncode == 0
        with pytest.raises(dns.exception.Timeout):
            mx_rcode(world, "BRILLIANT.com", timeout=0.5)
        run = labkit("dns-fault", "brilliant.com", "clear", "--state-dir", state)
        assert (run.returncode, run.stdout) == (0, "DNS: brilliant.com healed\n")
        assert mx_rcode(world, "brilliant.com") == dns.rcode.NOERROR


def test_bad_requests_get_a_clear_error_and_change_nothing(tmp_path):
    state = str(tmp_path / "state")
    with WorldProcess(Path(state)) as world:
        run = labkit("behave", "nowhere.com", "refuse", "--state-dir", state)
        assert run.returncode == 1 and "no mail host named or serving 'nowhere.com'; hosts: smtp.awesome.com" in run.stderr
        run = labkit("behave", "chaos.com", "sulk", "--state-dir", state)
        assert run.returncode == 2 and "invalid choice: 'sulk'" in run.stderr
        run = labkit("dns-fault", "bad..name", "servfail", "--state-dir", state)
        assert run.returncode == 1 and "'bad..name' is not a DNS name" in run.stderr
        reply = request(world.info, {"op": "behave", "host": "chaos.com"})
        assert reply == {"ok": False, "error": "the request needs 'behaviour' (a non-empty string)"}
        reply = request(world.info, {"op": "state"})
        assert reply["state"]["behaviours"]["smtp.chaos.com"] == "normal" and reply["state"]["faults"] == {}
        assert rcpt_reply(world, "chuck@chaos.com") == 250
        world.kill()
    run = labkit("behave", "chaos.com", "refuse", "--state-dir", state)  # killed: its world.json is left
    assert run.returncode == 1 and f"no lab world running in {state} (its world.json is left" in run.stderr
    with WorldProcess(Path(state)) as world:
        assert world.stop()[0] == 0
    run = labkit("behave", "chaos.com", "refuse", "--state-dir", state)  # stopped
    assert (run.returncode, run.stderr) == (1, f"labkit: no lab world running in {state}: start one with "
                                               "`labkit world`\n")


def test_only_the_worlds_owner_may_use_the_channel(tmp_path):
    state = tmp_path / "state"
    with WorldProcess(state) as world:
        path = world.info["control"]["socket"]
        assert Path(path).parent == state and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        if os.getuid() != 0:
            return  # the mode is all a user can check; another user's attempt needs root to stage
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user 'nobody' to try it as")
        attempt = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1])\n"
                   "except PermissionError:\n    print('refused')\nelse:\n    print('connected')")
        try:
            run = subprocess.run(["/usr/bin/python3", "-c", attempt, path], user="nobody", capture_output=True,
                                 text=True, timeout=30)
        except (FileNotFoundError, PermissionError):
            pytest.skip("no python3 that user 'nobody' can run")
        assert run.stdout.strip() == "refused", run.stderr


def test_a_long_state_dir_gets_its_socket_in_a_private_directory(tmp_path):
    state = tmp_path / ("d" * 120)
    with World(state_dir=state) as world:
        path = Path(world.info()["control"]["socket"])
        assert path.parent != state and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        reply = request(world.info(), {"op": "behave", "host": "smtp.chaos.com", "behaviour": "down"})
        assert reply["ok"] and world.hosts["smtp.chaos.com"].behaviour == "down"
        assert json.loads((state / "world.json").read_text())["control"]["socket"] == str(path)
    assert not path.parent.exists()


def test_a_world_that_cannot_make_its_socket_runs_without_the_channel(tmp_path):
    state = tmp_path / "state"
    (state / "control.sock").mkdir(parents=True)  # something that is not a socket is in the way
    with World(state_dir=state) as world:
        assert world.info()["control"] is None
        world.send("albert@awesome.com", ["betty@brilliant.com"], b"Subject: still here\r\n\r\nhi\r\n")
        world.wait_for_delivery("betty@brilliant.com")
        run = labkit("behave", "chaos.com", "refuse", "--state-dir", str(state))
        assert run.returncode == 1 and "has no control channel" in run.stderr
