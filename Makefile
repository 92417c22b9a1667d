# Seer Ops. `make run` sets everything up and starts the worker; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run stop status test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run: create the storage root, start supervisord with both consumers, show their state
run: install
	$(BIN)/seer init
	$(BIN)/seer up
	@$(BIN)/seer status || true
	@echo
	@echo "Send a test parcel:   $(BIN)/seer send-test-parcel"
	@echo "See it delivered:     $(BIN)/seer inbox seer-test"
	@echo "Stop everything:      make stop"

## stop: stop supervisord and both consumers
stop: install
	$(BIN)/seer down

status: install
	@$(BIN)/seer status

## test: lint, format check and the whole suite
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: the benchmarks of bench/ (not tests; they take minutes)
bench: install
	$(BIN)/python bench/parcels.py
	$(BIN)/python bench/cas.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
