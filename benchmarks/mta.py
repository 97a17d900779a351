"""MTA benchmarks: end-to-end latency, world start-up, accept rate against a bare Sink,
and the sans-IO SMTP session (the smtp_session seam) beside the aiosmtpd front end.

Run with ``make bench`` (or ``python -m benchmarks``). Every figure is measured in the
same run as its baseline, and printed with the ratio and the target.

Two baselines for the accept rate: the bare aiosmtpd ``Sink`` the target is set against
(it throws every message away), and a *durable* Sink (aiosmtpd plus one durable Maildir
write before each 250, nothing else): the least any MTA on aiosmtpd that keeps its
promise can cost. The disk's own costs (creating a file, one fsync) are printed beside
them, because on some disks they are most of the difference.

Nothing the benchmarks write is deleted until the end: freeing thousands of files makes
some file systems (ext4 mounted with ``discard``) slow to create files for a minute after,
which would charge the MTA, and not the Sinks, for the benchmark's own clean-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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

# A bare aiosmtpd Sink; given a directory, a *durable* Sink: the same plus what every
# durable MTA must do before its 250, one durable Maildir write (off the event loop, in
# a thread, as the MTA does), and nothing else.
SINK_SERVER = r"""
import asyncio, sys
from pathlib import Path
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP
from labkit import maildir
class DurableSink:
    async def handle_DATA(self, server, session, envelope):
        await asyncio.get_running_loop().run_in_executor(None, maildir.deliver, TARGET, envelope.original_content)
        return "250 OK"
TARGET = maildir.create(Path(sys.argv[1])) if len(sys.argv) > 1 else None
async def main():
    loop = asyncio.get_running_loop()
    handler = DurableSink() if TARGET else Sink()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


# The same world with smtp.brilliant.com's front end swapped for the sans-IO session
# (the smtp_session seam's reference): same MTA core, same disk work.
SANS_IO_WORLD = r"""
import sys, threading
from labkit.smtp.server import SMTPServerSession
from labkit.world import World
world = World(state_dir=sys.argv[1]).start()
world.use(host="smtp.brilliant.com", smtp_session=SMTPServerSession)
print(world.host("brilliant.com").services["smtp"].port, flush=True)
threading.Event().wait()
"""


def startup(runs: int = 10) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        state = scratch("startup-")
        world = World(state_dir=state).start()
        times.append(time.perf_counter() - t0)
        world.stop()
    return {"median_s": statistics.median(times), "max_s": max(times)}


