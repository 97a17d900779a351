"""How a check runs a student's part and turns what happened into :class:`Result` rows.

A check module (one per seam) is a list of :class:`Rule` s. Each rule is a small
function that sets up a real situation (a scripted peer on a loopback port, the lab DNS,
a running world), calls the student's implementation through :class:`Probe` (the same
fault boundary the world uses: its own thread, a deadline, the reference fence, the
contract), and either returns normally (the rule holds) or raises :class:`Broken` with
the step, what was expected and what came back. The harness adds the rule's title, its
RFC section, the transcript and any hint, so every rule reads the same to a student::

    report = run_rules("send_mail", RULES, my_send_mail)

A rule that needs the running system takes a lab world from :meth:`Probe.world`; there
the world's own boundary runs the student's part, and :meth:`Probe.watching`,
:meth:`Probe.wait` and :meth:`Probe.delivered` turn a failure it traced (a seam-error
event) into the same :class:`Broken`, with the student's traceback.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import functools
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..boundary import DEFAULT_DEADLINE, Boundary, SeamError
from ..seams import SEAMS, check_implementation
from ..trace import TraceEvent, Tracer, delivered_to
from .result import Line, Report, Result

if TYPE_CHECKING:
    from ..world import World

# Notes of a world's trace that tell a rule's story (besides the protocol lines).
STORY = ("seam-error", "deferred", "failed", "delivered")
SHOWN_LINES = 40  # a failed row shows this many of the last lines of its rule's transcript

# The lecture world's people, as the rules address them.
ALBERT, BETTY, CAROL, DAVE = "albert@awesome.com", "betty@brilliant.com", "carol@careful.com", "dave@brilliant.com"
# Albert's mail to Betty, for a rule that needs a message, not a particular one.
DINNER = b"From: Albert <albert@awesome.com>\r\nTo: Betty <betty@brilliant.com>\r\nSubject: Dinner\r\n\r\nTonight?\r\n"


def parsed(message: bytes) -> EmailMessage:
    """``message`` as mail software reads it: the stdlib parser, with its modern policy."""
    return email.message_from_bytes(message, policy=email.policy.default)


class Broken(Exception):
    """A rule does not hold: where, what was expected, what came back. ``failure`` is
    the boundary's word when the student's part itself failed (``raised``,
    ``contract``, ``deadline``, ``fenced``), "" when it answered wrongly."""

    def __init__(self, step: str, expected: str, got: str, *, hint: str = "", failure: str = "") -> None:
        super().__init__(f"{step}: expected {expected}, got {got}")
        self.step, self.expected, self.got, self.hint, self.failure = step, expected, got, hint, failure


CONTEXT = 40  # characters shown either side of where a long value differs from the expected one
LONG = 100  # a value longer than this (as repr) is shown around the difference only


def shown(value: Any) -> str:
    """``value`` as a row shows it: its repr, with its type named when that is not obvious."""
    text = repr(value)
    if isinstance(value, (str, bytes, int, float, list, tuple, dict, type(None))) or text.startswith(
            type(value).__name__):
        return text
    return f"{type(value).__name__} {text}"


def difference(expected: Any, got: Any) -> tuple[str, str, str]:
    """(expected, got, what differs) as a row shows them. A value of the wrong type says
    so; a long str or bytes is shown around the first place it differs (with the octet's
    offset), so the mistake is in view however long the value is."""
    if type(expected) is not type(got) and not (isinstance(expected, (str, bytes)) and isinstance(got, type(expected))):
        return (shown(expected), shown(got),
                f"a {type(got).__name__} where a {type(expected).__name__} belongs")
    if not isinstance(expected, (str, bytes)) or max(len(repr(expected)), len(repr(got))) <= LONG:
        return repr(expected), repr(got), ""
    at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
    unit = "octet" if isinstance(expected, bytes) else "character"

    def window(value: Any) -> str:
        start = max(0, at - CONTEXT)
        text = repr(value[start:at + CONTEXT])
        return ("…" if start else "") + text + ("…" if at + CONTEXT < len(value) else "")

    where = f"they differ at {unit} {at}" + (f" (yours is {len(got)} {unit}s long, {len(expected)} expected)"
                                           if len(got) != len(expected) else "")
    return window(expected), window(got), where


@dataclass(frozen=True)
class Rule:
    """One rule of a seam's behaviour."""

    name: str  # a short id, for notebooks and grading: "helo-fallback"
    title: str  # what it checks, in a student's words: "EHLO refused (500): falls back to HELO"
    rfc: str  # "RFC 5321 §3.2"
    check: Callable[["Probe"], None]
    points: float = 1.0
    hint: str = ""  # what the rule teaches, said whenever it fails because the part itself failed (raised, hung)
    variant_of: str = ""  # a hidden test's rule: the same rule in another situation (the visible rule's name)


