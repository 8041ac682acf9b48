# Every target runs offline. `make setup` builds .venv from nothing (Python 3.11).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: setup test lint typecheck browser checkov unit demo bench clean sam-validate sam-build
.PHONY: test-image-versions test-training-image test-serving-image

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

# checkov in a venv of its own: its pins conflict with .venv's (pyproject.toml, dependency group "checkov").
CHECKOV_VENV := .venv-checkov

$(CHECKOV_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade "pip>=25.1"
	$(CHECKOV_VENV)/bin/pip install --quiet --group checkov
	touch $@

checkov: $(CHECKOV_VENV)/.installed

# The one test command: lint, types, then every test with coverage, on every core (pytest-xdist). loadscope keeps
# each module on one worker, so module-scoped fixtures (one pipeline, one trained model) are built once.
test: lint typecheck browser checkov
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

# Once per deployment, after the first `sam deploy`: torchvision's ImageNet ResNet18, its SHA-256 checked against the
# prefix in its name, into the stack's bucket at PretrainedWeightsKey (offline/stage_weights.py; docs/deploy.md).
STACK ?= dog-breed-retraining
.PHONY: stage-weights
stage-weights: setup
	$(PY) -m offline.stage_weights --stack $(STACK) $(ARGS)

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

# The training code on the default training image's Python and packages, the serving code on the inference image's
# (pins and their sources: tests/image_envs/). pyenv's Python 3.12, as both images have; IMAGE_PYTHON= overrides.
# Each venv holds PyPI's torch with its CUDA libraries (~5 GB); the tests run on the CPU.
IMAGE_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3.12) python3.12)
IMAGE_VENV := .venv-image
SERVING_VENV := .venv-serving
# tests/training needs only training_code, offline/synthetic_dataset.py and pure-Python pipeline.common modules
# (PYTHONPATH=functions; `python -m` puts the repository root on sys.path). --confcutdir leaves out
# tests/conftest.py, whose fixtures are for the AWS tests and which imports boto3.
IMAGE_PYTEST = PYTHONPATH=functions $(1)/bin/python -m pytest --confcutdir=tests/training -p no:cacheprovider -q

$(IMAGE_VENV)/.installed: tests/image_envs/training-image.txt tests/image_envs/test-tools.txt training_code/requirements.txt
	rm -rf $(IMAGE_VENV)
	$(IMAGE_PYTHON) -m venv $(IMAGE_VENV)
	$(IMAGE_VENV)/bin/python -m pip install --quiet -r tests/image_envs/training-image.txt
	@# What the SageMaker training toolkit runs in the container before the entry point: pip install -r, no
	@# constraints, in the code directory. It may change the image's packages (numpy<2.3, protobuf 3.20).
	cd training_code && ../$(IMAGE_VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(IMAGE_VENV)/bin/python -m pip install --quiet -r tests/image_envs/test-tools.txt
	touch $@

$(SERVING_VENV)/.installed: tests/image_envs/serving-image.txt tests/image_envs/test-tools.txt
	rm -rf $(SERVING_VENV)
	$(IMAGE_PYTHON) -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/python -m pip install --quiet -r tests/image_envs/serving-image.txt -r tests/image_envs/test-tools.txt
	touch $@

test-training-image: $(IMAGE_VENV)/.installed
	$(IMAGE_VENV)/bin/python -c "import sys, torch, torchvision, numpy, PIL; print(sys.version.split()[0], torch.__version__, torchvision.__version__, numpy.__version__, PIL.__version__)"
	$(call IMAGE_PYTEST,$(IMAGE_VENV)) tests/training

# The serving code: inference.py's tests (paired evaluation runs in the training job, on the training image).
test-serving-image: $(SERVING_VENV)/.installed
	$(SERVING_VENV)/bin/python -c "import sys, torch, torchvision, numpy, PIL; print(sys.version.split()[0], torch.__version__, torchvision.__version__, numpy.__version__, PIL.__version__)"
	$(call IMAGE_PYTEST,$(SERVING_VENV)) tests/training/test_inference.py

test-image-versions: test-training-image test-serving-image

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage coverage.xml runs
