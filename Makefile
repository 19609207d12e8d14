# The two entry points of the README. Each installs what is missing, then runs.
PYTHON := .venv/bin/python

.PHONY: demo test env camvid-benchmark

env:
	@bash tools/setup_env.sh

demo: env
	$(PYTHON) tools/demo.py

test: env
	$(PYTHON) -m pytest -q tests

# The CamVid evidence (docs/results/camvid.md); needs data/camvid (a link to ../shared/data/camvid).
camvid-benchmark: env
	$(PYTHON) benchmarks/camvid/run.py
