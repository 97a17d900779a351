# Two commands do all set-up on a fresh machine with only Python 3.11+:
#   make demo   creates .venv, installs labkit, replays the lecture
#   make test   creates .venv, installs labkit with its test tools, runs the suite
# and one opens the labs:
#   make lab    installs JupyterLab and nbgrader, generates the student release, copies
#               new labs into my-labs/ (never over a student's work), opens it
# and one is for the lecture hall:
#   make lecture   runs the lab world with its live page (http://127.0.0.1:8025/)
# For instructors: make formgrader (nbgrader's formgrader on the course, grading/).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.lab-installed

.PHONY: demo test world lecture bench lab release formgrader clean
# jupyter refuses to run as root unless told (containers, VMs)
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

$(LAB_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,lab,grading]'
	touch $(LAB_STAMP)

# The student release of every lab, from notebooks/ (nbgrader's course is grading/): one
# nbgrader run for all the labs (its assignment id may be a glob; the labs are numbered).
release: $(LAB_STAMP)
	cd grading && PATH="$(CURDIR)/$(BIN):$$PATH" ../$(BIN)/nbgrader generate_assignment '[0-9]*' --force --log-level=WARN

# Students work in my-labs/: new labs are copied in, theirs are never overwritten.
lab: release
	$(BIN)/python -m labkit.labs grading/release my-labs
	JUPYTER_CONFIG_DIR="$(CURDIR)/my-labs/.jupyter" $(BIN)/jupyter lab --notebook-dir=my-labs $(AS_ROOT) $(ARGS)

# nbgrader's formgrader, on the course (run from grading/, where nbgrader_config.py is);
# GRADING=DIR for another course directory.
GRADING ?= grading
formgrader: $(LAB_STAMP)
	cd "$(GRADING)" && PATH="$(CURDIR)/$(BIN):$$PATH" "$(CURDIR)/$(BIN)/jupyter" lab $(AS_ROOT) $(ARGS)

demo: $(STAMP)
	$(BIN)/labkit demo $(ARGS)

world: $(STAMP)
	$(BIN)/labkit world $(ARGS)

lecture: $(STAMP)
	$(BIN)/labkit world --web $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info grading/release grading/gradebook.db grading/exchange
