# The two commands a newcomer runs: `make demo` and `make test`. Each builds .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_STATE ?= .demo-state
# Two workers: most end-to-end tests wait on loopback servers, so they overlap well.
PYTEST_ARGS ?= -n 2

.PHONY: demo test lint unit venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/channel-sync demo --state-dir $(DEMO_STATE) $(DEMO_ARGS)

test: lint unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check daemon.py config connectors sync sandbox
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_STATE) .pytest_cache .mypy_cache .ruff_cache .hypothesis
