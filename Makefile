# The developer loop. `make test` and `make run` work on a fresh clone: they create the
# virtual environment and install livecoach into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# pip's cache and version check live in the venv too: set-up creates nothing in $HOME.
export PIP_CACHE_DIR := $(abspath $(VENV))/pip-cache
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install test test-fast check lint typecheck run bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Chromium from Debian for the dashboard's browser tests, if missing: only as root with
## apt-get (CI; about a minute), announced on one line, bounded by timeouts, and it never
## fails the build: without a browser those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && echo "installing Debian's chromium system-wide (apt-get) for the dashboard's browser tests" >&2 \
	  && { timeout 180 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 420 \
	  apt-get install -y -qq chromium; } </dev/null >/dev/null 2>&1; } \
	  || echo "chromium not installed: the dashboard browser tests will skip" >&2

## The whole suite (real Redis and PostgreSQL; embedded ones unless LIVECOACH_TEST_* are set).
test: $(STAMP) browser
	$(BIN)/pytest

## Everything but the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## Run livecoach: embedded Redis and PostgreSQL unless LIVECOACH_*_URL are set.
run: $(STAMP)
	$(BIN)/livecoach up

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
