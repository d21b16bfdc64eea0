# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make train   # creates .venv if needed, trains MWAT on the embedded dataset
#   make test    # creates .venv if needed, runs the default test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast test-slow lint bench clean readme-output

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

# MWAT (the paper's BiLAW) with the paper's protocol scaled to 10 epochs, on the embedded
# MNIST data at the paper's L-inf eps 0.1 (plus a 3-epoch eps warm-up: see README).
TRAIN_ARGS ?= --recipe paper --epochs 10 --eps 0.1 --eps-warmup-epochs 3
train: $(STAMP)
	$(BIN)/keras-mwat train $(TRAIN_ARGS)

# Re-runs `make train` and writes its closing lines into README.md's output block.
readme-output: $(STAMP)
	mkdir -p runs; start=$$(date +%s); $(MAKE) --no-print-directory train 2>&1 | tee runs/readme-train.log; \
	$(BIN)/python scripts/update_readme_output.py runs/readme-train.log $$(( $$(date +%s) - start ))

test: $(STAMP)
	$(BIN)/ruff check keras_mwat tests bench examples notebooks scripts
	$(BIN)/python -m pytest -q --durations=30

# The inner loop: the default suite without the `integration` tests (over ~20 s each) and
# without the tests that took over 1.5 s in the last recorded `make test`
# (tests/durations.json; see tests/conftest.py). `make test` runs them all before a commit.
test-fast: $(STAMP)
	$(BIN)/ruff check keras_mwat tests bench examples notebooks scripts
	$(BIN)/python -m pytest -q -m "not slow and not integration" --max-duration 1.5 --durations=10

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check keras_mwat tests bench examples notebooks scripts

bench: $(STAMP)
	$(BIN)/python bench/step_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache

.PHONY: docs docs-serve examples

# The documentation site (mkdocs + mkdocstrings), built into site/; fails on any warning.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# Every example and the tutorial notebook with their tiny settings (a few minutes on 2 cores).
EXAMPLES_DIR := runs/examples
examples: $(STAMP)
	$(BIN)/ruff check examples notebooks
	mkdir -p $(EXAMPLES_DIR)
	$(BIN)/python examples/train_embedded.py --tiny --save $(EXAMPLES_DIR)/mwat.keras
	$(BIN)/python examples/evaluate_saved_model.py --tiny --model $(EXAMPLES_DIR)/mwat.keras --json $(EXAMPLES_DIR)/robustness.json
	$(BIN)/python examples/export_for_serving.py --tiny --model $(EXAMPLES_DIR)/mwat.keras --out $(EXAMPLES_DIR)/clf --overwrite
	rm -rf $(EXAMPLES_DIR)/tfds
	$(BIN)/python examples/make_tiny_tfds.py $(EXAMPLES_DIR)/tfds
	$(BIN)/python examples/train_tfds.py --tiny --dataset tiny_cifar --data-dir $(EXAMPLES_DIR)/tfds
	$(BIN)/python examples/compare_methods.py --tiny
	$(BIN)/python examples/tune.py --tiny --directory $(EXAMPLES_DIR)/tuning
	cd $(EXAMPLES_DIR) && MPLBACKEND=Agg ../../$(BIN)/python ../../notebooks/tutorial.py

# The full Fashion-MNIST for km.data.load_fashion_mnist(): Debian's dataset-fashion-mnist puts
# the four IDX files in /usr/share/datasets/fashion-mnist (root or sudo; apt-get update only
# when the package lists do not know it yet).
.PHONY: fashion-mnist
fashion-mnist:
	@SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	$$SUDO apt-get install -y dataset-fashion-mnist || \
	{ $$SUDO apt-get update && $$SUDO apt-get install -y dataset-fashion-mnist; }
