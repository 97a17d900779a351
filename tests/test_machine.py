"""A machine of the lab network (Albert's PC): programs run with its environment reach
the world's submission services through its doors, from its lab address."""

from __future__ import annotations

import json
import os
import subprocess

from labkit.notebook import sequence
from labkit.seams import default_sendmail

MESSAGE = b"From: Albert <albert@awesome.com>\nTo: Betty <betty@brilliant.com>\nSubject: from the PC\n\nhello\n"


def submit(world, machine, program: str) -> subprocess.CompletedProcess:
    return subprocess.run([program, "-oi", "betty@brilliant.com"], input=MESSAGE, capture_output=True, timeout=60,
                          env={**os.environ, **machine.env})


def test_a_program_on_the_machine_submits_from_its_address(world):
    pc = world.machine("1.2.3.100")
    assert world.machine("1.2.3.100") is pc  # one per address
    info = json.loads((pc.state_dir / "world.json").read_text())
    door = info["hosts"]["smtp.awesome.com"]["services"]["submission"]
    assert door != world.info()["hosts"]["smtp.awesome.com"]["services"]["submission"]
    assert info["hosts"]["smtp.brilliant.com"]["services"]["imap"] == \
        world.info()["hosts"]["smtp.brilliant.com"]["services"]["imap"]  # only submission goes through a door
    ran = submit(world, pc, default_sendmail())
    assert ran.returncode == 0, ran.stderr
    world.wait_for_delivery("betty@brilliant.com")
    copy = world.messages("betty@brilliant.com")[0]
    assert b"([1.2.3.100])\r\n\tby smtp.awesome.com" in copy and b"\r\n\r\nhello\r\n" in copy
    lines = [e for e in world.tracer.events() if e.kind == "line" and e.server == "smtp.awesome.com"
             and e.client == "1.2.3.100"]
    assert lines and not any(e.seam for e in lines)  # labkit's own sendmail: not a student's


def test_a_students_sendmail_through_the_door_is_marked_as_its_own(world, tmp_path):
    program = tmp_path / "my-sendmail"
    program.write_text(f'#!/bin/sh\nexec "{default_sendmail()}" "$@"\n')  # any program will do here
    program.chmod(0o755)
    world.use(sendmail=str(program))
    pc = world.machine("1.2.3.100")
    assert submit(world, pc, str(program)).returncode == 0
    world.wait_for_delivery("betty@brilliant.com")
    lines = [e for e in world.tracer.events() if e.kind == "line" and e.client == "1.2.3.100"]
    assert lines and all(e.seam == "sendmail" for e in lines)
    assert "(your code)" in sequence(world.tracer.events(), names={"1.2.3.100": "Albert's PC"}).text
    assert "env LABKIT_STATE_DIR=" + str(pc.state_dir) in world.muttrc("albert@awesome.com", machine=pc)


def test_a_door_to_a_host_that_is_down_closes_and_the_world_stops_cleanly(world):
    pc = world.machine("1.2.3.100")
    world.set_behaviour("smtp.awesome.com", "down")
    ran = submit(world, pc, default_sendmail())
    assert ran.returncode == 75, ran.stderr  # EX_TEMPFAIL: the door has nothing behind it now
    world.set_behaviour("smtp.awesome.com", "normal")
    assert submit(world, pc, default_sendmail()).returncode == 0
