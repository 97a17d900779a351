"""The reference fence: labkit's own answer for a part cannot be used while a student's
code for that part runs.

Each seam's registry entry (:data:`labkit.seams.SEAMS`) names labkit's answer for it and
the other names that are part of that answer (``labkit.smtp.client:ClientTransaction``
for ``send_mail``). :func:`install` puts an import hook in place that wraps each of those
names the moment its module is imported, so the protocol cores themselves know nothing of
seams: a function checks the fence before it runs, a class in ``__init__``. While a
student's part for seam S runs (:func:`entered`, in :mod:`labkit.boundary`), calling a
fenced name of S raises :class:`ReferenceUsed` and is recorded, so the call counts as
failed even if the student catches the exception.

This is a helpful message in a notebook, not a defence: when a lab is graded, the
student's kernel holds no reference implementation at all (see ``labkit.grade``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import sys
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence


class ReferenceUsed(RuntimeError):
    """Student code called labkit's own implementation of the part it replaces."""


@dataclass
class Frame:
    seam: str
    fenced: list[str] = field(default_factory=list)  # what the student tried to call


_running = threading.local()


def _stack() -> list[Frame]:
    stack = getattr(_running, "stack", None)
    if stack is None:
        stack = _running.stack = []
    return stack


@contextlib.contextmanager
def entered(seam: str) -> Iterator[Frame]:
    """Student code for ``seam`` runs in this thread for the duration."""
    frame = Frame(seam)
    stack = _stack()
    stack.append(frame)
    try:
        yield frame
    finally:
        stack.remove(frame)


def check_fence(seam: str, what: str) -> None:
    """Raise :class:`ReferenceUsed` if student code for ``seam`` is running here."""
    for frame in _stack():
        if frame.seam == seam:
            frame.fenced.append(what)
            raise ReferenceUsed(
                f"{what} is labkit's own {seam}: this part is yours to write, so it cannot be used "
                f"while your {seam} runs (see labkit.lab for the helpers you may use)"
            )


def fence(seam: str, obj: Any) -> Any:
    """``obj`` (a function or class) as labkit's answer for ``seam``: fenced."""
    what = f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, type):
        init = obj.__init__

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            check_fence(seam, what)
            init(self, *args, **kwargs)

        obj.__init__ = __init__  # type: ignore[misc]
        return obj

    @functools.wraps(obj)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_fence(seam, what)
        return obj(*args, **kwargs)

    return wrapper


class _FencingLoader(importlib.abc.Loader):
    """Runs a module as its own loader would, then fences the names listed for it."""

    def __init__(self, loader: Any, names: Sequence[tuple[str, str]]) -> None:
        self.loader, self.names = loader, names

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        for attribute, seam in self.names:
            found = vars(module).get(attribute)  # a graded kernel's stand-in module has none of them
            if found is not None:
                setattr(module, attribute, fence(seam, found))


class _FencingFinder(importlib.abc.MetaPathFinder):
    def __init__(self, fenced: Callable[[], dict[str, list[tuple[str, str]]]]) -> None:
        self._fenced = fenced

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        names = self._fenced().get(fullname)
        if not names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:  # not here (a graded kernel): nothing to fence
            return None
        spec.loader = _FencingLoader(spec.loader, names)
        return spec


def install(fenced: Callable[[], dict[str, list[tuple[str, str]]]]) -> None:
    """Fence, at import, the names ``fenced()`` lists: module -> [(attribute, seam)].
    Once per process; a module imported before cannot be fenced (it raises)."""
    if any(isinstance(f, _FencingFinder) for f in sys.meta_path):
        return
    early = [name for name in fenced() if name in sys.modules]
    if early:
        raise RuntimeError(f"labkit.fence.install: {', '.join(early)} imported before the fence")
    sys.meta_path.insert(0, _FencingFinder(functools.cache(fenced)))
