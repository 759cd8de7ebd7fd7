# The README's commands. `make demo` and `make test` each set up everything they need on a
# fresh machine: Debian packages (scripts/install-system-deps.sh), a virtual environment in
# .venv with the package and its dependencies, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# The firmware configurations `make test` (and so CI) leaves to `make test-firmware`: the Cortex-M55
# (qemu-mps3-an547) TFLM builds and runs. `-k` also matches marker names (tflm_source).
FIRMWARE_CI_ONLY ?= not (tflm_source and (an547 or m55))
# The TFLM checkout: $$TFLM_DIR, else ~/.cache/edgedistill/tflm-src/<commit> filled from ../shared/tflm.
WITH_TFLM := tflm="$$(bash scripts/ci-tflm.sh)" && TFLM_DIR="$$tflm"

.PHONY: venv system-deps demo test test-fast test-firmware test-docker test-devices docker bench lint clean

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

# Every test but the M55 firmware configurations (hardware-only tests skip with their reason).
test: venv system-deps
	$(WITH_TFLM) $(PY) -m pytest -k "$(FIRMWARE_CI_ONLY)" $(PYTEST_ARGS)

# Every firmware test on real TFLM sources, the M55 configurations included (libraries built once, cached).
test-firmware: venv system-deps
	$(WITH_TFLM) $(PY) -m pytest -m tflm_source $(PYTEST_ARGS)

# The image built with podman (or docker) and firmware built and run in it, against the native build.
test-docker: venv system-deps
	bash scripts/install-system-deps.sh docker
	$(WITH_TFLM) EDGEDISTILL_TEST_DOCKER=1 $(PY) -m pytest tests/test_docker.py $(PYTEST_ARGS)

# The emulated Raspberry Pi (Debian 12 arm64 in qemu-system-aarch64): image prepared once into
# $$EDGEDISTILL_PI_DIR (else ~/.cache/edgedistill/pi; 15-50 min cold, root), booted, benchmarked over ssh
# (tests/test_devices_pi.py). Once the image is there `make test` (and CI) runs these VM tests too; without it
# they skip there, as a cold prepare does not fit CI's time.
test-devices: venv system-deps
	EDGEDISTILL_TEST_DEVICES=1 $(PY) -m pytest tests/test_devices_pi.py $(PYTEST_ARGS)

# The cross-build image from this checkout (scripts/docker-build.sh: base image, TFLM, build).
docker:
	bash scripts/install-system-deps.sh docker
	bash scripts/docker-build.sh

# Unit tests only: seconds, no training.
test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: venv system-deps
	$(PY) benchmarks/pipeline_cost.py
	$(PY) benchmarks/distill_quality.py

lint: venv
	$(PY) -m ruff check edgedistill tests benchmarks
	$(PY) -m ruff format --check edgedistill tests benchmarks
	$(PY) -m mypy edgedistill

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
