# vigil developer targets. `make` = lint + test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.test-deps
# Debian packages only the tests need (real parts, no mocks): compose validation, the Prometheus scrape +
# dashboard-query test, the headless-browser test of the live page.
TEST_APT := docker-compose prometheus chromium
DATASET ?= ../shared/datasets/ucsd_ped2

.PHONY: all install demo test test-all test-gpu lint fmt bench clean

all: lint test

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Debian: apt-get install python3)"; exit 1; }
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(TEST_STAMP): $(STAMP) Makefile
	bash scripts/install-system-deps.sh $(TEST_APT)
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/python -m cli.demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not gpu"

test-all: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy models service cli

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
