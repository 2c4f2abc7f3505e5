# eowatch — the two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.eowatch-installed

.PHONY: env demo test test-fast lint format clean bench browser

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Make the synthetic archive, start the services, run the monitoring flow, print the results.
demo: $(STAMP)
	$(BIN)/eowatch demo

## Debian's Chromium for the browser test of the Prefect UI (tests/deployments/test_ui_backfill.py).
## Installed with apt when missing (root); elsewhere the test is skipped, but under CI=true it must be there.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium (apt-get) for the UI test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1; \
	  fi; \
	  test -x $(CHROMIUM) || { \
	    if [ -n "$$CI" ]; then echo "error: $(CHROMIUM) is missing and could not be installed" >&2; exit 1; fi; \
	    echo "note: $(CHROMIUM) is missing (apt-get install -y chromium); the UI test will be skipped"; }; }

## Lint and run the whole test suite (what CI runs).
test: $(STAMP) browser
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
