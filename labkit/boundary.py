"""The fault boundary: every call into a part a student may have replaced crosses it.

Student code will be wrong in every way: it raises, returns the wrong type, hangs,
sleeps, or quietly calls labkit's own answer. The boundary makes each of those one
ordinary, reported failure:

- Student code never runs on the event loop. It runs in :class:`Workers`, daemon
  threads that cannot keep the process alive, with a deadline per call. A call that
  misses it is abandoned (a thread cannot be killed; it finishes or not, unheard).
- What it returns is checked against the seam's contract (:mod:`labkit.contracts`);
  a violation is handled exactly like an exception.
- Exceptions that are part of a seam's contract (``TemporaryMXError`` from
  ``resolve_mx``, ``SMTPError`` from ``send_mail``) pass through: they are answers.
- Anything else becomes a :class:`SeamError`, and the trace gets a ``seam-error``
  event with the seam, the host, the input and the student's own traceback (labkit's
  frames trimmed). Nothing is written to stderr.
- The *reference fence* (:mod:`labkit.fence`): while student code runs for a seam,
  calling labkit's own implementation of that same seam (directly, through a subclass
  or a wrapper) raises :class:`ReferenceUsed` and is recorded, so the call fails even
  if the student catches the exception.

labkit's own parts run through the same door without a deadline (their waits are
bounded by their own timeouts) and, when called from the event loop, in labkit's
own worker pool, so disk work never stalls the loop either.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
import traceback
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .contracts import ContractError
from .fence import ReferenceUsed, check_fence, entered  # noqa: F401 (re-exported)
from .trace import Tracer

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_DEADLINE = 5.0  # seconds a student's part may take per call
_LABKIT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


# -- daemon worker threads ------------------------------------------------------------
class Workers:
    """A pool of daemon threads (``concurrent.futures.ThreadPoolExecutor`` joins its
    threads at exit, so one hung call would keep the process alive forever).

    At most ``size`` threads; a thread stuck in a hung call stays counted until it
    returns, so a flood of hung calls queues later ones (they then miss their
    deadline) instead of making threads without end."""

    def __init__(self, name: str, size: int = 32) -> None:
        self.name, self.size = name, size
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], *args: Any) -> "Future[T]":
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the world has stopped")
            self._jobs.put((future, fn, args))
            if not self._idle.acquire(blocking=False) and self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self.name}-{self._threads}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as error:  # noqa: BLE001 - SystemExit from student code too
                    future.set_exception(error)
                else:
                    future.set_result(result)
            del job, future, fn, args
            self._idle.release()

    def shutdown(self) -> None:
        """Stop taking work; idle threads exit, hung ones are left to the daemon flag."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)


# -- failures -------------------------------------------------------------------------
class SeamError(Exception):
    """A student's part failed: ``failure`` is raised, contract, deadline or fenced."""

    def __init__(self, seam: str, host: str, failure: str, detail: str, traceback_text: str = "") -> None:
        self.seam, self.host, self.failure, self.detail = seam, host, failure, detail
        self.traceback = traceback_text
        where = f" on {host}" if host else ""
        super().__init__(f"your {seam}{where} {_FAILURES[failure]}: {detail}")

    def one_line(self, limit: int = 200) -> str:
        """``failure: detail`` on one line, for a protocol reply."""
        return " ".join(f"{self.failure}: {self.detail}".split())[:limit]


_FAILURES = {
    "raised": "raised an exception",
    "contract": "broke its contract",
    "deadline": "did not finish in time",
    "fenced": "used labkit's own answer",
}


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a student's exception whose __str__ fails
        return "<message unreadable>"


def student_traceback(error: BaseException) -> str:
    """The traceback from the student's first frame on (labkit's calling frames cut)."""
    frames = traceback.extract_tb(error.__traceback__)
    first = next((i for i, f in enumerate(frames) if not f.filename.startswith(_LABKIT_DIR)), len(frames))
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames[first:])]
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines)


_SAFE = (str, int, float, bool, type(None))


def describe(value: Any, limit: int = 160) -> str:
    """A short description of a seam's input or output for the trace. It never runs
    a student's ``__repr__`` (which runs on the caller's thread and could hang): only
    plain values and labkit's own types are shown in full."""
    if isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[:60])) + (f" ({len(value)} bytes)" if len(value) > 60 else "")
    elif isinstance(value, _SAFE):
        text = repr(value)
    elif hasattr(value, "getpeername"):
        try:
            address = value.getpeername()
            text = f"<socket to {address[0]}:{address[1]}>"
        except OSError:
            text = "<socket>"
    elif type(value) in (list, tuple):
        inner = ", ".join(describe(v, limit) for v in value[:8]) + (", ..." if len(value) > 8 else "")
        text = f"[{inner}]" if isinstance(value, list) else f"({inner})"
    elif type(value) is dict:
        text = "{" + ", ".join(f"{describe(k)}: {describe(v)}" for k, v in list(value.items())[:8]) + "}"
    elif type(value).__module__.split(".")[0] in ("labkit", "dns", "pathlib"):
        try:
            text = repr(value)
        except Exception as error:
            text = f"<{type(value).__name__}: repr failed: {error!r}>"
    else:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the boundary -----------------------------------------------------------------------
Check = Callable[[Any], Any]
"""A contract check: returns the (possibly normalised) value or raises ContractError."""


