# Two entry points (see README): `make demo` runs the main job, `make test` runs the test suite.
# Each sets up .venv on first use (torch 2.13.0 CPU build from the machine's local wheel).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,service]'
	touch $(STAMP)

.PHONY: setup demo test lint bench
setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/persguard demo --out out/demo

test: $(STAMP)
	$(BIN)/ruff check .
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q --durations=15  # the slowest tests, to keep CI well under 30 min

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/foundation.py
