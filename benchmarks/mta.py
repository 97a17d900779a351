"""MTA benchmarks: labkit's MTA against a real Postfix, measured in the same run.

Run with ``make bench ARGS=mta`` (or ``python -m benchmarks mta``). The figures:

- SMTP accept rate with Postfix's own load generator, ``smtp-source`` (one connection and
  ten, 1,000 messages of 2 KB), and one message of 1 MB: labkit's world (aiosmtpd front
  end; and the sans-IO session, the ``smtp_session`` seam's reference) against Postfix
  smtpd -> cleanup -> qmgr -> virtual(8) into a Maildir. Both make the message durable
  before the 250 and deliver after it; each round waits until every message is in the
  Maildir, and says how long that took too.
- End-to-end latency over two hops (the lecture's story: submission to smtp.awesome.com,
  relayed to smtp.brilliant.com, stored) against two chained Postfix instances; the
  message is seen arriving in the recipient's Maildir the same way for both.
- A retry pass over 2,000 deferred messages to a host that is down: CPU seconds per
  message, and the CPU the world uses between passes (no peer: Postfix's queue manager
  is the model, the target an absolute one).
- The disk's own costs and the world's start-up, for reference.

Each comparison is run in interleaved rounds (:mod:`benchmarks.rounds`). Nothing the
benchmarks write is deleted until the end: freeing thousands of files makes some file
systems (ext4 mounted with ``discard``) slow to create files for a minute after.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.postfix import Postfix, available
from benchmarks.rounds import Figure, interleave
from labkit.world import World

# Where benchmark worlds keep their mail: beside `labkit world`'s own default
# (~/.labkit), not /tmp, which is much slower for file creation on some sandboxes.
BENCH_DIR = Path(os.environ.get("LABKIT_BENCH_DIR") or Path.home() / ".labkit" / "bench")


_RUN_DIR: Path | None = None


def scratch(prefix: str) -> Path:
    """A new directory under this run's scratch root (removed by :func:`clean_up`)."""
    global _RUN_DIR
    if _RUN_DIR is None:
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        _RUN_DIR = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_DIR))
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_RUN_DIR))


def clean_up() -> None:
    global _RUN_DIR
    if _RUN_DIR is not None:
        shutil.rmtree(_RUN_DIR, ignore_errors=True)
        _RUN_DIR = None


MESSAGE = b"From: albert@awesome.com\r\nTo: betty@brilliant.com\r\nSubject: bench\r\n\r\n" + b"x" * 900 + b"\r\n"
ACCEPT_COUNT, ACCEPT_SIZE = 1000, 2048  # the yardstick: smtp-source -m 1000 -l 2048
BIG_COUNT, BIG_SIZE = 5, 1 << 20  # one 1 MB message at a time, five a round
RETRY_COUNT = 2000  # deferred messages in the retry pass
ROUNDS = int(os.environ.get("LABKIT_BENCH_ROUNDS", "5"))
PEER_DOMAIN, PEER_USER = "bench.test", "sam"

# A world for the benchmark, in its own process (a client in the same process would
# share its GIL): argv[1] the state dir, argv[2] "aiosmtpd" or "sans-io" (the
# smtp_session seam's reference on smtp.brilliant.com). Prints the JSON contract.
WORLD = r"""
import json, sys, threading
from labkit.smtp.server import SMTPServerSession
from benchmarks.postfix import Postfix, available
from benchmarks.rounds import Figure, interleave
from labkit.world import World
world = World(state_dir=sys.argv[1]).start()
if sys.argv[2] == "sans-io":
    world.use(host="smtp.brilliant.com", smtp_session=SMTPServerSession)
print(json.dumps(world.info()), flush=True)
threading.Event().wait()
"""

