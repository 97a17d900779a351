"""The nbgrader course for labkit's labs.

The authored labs live in ../notebooks/<assignment>/ (solutions, hidden tests, nbgrader
markup); ``nbgrader generate_assignment <assignment>`` writes the student version to
release/. Run nbgrader from this directory (``make lab`` does it for every lab).
"""

import os

c = get_config()  # noqa: F821 - nbgrader provides it

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "labkit-mail"
c.CourseDirectory.source_directory = os.path.join("..", "notebooks")  # one authored source per lab
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")

# The exchange (release_assignment, fetch, submit, collect) lives under the course, so a
# course on a laptop needs no /usr/local/share/nbgrader/exchange; a JupyterHub shares one
# (set c.Exchange.root to a directory every user can reach).
c.Exchange.root = os.path.join(c.CourseDirectory.root, "exchange")

# Late work: `nbgrader db assignment add LAB --duedate="2027-01-15 23:59:59 UTC"` (run in
# grading/) sets a due date; labkit grade records each submission's timestamp.txt and gives
# the penalty of this plugin ('none': only marked late; 'zero': no points), as nbgrader does.
c.LateSubmissionPlugin.penalty_method = "none"

# Formgrader's "Generate Feedback" (nbgrader generate_feedback) must not show the hidden
# tests a test cell holds in autograded/ (jupyter/nbgrader#1363): cleared first. labkit's
# own `labkit feedback LAB` writes a page with the check transcripts and never a test's source.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# The stub a student starts from.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Network labs: every check bounds its own waits, so a cell that still runs after a
# minute is a hung student cell; stop it and go on with the next cell.
c.ExecutePreprocessor.timeout = 120
c.ExecutePreprocessor.interrupt_on_timeout = True
c.Execute.timeout = 120

# A lab world never writes to stderr, but a student's code might log: lines that are
# plainly log output do not fail a test cell (nbgrader scores any stderr as a failure).
c.IgnorePattern.pattern = r"^(DEBUG|INFO|WARNING)(:|\s).*"
