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
	$(VENV)/bin/facepipe models install
	touch $@

demo: $(VENV)/.installed
	scripts/ensure-redis
	$(VENV)/bin/facepipe demo

test: $(VENV)/.installed
	scripts/ensure-redis
	$(VENV)/bin/ruff check pipeline workers schedules tests bench
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check pipeline workers schedules tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
