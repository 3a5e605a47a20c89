# gpupool-operator. The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CACHE_DIR ?= $(HOME)/.cache/gpupool

.PHONY: test lint unit demo venv clean

# Each area keeps its own targets in mk/<area>.mk.
include $(wildcard mk/*.mk)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Style (ruff), the layers of docs/architecture.md (import-linter, contracts in pyproject.toml)
# and types (mypy, on the gpupool package).
lint: venv
	$(VENV)/bin/ruff check operator tests bench testbed scripts
	$(VENV)/bin/ruff format --check operator tests bench testbed scripts
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

test: venv lint
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest tests/unit

demo: venv kube-binaries
	$(PY) -m scripts.demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