# The retry pass: a world whose smtp.chaos.com is down, RETRY_COUNT messages for it
# deferred (retries an hour apart, so none comes by itself); on "pass" it flushes the
# queue (world.retry_now) and prints the CPU seconds until every message is deferred
# again; on "idle S" the CPU seconds it used sitting S seconds.
RETRY_WORLD = r"""
import dataclasses, smtplib, sys, threading, time
from labkit.config import load_config
from benchmarks.postfix import Postfix, available
from benchmarks.rounds import Figure, interleave
from labkit.world import World
count = int(sys.argv[2])
config = load_config()
config = dataclasses.replace(config, mta=dataclasses.replace(config.mta, retry_schedule=(3600.0,),
                                                             max_queue_time=86400.0))
world = World(config, state_dir=sys.argv[1]).start()
world.set_behaviour("smtp.chaos.com", "down")
deferred, cond = [0], threading.Condition()
def seen(event):
    if event.kind == "deferred":
        with cond:
            deferred[0] += 1
            cond.notify_all()
world.tracer.subscribe(seen)
def wait(n):
    with cond:
        if not cond.wait_for(lambda: deferred[0] >= n, timeout=900):
            sys.exit(f"only {deferred[0]} of {n} deferrals")
with smtplib.SMTP("127.0.0.1", world.host("awesome.com").services["submission"].port) as client:
    for i in range(count):
        client.sendmail("albert@awesome.com", ["chuck@chaos.com"], b"Subject: %d\r\n\r\nhello\r\n" % i)
wait(count)
print("ready", flush=True)
for line in sys.stdin:
    word, *arg = line.split()
    cpu, wall = time.process_time(), time.perf_counter()
    if word == "pass":
        target = deferred[0] + count
        world.retry_now()
        wait(target)
    elif word == "idle":
        time.sleep(float(arg[0]))
    print(time.process_time() - cpu, time.perf_counter() - wall, flush=True)
world.stop()
"""


