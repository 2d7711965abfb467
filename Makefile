# Two commands do all set-up on a fresh machine:
#   make demo   # the main job: every dropout variant, 5 seeds, on the embedded digits (~13 min on 2 CPUs)
#   make test   # lint, the API reference build and the test suite (what CI runs)
# Each creates .venv from this project's own files on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real data for the loaders' tests and the paper reproductions (never committed).
export DROPJAX_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: demo test lint docs venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[experiments,tfds,dev]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m experiments.main --config=experiments/variant_comparison/config.py \
	    --workdir=runs/variant_comparison

# The API reference, generated from the docstrings; any warning fails the build.
docs: $(VENV)/.installed
	$(PY) -m sphinx -E -W --keep-going -q -b html docs/api docs/api/_build/html

test: $(VENV)/.installed docs
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --durations=25

lint: $(VENV)/.installed
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache docs/api/_build
