# The README's commands. `make demo` and `make test` each set up everything they need on a
# fresh machine: Debian packages (scripts/install-system-deps.sh), a virtual environment in
# .venv with the package and its dependencies, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv system-deps demo test test-fast bench lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,ray,flash]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

# The main job: distill a student on the embedded digits data set into runs/<timestamp>/.
demo: venv
	$(VENV)/bin/edgedistill run

# Every test (hardware-only tests skip with their reason).
test: venv system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only: seconds, no training.
test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: venv system-deps
	$(PY) benchmarks/pipeline_cost.py
	$(PY) benchmarks/distill_quality.py

lint: venv
	$(PY) -m ruff check edgedistill tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
