# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make train   # creates .venv if needed, trains MWAT on the embedded dataset
#   make test    # creates .venv if needed, runs the default test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/keras-mwat train

test: $(STAMP)
	$(BIN)/ruff check keras_mwat tests bench
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check keras_mwat tests bench

bench: $(STAMP)
	$(BIN)/python bench/step_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
