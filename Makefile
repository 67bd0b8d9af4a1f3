# meterline: two commands matter.
#   make demo   set up, then run the end-to-end demo (embedded: chDB + SQLite, no server)
#   make test   set up, then run lint, type checks and the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup system-deps demo test test-production lint typecheck bench bench-stripe clean

# The virtualenv is rebuilt when the pinned requirements or the project metadata change.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/meterline demo

# ruff, then the layer rules of DESIGN.md (import-linter, contracts in pyproject.toml).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# Warehouse tests run on chDB and on the ClickHouse-server backend; narrow with
# METERLINE_TEST_WAREHOUSES=chdb (or clickhouse). METERLINE_TEST_POSTGRES_URL adds the
# PostgreSQL ledger variants.
# The statement test renders HTML in headless Chromium (Debian's chromium package).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (for the statement rendering test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file per worker at a time
# (module fixtures are built once; tests/conftest.py keeps files sharing a costly session
# fixture together); TEST_WORKERS=0 runs it in this process. Three on two cores: many tests
# wait on subprocesses, servers and the PostgreSQL server rather than compute.
TEST_WORKERS ?= 3
test: lint typecheck system-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

# The production mode alone: server backend, fault injection, cluster DDL, compose file.
test-production: setup
	$(BIN)/python -m pytest -q tests/production

bench: setup
	$(BIN)/python bench/bench_ingest.py

bench-stripe: setup
	$(BIN)/python bench/bench_stripe_delivery.py

clean:
	rm -rf $(VENV) .meterline