class Probe:
    """A student's part as a rule sees it: ``probe(...)`` calls it the world's way.

    ``transcript`` collects the lines of the current rule (peers and worlds append to
    it); a call that fails in the boundary (raised, wrong type, deadline, fenced) is a
    :class:`Broken` with the student's traceback. ``part`` is what a world is given:
    the implementation, always run as the student's."""

    def __init__(self, seam: str, impl: Any, *, deadline: float = DEFAULT_DEADLINE) -> None:
        self.seam, self.impl = seam, impl
        self.spec = SEAMS[seam]
        self.part = impl if self.spec.kind == "program" else _as_students(impl)
        self.tracer = Tracer()
        self.boundary = Boundary(self.tracer, deadline=deadline)
        self.transcript: list[Line] = []
        self._cleanups = contextlib.ExitStack()

    def __call__(self, *args: Any, step: str = "", **kwargs: Any) -> Any:
        """Call the implementation as the world would (:meth:`SeamSpec.call_part`: the
        deadline, the fence, the seam's contract); its own exceptions pass through."""
        try:
            return self.spec.call_part(self.boundary, "", (self.impl, True), *args, **kwargs)
        except SeamError as error:
            raise self.broken(error.failure, error.detail, error.traceback, step) from None

    def broken(self, failure: str, detail: str, traceback_text: str = "", step: str = "") -> Broken:
        """The :class:`Broken` for a failure of the student's part (raised, contract,
        deadline, fenced), in the boundary's words, with the student's traceback."""
        got = detail + (f"\n{traceback_text.rstrip()}" if traceback_text else "")
        return Broken(step or f"calling your {self.seam}", _EXPECTED.get(failure, "your part to work"), got,
                      hint=_HINTS.get(failure, "").format(seam=self.seam, deadline=self.boundary.deadline),
                      failure=failure)

    # -- in a running world ------------------------------------------------------------
    def world(self, *, host: str | None = None, servers: Iterable[str] = (), plug: bool = True,
              part: Any = None, lines: bool = True) -> "World":
        """A lab world for this rule (stopped when the rule ends), the student's part
        plugged in (on ``host`` only, if given): :attr:`part`, or ``part`` (a wrapper of
        the student's that records what it did); ``plug=False``: labkit's own. The
        transcript gets the protocol lines of ``servers``, the lines the student's part
        spoke, and the notes in STORY; ``lines=False``: the notes only (a rule that
        talks to the world itself writes its own side of the dialogue, in order)."""
        from ..world import World

        world = self.enter(World(deadline=self.boundary.deadline, control=False))  # the rule's own
        shown = set(servers)

        def show(event: TraceEvent) -> None:
            if event.kind == "line" and not lines:
                return
            if event.kind in STORY or event.seam == self.seam or (event.kind == "line" and event.server in shown):
                ends = (event.client, event.server) if event.direction == "C" else (event.server, event.client)
                where = f"{ends[0]} -> {ends[1]}: " if event.kind == "line" else ""
                self.note(event.direction, where + event.line)

        self.later(world.tracer.subscribe(show))
        if plug:
            world.use(host=host, **{self.seam: self.part if part is None else part})
        return world

    def _failed_in(self, event: TraceEvent) -> bool:
        return event.kind == "seam-error" and event.data.get("seam") == self.seam

    def raise_world_failure(self, world: "World", step: str) -> None:
        """Raise the :class:`Broken` for the first failure of the student's part the
        world traced (its seam-error event), if there was one."""
        for event in world.tracer.events():
            if self._failed_in(event):
                data = event.data
                raise self.broken(data["failure"], data["detail"], data.get("traceback", ""), step)

    @contextlib.contextmanager
    def watching(self, world: "World", step: str, expected: str, hint: str = "") -> Iterator[None]:
        """Run a client's part of a rule against the world. If the student's part
        failed there, that failure is the verdict (it explains whatever the client saw);
        otherwise any error of the client's is a :class:`Broken` at ``step``."""
        try:
            yield
        except Exception as error:
            self.raise_world_failure(world, step)
            if isinstance(error, Broken):
                raise
            raise Broken(step, expected, f"{type(error).__name__}: {error}", hint=hint) from None
        self.raise_world_failure(world, step)

    def wait(self, world: "World", predicate: Callable[[TraceEvent], bool], *, step: str, expected: str,
             timeout: float | None = None, hint: str = "") -> TraceEvent:
        """Wait for a trace event; a failure of the student's part ends the wait at once
        (as a :class:`Broken`), and so does the timeout (saying what last went wrong)."""
        timeout = self.boundary.deadline + 5 if timeout is None else timeout
        try:
            event = world.wait_for(lambda e: predicate(e) or self._failed_in(e), timeout)
        except TimeoutError:
            problems = [e.line for e in world.tracer.events() if e.kind in ("deferred", "failed")]
            raise Broken(step, expected, problems[-1] if problems else f"nothing within {timeout:g}s",
                         hint=hint) from None
        self.raise_world_failure(world, step)
        return event

    def delivered(self, world: "World", recipient: str, *, step: str, expected: str = "",
                  hint: str = "") -> TraceEvent:
        """:meth:`wait` until a message for ``recipient`` is in its Maildir."""
        return self.wait(world, delivered_to(recipient), step=step, expected=expected or f"{recipient} has the mail",
                         hint=hint)

    def stored(self, world: "World", address: str, index: int = -1) -> EmailMessage:
        """A message in ``address``'s Maildir (oldest first; default: the newest), parsed."""
        return parsed(world.messages(address)[index])

    def note(self, direction: str, line: str) -> None:
        self.transcript.append((direction, line))

    def later(self, cleanup: Callable[..., Any], *args: Any) -> None:
        """Run ``cleanup(*args)`` when the rule ends (stop a peer, a world)."""
        self._cleanups.callback(cleanup, *args)

    def enter(self, manager: Any) -> Any:
        return self._cleanups.enter_context(manager)

    @contextlib.contextmanager
    def rule(self) -> Iterator[None]:
        self.transcript = []
        with self._cleanups:  # an ExitStack may be entered again: it is empty once it has exited
            yield

    def close(self) -> None:
        self.boundary.shutdown()


