# Two commands do all set-up on a fresh machine:
#   make demo   # the main job: every dropout variant, 5 seeds, on the embedded digits (~13 min on 2 CPUs)
#   make test   # the test suite (what CI runs)
# Each creates .venv from this project's own files on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real data for the loaders' tests and the paper reproductions (never committed).
export DROPJAX_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: demo test lint venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m experiments.main --config=experiments/configs/variant_comparison.py \
	    --workdir=runs/variant_comparison

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --durations=15

lint: $(VENV)/.installed
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
