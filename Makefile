# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt

.PHONY: demo test test-fast results results-long notebooks install clean

install: $(VENV)/.stamp-run

$(PY):
	$(PYTHON) -m venv $(VENV)

# constraints.txt pins the CPU torch wheel of the build machines; drop the -c for another torch.
$(VENV)/.stamp-run: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e .
	touch $@

# The test extra adds pytest, ruff, and statsmodels (the reference of a parity test).
$(VENV)/.stamp-test: $(VENV)/.stamp-run
	$(PIP) -e '.[dev]'
	touch $@

# The notebooks extra: Jupyter Lab, jupytext, nbconvert (for `make notebooks` and `jupyter lab notebooks/`).
$(VENV)/.stamp-notebooks: $(VENV)/.stamp-test
	$(PIP) -e '.[notebooks]'
	touch $@

demo: $(VENV)/.stamp-run
	$(VENV)/bin/seqlab train configs/digits_lstm.toml

# ruff first (lint, then the format check), so CI fails on either before the tests run.
test: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(PY) -m pytest -q

# The edit-test loop: everything but the tests marked slow. `make test` still runs all of them.
test-fast: $(VENV)/.stamp-test
	$(PY) -m pytest -q -m 'not slow'

# docs/results.md: the lecture's claims, each measured by seqlab commands (under 90 min on 2 cores, two parts
# at a time; parts whose results are newer than their configs and data are skipped). Not part of `make test`.
# make results ONLY=adding,positions [FORCE=1]: those parts only (make itself takes no --only), rerun if FORCE.
results: $(VENV)/.stamp-test
	$(PY) docs/make_results.py $(if $(ONLY),--only $(ONLY)) $(if $(FORCE),--force)

# The parts too long for `make results`: pixel and permuted-pixel MNIST, GRU and LSTM with chrono initialisation,
# 20 epochs each (hours per run on one CPU thread; meant for a GPU machine). Same page, same skipping of fresh parts.
results-long: $(VENV)/.stamp-test
	$(PY) docs/make_results.py --long --jobs 1

# The lecture notebooks, executed top to bottom, as HTML pages with their pictures: notebooks/executed/.
# NOTEBOOK_SCALE multiplies their training budgets (1: a few minutes in all on 2 cores).
NOTEBOOK_SCALE ?= 1
notebooks: $(VENV)/.stamp-notebooks
	SEQLAB_NOTEBOOK_SCALE=$(NOTEBOOK_SCALE) $(PY) notebooks/execute.py

clean:
	rm -rf $(VENV) runs .pytest_cache
