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

## test: lint, format check, type check and the whole suite
test: install
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

## screenshots: regenerate the console's SVG snapshots (fixed data and clock) into screenshots/
screenshots: install
	$(BIN)/pytest -q tests/test_console.py -k test_snapshot_ --snapshot-update
	cp tests/__snapshots__/test_console/test_snapshot_main_80x24.svg screenshots/main-80x24.svg
	cp tests/__snapshots__/test_console/test_snapshot_main_120x40_paused.svg screenshots/main-120x40-paused.svg
	cp tests/__snapshots__/test_console/test_snapshot_failure_detail.svg screenshots/failure-detail.svg
	cp tests/__snapshots__/test_console/test_snapshot_help.svg screenshots/help.svg
	cp tests/__snapshots__/test_console/test_snapshot_confirmation.svg screenshots/confirm-purge.svg

## config: regenerate config/seer.env.example from the settings in code
config: install
	$(BIN)/seer config example > config/seer.env.example

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
