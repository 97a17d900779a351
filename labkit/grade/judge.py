"""The judge: the grader's process beside one graded kernel, in that kernel's network namespace.

    python -m labkit.grade.judge --control FD --kernel FD

It is started with the kernel (:mod:`labkit.grade.pod`) and holds everything of
labkit's that a graded notebook must not: the lab world the notebook starts (its
``World()`` is a :class:`~labkit.graded.RemoteWorld` that asks here), and the checks.
Two channels (:mod:`labkit.channel`), each handed over at start:

- **the kernel's**: the notebook's world operations (``world.start``, ``world.send``, ...),
  the MTA questions of a student's SMTP session (:class:`~.stand_ins.Policies`), and, the
  other way, the calls into the student's parts (:mod:`.stand_ins`). Everything the
  kernel sends is untrusted data, checked field by field.
- **the worker's**: ``judge.cell``, one autograded cell's checks, run here against the
  student's objects, named in the cell as the course wrote it (:mod:`.verdict`). The
  verdict goes back to the worker, never through the kernel.

Its worlds listen on this namespace's loopback, so the notebook's own sockets (a DNS
query, a Telnet to port 25) reach them; the world's trace is pushed to the kernel as it
happens. Lab 0's answers are compared with this judge's record of the run (its world's
trace and Maildirs), never with data the kernel reports.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import threading
from typing import Any

from ..channel import BadRequest, Channel, ChannelClosed, Decoder, Encoder, RemoteError, field
from ..checks import Report, Result
from ..seams import SEAMS
from ..trace import TraceEvent
from . import verdict
from .stand_ins import Policies, stand_in

log = logging.getLogger(__name__)
MAX_WORLDS = 4  # worlds one notebook may run at once
MAX_MESSAGE = 32 << 20
FLUSH_EVERY = 0.02  # seconds between pushes of trace events to the kernel


class _Pushed:
    """A world's trace events, pushed to the kernel in batches (and before every answer
    to the kernel, so it never hears of a result before the events that led to it)."""

    def __init__(self, channel: Channel, world_id: int) -> None:
        self.channel, self.world_id = channel, world_id
        self._pending: list[TraceEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: TraceEvent) -> None:
        with self._lock:
            self._pending.append(event)

    def flush(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
            if events:  # sent under the lock: batches stay in order
                try:
                    self.channel.notify("world.trace", {"world": self.world_id, "events": Encoder()(events)})
                except (ChannelClosed, BadRequest):
                    pass


class Judge:
    """Serves one kernel's world and judges its cells."""

    def __init__(self, kernel: Channel) -> None:
        self.kernel = kernel
        self.policies = Policies(kernel)
        self.worlds: dict[int, Any] = {}
        self.pushers: dict[int, _Pushed] = {}
        self._ids = iter(range(1, 1_000_000))
        self._lock = threading.Lock()
        for name, handler in {
            "world.start": self.world_start, "world.stop": self.world_stop, "world.use": self.world_use,
            "world.send": self.world_send, "world.messages": self.world_messages, "world.behave": self.world_behave,
            "world.retry_now": self.world_retry_now, "world.dns_fault": self.world_dns_fault,
            "world.note_peer": self.world_note_peer, "world.muttrc": self.world_muttrc,
        }.items():
            kernel.handlers[name] = self._flushing(handler)
        threading.Thread(target=self._push_loop, name="labkit-judge-push", daemon=True).start()

    def _flushing(self, handler: Any) -> Any:
        def serve(args: dict, fds: list[int]) -> Any:
            try:
                return handler(args, fds)
            finally:
                self.flush()

        return serve

    def flush(self) -> None:
        for pusher in list(self.pushers.values()):
            pusher.flush()

    def _push_loop(self) -> None:
        while not self.kernel.closed.wait(FLUSH_EVERY):
            self.flush()

    # -- the notebook's world ----------------------------------------------------------------------
    def _world(self, args: dict) -> Any:
        world = self.worlds.get(args.get("world"))  # type: ignore[arg-type]
        if world is None:
            raise BadRequest("no such world (start it first)")
        return world

    def world_start(self, args: dict, fds: list[int]) -> Any:
        from ..world import World

        seed = field(args, "seed", str, default=None, limit=200)
        deadline = field(args, "deadline", (int, float), default=None)
        with self._lock:
            if len([w for w in self.worlds.values() if w.aworld.started]) >= MAX_WORLDS:
                raise BadRequest(f"at most {MAX_WORLDS} worlds at once: stop one first")
            ident = next(self._ids)
        # its own state dir: stopping it keeps its record (trace, Maildirs) for the checks
        options: dict[str, Any] = {"seed": seed, "state_dir": tempfile.mkdtemp(prefix=f"world-{ident}-"),
                                   "control": False}  # its state dir is in the scratch the kernel shares
        if deadline is not None:
            options["deadline"] = min(max(float(deadline), 0.1), 60.0)
        world = World(**options).start()
        pusher = _Pushed(self.kernel, ident)
        for event in world.tracer.events():
            pusher(event)
        world.tracer.subscribe(pusher)
        with self._lock:
            self.worlds[ident], self.pushers[ident] = world, pusher
        routes = [[[address, port], [e.host, e.port]] for (address, port), e in
                  world.context.addresses.routes().items()]
        return Encoder()({"id": ident, "info": world.info(), "routes": routes})

    def world_stop(self, args: dict, fds: list[int]) -> None:
        world = self._world(args)
        if world.aworld.started:
            world.stop()  # its record (trace, Maildirs) stays, for the checks

    def world_use(self, args: dict, fds: list[int]) -> None:
        world = self._world(args)
        host = field(args, "host", str, default=None, limit=200)
        given = field(args, "parts", dict)
        if len(given) > len(SEAMS):
            raise BadRequest("parts: a map of seam names")
        parts = {name: Decoder(special=_refs)(ref) for name, ref in given.items()}  # each a ref, a program or None
        plugged = {}
        for name, ref in parts.items():
            spec = SEAMS.get(name) if isinstance(name, str) else None
            if spec is None:
                raise BadRequest(f"no seam {name!r}")
            if ref is None:
                plugged[name] = None
            elif isinstance(ref, _Ref) and spec.kind != "program":
                plugged[name] = stand_in(spec, self.kernel, self.policies, ref.ident)
            elif isinstance(ref, _Program) and spec.kind == "program":
                plugged[name] = stand_in(spec, self.kernel, self.policies, ref.path)
            else:
                raise BadRequest(f"{name}: not a part of that kind")
        world.use(host=host, **plugged)

    def world_send(self, args: dict, fds: list[int]) -> Any:
        world = self._world(args)
        decoded = Decoder(special=_refs)(args.get("message"))
        if not isinstance(decoded, bytes) or len(decoded) > MAX_MESSAGE:
            raise BadRequest("message: bytes, at most 32 MB")
        rcpt_to = field(args, "rcpt_to", list, limit=1000)
        if not all(isinstance(r, str) for r in rcpt_to):
            raise BadRequest("rcpt_to: a list of addresses")
        client = Decoder(special=_refs)(args.get("client")) if args.get("client") is not None else None
        options = {"auth": field(args, "auth", bool, default=True), "port": field(args, "port", int, default=587),
                   "source": field(args, "source", str, default="", limit=64)}
        if isinstance(client, _Ref):
            options["client"] = stand_in(SEAMS["send_mail"], self.kernel, self.policies, client.ident)
        return Encoder()(world.send(field(args, "mail_from", str, limit=1000), rcpt_to, decoded, **options))

    def world_messages(self, args: dict, fds: list[int]) -> Any:
        world = self._world(args)
        try:
            return Encoder()(world.messages(field(args, "address", str, limit=1000)))
        except KeyError as error:
            raise RemoteError("key", str(error)) from None

    def world_behave(self, args: dict, fds: list[int]) -> None:
        world = self._world(args)
        try:
            world.set_behaviour(field(args, "host", str, limit=200), field(args, "behaviour", str, limit=40))
        except (KeyError, ValueError) as error:
            raise RemoteError("value", str(error)) from None

    def world_retry_now(self, args: dict, fds: list[int]) -> None:
        self._world(args).retry_now()

    def world_dns_fault(self, args: dict, fds: list[int]) -> None:
        fault = field(args, "fault", str, default=None, limit=20)
        if fault not in (None, "servfail", "timeout"):
            raise BadRequest("fault: servfail, timeout or None")
        self._world(args).dns.inject_fault(field(args, "name", str, limit=300), fault)

    def world_note_peer(self, args: dict, fds: list[int]) -> None:
        sockname = field(args, "sockname", list, limit=2)
        if len(sockname) != 2 or not isinstance(sockname[0], str) or not isinstance(sockname[1], int):
            raise BadRequest("sockname: [address, port]")
        self._world(args).context.addresses.note_peer(tuple(sockname), field(args, "virtual", str, limit=64))

    def world_muttrc(self, args: dict, fds: list[int]) -> str:
        return self._world(args).muttrc(field(args, "address", str, limit=1000),
                                        maildir=field(args, "maildir", bool, default=False))

    # -- judging a cell ----------------------------------------------------------------------------
    def judge_cell(self, args: dict, fds: list[int]) -> Any:
        """One autograded cell: its checks, run here. ``{"passed", "reports", "unjudged"}``:
        ``unjudged`` (with no verdict) says why the cell could not be judged."""
        source = field(args, "source", str, limit=100_000)
        deadline = field(args, "deadline", (int, float), default=5.0)
        try:
            calls = verdict.parse(source)
        except verdict.NotJudgeable as error:
            return {"passed": None, "reports": [], "cause": "course",
                    "unjudged": f"the course's cell cannot be run outside the notebook: {error}"}
        reports = []
        for call in calls:
            if self.kernel.closed.is_set():
                break
            reports.append(self._run(call, float(deadline)))
        if self.kernel.closed.is_set():
            return {"passed": None, "reports": [], "cause": "channel",
                    "unjudged": f"the notebook's channel to the grader was lost ({self.kernel.why_closed})"}
        return {"passed": all(r.passed for r in reports), "reports": [r.to_json() for r in reports], "unjudged": "",
                "cause": ""}

    def _lookup(self, name: str) -> Any:
        return Decoder(special=_refs)(self.kernel.request("lookup", {"name": name}, timeout=30))

    def _run(self, call: verdict.CheckCall, deadline: float) -> Report:
        import importlib

        module = importlib.import_module(f"labkit.checks.{call.module}")
        try:
            if call.module == "story":
                world = self._lookup(call.target)
                if not isinstance(world, _World) or world.ident not in self.worlds:
                    return _broken(call, f"{call.target} is the world your notebook started",
                                   f"{call.target} is not a world")
                answers = {name: self._lookup(source) for name, source in call.answers.items()}
                return module.run(self.worlds[world.ident], **answers)
            found, spec = self._lookup(call.target), SEAMS[call.module]
            if spec.kind == "program" and isinstance(found, str):  # a path in the kernel: its program
                part = stand_in(spec, self.kernel, self.policies, found)
            elif isinstance(found, _Ref) and spec.kind != "program":
                part = stand_in(spec, self.kernel, self.policies, found.ident)
            else:
                wanted = "the path of your program" if spec.kind == "program" else "your function or class"
                return _broken(call, f"{call.target} to be {wanted}", f"{call.target} is {type(found).__name__}")
            return module.run(part, call.rules, deadline=deadline)
        except RemoteError as error:  # the name is not there, or the kernel refused
            return _broken(call, f"{call.target} defined in your notebook", str(error))


