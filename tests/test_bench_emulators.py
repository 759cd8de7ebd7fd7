"""Emulated targets: the real TFLM interpreter, and the runner under real QEMU user mode (arm64 root)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from bench_helpers import make_models
from edgedistill.bench import run_benchmark
from edgedistill.cli import cli
from edgedistill.errors import StageError
from edgedistill.targets import TargetOptions, make_target
from edgedistill.targets.emulator import rootfs_path, rootfs_ready


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("emulator_models"))


def test_tflm_reports_arena_and_is_emulated(models, tmp_path):
    results = tmp_path / "bench.jsonl"
    m = run_benchmark(models["tiny_int8"], target="tflm", num_runs=20, results_path=results)
    assert m.ok and m.kind == "emulated" and m.runtime == "tflite_micro"
    assert len(m.samples_ms) == 20 and m.latency_ms["p50"] > 0
    # The arena TFLM really allocated: positive, and less than the arena it was given.
    assert 0 < m.extra["arena_total_bytes"] <= m.extra["arena_size_bytes"]
    assert m.extra["arena_head_bytes"] + m.extra["arena_tail_bytes"] == m.extra["arena_total_bytes"]
    assert json.loads(results.read_text())["kind"] == "emulated"


def test_tflm_arena_too_small(models):
    target = make_target("tflm", TargetOptions(tflm_arena_bytes=512))
    m = run_benchmark(models["tiny_int8"], target=target, num_runs=3, raise_on_failure=False)
    assert m.status == "failed" and "arena" in m.error and "--arena-bytes" in m.error
    assert "512-byte arena" in m.error  # the runner names the arena and passes TFLM's reason through


def test_emulated_rows_labelled_in_table(models, tmp_path):
    outcome = CliRunner().invoke(
        cli,
        [
            "bench",
            str(models["tiny_int8"]),
            "-t",
            "tflm",
            "-t",
            "local",
            "--num-runs",
            "5",
            "--results",
            str(tmp_path / "r.jsonl"),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "tflm [emulated]" in outcome.output and "not device times" in outcome.output
    local_row = next(line for line in outcome.output.splitlines() if line.startswith("tiny_int8") and " local " in line)
    assert "emulated" not in local_row


def test_qemu_without_rootfs_says_how_to_prepare(models, tmp_path):
    target = make_target("qemu-aarch64", TargetOptions(rootfs=str(tmp_path / "absent")))
    with pytest.raises(StageError, match="prepare-rootfs"):
        run_benchmark(models["tiny_int8"], target=target, num_runs=3)


@pytest.mark.slow
@pytest.mark.skipif(
    not rootfs_ready(rootfs_path()),
    reason=f"no prepared arm64 root at {rootfs_path()} (python -m edgedistill.targets.emulator prepare-rootfs, ~11 min, as root)",
)
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("qemu-aarch64-static") is None, reason="needs root (chroot) and qemu-user-static"
)
def test_qemu_aarch64_runs_the_runner_on_arm64(models, tmp_path):
    folder = tmp_path / "with space"
    folder.mkdir()
    model = folder / "m $x.tflite"
    shutil.copy(models["tiny_int8"], model)
    m = run_benchmark(model, target="qemu-aarch64", num_runs=10, warmup_runs=2)
    assert m.ok and m.kind == "emulated"
    assert m.target["device"]["machine"] == "aarch64"  # really the arm64 Python, under QEMU
    assert m.runtime == "ai_edge_litert" and len(m.samples_ms) == 10
    assert m.peak_rss_bytes > 0 and m.extra["peak_rss_source"].startswith("wait4")
    assert not list((rootfs_path() / "tmp").glob("edgedistill-*"))  # work folder removed
