"""How a check runs a student's part and turns what happened into :class:`Result` rows.

A check module (one per seam) is a list of :class:`Rule` s. Each rule is a small
function that sets up a real situation (a scripted peer on a loopback port, the lab DNS,
a running world), calls the student's implementation through :class:`Probe` (the same
fault boundary the world uses: its own thread, a deadline, the reference fence, the
contract), and either returns normally (the rule holds) or raises :class:`Broken` with
the step, what was expected and what came back. The harness adds the rule's title, its
RFC section, the transcript and any hint, so every rule reads the same to a student::

    report = run_rules("send_mail", RULES, my_send_mail)
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ..boundary import DEFAULT_DEADLINE, Boundary, SeamError
from ..seams import SEAMS, check_implementation
from ..trace import Tracer
from .result import Line, Report, Result


class Broken(Exception):
    """A rule does not hold: where, what was expected, what came back."""

    def __init__(self, step: str, expected: str, got: str, *, hint: str = "",
                 transcript: list[Line] | None = None) -> None:
        super().__init__(f"{step}: expected {expected}, got {got}")
        self.step, self.expected, self.got, self.hint = step, expected, got, hint
        self.transcript = transcript


@dataclass(frozen=True)
class Rule:
    """One rule of a seam's behaviour."""

    name: str  # a short id, for notebooks and grading: "helo-fallback"
    title: str  # what it checks, in a student's words: "EHLO refused (500): falls back to HELO"
    rfc: str  # "RFC 5321 §3.2"
    check: Callable[["Probe"], None]
    points: float = 1.0


class Probe:
    """A student's part as a rule sees it: ``probe(...)`` calls it the world's way.

    ``transcript`` collects the lines of the current rule (peers and worlds append to
    it); a call that fails in the boundary (raised, wrong type, deadline, fenced) is a
    :class:`Broken` with the student's traceback. ``part`` is what a world is given
    (:func:`student_world`): the implementation, always run as the student's."""

    def __init__(self, seam: str, impl: Any, *, deadline: float = DEFAULT_DEADLINE) -> None:
        self.seam, self.impl = seam, impl
        self.spec = SEAMS[seam]
        self.part = impl if self.spec.kind == "program" else _as_students(impl)
        self.tracer = Tracer()
        self.boundary = Boundary(self.tracer, deadline=deadline)
        self.transcript: list[Line] = []
        self._cleanups = contextlib.ExitStack()

    def __call__(self, *args: Any, check: Callable[[Any], Any] | None = None, step: str = "", **kwargs: Any) -> Any:
        """Call the implementation; exceptions of the seam's contract pass through."""
        try:
            return self.boundary.call(self.seam, "", self.impl, *args, student=True, check=check,
                                      passes=self.spec.passing(), **kwargs)
        except SeamError as error:
            raise self.failure(step or f"calling your {self.seam}", error.failure, error.detail,
                               error.traceback) from None

    def failure(self, step: str, failure: str, got: str, traceback_text: str = "", *, expected: str = "",
                hint: str = "") -> Broken:
        """The student's part failed in a boundary (``failure``: raised, contract,
        deadline or fenced): a :class:`Broken` with its traceback and that failure's hint."""
        got += f"\n{traceback_text.rstrip()}" if traceback_text else ""
        return Broken(step, expected or _EXPECTED[failure], got,
                      hint=_HINTS.get(failure, "").format(seam=self.seam, deadline=self.boundary.deadline) or hint)

    def note(self, direction: str, line: str) -> None:
        self.transcript.append((direction, line))

    def later(self, cleanup: Callable[[], Any]) -> None:
        """Run ``cleanup`` when the rule ends (stop a peer, a world)."""
        self._cleanups.callback(cleanup)

    def enter(self, manager: Any) -> Any:
        return self._cleanups.enter_context(manager)

    @contextlib.contextmanager
    def rule(self) -> Iterator[None]:
        self.transcript = []
        with self._cleanups:
            yield
        self._cleanups = contextlib.ExitStack()

    def close(self) -> None:
        self.boundary.shutdown()


def _as_students(impl: Any) -> Any:
    """``impl`` as a world must see it: always the student's, so the reference fence is
    up even when ``impl`` *is* labkit's own answer (which a world would run unfenced)."""

    def part(*args: Any, **kwargs: Any) -> Any:
        return impl(*args, **kwargs)

    return functools.update_wrapper(part, impl, updated=())


_EXPECTED = {
    "raised": "no exception (or one of the seam's own errors)",
    "contract": "a value the seam's contract allows",
    "deadline": "an answer within the deadline",
    "fenced": "your own code",
}
_HINTS = {
    "raised": "the traceback shows where your {seam} failed",
    "contract": "see labkit.lab for what {seam} returns",
    "deadline": "your {seam} took longer than {deadline:g}s: a blocking wait without a timeout, or a loop "
                "that never ends?",
    "fenced": "this part is yours to write: labkit's own {seam} earns no points",
}


