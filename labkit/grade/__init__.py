"""Grading a course of submissions: ``labkit grade`` (see :mod:`labkit.grade.run`).

nbgrader stays the gradebook and the file layout TAs know; labkit adds what it lacks for
network labs: each submission runs sandboxed (:mod:`.sandbox`), its protocol behaviour
is judged from outside the student's process (:mod:`.agent`, :mod:`.remote`,
:mod:`.verdict`), submissions are graded in parallel (:mod:`.worker`, or a
dask.distributed cluster), and the feedback shows transcripts, never hidden tests.
"""