class _Ref:
    def __init__(self, ident: int) -> None:
        self.ident = ident


class _World:
    def __init__(self, ident: int) -> None:
        self.ident = ident


class _Program:
    def __init__(self, path: str) -> None:
        self.path = path


def _refs(value: dict, decoder: Decoder) -> Any:
    """The kernel's references: to a student's object, to one of its worlds."""
    tag, ident = value.get("$"), value.get("id")
    if tag in ("ref", "world") and isinstance(ident, int):
        return _Ref(ident) if tag == "ref" else _World(ident)
    if tag == "program" and isinstance(value.get("v"), str) and len(value["v"]) < 4096:
        return _Program(value["v"])
    return NotImplemented


def _broken(call: verdict.CheckCall, expected: str, got: str) -> Report:
    report = Report(call.module)
    report.add(Result(f"the grader looks up {call.target} in your notebook", "fail", step="looking it up",
                      expected=expected, got=got))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="labkit.grade.judge")
    parser.add_argument("--control", type=int, required=True, help="the worker's channel (a file descriptor)")
    parser.add_argument("--kernel", type=int, required=True, help="the kernel's channel (a file descriptor)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="judge: %(levelname)s %(message)s")
    kernel = Channel(socket.socket(fileno=args.kernel), name="labkit-judge-kernel")
    judge = Judge(kernel)
    done = threading.Event()
    control = Channel(socket.socket(fileno=args.control), {"judge.cell": judge.judge_cell,
                                                            "judge.ping": lambda a, f: "pong"},
                      name="labkit-judge-control", on_close=lambda why: done.set())
    kernel.start()
    control.start()
    from .. import world  # noqa: F401 - now, while the pod waits for its submission: not in the first cell's time
    done.wait()  # the worker is done with us (or gone): so are we


if __name__ == "__main__":
    main()