def run_rules(seam: str, rules: Iterable[Rule], impl: Any, *, only: Iterable[str] | None = None,
              deadline: float = DEFAULT_DEADLINE, title: str = "") -> Report:
    """Check ``impl`` for ``seam`` against ``rules`` (or the ``only`` ones named)."""
    rules = list(rules)
    wanted = list(only) if only is not None else [r.name for r in rules]
    unknown = set(wanted) - {r.name for r in rules}
    if unknown:
        raise KeyError(f"no rules {sorted(unknown)} for {seam}; rules: {', '.join(r.name for r in rules)}")
    report = Report(title or f"{seam} checks")
    try:
        check_implementation(SEAMS[seam], impl)
    except TypeError as error:
        for rule in rules:
            if rule.name in wanted:
                report.add(Result(rule.title, "fail", step=f"plugging in your {seam}", expected=SEAMS[seam].call,
                                  got=str(error), rfc=rule.rfc, points=rule.points))
        return report
    probe = Probe(seam, impl, deadline=deadline)
    try:
        for rule in rules:
            if rule.name in wanted:
                report.add(_one(probe, rule))
    finally:
        probe.close()
    return report


def student_world(probe: Probe, host: str | None = None) -> Any:
    """A lab world for this rule (stopped when it ends) that runs the student's part,
    on every host or on ``host`` only, with the probe's deadline."""
    from ..world import World

    world = probe.enter(World(deadline=probe.boundary.deadline))
    world.use(host=host, **{probe.seam: probe.part})
    return world


def _seam_failed(probe: Probe, event: Any) -> bool:
    return event.kind == "seam-error" and event.data.get("seam") == probe.seam


def _seam_broken(probe: Probe, event: Any, step: str, expected: str = "", hint: str = "") -> Broken:
    return probe.failure(step, event.data.get("failure", ""), event.line, event.data.get("traceback", ""),
                         expected=expected, hint=hint)


def in_world(probe: Probe, world: Any, predicate: Callable[[Any], bool], *, step: str, expected: str,
             hint: str = "", since: float = 0.0) -> Any:
    """Wait for an event of ``world``'s trace matching ``predicate``; a seam-error of
    the student's part ends the wait at once, as a :class:`Broken` with its traceback.
    If nothing comes, the last deferral or failure in the trace is what came back."""
    try:
        event = world.wait_for(lambda e: predicate(e) or _seam_failed(probe, e),
                               timeout=probe.boundary.deadline + 5, since=since)
    except TimeoutError:
        problems = [e.line for e in world.tracer.events() if e.kind in ("deferred", "failed", "seam-error")]
        raise Broken(step, expected, problems[-1] if problems else "nothing happened", hint=hint) from None
    if _seam_failed(probe, event):
        raise _seam_broken(probe, event, step, expected, hint)
    return event


def seam_failed(probe: Probe, world: Any, step: str, expected: str = "") -> None:
    """Raise :class:`Broken` (with the traceback) if the student's part has failed in
    ``world`` so far: for a rule that sees the failure as the world's error reply."""
    for event in world.tracer.events():
        if _seam_failed(probe, event):
            raise _seam_broken(probe, event, step, expected)


def watch_world(probe: Probe, world: Any, show: Callable[[Any], bool]) -> None:
    """Copy the world's trace events that ``show`` picks into the rule's transcript."""

    def note(event: Any) -> None:
        if show(event):
            line = event.line if event.direction == "*" else f"{event.client} -> {event.server}: {event.line}"
            probe.note(event.direction, line)

    probe.later(world.tracer.subscribe(note))


def entry_points(seam: str, rules: list[Rule]) -> tuple[Callable[..., Report], Callable[..., None]]:
    """A check module's ``run`` and ``check`` for ``seam``::

        run, check = entry_points("send_mail", RULES)
    """

    def run(impl: Any, only: Iterable[str] | None = None, *, deadline: float = DEFAULT_DEADLINE) -> Report:
        return run_rules(seam, rules, impl, only=only, deadline=deadline, title=seam)

    def check(impl: Any, only: Iterable[str] | None = None, *, deadline: float = DEFAULT_DEADLINE) -> None:
        run(impl, only, deadline=deadline).assert_passed()

    run.__doc__ = f"Every rule (or the ``only`` ones named) for a ``{seam}`` implementation: a Report."
    check.__doc__ = (f"For a test cell: ``run``, then raise CheckFailed (an AssertionError) if a rule of ``{seam}`` "
                     "failed, else show the rows.")
    return run, check


def _one(probe: Probe, rule: Rule) -> Result:
    try:
        with probe.rule():
            rule.check(probe)
    except Broken as broken:
        transcript = broken.transcript if broken.transcript is not None else probe.transcript
        return Result(rule.title, "fail", step=broken.step, expected=broken.expected, got=broken.got,
                      rfc=rule.rfc, hint=broken.hint, transcript=transcript[-40:], points=rule.points)
    except Exception as error:  # the check itself could not run: say so, do not crash the notebook
        return Result(rule.title, "fail", step="running the check", expected="the check to run",
                      got=f"{type(error).__name__}: {error}", rfc=rule.rfc, transcript=probe.transcript[-40:],
                      points=rule.points)
    return Result(rule.title, "pass", rfc=rule.rfc, points=rule.points)
