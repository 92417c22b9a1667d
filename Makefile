# Seer Ops. `make run` sets everything up and starts the worker; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run stop status test lint format bench screenshots config clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run: create the storage root, start supervisord with both consumers, open the console
run: install
	$(BIN)/seer init
	$(BIN)/seer up
	@if [ -t 0 ] && [ -t 1 ]; then $(BIN)/seer-console; else $(BIN)/seer status || true; fi
	@echo
	@echo "The workers keep running under supervisord."
	@echo "Console again:        $(BIN)/seer-console"
	@echo "Send a test parcel:   $(BIN)/seer send-test-parcel"
	@echo "Stop everything:      make stop"

## stop: stop supervisord and both consumers
stop: install
	$(BIN)/seer down

status: install
	@$(BIN)/seer status

## test: the Debian packages the suite needs (.ci/packages), lint, format check, type check and the whole suite
test: install
	bash .ci/packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n 4 --dist worksteal

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: the benchmarks of bench/ (not tests; they take minutes)
bench: install
	$(BIN)/python bench/parcels.py
	$(BIN)/python bench/cas.py
	$(BIN)/python bench/scaleout.py

## screenshots: regenerate the console's SVG snapshots (fixed data and clock) into screenshots/ (tests/screenshots.py lists them)
screenshots: install
	$(BIN)/python -m tests.screenshots

## config: regenerate config/seer.env.example from the settings in code
config: install
	$(BIN)/seer config example > config/seer.env.example

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