def _as_students(impl: Any) -> Any:
    """``impl`` as a world must see it: always the student's, so the reference fence is
    up even when ``impl`` *is* labkit's own answer (which a world would run unfenced)."""

    def part(*args: Any, **kwargs: Any) -> Any:
        return impl(*args, **kwargs)

    return functools.update_wrapper(part, impl, updated=())


_EXPECTED = {
    "raised": "no exception (other than the errors the seam's contract allows: see labkit.lab)",
    "contract": "a value the seam's contract allows",
    "deadline": "an answer within the deadline",
    "fenced": "your own code",
}
_HINTS = {
    "raised": "the traceback shows where your {seam} failed",
    "contract": "got: says what is wrong with the value your {seam} returned (shown after it); labkit.lab "
                "describes what {seam} returns",
    "deadline": "your {seam} took longer than {deadline:g}s: a blocking wait without a timeout, or a loop "
                "that never ends?",
    "fenced": "this part is yours to write: labkit's own {seam} earns no points",
}


def run_rules(seam: str, rules: Iterable[Rule], impl: Any, *, only: Iterable[str] | None = None,
              deadline: float = DEFAULT_DEADLINE) -> Report:
    """Check ``impl`` for ``seam`` against ``rules`` (or the ``only`` ones named), in a
    :class:`Report` titled ``seam``."""
    rules = list(rules)
    if only is not None:
        wanted = set(only)
        unknown = wanted - {r.name for r in rules}
        if unknown:
            raise KeyError(f"no rules {sorted(unknown)} for {seam}; rules: {', '.join(r.name for r in rules)}")
        rules = [r for r in rules if r.name in wanted]
    report = Report(seam)
    try:
        check_implementation(SEAMS[seam], impl)
    except TypeError as error:
        for rule in rules:
            report.add(Result(rule.title, "fail", step=f"plugging in your {seam}", expected=SEAMS[seam].call,
                              got=str(error), rfc=rule.rfc, points=rule.points))
        return report
    probe = Probe(seam, impl, deadline=deadline)
    try:
        for rule in rules:
            report.add(_one(probe, rule))
    finally:
        probe.close()
    return report


def entry_points(seam: str, rules: list[Rule]) -> tuple[Callable[..., Report], Callable[..., None]]:
    """A check module's ``run(impl, only=None, *, deadline=5.0)`` and ``check(...)``."""

    def run(impl: Any, only: Iterable[str] | None = None, *, deadline: float = DEFAULT_DEADLINE) -> Report:
        return run_rules(seam, rules, impl, only=only, deadline=deadline)

    def check(impl: Any, only: Iterable[str] | None = None, *, deadline: float = DEFAULT_DEADLINE) -> None:
        run(impl, only, deadline=deadline).assert_passed()

    run.__doc__ = f"Every rule (or the ``only`` ones) for a ``{seam}`` implementation: a Report."
    check.__doc__ = (f"For a test cell: ``run``, then raise CheckFailed (an AssertionError) if a rule of ``{seam}`` "
                     "failed, else show the rows (and return nothing).")
    for fn in (run, check):
        fn.__module__, fn.__qualname__ = f"labkit.checks.{seam}", fn.__name__
    return run, check


def _one(probe: Probe, rule: Rule) -> Result:
    try:
        with probe.rule():
            rule.check(probe)
    except Broken as broken:
        hint = broken.hint
        if rule.hint and (broken.failure in ("raised", "deadline", "contract") or not hint):
            hint = "; ".join(h for h in (rule.hint, hint) if h)  # what the rule is about, then what failed
        return Result(rule.title, "fail", step=broken.step, expected=broken.expected, got=broken.got,
                      rfc=rule.rfc, hint=hint, transcript=probe.transcript[-SHOWN_LINES:],
                      points=rule.points)
    except Exception as error:  # the check itself could not run: say so, do not crash the notebook
        return Result(rule.title, "fail", step="running the check", expected="the check to run",
                      got=f"{type(error).__name__}: {error}", rfc=rule.rfc,
                      transcript=probe.transcript[-SHOWN_LINES:], points=rule.points)
    return Result(rule.title, "pass", rfc=rule.rfc, points=rule.points)
