# eowatch — the two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.eowatch-installed

.PHONY: env demo test test-fast lint format clean bench

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Make the synthetic archive, start the services, run the monitoring flow, print the results.
demo: $(STAMP)
	$(BIN)/eowatch demo

## Lint and run the whole test suite (what CI runs).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

## The quick subset: no services, no slow tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not services"

## Run the benchmarks; writes benchmarks/results/latest.{json,md} (see docs/performance.md).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf eowatch-demo .pytest_cache build *.egg-info
