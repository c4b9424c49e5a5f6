# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps run test test-fast check lint format types bench clean

# Runtime dependencies at the versions of requirements.lock (the image's exact, hashed set), so a machine set up
# today tests what the image ships, not whatever was released this morning; the dev tools float within pyproject.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	grep -E '^[A-Za-z0-9_.-]+==' requirements.lock | sed 's/ \\$$//' > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet -e '.[dev,ray]' -c $(VENV)/constraints.txt
	touch $(STAMP)

install: $(STAMP)

# Debian's prometheus (server and promtool) for the real-scrape test, prometheus-alertmanager (and amtool) for the
# alert-routing test, chromium and chromium-driver for the console's browser tests, and postgresql for the
# storage-backend tests.
system-deps:
	@command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "install Debian's prometheus package (sudo apt-get install prometheus) for the scrape test" >&2; exit 1; fi; }
	@command -v prometheus-alertmanager >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null; \
	  else echo "install Debian's prometheus-alertmanager package (sudo apt-get install prometheus-alertmanager) for the alert-routing test" >&2; exit 1; fi; }
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else echo "install Debian's chromium and chromium-driver packages (sudo apt-get install chromium chromium-driver) for the console's browser tests" >&2; exit 1; fi; }
	@{ command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	  else echo "install Debian's postgresql package (sudo apt-get install postgresql) for the storage-backend tests" >&2; exit 1; fi; }

run: $(STAMP)  ## start the service on the bundled real data (replay clock, offline, no keys); Ctrl-C stops
	$(BIN)/dataops serve

# The suite runs on TEST_WORKERS processes (pytest-xdist), one test file per worker at a time so a file's
# module fixtures are built once. TEST_WORKERS=1 runs it in this process.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP) system-deps  ## the whole suite, offline (TEST_WORKERS=2 processes)
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

test-fast: $(STAMP)  ## the inner loop: every test but the slow ones that start real services (those run in `make test`)
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "not slow"

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
