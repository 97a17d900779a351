"""MTA benchmarks: end-to-end latency, world start-up, accept rate against a bare Sink.

Run with ``make bench`` (or ``python -m benchmarks``). Every figure is measured in the
same run as its baseline, and printed with the ratio and the target.
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


def scratch(prefix: str) -> Path:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=BENCH_DIR))


MESSAGE = b"From: albert@awesome.com\r\nTo: betty@brilliant.com\r\nSubject: bench\r\n\r\n" + b"x" * 900 + b"\r\n"

SINK_SERVER = r"""
import asyncio, sys
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink(), hostname="sink"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def startup(runs: int = 10) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        state = scratch("startup-")
        world = World(state_dir=state).start()
        times.append(time.perf_counter() - t0)
        world.stop()
        shutil.rmtree(state, ignore_errors=True)
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
    shutil.rmtree(state, ignore_errors=True)
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
    """Messages/s accepted by the MTA (port 25 role, local delivery to Betty running too)
    against a bare aiosmtpd Sink, each server in its own process, same client."""
    state = scratch("accept-")
    world = subprocess.Popen([sys.executable, "-m", "labkit.cli", "world", "--json", "--quiet", "--state-dir",
                              str(state)], stdout=subprocess.PIPE, text=True)
    sink = subprocess.Popen([sys.executable, "-c", SINK_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(world.stdout.readline())
        mta_port = info["hosts"]["smtp.brilliant.com"]["services"]["smtp"]["port"]
        sink_port = int(sink.stdout.readline())
        rows = []
        for connections in (1, 10):
            for client, measure in (("asyncio client", accept_rate), ("smtp-source", smtp_source_rate)):
                base = measure(sink_port, connections, total, "betty@brilliant.com")
                if base is None:
                    continue
                mta = measure(mta_port, connections, total, "betty@brilliant.com")
                rows.append({"client": client, "connections": connections, "sink_msg_s": base, "mta_msg_s": mta,
                             "ratio": mta / base})
        return rows
    finally:
        for proc in (world, sink):
            proc.terminate()
            proc.wait(20)
        shutil.rmtree(state, ignore_errors=True)


def durable_write_floor(runs: int = 300) -> float:
    """Milliseconds for one durable Maildir write on this disk (create, write, fsync,
    rename, fsync the directory): the least the MTA must add to each message before
    its 250, which a Sink never pays."""
    from labkit import maildir

    target = maildir.create(scratch("floor-"))
    t0 = time.perf_counter()
    for _ in range(runs):
        maildir.deliver(target, MESSAGE)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(target, ignore_errors=True)
    return elapsed / runs * 1000


def main() -> None:
    print("== MTA ==")
    s = startup()
    print(f"world start-up          median {s['median_s'] * 1000:7.1f} ms  (max {s['max_s'] * 1000:.1f} ms)"
          f"   target <= 500 ms: {'OK' if s['median_s'] <= 0.5 else 'MISSED'}")
    e = end_to_end()
    print(f"end-to-end latency      median {e['median_ms']:7.1f} ms  (p95 {e['p95_ms']:.1f} ms)"
          f"   target <= 50 ms: {'OK' if e['median_ms'] <= 50 else 'MISSED'}")
    floor = durable_write_floor()
    print(f"durable Maildir write   {floor:7.2f} ms per message (fsync floor of this disk)")
    for row in accept_rates():
        print(f"accept rate, {row['client']:14} x{row['connections']:<2}  MTA {row['mta_msg_s']:7.0f} msg/s"
              f"  bare Sink {row['sink_msg_s']:7.0f} msg/s  ratio {row['ratio']:.2f}"
              f"   target >= 0.7: {'OK' if row['ratio'] >= 0.7 else 'MISSED'}")
