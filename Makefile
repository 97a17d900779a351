# Two commands do all set-up on a fresh machine with only Python 3.11+:
#   make demo   creates .venv, installs labkit, replays the lecture
#   make test   creates .venv, installs labkit with its test tools, runs the suite
# and one opens the labs:
#   make lab    installs JupyterLab and nbgrader, generates the student release, opens it
# and one is for the lecture hall:
#   make lecture   runs the lab world with its live page (http://127.0.0.1:8025/)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.lab-installed
LABS := $(notdir $(patsubst %/,%,$(dir $(wildcard notebooks/*/*.ipynb))))

.PHONY: demo test world lecture bench lab release clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

$(LAB_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,lab,grading]'
	touch $(LAB_STAMP)

# The student release of every lab, from notebooks/ (nbgrader's course is grading/).
release: $(LAB_STAMP)
	cd grading && for lab in $(LABS); do PATH="$(CURDIR)/$(BIN):$$PATH" ../$(BIN)/nbgrader generate_assignment "$$lab" --force --log-level=WARN || exit 1; done

lab: release
	$(BIN)/jupyter lab --notebook-dir=grading/release $(ARGS)

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
	rm -rf $(VENV) .pytest_cache build *.egg-info grading/release grading/gradebook.db
