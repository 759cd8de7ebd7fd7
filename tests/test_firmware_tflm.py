"""The whole firmware flow on real TFLM sources: spine student -> build -> QEMU -> checks.

Needs a TFLite Micro checkout in TFLM_DIR (`make test` sets it: scripts/ci-tflm.sh), the
arm-none-eabi toolchain and qemu-system-arm. The first build of a TFLM library takes minutes
(then it is cached in ~/.cache/edgedistill/tflm/).
"""

from __future__ import annotations

import json
import os

import pytest

from firmware_helpers import needs_cross_toolchain, needs_qemu

pytestmark = [
    pytest.mark.tflm_source,
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("TFLM_DIR"), reason="needs a TFLite Micro checkout: set TFLM_DIR"),
    needs_cross_toolchain,
    needs_qemu,
]


@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547"])
def test_student_runs_in_qemu_and_matches_host_tflm(pipeline_run, board):
    from click.testing import CliRunner

    from edgedistill.cli import cli

    _, run_dir, _ = pipeline_run
    result = CliRunner().invoke(cli, ["firmware", "run", str(run_dir), "--board", board, "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "pass"
    assert all(sample["match"] and sample["max_abs_diff"] == 0 for sample in run["samples"])
    export = json.loads((run_dir / "micro" / "micro_export.json").read_text())
    assert len(run["samples"]) == export["num_test_samples"]
    # The arena the 32-bit target used fits what the export reserved, and is below the 64-bit host figure.
    assert 0 < run["arena_used_bytes"] <= export["kTensorArenaSize"]
    assert run["arena_used_bytes"] < export["arena_bytes_host"]
    # The firmware reserved the arena its probe measured on this target, plus the export's margin rule.
    assert run["arena"]["source"] == "measured"
    assert run["arena"]["kTensorArenaSize"] - run["arena_used_bytes"] >= 1024
    assert run["instructions_per_invoke"] > 1000
    # The host-side estimate corrected for 32-bit pointers agrees with the target's figure:
    # never below it (it keeps op data at host size), at most 5 % above (measured: +0.3 % to +2.5 %).
    arena = run["arena"]
    assert 0 <= arena["estimate_minus_target_bytes"] <= 0.05 * run["arena_used_bytes"]

    report = json.loads((run_dir / "report.json").read_text())
    assert report["firmware"][f"{board}/reference"]["run"]["status"] == "pass"
    lines = [json.loads(line) for line in (run_dir / "firmware.jsonl").read_text().splitlines()]
    on_board = [line for line in lines if line["board"] == board]
    assert on_board and on_board[-1]["instructions_per_invoke"] == run["instructions_per_invoke"]
    assert on_board[-1]["kind"] == "emulated" and on_board[-1]["status"] == "pass"


def test_second_build_reuses_the_cached_library_and_arena_probe(pipeline_run):
    from edgedistill.firmware.build import build_firmware

    _, run_dir, _ = pipeline_run
    first = build_firmware(run_dir, board="qemu-mps2-an386")
    again = build_firmware(run_dir, board="qemu-mps2-an386")
    assert again.info["tflm_library_built_now"] is False
    assert again.info["arena"]["cached"] is True
    assert again.info["sizes"]["arena_bytes"] == first.info["kTensorArenaSize"] == again.info["kTensorArenaSize"]
    # The Makefile tracks its flags: another arena size recompiles the runner (the map shows the new arena).
    export_arena = json.loads((run_dir / "micro" / "micro_export.json").read_text())["kTensorArenaSize"]
    from_export = build_firmware(run_dir, board="qemu-mps2-an386", arena="export")
    assert from_export.info["sizes"]["arena_bytes"] == export_arena
    override = build_firmware(run_dir, board="qemu-mps2-an386", arena_bytes=export_arena + 4096)
    assert override.info["sizes"]["arena_bytes"] == export_arena + 4096


def test_cmsis_nn_on_the_m55_needs_the_arena_measured_on_the_target(pipeline_run):
    """The MVE kernels' scratch buffers are invisible to the host's reference-kernel measurement."""
    from click.testing import CliRunner

    from edgedistill.cli import cli

    _, run_dir, _ = pipeline_run
    args = ["firmware", "run", str(run_dir), "--board", "qemu-mps3-an547", "--kernels", "cmsis_nn"]
    measured = CliRunner().invoke(cli, [*args, "--arena", "measured", "--json"])
    assert measured.exit_code == 0, measured.output
    run = json.loads(measured.output[measured.output.index("{") :])
    assert run["status"] == "pass"
    export = json.loads((run_dir / "micro" / "micro_export.json").read_text())
    # Scratch buffers: more arena than the same model with reference kernels on the host.
    assert run["arena_used_bytes"] > run["arena"]["arena_estimate_bytes_32bit"]

    from_export = CliRunner().invoke(cli, [*args, "--arena", "export"])
    if run["arena_used_bytes"] > export["kTensorArenaSize"]:
        assert from_export.exit_code == 1
        assert "too small" in from_export.output and "--arena measured" in from_export.output
    else:  # a student whose margin happens to cover the scratch buffers
        assert from_export.exit_code == 0, from_export.output


def _firmware_run(run_dir, *args):
    from click.testing import CliRunner

    from edgedistill.cli import cli

    result = CliRunner().invoke(cli, ["firmware", "run", str(run_dir), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :])


def test_cmsis_nn_on_the_m4_matches_host_tflm_in_fewer_instructions(pipeline_run):
    """CMSIS-NN's DSP kernels on the Cortex-M4: the same outputs as the host's reference TFLM, fewer instructions."""
    _, run_dir, _ = pipeline_run
    optimized = _firmware_run(run_dir, "--board", "qemu-mps2-an386", "--kernels", "cmsis_nn", "--arena", "measured")
    reference = _firmware_run(run_dir, "--board", "qemu-mps2-an386", "--kernels", "reference")
    for run in (optimized, reference):
        assert run["status"] == "pass" and run["kind"] == "emulated"
        assert all(sample["match"] and sample["max_abs_diff"] == 0 for sample in run["samples"])
        assert 0 < run["arena_used_bytes"] <= run["arena"]["kTensorArenaSize"]
    assert 0 < optimized["instructions_per_invoke"] < reference["instructions_per_invoke"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["firmware"]["qemu-mps2-an386/cmsis_nn"]["run"]["status"] == "pass"


def test_student_runs_on_the_host_board(pipeline_run):
    """The host board (TFLM's linux target, reference kernels): the same runner natively, timed by the wall clock."""
    _, run_dir, _ = pipeline_run
    run = _firmware_run(run_dir, "--board", "host")
    assert run["status"] == "pass" and run["kind"] == "host" and run["kernels"] == "reference"
    assert all(sample["match"] and sample["max_abs_diff"] == 0 for sample in run["samples"])
    export = json.loads((run_dir / "micro" / "micro_export.json").read_text())
    assert len(run["samples"]) == export["num_test_samples"]
    assert 0 < run["arena_used_bytes"] <= run["arena"]["kTensorArenaSize"]
    assert run["latency_ms"] > 0 and run["instructions_per_invoke"] is None
