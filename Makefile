# Two commands do all the set-up on a fresh machine:
#   make demo   the whole pipeline locally on the embedded defaults (no Azure, no GPU, no Docker)
#   make test   the whole test suite (installs the Debian, Python and npm tools it needs)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
NODE_TOOLS := testing/tools
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Install compiled bytecode: where PYTHONDONTWRITEBYTECODE is set (CI images, containers, this
# project's agents), Python otherwise compiles TensorFlow's and Keras' sources again in every new
# process, about 10 s of CPU for each `ppe` command, notebook kernel and Azure ML node run.
export UV_COMPILE_BYTECODE := 1
# Debian packages the tests drive for real: an MQTT broker, a browser, and OpenSSL for test certificates.
APT_PACKAGES := mosquitto chromium openssl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: help setup setup-python setup-node setup-system setup-tools demo notebooks-html test test-unit lint format bench clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# (The stamps are named .installed since environments hold bytecode: older ones sync again.)
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras
	touch $@

setup-python: $(VENV)/.installed  ## Python environment from uv.lock

$(NODE_TOOLS)/node_modules/.installed: $(NODE_TOOLS)/package.json $(NODE_TOOLS)/package-lock.json
	cd $(NODE_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup-node: $(NODE_TOOLS)/node_modules/.installed  ## npm validators from package-lock.json

# Each tool under testing/tools/<name>/requirements.txt gets its own environment .venv-<name>:
# checkov's HCL fork shadows python-hcl2's `hcl2` import, its bc-detect-secrets fork overwrites
# detect-secrets' package, and iotedgedev and azure-cli pin azure-cli-core / azure-core ranges
# that conflict with azure-ai-ml's.
# (--reinstall: uv compiles bytecode only for what it installs.)
.venv-%/.installed: $(NODE_TOOLS)/%/requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .venv-$*
	$(UV) pip install --quiet --reinstall --python .venv-$*/bin/python --require-hashes -r $<
	touch $@

TOOL_ENVS := $(patsubst $(NODE_TOOLS)/%/requirements.txt,.venv-%/.installed,$(wildcard $(NODE_TOOLS)/*/requirements.txt))
setup-tools: $(TOOL_ENVS)  ## Separate environments for checkov, detect-secrets, iotedgedev, azure-cli, prometheus

setup-system:  ## Debian packages the tests use (mosquitto, chromium, openssl)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

setup: setup-python setup-node setup-tools setup-system  ## Everything the tests need

demo: setup-python  ## Run the whole pipeline locally on the demo config
	$(VENV)/bin/ppe pipeline run --config demo --out outputs/runs

NOTEBOOK_PROFILE ?= tour
notebooks-html: setup-python  ## Run the notebooks (NOTEBOOK_PROFILE=tour|demo|smoke) into outputs/notebooks-html/*.html
	$(PY) notebooks/render_html.py --profile $(NOTEBOOK_PROFILE) --out outputs/notebooks-html

# pytest-xdist: one worker per CPU, each taking whole test files, so a file's module fixtures are
# made once and the session ones are shared through testing/conftest.py's shared_folder. Half of
# a serial run's wall time has one core idle (process start-up, subprocess and network waits).
# Files go out in collection order, which puts the files marked heavy(seconds) first, longest first.
PYTEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
test: setup  ## Run the whole test suite on every core (its log ends with the 25 slowest tests)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

test-unit: setup-python  ## Unit tests only (no external tools)
	$(PY) -m pytest testing/unit $(PYTEST_ARGS)

lint: setup-python  ## ruff (lint + format check), mypy --strict and the import-linter layer contracts
	$(VENV)/bin/ruff check src testing benchmarks notebooks
	$(VENV)/bin/ruff format --check src testing benchmarks notebooks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

format: setup-python  ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src testing benchmarks notebooks
	$(VENV)/bin/ruff format src testing benchmarks notebooks

bench: setup  ## Benchmarks: benchmarks/results/<date>.json and benchmarks/RESULTS.md
	$(PY) -m benchmarks.run

clean:  ## Remove environments and outputs
	rm -rf $(TOOLS) $(VENV) .venv-* $(NODE_TOOLS)/node_modules outputs .pytest_cache .mypy_cache .ruff_cache

# --- The edge module image, built offline (environments/docker/build_image.sh) -------------------
# Docker's engine and mmdebstrap (the base image from Debian's packages) for `make edge-image` and
# the container tests; the daemon is started by environments/docker/dockerd.sh when none answers.
# QEMU user-mode emulation builds and runs the arm64v8 image on amd64: environments/docker/binfmt.sh
# installs and registers a pinned QEMU 10.0 (bookworm's qemu-user-static 7.2 hangs in LiteRT);
# arch-test is what mmdebstrap needs for a foreign architecture, curl what binfmt.sh downloads with;
# gpgv, debian-archive-keyring and xz-utils check and read trixie's signed index when the pinned
# QEMU has left Debian's pool, and gpg signs the test mirror that stands in for it.
APT_PACKAGES += docker.io mmdebstrap arch-test curl gpgv gpg debian-archive-keyring xz-utils
PLATFORM ?= amd64
EDGE_MODEL_DIR ?= environments/docker/model
EDGE_IMAGE_TAG ?= ppedetector:local-$(PLATFORM)

.PHONY: edge-image edge-build-requirements

edge-image: setup-system setup-python $(TOOLS)/bin/uv  ## Build the module image offline: PLATFORM=amd64|arm64v8 (model staged first)
	DOCKER_HOST="$$(environments/docker/dockerd.sh)" PIP="$(TOOLS)/bin/python -m pip" PPE="$(VENV)/bin/ppe" \
	  environments/docker/build_image.sh $(PLATFORM) $(EDGE_MODEL_DIR) $(EDGE_IMAGE_TAG)

# The build backends: the package's own (pyproject.toml) and setuptools for the one locked
# dependency PyPI has only as a source archive (paho-mqtt 1.6.1).
edge-build-requirements: | $(UV)  ## Re-lock the image's build backends (requirements-build.txt)
	{ printf 'hatchling==%s\n' "$$(sed -n 's/^requires = \["hatchling==\(.*\)"\]/\1/p' pyproject.toml)"; \
	  echo setuptools; } > $(TOOLS)/build.in
	grep -A0 '^packaging==' environments/docker/requirements-edge.txt | cut -d' ' -f1 > $(TOOLS)/build.constraints
	{ sed -n '1,4p' environments/docker/requirements-build.txt; \
	  $(UV) pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux \
	    -c $(TOOLS)/build.constraints --no-emit-package packaging --no-header $(TOOLS)/build.in \
	    | sed 's#-r $(TOOLS)/build.in#pyproject.toml [build-system]#'; } > $(TOOLS)/requirements-build.txt
	mv $(TOOLS)/requirements-build.txt environments/docker/requirements-build.txt
