"""edgedistill.results: the bench.jsonl format (one schema, read by `results` and by pandas), old
files with firmware lines, and plotting that leaves matplotlib's global state alone.

The files here are written the way `bench` writes them (``append_jsonl(path, m.to_dict())``) from
made-up measurements, so no model is measured; test_bench_cli.py reads files a real grid wrote.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from edgedistill.errors import InputError, StageError
from edgedistill.fileio import append_jsonl
from edgedistill.results import compare_results, format_table, read_results
from edgedistill.targets.base import Measurement, latency_stats

# What `firmware run` appended to bench.jsonl before firmware results got their own file.
LEGACY_FIRMWARE_LINE = {
    "kind": "emulated",
    "target": "qemu-mps2-an386",
    "model": "/runs/x/student_int8.tflite",
    "kernels": "reference",
    "num_runs": 10,
    "arena_used_bytes": 8016,
    "flash_bytes": 50000,
    "ram_bytes": 12000,
    "outputs_match_host_tflm": True,
    "versions": {"edgedistill": "0.1"},
    "timestamp": "2025-01-01T00:00:00+00:00",
    "instructions_per_invoke": 493800,
}


def _measurement(model: str, spec: str, samples: list[float], *, kind: str = "measured") -> Measurement:
    return Measurement(
        model=model,
        model_size_bytes=2048,
        target={"name": spec, "spec": spec, "kind": kind},
        runtime="ai_edge_litert",
        kind=kind,
        num_runs=len(samples),
        samples_ms=samples,
        latency_ms=latency_stats(samples),
        model_sha256="ab" * 32,
        config={"num_runs": len(samples)},
    )


def _write(path, measurements):
    for measurement in measurements:
        append_jsonl(path, measurement.to_dict())
    return path


def test_bench_file_reads_in_results_and_in_pandas(tmp_path):
    pandas = pytest.importorskip("pandas")
    failed = _measurement("/m/b.tflite", "local", [3.0])
    failed.status, failed.error, failed.exception = "failed", "local: boom", StageError("local: boom")
    measurements = [
        _measurement("/m/a.tflite", "local", [1.0, 2.0, 3.0, 4.0]),
        _measurement("/m/a.tflite", "tflm", [10.0, 12.0], kind="emulated"),
        failed,
    ]
    path = _write(tmp_path / "bench.jsonl", measurements)

    again = read_results(path)
    assert [m.to_dict() for m in again] == [m.to_dict() for m in measurements]
    assert again[0].latency_ms["p50"] == 2.5 and again[2].exception is None  # the exception is never written
    assert "a.tflite" in format_table(again) and "local: boom" in format_table(again)

    table = pandas.read_json(path, lines=True)
    assert len(table) == 3 and list(table.columns) == list(measurements[0].to_dict())
    assert "exception" not in table.columns
    assert list(table["status"]) == ["ok", "ok", "failed"] and list(table["kind"]) == ["measured", "emulated", "measured"]
    assert table["latency_ms"].iloc[0]["p90"] == pytest.approx(3.7)


def test_old_bench_file_with_firmware_lines_still_compares(tmp_path, caplog):
    x = _write(tmp_path / "x.jsonl", [_measurement("/m/a.tflite", "local", [1.0, 2.0, 3.0])])
    y = _write(tmp_path / "y.jsonl", [_measurement("/m/a.tflite", "local", [2.0, 4.0, 6.0])])
    append_jsonl(y, LEGACY_FIRMWARE_LINE)
    with caplog.at_level(logging.WARNING, logger="edgedistill.results"):
        rows = compare_results([x, y])
    assert [(row.model, row.target) for row in rows] == [("a.tflite", "local")]
    assert rows[0].ratios_p50 == [pytest.approx(2.0)]
    assert "Skipped 1 `firmware run` line(s)" in caplog.text and "firmware.jsonl" in caplog.text


def test_broken_lines_are_errors_except_a_cut_last_line(tmp_path):
    path = _write(tmp_path / "bench.jsonl", [_measurement("/m/a.tflite", "local", [1.0])])
    with open(path, "a") as handle:
        handle.write('{"model": "/m/b.tflite", "target": {"na')  # the line being written when a crash came
    assert len(read_results(path)) == 1
    path.write_text('{"not": "a result"}\n' + path.read_text())
    with pytest.raises(InputError, match="line 1 is not a benchmark result"):
        read_results(path)


def test_plot_leaves_pyplot_and_the_backend_alone(tmp_path):
    pytest.importorskip("matplotlib")
    path = _write(
        tmp_path / "bench.jsonl",
        [_measurement("/m/a.tflite", "local", [1.0, 2.0, 3.0]), _measurement("/m/a.tflite", "tflm", [9.0, 9.5], kind="emulated")],
    )
    png = tmp_path / "plot.png"
    code = (
        "import sys, matplotlib; from edgedistill.results import plot_results; "
        f"plot_results({str(path)!r}, {str(png)!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
        "assert matplotlib.get_backend().lower() == 'svg', matplotlib.get_backend()"
    )
    # A user's backend (here svg, as a notebook's would be) must survive plotting.
    env = {**os.environ, "MPLBACKEND": "svg"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latency_stats_are_numpys_linear_percentiles():
    samples = list(np.random.default_rng(0).lognormal(0.0, 0.5, size=257))
    stats = latency_stats(samples)
    p50, p90, p99 = np.percentile(samples, [50, 90, 99], method="linear")
    assert (stats["p50"], stats["p90"], stats["p99"]) == (p50, p90, p99)
    assert stats["mean"] == np.mean(samples) and stats["std"] == np.std(samples)
    assert (stats["min"], stats["max"]) == (min(samples), max(samples))
    assert all(type(value) is float for value in stats.values())  # plain floats: JSON-ready
    json.dumps(stats)
