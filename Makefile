# The developer loop. `make test` and `make run` work on a fresh clone: they create the
# virtual environment and install livecoach into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-fast check lint typecheck run bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The whole suite (real Redis and PostgreSQL; embedded ones unless LIVECOACH_TEST_* are set).
test: $(STAMP)
	$(BIN)/pytest

## Everything but the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## Run livecoach: embedded Redis and PostgreSQL unless LIVECOACH_*_URL are set.
run: $(STAMP)
	$(BIN)/livecoach up

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
