# meterline: two commands matter.
#   make demo   set up, then run the end-to-end demo (embedded: chDB + SQLite, no server)
#   make test   set up, then run lint, type checks and the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint typecheck bench clean

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

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) .meterline
