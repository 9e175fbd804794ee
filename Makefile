# serlib — every target creates .venv when it is missing, so each works alone.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (serlib needs Python >= 3.11; set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m serlib demo

lint: $(STAMP)
	$(VENV)/bin/ruff check serlib tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest tests serlib --doctest-modules --nbval-lax --nbval-cell-timeout=900 notebooks

# Benchmarks run on EMO-DB-2s when it is beside the checkout, else on the synthetic corpus.
EMODB ?= ../shared/data/emodb-2s
BENCH_CORPUS := $(if $(wildcard $(EMODB)/wav),--corpus emodb --root $(EMODB),--corpus synthetic)

bench: $(STAMP)
	$(PY) benchmarks/features.py $(BENCH_CORPUS)

clean:
	rm -rf $(VENV) outputs/cache outputs/synthetic
