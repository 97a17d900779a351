"""Run asyncio servers from synchronous code (notebooks, tests, the CLI).

Jupyter already runs an event loop in the main thread, so the lab world runs its own
loop in a background thread; notebook code stays plain and synchronous.

Two things keep a notebook's cells clean. The loop's tasks start in an empty
``contextvars`` context: ipykernel keeps "the current cell" in a ContextVar, and a task
that copied the caller's context would send its output to the cell that started the
world. And the loop's own error reports ("Task exception was never retrieved") go to
``logging`` at DEBUG, never to stderr (nbgrader scores stderr output as a failure).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any, Awaitable, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# asyncio's transports read a socket with recv(256 KiB): a new 256 KiB bytes object for
# every read, a six-byte "QUIT\r\n" included, which glibc maps and unmaps (it is above
# malloc's 128 KiB mmap threshold: mmap, mremap, munmap a read), and in a process with
# threads each munmap flushes the other cores' TLBs. Reads of READ_SIZE come from the heap:
# a fifth of the SMTP front end's CPU per message at smtp-source -s 10.
READ_SIZE = 65536


def heap_sized_reads(transport: asyncio.BaseTransport) -> None:
    """Make ``transport`` read at most :data:`READ_SIZE` at a time (see above); a
    transport without asyncio's ``max_size`` (another event loop's) is left as it is."""
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = READ_SIZE  # type: ignore[attr-defined]


def quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's error reports, for developers only (``logging`` at DEBUG)."""
    log.debug("event loop: %s", context.get("message"), exc_info=context.get("exception"))


class BackgroundLoop:
    """An event loop in a daemon thread. ``run(coro)`` runs a coroutine there and
    returns its result (or raises its exception) in the calling thread."""

    def __init__(self, name: str = "labkit-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(quiet_exception_handler)
        self._thread = threading.Thread(target=contextvars.Context().run, args=(self._main,), name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # drain: cancel what is left so nothing warns at exit
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def run(self, coro: Awaitable[T], timeout: float | None = 30.0) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("BackgroundLoop.run() called from its own loop: await instead")
        # An empty context: the task must not inherit the caller's (a notebook cell's).
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def call(self, fn: Any, *args: Any) -> None:
        """Schedule a plain callable on the loop (thread-safe)."""
        self.loop.call_soon_threadsafe(fn, *args, context=contextvars.Context())

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> "BackgroundLoop":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
