# serlib — every target creates .venv when it is missing, so each works alone.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# metadata that running a notebook adds and git never needs (tests/test_notebooks.py reads this line);
# serlib.nbclean also fixes the kernelspec's display name and drops empty "tags": [] lists
NBSTRIP_KEYS := metadata.language_info metadata.papermill cell.metadata.papermill

.PHONY: demo lab explore test test-fast test-browser lint bench install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (serlib needs Python >= 3.11; set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev,ray,pretrained,onnx]"
	touch $(STAMP)

# notebooks: git commits them through the filter .gitattributes names (nbstripout + serlib.nbclean), so
# outputs, kernel display names and empty tag lists never reach the repo; redone when this file changes
NBFILTER := $(VENV)/.nbfilter
$(NBFILTER): $(STAMP) Makefile
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install --python $(abspath $(PY)) \
		&& git config filter.nbstripout.extrakeys "$(NBSTRIP_KEYS)" \
		&& git config filter.nbstripout.clean "'$(abspath $(PY))' -m serlib.nbclean $(NBSTRIP_KEYS)"; fi
	touch $(NBFILTER)

install: $(STAMP) $(NBFILTER)

# The main job: corpus summary, one CNN+LSTM fold (notebook 03, fold 5), the results table (07).
demo: $(STAMP) $(NBFILTER)
	$(PY) -m serlib demo
	mkdir -p outputs/notebooks
	$(VENV)/bin/papermill --no-progress-bar notebooks/03_train_cnn_lstm.ipynb outputs/notebooks/03_train_cnn_lstm.ipynb -p fold 5
	$(VENV)/bin/papermill --no-progress-bar notebooks/07_collect_results.ipynb outputs/notebooks/07_collect_results.ipynb
	$(VENV)/bin/jupyter nbconvert --log-level WARN --to html outputs/notebooks/03_train_cnn_lstm.ipynb outputs/notebooks/07_collect_results.ipynb
	@echo
	@echo "executed notebooks: outputs/notebooks/03_train_cnn_lstm.ipynb, outputs/notebooks/07_collect_results.ipynb"
	@echo "shareable HTML:     outputs/notebooks/03_train_cnn_lstm.html, outputs/notebooks/07_collect_results.html (figures work offline)"
	@echo "results table:      outputs/tables/mean.md (and per_fold, vs_papers; .csv beside each)"
	@echo "records:            outputs/results/"

# JupyterLab on the notebooks, with the venv's kernel (root needs --allow-root, e.g. in a container).
# Threads: the notebooks use the free cores (serlib.threads); SERLIB_THREADS=N fixes the number.
lab: $(STAMP) $(NBFILTER)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

# The error browser (notebook 13) as a web page for colleagues without JupyterLab (Voilà, the
# optional extra "explore"); EXPLORE_ARGS e.g. --port=8866 --Voila.ip=0.0.0.0 to share it.
explore: $(STAMP) $(NBFILTER)
	$(PY) -c "import voila" 2>/dev/null || $(PY) -m pip install --quiet -e ".[explore]"
	$(VENV)/bin/voila notebooks/13_error_browser.ipynb --no-browser $(EXPLORE_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check serlib tests benchmarks

# nbval runs every notebook with the small parameters of tests/notebook_params.json (injected
# by papermill into copies under outputs/nbtest/); the notebooks' own defaults are for people.
test: $(STAMP) $(NBFILTER) lint
	rm -rf outputs/nbtest
	$(PY) -m serlib.scraps notebooks outputs/nbtest tests/notebook_params.json >/dev/null
	$(PY) -m pytest tests serlib --doctest-modules --nbval-lax --nbval-cell-timeout=900 outputs/nbtest

# The fast loop (under 3 minutes on 2 cores): everything but the tests marked slow (subprocesses
# of the CLI, Ray, papermill/nbval, the golden training run); `make test` runs them all.
test-fast: $(STAMP) $(NBFILTER) lint
	$(PY) -m pytest -m "not slow" tests serlib --doctest-modules

# Notebooks 02 and 00 in JupyterLab in the system's Chromium (not part of `make test`: it needs a browser).
test-browser: $(STAMP)
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(PY) -m pip install --quiet "playwright>=1.40"
	$(PY) tests/browser/check_jupyterlab.py

# Benchmarks run on EMO-DB-2s when it is beside the checkout, else on the synthetic corpus.
EMODB ?= ../shared/data/emodb-2s
BENCH_CORPUS := $(if $(wildcard $(EMODB)/wav),--corpus emodb --root $(EMODB),--corpus synthetic)

bench: $(STAMP)
	$(PY) benchmarks/features.py $(BENCH_CORPUS)
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/pipeline.py $(BENCH_CORPUS) $(if $(wildcard $(EMODB)/wav),--classes all,)

clean:
	rm -rf $(VENV) outputs/cache outputs/synthetic