def end_to_end(runs: int = 60) -> dict:
    latencies = []
    state = scratch("e2e-")
    with World(state_dir=state) as world:
        world.send("albert@awesome.com", ["betty@brilliant.com"], MESSAGE)  # warm up
        world.wait_for_delivery("betty@brilliant.com")
        for i in range(runs):
            t0 = time.perf_counter()
            world.send("albert@awesome.com", ["betty@brilliant.com"], MESSAGE)
            world.wait_for_delivery("betty@brilliant.com", count=i + 2, timeout=10)
            latencies.append(time.perf_counter() - t0)
    latencies.sort()
    return {"median_ms": statistics.median(latencies) * 1000, "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000}


async def _client(port: int, count: int, rcpt: str) -> None:
    """A lean SMTP client: one connection, ``count`` transactions, checks each reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            if line[3:4] != b"-":
                return line

    assert (await reply()).startswith(b"220")
    writer.write(b"EHLO bench.test\r\n")
    assert (await reply()).startswith(b"250")
    for _ in range(count):
        writer.write(b"MAIL FROM:<albert@awesome.com>\r\n")
        assert (await reply()).startswith(b"250")
        writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
        assert (await reply()).startswith(b"250")
        writer.write(b"DATA\r\n")
        assert (await reply()).startswith(b"354")
        writer.write(MESSAGE + b".\r\n")
        answer = await reply()
        assert answer.startswith(b"250"), answer
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()


def accept_rate(port: int, connections: int, total: int, rcpt: str) -> float:
    async def run() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(port, total // connections, rcpt) for _ in range(connections)))
        return total / (time.perf_counter() - t0)

    return asyncio.run(run())


def smtp_source_rate(port: int, connections: int, total: int, rcpt: str) -> float | None:
    """The same with Postfix's smtp-source, where installed (the issue's own yardstick)."""
    tool = shutil.which("smtp-source") or ("/usr/sbin/smtp-source" if Path("/usr/sbin/smtp-source").exists() else None)
    if not tool:
        return None
    t0 = time.perf_counter()
    subprocess.run([tool, "-s", str(connections), "-m", str(total), "-l", "1000", "-f", "albert@awesome.com",
                    "-t", rcpt, f"127.0.0.1:{port}"], check=True, capture_output=True, timeout=300)
    return total / (time.perf_counter() - t0)


def accept_rates(total: int = 2000) -> list[dict]:
    """Messages/s accepted by the MTA (port 25 role, local delivery to Betty) against a
    bare aiosmtpd Sink and a durable Sink, each server in its own process, same client."""
    state = scratch("accept-")
    world = subprocess.Popen([sys.executable, "-m", "labkit.cli", "world", "--json", "--quiet", "--state-dir",
                              str(state)], stdout=subprocess.PIPE, text=True)
    sink = subprocess.Popen([sys.executable, "-c", SINK_SERVER], stdout=subprocess.PIPE, text=True)
    durable = subprocess.Popen([sys.executable, "-c", SINK_SERVER, str(scratch("durable-sink-"))],
                               stdout=subprocess.PIPE, text=True)
    sans_io = subprocess.Popen([sys.executable, "-c", SANS_IO_WORLD, str(scratch("sans-io-"))],
                               stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(world.stdout.readline())
        mta_port = info["hosts"]["smtp.brilliant.com"]["services"]["smtp"]["port"]
        sink_port, durable_port = int(sink.stdout.readline()), int(durable.stdout.readline())
        sans_io_port = int(sans_io.stdout.readline())
        rows = []
        for connections in (1, 10):
            for client, measure in (("asyncio client", accept_rate), ("smtp-source", smtp_source_rate)):
                base = measure(sink_port, connections, total, "betty@brilliant.com")
                if base is None:
                    continue
                mta = measure(mta_port, connections, total, "betty@brilliant.com")
                floor = measure(durable_port, connections, total, "betty@brilliant.com")
                session = measure(sans_io_port, connections, total, "betty@brilliant.com")
                rows.append({"client": client, "connections": connections, "sink_msg_s": base, "mta_msg_s": mta,
                             "durable_sink_msg_s": floor, "ratio": mta / base, "ratio_durable": mta / floor,
                             "sans_io_msg_s": session, "ratio_sans_io": session / mta})
        return rows
    finally:
        for proc in (world, sink, durable, sans_io):
            proc.terminate()
            proc.wait(20)


def disk_costs(runs: int = 300) -> dict:
    """Milliseconds, on the disk the benchmarks write to: creating an empty file, one
    fsync of a small new file, and one whole durable Maildir write (create, write,
    fsync, rename, fsync the directory), which a Sink never pays."""
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


def main() -> None:
    print("== MTA ==")
    try:
        _report()
    finally:
        clean_up()


def _report() -> None:
    for row in accept_rates():
        print(f"accept rate, {row['client']:14} x{row['connections']:<2}  MTA {row['mta_msg_s']:6.0f} msg/s"
              f"  bare Sink {row['sink_msg_s']:6.0f}  ratio {row['ratio']:.2f}"
              f" (target >= 0.7: {'OK' if row['ratio'] >= 0.7 else 'MISSED'})"
              f"  durable Sink {row['durable_sink_msg_s']:6.0f}  ratio {row['ratio_durable']:.2f}"
              f"  sans-IO session {row['sans_io_msg_s']:6.0f} ({row['ratio_sans_io']:.2f} x aiosmtpd's)")
    d = disk_costs()
    print(f"disk: create a file {d['create_ms']:.3f} ms, fsync {d['fsync_ms']:.3f} ms,"
          f" one durable Maildir write {d['durable_write_ms']:.2f} ms (what a Sink never pays)")
    s = startup()
    print(f"world start-up          median {s['median_s'] * 1000:7.1f} ms  (max {s['max_s'] * 1000:.1f} ms)"
          f"   target <= 500 ms: {'OK' if s['median_s'] <= 0.5 else 'MISSED'}")
    e = end_to_end()
    print(f"end-to-end latency      median {e['median_ms']:7.1f} ms  (p95 {e['p95_ms']:.1f} ms)"
          f"   target <= 50 ms: {'OK' if e['median_ms'] <= 50 else 'MISSED'}")
