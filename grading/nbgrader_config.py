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
