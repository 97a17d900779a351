"""Grading a course of submissions: ``labkit grade`` (see :mod:`labkit.grade.run`).

nbgrader stays the gradebook and the file layout TAs know; labkit adds what it lacks for
network labs: each submission runs in a pod (:mod:`.pod`): a sandboxed kernel that holds
no answer key, and beside it, in its network namespace, the judge (:mod:`.judge`) with
the lab world and the checks, which judges every autograded cell where it stands
(:mod:`.verdict`) by calling the student's parts in the kernel (:mod:`.stand_ins`).
Submissions are graded in parallel (:mod:`.worker`, or a dask.distributed cluster), and
the feedback shows transcripts, never hidden tests.
"""

import sys

# jsonschema (under nbformat, which every grading command loads) imports its optional IRI
# format checker, rfc3987-syntax 1.1, whenever that is installed; importing it builds a
# Lark grammar, 1.1 s of CPU in each grading process (python-jsonschema/jsonschema#1521).
# Notebook schemas use no IRI format, so grading does without it: a None in sys.modules
# makes that one optional import fail as if it were not installed.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def _nbgrader_without_server_extensions() -> None:
    """nbgrader's package ``__init__`` loads its four Jupyter server extensions
    (jupyter_server, tornado, the exchange): 0.5 s of a grading run's start, on the way to
    the first submission. Grading uses nbgrader's gradebook (``nbgrader.api``) and
    preprocessors only, so the package is loaded without its ``__init__``; its submodules
    load as usual, and ``nbgrader.__version__`` is there (nbgrader's apps read it). A
    process that loaded nbgrader before keeps it as it is."""
    import importlib.util

    if "nbgrader" in sys.modules:
        return
    spec = importlib.util.find_spec("nbgrader")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules["nbgrader"] = package
    from nbgrader._version import __version__

    package.__version__ = __version__


_nbgrader_without_server_extensions()
