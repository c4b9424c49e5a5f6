# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test check lint format types bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## ingest the bundled real data through every layer (offline, no keys)
	$(BIN)/dataops run all

test: $(STAMP)  ## the whole suite, offline
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

types: $(STAMP)
	$(BIN)/mypy

check: lint types test  ## format, lint, types, import layers (in the tests) and tests

bench: $(STAMP)
	$(BIN)/python benchmarks/promotion.py

clean:
	rm -rf .dataops .pytest_cache .mypy_cache .ruff_cache
