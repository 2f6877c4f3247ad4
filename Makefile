# microlib-kernel: the two commands of the README, and the loops around them.
#   make demo   creates .venv, installs, runs the main job
#   make test   creates .venv, installs with the dev extra, runs lint + every test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test test-quick lint install dev bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Stamp files make re-runs cheap: pip runs again only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -e ".[dev]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(PY) -m microlib_kernel.demo

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check microlib_kernel tests bench
	$(PY) -m ruff format --check microlib_kernel tests bench
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

test: $(VENV)/.installed-dev lint
	$(PY) -m pytest

# The quick loop: everything but tests marked slow (kernels, subprocesses, load).
test-quick: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not slow" -x -q

bench: $(VENV)/.installed-dev
	$(PY) bench/run.py

bench-quick: $(VENV)/.installed-dev
	$(PY) bench/run.py --quick --out bench/out/RESULTS-quick.md

clean:
	rm -rf $(VENV) .microlib build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
