# The two entry points of the README. Each installs what is missing, then runs.
PYTHON := .venv/bin/python

.PHONY: demo test env

env:
	@bash tools/setup_env.sh

demo: env
	$(PYTHON) tools/demo.py

test: env
	$(PYTHON) -m pytest -q tests
