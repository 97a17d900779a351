"""Your parts from your earlier labs, for the capstone: the whole lecture story on your code.

Each lab's notebook names its parts in its autograded test cells
(``checks.send_mail.check(send_mail, [...])``: the seam, and the name of your part).
:func:`earlier_parts` reads the notebooks of the earlier labs (by default every lab folder
next to the running notebook's), runs their imports, constants and answer cells in a
namespace of their own (never a world they start), and takes the parts their test cells
name. A part that is still the stub (``raise NotImplementedError()``), or whose cell
fails, stays labkit's own, and the report says why. ::

    parts = earlier_parts("..")
    print(parts.report())
    world.use(route=parts.get("route"))        # None: labkit's own
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


@dataclass(frozen=True)
class Part:
    """One of your parts: the implementation, the lab it comes from, its name there."""

    seam: str
    impl: Any
    lab: str
    name: str


@dataclass
class Parts:
    """The parts found, by seam, and why the others were not."""

    found: dict[str, Part] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # seam -> why labkit's own stays

    def get(self, seam: str) -> Any:
        """Your part for ``seam``, or None (labkit's own, for ``world.use``)."""
        part = self.found.get(seam)
        return part.impl if part else None

    def report(self, seams: Iterable[str] = ()) -> str:
        """Which part comes from where; ``seams``: the ones the story uses, in its order
        (one no earlier lab names is labkit's own, or this lab's)."""
        order = list(dict.fromkeys([*seams, *self.found, *self.missing]))
        rows = []
        for seam in order:
            part = self.found.get(seam)
            why = self.missing.get(seam, "no earlier lab next to this one has it")
            rows.append(f"  {seam:16} " + (f"yours: {part.name} from {part.lab}" if part else f"labkit's own: {why}"))
        return "\n".join(["the parts of the story:", *rows])


def _cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        source = cell.get("source", "")
        cell["text"] = "".join(source) if isinstance(source, list) else source
        cell["nbgrader"] = cell.get("metadata", {}).get("nbgrader", {})
    return [c for c in cells if c.get("cell_type") == "code"]


def _tree(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except SyntaxError:  # a cell magic (%%writefile), or a half-written answer
        return None


def _named_parts(cells: list[dict]) -> dict[str, str]:
    """seam -> the name of the part, as the lab's autograded test cells check it."""
    from .grade.verdict import NotJudgeable, parse

    named: dict[str, str] = {}
    for cell in cells:
        if cell["nbgrader"].get("grade") and not cell["nbgrader"].get("solution"):
            try:
                named.update({c.module: c.target for c in parse(cell["text"]) if c.module != "story"})
            except NotJudgeable:
                continue
    return named


def _setting(node: ast.stmt) -> bool:
    """An import, or a name given a literal value (``BETTY = "betty@brilliant.com"``)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        try:
            ast.literal_eval(node.value)
        except ValueError:
            return False
        return True
    return False


def _stub(tree: ast.Module, name: str) -> bool | None:
    """Whether the definition of ``name`` still raises NotImplementedError (None: not defined)."""
    for node in tree.body:
        defines = (node.name == name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                   else isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                             for t in node.targets))
        if defines:
            return any(isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n.exc or n)
                       for n in ast.walk(node))
    return None


def _lab_parts(path: Path, parts: Parts) -> None:
    lab = path.parent.name
    cells = _cells(path)
    named = _named_parts(cells)
    if not named:
        return
    namespace: dict[str, Any] = {"__name__": f"labkit_earlier_{lab.replace('-', '_')}"}
    answers = [c for c in cells if c["nbgrader"].get("solution")]
    settings = [n for c in cells if not c["nbgrader"].get("solution") and (t := _tree(c["text"]))
                for n in t.body if _setting(n)]
    try:
        exec(compile(ast.Module(settings, []), f"{lab} (imports)", "exec"), namespace)  # noqa: S102 - your code
    except Exception as error:
        for seam in named:
            parts.missing[seam] = f"{lab}'s imports failed here ({type(error).__name__}: {error})"
        return
    failed = {}
    for cell in answers:
        try:
            exec(compile(cell["text"], f"{lab} (answer cell)", "exec"), namespace)  # noqa: S102 - your code
        except Exception as error:
            failed[id(cell)] = f"{type(error).__name__}: {error}"
    for seam, name in named.items():
        home = next((c for c in answers if (t := _tree(c["text"])) is not None and _stub(t, name) is not None), None)
        if home is None:
            parts.missing[seam] = f"{lab} has no answer cell defining {name}"
        elif id(home) in failed:
            parts.missing[seam] = f"{lab}'s cell defining {name} failed here ({failed[id(home)]})"
        elif _stub(_tree(home["text"]), name):
            parts.missing[seam] = f"{name} in {lab} is not written yet (it raises NotImplementedError)"
        else:
            parts.found[seam] = Part(seam, namespace[name], lab, name)


def earlier_parts(folder: str | Path = "..", *, here: str | Path | None = None) -> Parts:
    """Your parts from the lab notebooks in ``folder``'s subfolders, except ``here`` (the
    running notebook's folder, by default the current directory)."""
    here = Path(here if here is not None else Path.cwd()).resolve()
    parts = Parts()
    for path in sorted(Path(folder).glob("*/*.ipynb")):
        if path.parent.resolve() != here and not path.name.startswith("."):
            _lab_parts(path, parts)
    return parts
