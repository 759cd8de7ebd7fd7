"""`run_firmware`'s records without QEMU: a made-up export and build, the firmware's output faked.

Checks where the results go (``run.json``, ``report.json``, ``firmware.jsonl``) and that
``firmware.jsonl`` has one schema that pandas reads as a table; the real QEMU runs are in
test_firmware_tflm.py.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgedistill.errors import GateFailed
from edgedistill.firmware import run as run_module
from edgedistill.firmware.build import build_dir_for
from edgedistill.firmware.qemu import RunOutput
from edgedistill.firmware.run import FIRMWARE_RESULTS_FILE, FirmwareRunRecord, run_firmware
from firmware_helpers import write_micro_export
from test_firmware_result import BLOCK

BOARD = "qemu-mps2-an386"


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """A run folder with a micro export and a 'built' image whose run prints ``outputs[0]``."""
    write_micro_export(tmp_path, expected_outputs=[[-128, 127, 0], [5, -5, 10]])
    build_dir = build_dir_for(tmp_path, BOARD, "reference")
    build_dir.mkdir(parents=True)
    (build_dir / "build.json").write_text(
        json.dumps(
            {
                "kTensorArenaSize": 8192,
                "arena": {"source": "export"},
                "tflm_commit": "abc",
                "compiler": "gcc 12",
                "sizes": {"flash_bytes": 50_000, "ram_bytes": 12_000, "arena_bytes": 8192},
            }
        )
    )
    outputs = [BLOCK]
    commands = []

    def fake_run_command(command, *, timeout_seconds, what):
        commands.append(command)
        return RunOutput(command=command, returncode=0, output=outputs[0], seconds=0.25)

    monkeypatch.setattr(run_module, "run_command", fake_run_command)
    monkeypatch.setattr(run_module, "qemu_binary", lambda: "qemu-system-arm")
    return tmp_path, outputs, commands


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_firmware_results_go_to_their_own_file_with_one_schema(fake_run):
    pandas = pytest.importorskip("pandas")
    run_dir, outputs, commands = fake_run
    result = run_firmware(run_dir, board=BOARD, build=False)
    assert result["status"] == "pass" and commands and commands[0][0] == "qemu-system-arm"
    # 12345 SysTick ticks per invoke at 25 MHz under -icount shift=0: 493800 instructions.
    assert result["instructions_per_invoke"] == 493800
    assert not (run_dir / "bench.jsonl").exists()  # benchmark Measurements only live there

    outputs[0] = BLOCK.replace("output=5,-5,10", "output=5,-4,10")  # one output one step off
    with pytest.raises(GateFailed, match="differ from the host TFLM outputs"):
        run_firmware(run_dir, board=BOARD, build=False)

    path = run_dir / FIRMWARE_RESULTS_FILE
    lines = _lines(path)
    fields = [field.name for field in dataclasses.fields(FirmwareRunRecord)]
    assert [list(line) for line in lines] == [fields, fields]  # same keys, same order, on every line
    first, second = lines
    assert first["board"] == BOARD and first["kernels"] == "reference" and first["kind"] == "emulated"
    assert (first["status"], second["status"]) == ("pass", "fail")
    assert (first["outputs_match_host_tflm"], second["outputs_match_host_tflm"]) == (True, False)
    assert first["instructions_per_invoke"] == 493800 and first["latency_ms"] is None
    assert first["num_runs"] == 10 and first["arena_used_bytes"] == 8016
    assert (first["flash_bytes"], first["ram_bytes"]) == (50_000, 12_000)
    assert first["timestamp"] == result["timestamp"] and first["versions"]["tflm_commit"] == "abc"

    table = pandas.read_json(path, lines=True)
    assert list(table.columns) == fields and len(table) == 2
    assert list(table["status"]) == ["pass", "fail"]
    assert table["instructions_per_invoke"].iloc[0] == 493800

    report = json.loads((run_dir / "report.json").read_text())
    assert report["firmware"][f"{BOARD}/reference"]["run"]["status"] == "fail"  # the latest run


def test_a_firmware_results_file_is_refused_by_results_with_a_pointer(fake_run):
    from edgedistill.errors import InputError
    from edgedistill.results import read_results

    run_dir, _, _ = fake_run
    run_firmware(run_dir, board=BOARD, build=False)
    with pytest.raises(InputError, match=r"holds firmware results .* pandas.read_json"):
        read_results(run_dir / FIRMWARE_RESULTS_FILE)
