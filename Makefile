# Every target sets itself up: a fresh machine needs only Python ≥ 3.11 and pip.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: demo test test-all lint install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,postgres]'
	touch $@

install: $(VENV)/.installed

## the main job on the embedded model: a complete study, resumable (run it again to continue)
demo: $(VENV)/.installed
	$(PY) -m search.run --model toy --steps 5

## the default test suite (what CI runs)
test: $(VENV)/.installed
	$(PY) -m pytest -q

## the linter (ruff, configured in pyproject.toml)
lint: $(VENV)/.installed
	$(PY) -m ruff check .

## everything, slow tests included
test-all: $(VENV)/.installed
	$(PY) -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(VENV) .pytest_cache
