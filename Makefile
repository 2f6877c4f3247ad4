# microlib-kernel: the two commands of the README, and the loops around them.
#   make demo   creates .venv, installs, runs the main job
#   make test   creates .venv, installs with the dev extra, runs lint + every test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test test-quick lint install dev bench bench-quick clean labextension

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The JupyterLab extension (extension/, TypeScript) is compiled into
# microlib_kernel/labextension (extension/build.py: npm ci, tsc, @jupyter/builder),
# again whenever its sources change. Wheels ship it as shared data (setup.py runs
# the same build); editable installs skip data files, so `build.py --develop` links
# it (and the server extension's config) into the venv. Without node/npm it warns
# and everything else works.
LABEXT := microlib_kernel/labextension/package.json
LABEXT_SRC := $(wildcard extension/src/*.ts extension/style/*) extension/package.json \
	extension/package-lock.json extension/tsconfig.json extension/build.py

$(LABEXT): $(LABEXT_SRC)
	$(PYTHON) extension/build.py

labextension: $(LABEXT)

# Stamp files make re-runs cheap: pip runs again only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml setup.py | $(PY)
	$(PIP) install -e .
	$(PY) extension/build.py --develop
	touch $@

$(VENV)/.installed-dev: pyproject.toml setup.py | $(PY)
	$(PIP) install -e ".[dev]"
	$(PY) extension/build.py --develop
	touch $(VENV)/.installed $@

install: $(VENV)/.installed $(LABEXT)
dev: $(VENV)/.installed-dev $(LABEXT)

# A standalone host on the embedded DuckDB default (.microlib/microlib.duckdb) serving the
# example notebook (papermill deploys it into the host); Ctrl-C stops it cleanly.
demo: $(VENV)/.installed
	$(VENV)/bin/microlib serve notebooks/orders_service.ipynb

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check microlib_kernel tests bench setup.py extension/build.py
	$(PY) -m ruff format --check microlib_kernel tests bench setup.py extension/build.py
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

test: $(VENV)/.installed-dev $(LABEXT) lint
	$(PY) -m pytest

# The quick loop: everything but tests marked slow (kernels, subprocesses, load).
test-quick: $(VENV)/.installed-dev $(LABEXT)
	$(PY) -m pytest -m "not slow" -x -q

bench: $(VENV)/.installed-dev
	$(PY) bench/run.py
	$(PY) bench/fill_readme.py

bench-quick: $(VENV)/.installed-dev
	$(PY) bench/run.py --quick --out bench/out/RESULTS-quick.md

clean:
	rm -rf $(VENV) .microlib build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache \
		microlib_kernel/labextension extension/lib extension/node_modules extension/tsconfig.tsbuildinfo