class Contender:
    """A server under test: where its SMTP listens, whom to send to, and the Maildir
    where that mail lands (to know when every message is delivered)."""

    def __init__(self, name: str, port: int, rcpt: str, maildir: Path) -> None:
        self.name, self.port, self.rcpt, self.maildir = name, port, rcpt, maildir
        self.expected = 0  # messages sent so far, all to be delivered

    def delivered(self) -> int:
        try:
            return len(os.listdir(self.maildir / "new"))
        except FileNotFoundError:
            return 0

    def wait_delivered(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while self.delivered() < self.expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {self.delivered()} of {self.expected} messages delivered")
            time.sleep(0.002)


def smtp_source() -> str | None:
    return shutil.which("smtp-source") or ("/usr/sbin/smtp-source" if Path("/usr/sbin/smtp-source").exists()
                                           else None)


def blast(tool: str, server: Contender, connections: int, count: int, size: int) -> tuple[float, float]:
    """``count`` messages of ``size`` octets over ``connections`` connections with
    smtp-source; (seconds until the last 250, seconds until all are in the Maildir)."""
    t0 = time.perf_counter()
    subprocess.run([tool, "-s", str(connections), "-m", str(count), "-l", str(size), "-f", "albert@awesome.com",
                    "-t", server.rcpt, f"127.0.0.1:{server.port}"], check=True, capture_output=True, timeout=600)
    accepted = time.perf_counter() - t0
    server.expected += count
    server.wait_delivered()
    return accepted, time.perf_counter() - t0


def start_world(kind: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", WORLD, str(scratch(f"{kind}-")), kind], stdout=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        raise RuntimeError(f"the {kind} world did not start")
    return proc, json.loads(line)


def world_contender(name: str, info: dict, service: str = "smtp", host: str = "smtp.brilliant.com") -> Contender:
    port = info["hosts"][host]["services"][service]["port"]
    return Contender(name, port, "betty@brilliant.com", Path(info["mailboxes"]["betty@brilliant.com"]["maildir"]))


def accept_figures(tool: str, lab: Contender, sans_io: Contender, peer: Contender | None) -> list[Figure]:
    figures = []
    runs = [(f"SMTP accept, smtp-source -s {c}, {ACCEPT_COUNT} x 2 KB", c, ACCEPT_COUNT, ACCEPT_SIZE, 1.0)
            for c in (1, 10)] + [("SMTP accept, one 1 MB message", 1, BIG_COUNT, BIG_SIZE, 0.8)]
    for label, connections, count, size, target in runs:
        accept = Figure(label + " (msg/s)", "msg/s", True, target, "Postfix")
        stored = Figure("  ... and all in the Maildir (msg/s)", "msg/s", True, None, "Postfix")
        session = Figure("  ... with the sans-IO session (msg/s)", "msg/s", True, None, "Postfix")

        def mine() -> None:
            accepted, done = blast(tool, lab, connections, count, size)
            accept.mine.append(count / accepted)
            stored.mine.append(count / done)

        def sans() -> None:
            session.mine.append(count / blast(tool, sans_io, connections, count, size)[0])

        def theirs() -> None:
            if peer is not None:
                accepted, done = blast(tool, peer, connections, count, size)
                for figure, value in ((accept, accepted), (session, accepted), (stored, done)):
                    figure.theirs.append(count / value)

        blast(tool, lab, connections, min(count, 50), size)  # warm up
        blast(tool, sans_io, connections, min(count, 50), size)
        if peer is not None:
            blast(tool, peer, connections, min(count, 50), size)
        interleave(ROUNDS, [mine, sans, theirs])
        figures += [accept, stored, session]
    return figures


def arrival_latency(port: int, mail_from: str, rcpt: str, maildir: Path, runs: int) -> list[float]:
    """Seconds from connecting to the first hop until the message is a file in the
    last hop's Maildir (``new/``), ``runs`` times."""
    new = maildir / "new"
    times = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("bench.test")
        for i in range(runs):
            before = len(os.listdir(new)) if new.exists() else 0
            t0 = time.perf_counter()
            client.sendmail(mail_from, [rcpt], MESSAGE.replace(b"bench", b"bench %d" % i))
            deadline = t0 + 30
            while (len(os.listdir(new)) if new.exists() else 0) <= before:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"a message to {rcpt} did not arrive within 30 s")
                time.sleep(0.0005)
            times.append(time.perf_counter() - t0)
    return times


def end_to_end_figure(info: dict, chain: tuple[Postfix, Postfix] | None) -> Figure:
    figure = Figure("end-to-end, two hops (ms)", "ms", False, None, "Postfix x2")
    lab_port = info["hosts"]["smtp.awesome.com"]["services"]["submission"]["port"]
    lab_maildir = Path(info["mailboxes"]["betty@brilliant.com"]["maildir"])

    def mine() -> None:
        figure.mine.append(statistics.median(arrival_latency(
            lab_port, "albert@awesome.com", "betty@brilliant.com", lab_maildir, 20)) * 1000)

    def theirs() -> None:
        if chain is not None:
            first, last = chain
            figure.theirs.append(statistics.median(arrival_latency(
                first.smtp.port, "albert@awesome.com", f"{PEER_USER}@{PEER_DOMAIN}", last.maildir(PEER_USER),
                20)) * 1000)

    mine()  # warm up
    theirs()
    figure.mine.clear()
    figure.theirs.clear()
    interleave(ROUNDS, [mine, theirs])
    return figure


def retry_pass(passes: int = 3, idle: float = 3.0) -> tuple[list[float], float]:
    """CPU milliseconds per deferred message in each retry pass; CPU seconds idle."""
    proc = subprocess.Popen([sys.executable, "-c", RETRY_WORLD, str(scratch("retry-")), str(RETRY_COUNT)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin and proc.stdout
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the retry world did not queue its messages")
        per_message = []
        for _ in range(passes):
            proc.stdin.write("pass\n")
            proc.stdin.flush()
            cpu = float(proc.stdout.readline().split()[0])
            per_message.append(cpu / RETRY_COUNT * 1000)
        proc.stdin.write(f"idle {idle}\n")
        proc.stdin.flush()
        idle_cpu = float(proc.stdout.readline().split()[0])
        return per_message, idle_cpu
    finally:
        proc.terminate()
        proc.wait(30)


def disk_costs(runs: int = 300) -> dict:
    """Milliseconds, on the disk the benchmarks write to: creating an empty file, one
    fsync of a small new file, and one whole durable Maildir write (create, write,
    fsync, rename, fsync the directory), which an MTA that keeps its promise pays for each message."""
    from labkit import maildir

    directory = scratch("disk-")
    t0 = time.perf_counter()
    for i in range(runs):
        os.close(os.open(directory / f"e{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    create = (time.perf_counter() - t0) / runs
    fsync = 0.0
    for i in range(runs):
        fd = os.open(directory / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, MESSAGE)
        t0 = time.perf_counter()
        os.fsync(fd)
        fsync += time.perf_counter() - t0
        os.close(fd)
    target = maildir.create(directory / "Maildir")
    t0 = time.perf_counter()
    for _ in range(runs):
        maildir.deliver(target, MESSAGE)
    durable = (time.perf_counter() - t0) / runs
    return {"create_ms": create * 1000, "fsync_ms": fsync / runs * 1000, "durable_write_ms": durable * 1000}


def startup(runs: int = 10) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        world = World(state_dir=scratch("startup-")).start()
        times.append(time.perf_counter() - t0)
        world.stop()
    return {"median_s": statistics.median(times), "max_s": max(times)}


def main() -> None:
    print("== MTA: labkit against Postfix ==")
    try:
        _report()
    finally:
        clean_up()


def _report() -> None:
    missing = available()
    tool = smtp_source()
    if missing:
        print(f"{missing}: labkit's figures alone, no ratios")
    lab_proc, lab_info = start_world("aiosmtpd")
    sans_proc, sans_info = start_world("sans-io")
    peers: list[Postfix] = []
    try:
        peer = None
        if not missing:
            last = Postfix(PEER_DOMAIN, [PEER_USER])
            peers.append(last)
            last.start()
            first = Postfix("relay.test", [], relayhost=last.smtp)
            peers.append(first)
            first.start()
            peer = Contender("Postfix", last.smtp.port, f"{PEER_USER}@{PEER_DOMAIN}", last.maildir(PEER_USER))
        if tool is None:
            print("smtp-source is not installed (apt: postfix): no accept rates")
        else:
            for figure in accept_figures(tool, world_contender("labkit", lab_info),
                                         world_contender("labkit sans-IO", sans_info), peer):
                print(figure.line())
        print(end_to_end_figure(lab_info, (peers[1], peers[0]) if peers else None).line())
    finally:
        for proc in (lab_proc, sans_proc):
            proc.terminate()
            proc.wait(30)
        for postfix in peers:
            postfix.close()
    cpu, idle = retry_pass()
    print(f"{'retry pass, ' + str(RETRY_COUNT) + ' deferred to a host that is down':44} CPU "
          f"{statistics.median(cpu):.2f} ms a message ({min(cpu):.2f}-{max(cpu):.2f}, {len(cpu)} passes)"
          f"  target <= 1 ms: {'OK' if statistics.median(cpu) <= 1 else 'MISSED'};"
          f"  between passes {idle * 1000:.0f} ms CPU in 3 s")
    d = disk_costs()
    print(f"disk: create a file {d['create_ms']:.3f} ms, fsync {d['fsync_ms']:.3f} ms,"
          f" one durable Maildir write {d['durable_write_ms']:.2f} ms")
    s = startup()
    print(f"world start-up          median {s['median_s'] * 1000:7.1f} ms  (max {s['max_s'] * 1000:.1f} ms)"
          f"   target <= 500 ms: {'OK' if s['median_s'] <= 0.5 else 'MISSED'}")