class Boundary:
    """How a world calls its parts: :meth:`call` from a thread, :meth:`acall` from
    the event loop. ``deadline`` bounds each call of a student's part."""

    def __init__(self, tracer: Tracer, *, deadline: float = DEFAULT_DEADLINE) -> None:
        self.tracer = tracer
        self.deadline = deadline
        self.labkit = Workers("labkit-worker", 32)  # labkit's own blocking work
        self.students = Workers("labkit-student", 32)  # student code, apart: hung calls cannot starve labkit

    def shutdown(self) -> None:
        self.labkit.shutdown()
        self.students.shutdown()

    # -- running ----------------------------------------------------------------------
    def call(self, seam: str, host: str, impl: Callable[..., T], /, *args: Any, student: bool,
             check: Check | None = None, passes: tuple[type[BaseException], ...] = (), note: bool = True,
             **kwargs: Any) -> T:
        """Call ``impl`` from a plain thread (never the event loop); see :meth:`acall`."""
        if not student:
            return impl(*args, **kwargs)
        future = self.students.submit(_run_student, seam, impl, args, kwargs, check)
        try:
            outcome = future.result(self.deadline)
        except FutureTimeout:
            future.cancel()
            outcome = None
        return self._judge(seam, host, outcome, args, kwargs, passes, note)

    async def acall(self, seam: str, host: str, impl: Callable[..., T], /, *args: Any, student: bool,
                    check: Check | None = None, passes: tuple[type[BaseException], ...] = (), note: bool = True,
                    **kwargs: Any) -> T:
        """Call ``impl`` off the event loop and await it. A student's part gets the
        deadline, the fence and the contract ``check``; exceptions in ``passes`` are
        its legitimate answers; any other failure raises :class:`SeamError` (after
        tracing it). ``note``: trace each successful call too (not for sessions,
        whose every line is traced anyway)."""
        if not student:
            return await asyncio.wrap_future(self.labkit.submit(functools.partial(impl, *args, **kwargs)))
        future = self.students.submit(_run_student, seam, impl, args, kwargs, check)
        try:
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), self.deadline)
        except asyncio.TimeoutError:
            outcome = None
        return self._judge(seam, host, outcome, args, kwargs, passes, note)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run labkit's own blocking work (disk) off the loop."""
        return await asyncio.wrap_future(self.labkit.submit(fn, *args))

    # -- judging ----------------------------------------------------------------------
    def _judge(self, seam: str, host: str, outcome: "_Outcome | None", args: tuple, kwargs: dict,
               passes: tuple[type[BaseException], ...], note: bool) -> Any:
        def inputs() -> str:
            return ", ".join([*(describe(a) for a in args), *(f"{k}={describe(v)}" for k, v in kwargs.items())])

        if outcome is None:
            raise self.failed(seam, host, "deadline", f"still running after {self.deadline:g}s; abandoned", inputs())
        if outcome.fenced:
            raise self.failed(seam, host, "fenced", f"it called {outcome.fenced[0]}", inputs())
        error = outcome.error
        if error is not None:
            if passes and isinstance(error, passes):
                if note:
                    self._note_call(seam, host, inputs(), f"raised {type(error).__name__}: {error}")
                raise error
            # A part run in another process (the grader's sandbox) brings its own traceback.
            kind = getattr(error, "remote_type", type(error).__name__)
            raise self.failed(seam, host, "raised", f"{kind}: {_message(error)}", inputs(),
                              getattr(error, "remote_traceback", None) or student_traceback(error))
        if outcome.violation:
            raise self.failed(seam, host, "contract", outcome.violation, inputs())
        value = outcome.value
        if note:
            self._note_call(seam, host, inputs(), describe(value))
        return value

    def failed(self, seam: str, host: str, failure: str, detail: str, inputs: str = "",
               traceback_text: str = "") -> SeamError:
        """Trace a failure of a student's part and return the :class:`SeamError`."""
        error = SeamError(seam, host, failure, detail, traceback_text)
        log.debug("%s (input: %s)\n%s", error, inputs, traceback_text)
        self.tracer.note("seam", "seam-error", str(error), server=host, seam=seam, host=host, failure=failure,
                         detail=detail, input=inputs, traceback=traceback_text)
        return error

    def _note_call(self, seam: str, host: str, inputs: str, output: str) -> None:
        self.tracer.note("seam", "seam-call", f"{host} called your {seam}({inputs}) -> {output}", server=host,
                         seam=seam, host=host, input=inputs, output=output)


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    fenced: list[str] = field(default_factory=list)
    violation: str = ""  # what the contract check said, if it refused the value


def _run_student(seam: str, impl: Callable[..., Any], args: tuple, kwargs: dict, check: Check | None) -> _Outcome:
    """Runs in a student worker thread: the call with the fence up for ``seam``, then
    the contract check (here, so a check that reads a file never runs on the loop)."""
    with entered(seam) as frame:
        try:
            value = impl(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - judged by the caller
            return _Outcome(error=error, fenced=frame.fenced)
    if check is None:
        return _Outcome(value=value, fenced=frame.fenced)
    try:
        return _Outcome(value=check(value), fenced=frame.fenced)
    except ContractError as violation:  # what is wrong, then the value itself: the student sees both
        return _Outcome(fenced=frame.fenced, violation=f"{violation}; your {seam} returned {describe(value, 240)}")
    except Exception as error:  # a value so broken that checking it failed
        return _Outcome(fenced=frame.fenced, violation=f"could not check the value: {type(error).__name__}: {error}")
