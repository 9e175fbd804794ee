# serlib — every target creates .venv when it is missing, so each works alone.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (serlib needs Python >= 3.11; set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m serlib demo

lint: $(STAMP)
	$(VENV)/bin/ruff check serlib tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest tests serlib --doctest-modules $(if $(wildcard notebooks/*.ipynb),--nbval-lax notebooks)

bench: $(STAMP)
	$(PY) benchmarks/features.py

clean:
	rm -rf $(VENV) outputs/cache outputs/synthetic
