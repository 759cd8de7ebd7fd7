"""The cross-build image (Dockerfile, scripts/docker-build.sh), built and run with podman.

The bad-input checks of scripts/docker-build.sh run in seconds. The image itself takes minutes (a
few with the host's compiled TFLM library for the Cortex-M4 with CMSIS-NN reused, --reuse-libraries;
10-50 more to compile it), so the tests that build it and compare a firmware built and run in the
container with the native one run only in `make test-docker` (EDGEDISTILL_TEST_DOCKER=1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_helpers import needs_cross_toolchain, needs_qemu, write_micro_export

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "scripts" / "docker-build.sh"
IMAGE = "localhost/edgedistill:test"
BOARD = "qemu-mps2-an386"
KERNELS = "cmsis_nn"
# What podman 4.3 needs here to start a container (crun fails; the default ulimits are refused).
PODMAN_RUN = ["podman", "run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1000:1000", "--ulimit", "nproc=1000:1000"]

needs_podman = pytest.mark.skipif(
    shutil.which("podman") is None, reason="needs podman (sudo bash scripts/install-system-deps.sh docker)"
)


def _build_script(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        ["/bin/bash", str(BUILD_SCRIPT), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _one_error_line(completed: subprocess.CompletedProcess) -> str:
    assert completed.returncode != 0
    errors = [line for line in completed.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    return errors[0]


def test_no_container_engine_is_one_error_line(tmp_path):
    # A PATH with the tools the script uses before it looks for an engine, and no engine.
    for tool in ("dirname", "sed"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    error = _one_error_line(_build_script(env={"PATH": str(tmp_path)}))
    assert "no container engine" in error and "install-system-deps.sh docker" in error


def test_a_named_engine_that_is_absent_is_one_error_line():
    error = _one_error_line(_build_script("--engine", "no-such-engine"))
    assert "'no-such-engine' is not on PATH" in error


@needs_podman
def test_tflm_checkout_absent_is_one_error_line(tmp_path):
    error = _one_error_line(_build_script(env={"TFLM_DIR": str(tmp_path / "nowhere")}))
    assert "no TFLite Micro checkout" in error and "TFLM_DIR" in error


@needs_podman
def test_tflm_checkout_at_another_commit_is_one_error_line(tmp_path):
    checkout = tmp_path / "tflite-micro"
    makefile = checkout / "tensorflow/lite/micro/tools/make/Makefile"
    makefile.parent.mkdir(parents=True)
    makefile.write_text("all:\n")
    git = ["git", "-C", str(checkout), "-c", "user.email=test@example.com", "-c", "user.name=test"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "not the pin"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    error = _one_error_line(_build_script(env={"TFLM_DIR": str(checkout)}))
    pinned = (REPO / "firmware" / "tflm.env").read_text().split("TFLM_COMMIT=")[1].split()[0]
    assert f"is at {commit}" in error and f"pins {pinned}" in error and f"checkout {pinned}" in error


@needs_podman
@pytest.mark.skipif(not os.environ.get("TFLM_DIR"), reason="needs a TFLite Micro checkout: set TFLM_DIR (make test sets it)")
def test_missing_base_image_is_one_error_line():
    error = _one_error_line(_build_script("--base", "localhost/no-such-base:none", "--no-make-base"))
    assert "base image localhost/no-such-base:none is missing" in error and "pull/import" in error


# ---------------------------------------------------------------------------------------
# The image, built and run (minutes: make test-docker)

NEEDS_IMAGE_BUILD = [
    pytest.mark.slow,
    needs_podman,
    needs_cross_toolchain,
    needs_qemu,
    pytest.mark.skipif(
        not os.environ.get("TFLM_DIR"), reason="needs a TFLite Micro checkout: set TFLM_DIR (make test-docker sets it)"
    ),
    pytest.mark.skipif(
        os.environ.get("EDGEDISTILL_TEST_DOCKER") != "1",
        reason="builds the container image (minutes): run make test-docker",
    ),
]


@pytest.fixture(scope="module")
def image() -> str:
    # The host's compiled library is reused (--reuse-libraries): compiling it again in the image takes 10-40 min.
    completed = _build_script("--tag", IMAGE, "--libraries", f"{BOARD}:{KERNELS}", "--reuse-libraries", timeout=3600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == IMAGE
    return IMAGE


def _in_container(image: str, mount: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PODMAN_RUN, "-v", mount, image, *args], capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL
    )


def _comparable(run: dict) -> dict:
    """What must be equal between the native and the container build: outputs (each sample equal to the host
    TFLM output: ``match`` with ``max_abs_diff`` 0 on both sides), instructions per invoke, arena."""
    return {
        "samples": [(sample["match"], sample["max_abs_diff"], sample["argmax"]) for sample in run["samples"]],
        "instructions_per_invoke": run["instructions_per_invoke"],
        "arena_used_bytes": run["arena_used_bytes"],
        "kTensorArenaSize": run["arena"]["kTensorArenaSize"],
        "status": run["status"],
    }


class TestTheImage:
    pytestmark = NEEDS_IMAGE_BUILD

    def test_firmware_built_and_run_in_the_container_equals_the_native_one(self, pipeline_run, image, tmp_path):
        from click.testing import CliRunner

        from edgedistill.cli import cli

        _, run_dir, _ = pipeline_run
        native_dir, container_dir = tmp_path / "native", tmp_path / "container"
        for folder in (native_dir, container_dir):  # the run folder (micro/ and the model), without firmware built
            shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("firmware"))
        native = CliRunner().invoke(cli, ["firmware", "run", str(native_dir), "--board", BOARD, "--kernels", KERNELS, "--json"])
        assert native.exit_code == 0, native.output
        native_run = json.loads(native.output[native.output.index("{") :])

        mount = f"{container_dir}:/data/run"
        built = _in_container(image, mount, "firmware", "build", "/data/run", "--board", BOARD, "--kernels", KERNELS)
        assert built.returncode == 0, built.stderr
        args = ("firmware", "run", "/data/run", "--board", BOARD, "--kernels", KERNELS, "--no-build", "--json")
        ran = _in_container(image, mount, *args)
        assert ran.returncode == 0, ran.stderr
        container_run = json.loads(ran.stdout[ran.stdout.index("{") :])
        assert container_run["status"] == "pass"
        assert all(sample["match"] and sample["max_abs_diff"] == 0 for sample in container_run["samples"])
        assert _comparable(container_run) == _comparable(native_run)
        build_info = json.loads((container_dir / "firmware" / f"{BOARD}_{KERNELS}" / "build.json").read_text())
        assert build_info["tflm_library_built_now"] is False  # the image's prebuilt library was used

    def test_a_run_folder_without_micro_is_one_error_line(self, image, tmp_path):
        ran = _in_container(image, f"{tmp_path}:/data/run", "firmware", "build", "/data/run", "--board", BOARD)
        assert "micro" in _one_error_line(ran)

    def test_an_unwritable_mount_is_one_error_line(self, image, tmp_path):
        write_micro_export(tmp_path)
        ran = _in_container(image, f"{tmp_path}:/data/run:ro", "firmware", "build", "/data/run", "--board", BOARD)
        error = _one_error_line(ran)
        assert "not writable" in error and ":ro" in error
