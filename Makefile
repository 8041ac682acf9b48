# Every target runs offline. `make setup` builds .venv from nothing (Python 3.11).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: setup test lint typecheck browser unit demo bench clean sam-validate sam-build

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet --group dev -e .
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

# The one test command: lint, types, then every test with coverage, on every core (pytest-xdist). loadscope keeps
# each module on one worker, so module-scoped fixtures (one pipeline, one trained model) are built once.
test: lint typecheck browser
	$(PY) -m pytest -n logical --dist loadscope --cov --cov-report=term --cov-report=xml

# Headless Chromium (Debian's package) for the run report's browser test (tests/offline/test_run_report.py).
browser:
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y --no-install-recommends chromium; }

unit: setup
	$(PY) -m pytest tests/unit -q

# The whole pipeline offline on a generated sample dataset. ARGS passes options: make demo ARGS="--dataset my.zip"
demo: setup
	$(PY) -m offline.run $(ARGS)

# Benchmarks print figures and ratios against a baseline measured in the same run (never part of `make test`).
bench: setup
	$(PY) benchmarks/validate_dataset_bench.py --small
	$(PY) benchmarks/inference_speed.py
	$(PY) benchmarks/training_speed.py

# SAM CLI lives in its own venv: its cfn-lint pin conflicts with the one the tests use.
SAM_VENV := .venv-sam
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet "aws-sam-cli==1.170.0"
	touch $@

sam-validate: $(SAM_VENV)/.installed
	$(SAM) validate --lint

sam-build: $(SAM_VENV)/.installed
	$(SAM) build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage coverage.xml runs
