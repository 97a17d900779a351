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
