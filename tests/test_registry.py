"""The seam registry is the one place each seam's contract lives: every entry is whole,
its reference fits its own signature and is fenced, labkit.lab documents it, and the
protocol cores know nothing of seams."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import labkit
from labkit import lab
from labkit.fence import ReferenceUsed, entered
from labkit.seams import SEAMS, Seams, check_implementation, fenced_names

LABKIT = Path(labkit.__file__).parent


@pytest.mark.parametrize("name", SEAMS)
def test_every_seam_is_whole(name):
    spec = SEAMS[name]
    assert spec.name == name and spec.kind in ("function", "session", "program") and spec.host_role
    assert f"``{spec.call} -> {spec.returns}``" in lab.__doc__
    for exception in spec.passing():
        assert issubclass(exception, Exception)
    if spec.kind == "program":
        return
    assert spec.contract is not None, f"{name} has no contract for what it returns"
    reference = spec.load_reference()
    check_implementation(spec, reference)  # labkit's own answer fits the seam's own signature
    assert Seams().part(name)[1] is False  # and the world does not take it for a student's


@pytest.mark.parametrize("module, names", sorted(fenced_names().items()))
def test_every_answer_is_fenced(module, names):
    loaded = __import__(module, fromlist=["_"])
    for attribute, seam in names:
        obj = getattr(loaded, attribute)
        with entered(seam) as frame, pytest.raises(ReferenceUsed, match=f"labkit's own {seam}"):
            obj.__init__(object.__new__(obj)) if isinstance(obj, type) else obj()
        assert frame.fenced == [f"{module}.{getattr(obj, '__qualname__', attribute)}"]
        with entered("another-seam"):  # only the seam being written is fenced
            try:
                obj.__init__(object.__new__(obj)) if isinstance(obj, type) else obj()
            except ReferenceUsed:
                pytest.fail(f"{attribute} is fenced for another seam")
            except Exception:  # noqa: S110 - called without its arguments: any other error is fine
                pass


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            dotted = "." * node.level + (node.module or "")
            found |= {dotted} | {f"{dotted}.{a.name}" if dotted.endswith(".") else f"{dotted}.{a.name}"
                                 for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_protocol_cores_do_not_import_the_seam_machinery():
    cores = {name.partition(":")[0] for spec in SEAMS.values() if spec.kind != "program"
             for name in (spec.reference, *spec.answers)}
    for module in sorted(cores):
        path = LABKIT.parent / (module.replace(".", "/") + ".py")
        imported = _imports(path)
        machinery = [i for i in imported if i.split(".")[-1] in ("boundary", "seams", "fence", "serve")
                     or ".boundary." in i or ".seams." in i]
        assert not machinery, f"{module} imports {machinery}"


def test_the_types_students_use_are_plain_data_modules():
    """labkit.lab's types come from modules with no protocol code: the same objects in a
    notebook, in the world and in a graded kernel."""
    for name in lab.__all__:
        obj = getattr(lab, name)
        module = obj.__module__
        assert module in ("labkit.dns.hops", "labkit.smtp.reply", "labkit.mta.types", "labkit.session",
                          "labkit.fence", "labkit.store"), f"{name} lives in {module}"


def test_a_student_part_is_called_with_the_registry_contract():
    """One call path: the contract a check applies is the registry's, built from the call."""
    spec = SEAMS["send_mail"]
    check = spec.result_check([None], {"helo": "h", "mail_from": "a@x", "rcpt_to": ["b@y"], "message": b""})
    from labkit.contracts import ContractError
    from labkit.smtp.reply import Reply, SendResult

    assert check(SendResult({"b@y": Reply(250, ("OK",))}, {}, Reply(250, ("OK",))))
    with pytest.raises(ContractError, match="no reply for recipient 'b@y'"):
        check(SendResult({}, {}, None))
    assert inspect.signature(spec.stub).parameters["timeout"].default == 30.0
