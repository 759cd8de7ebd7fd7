"""The local target and run_benchmark: the contract the spine calls."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bench_helpers import make_models
from edgedistill.bench import run_benchmark, run_grid
from edgedistill.errors import InputError, StageError
from edgedistill.targets import TargetOptions, make_target
from edgedistill.targets.base import BenchConfig, latency_stats


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("bench_models"))


def test_run_benchmark_local_contract(models, tmp_path):
    results = tmp_path / "run" / "bench.jsonl"
    m = run_benchmark(models["tiny_int8"], target="local", num_runs=40, warmup_runs=5, num_threads=1, results_path=results)
    assert m.status == "ok" and m.error is None and m.kind == "measured"
    assert m.runtime == "ai_edge_litert" and m.runtime_version
    assert m.model_size_bytes == models["tiny_int8"].stat().st_size
    assert len(m.samples_ms) == 40 and len(m.warmup_ms) == 5
    assert m.first_inference_ms == m.warmup_ms[0]
    assert m.init_ms > 0 and m.first_inference_ms > 0
    stats = m.latency_ms
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert stats["p50"] == pytest.approx(float(np.percentile(m.samples_ms, 50)))
    assert stats["mean"] == pytest.approx(float(np.mean(m.samples_ms)))
    assert stats["std"] == pytest.approx(float(np.std(m.samples_ms)))
    # VmHWM of the measuring subprocess: it holds an interpreter, so more than a bare Python.
    assert m.peak_rss_bytes > 20 * 2**20
    assert m.rss_init_growth_bytes is not None and m.rss_init_growth_bytes >= 0
    assert m.target["name"] == "local" and m.target["device"]["num_cores"] >= 1
    assert m.extra["inputs"][0]["dtype"] == "int8"
    lines = results.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record == json.loads(json.dumps(m.to_dict()))
    for key in ("target", "runtime", "runtime_version", "tool_version", "config", "timestamp", "kind"):
        assert record[key] not in (None, {}, ""), key


def test_peak_rss_is_the_measured_process(models):
    """The runner is a subprocess: its VmHWM differs from (is not) this test process's."""
    m = run_benchmark(models["tiny_int8"], num_runs=5)
    with open("/proc/self/status") as handle:
        own = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM"))
    assert m.peak_rss_bytes != own


def test_float_model_and_threads(models):
    m = run_benchmark(models["tiny_float"], num_runs=10, num_threads=2, use_xnnpack=False)
    assert m.ok and m.num_threads == 2 and m.extra["inputs"][0]["dtype"] == "float32"
    assert m.config["use_xnnpack"] is False
    assert m.extra["num_delegate_ops"] == 0  # no XNNPACK: no op is shown as DELEGATE


def test_min_secs_runs_longer_than_num_runs(models):
    m = run_benchmark(models["tiny_int8"], num_runs=1, warmup_runs=0, min_secs=0.3)
    assert len(m.samples_ms) > 1
    assert m.wall_s >= 0.3
    # warmup_runs=0: the first timed run is the first inference.
    assert m.first_inference_ms == m.samples_ms[0]


def test_timeout_keeps_partial_samples(models, tmp_path):
    results = tmp_path / "bench.jsonl"
    m = run_benchmark(models["tiny_int8"], num_runs=1, min_secs=60, timeout_s=2.5, results_path=results, raise_on_failure=False)
    assert m.status == "failed" and "timed out after 2.5 s" in m.error
    assert len(m.samples_ms) > 0  # flushed about once a second before the kill
    assert json.loads(results.read_text())["status"] == "failed"
    with pytest.raises(StageError, match="timed out"):
        run_benchmark(models["tiny_int8"], num_runs=1, min_secs=60, timeout_s=0.5)


def test_given_inputs(models, tmp_path):
    good = tmp_path / "in.npy"
    np.save(good, np.zeros((1, 8, 8, 1), np.int8))
    assert run_benchmark(models["tiny_int8"], num_runs=3, inputs=good).ok
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 5), np.int8))
    with pytest.raises(StageError, match=r"got shape \[3, 5\], expected \[1, 8, 8, 1\]"):
        run_benchmark(models["tiny_int8"], num_runs=3, inputs=bad)
    with pytest.raises(InputError, match="Inputs file not found"):
        run_benchmark(models["tiny_int8"], num_runs=3, inputs=tmp_path / "nope.npy")


def test_bad_model_inputs(models, tmp_path):
    with pytest.raises(InputError, match="Model file not found"):
        run_benchmark(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(InputError, match="not a TFLite flatbuffer"):
        run_benchmark(junk)
    with pytest.raises(InputError, match="Unknown benchmark target 'nowhere'. Expected one of: adb, local"):
        run_benchmark(models["tiny_int8"], target="nowhere")


def test_bad_config():
    with pytest.raises(InputError, match="num_runs"):
        BenchConfig(num_runs=0)
    with pytest.raises(InputError, match="num_threads"):
        BenchConfig(num_threads=0)


def test_truncated_model_fails_cleanly(models, tmp_path):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(models["tiny_int8"].read_bytes()[:600])
    # Checked whole before anything runs (issue 12): one clear input error, on every target.
    with pytest.raises(InputError, match="flatbuffer is corrupt"):
        run_benchmark(cut, num_runs=3, raise_on_failure=False)


def test_model_path_with_spaces_and_shell_characters(models, tmp_path):
    folder = tmp_path / "my models; $(touch pwned) 'q'"
    folder.mkdir()
    model = folder / "a b&c.tflite"
    shutil.copy(models["tiny_int8"], model)
    m = run_benchmark(model, num_runs=3)
    assert m.ok and m.model == str(model)
    assert not (tmp_path / "pwned").exists()


def test_no_interpreter_message(models):
    system_python = shutil.which("python3", path="/usr/bin")
    probe = subprocess.run([system_python, "-c", "import ai_edge_litert"], capture_output=True) if system_python else None
    if probe is None or probe.returncode == 0:
        pytest.skip("needs a python3 without any TFLite interpreter")
    target = make_target("local", TargetOptions(python=system_python))
    m = run_benchmark(models["tiny_int8"], target=target, num_runs=3, raise_on_failure=False)
    assert m.status == "failed"
    assert "has no TFLite interpreter" in m.error and "pip install ai-edge-litert" in m.error


def test_grid_resume_and_same_device_serial(models, tmp_path, caplog, monkeypatch):
    import time

    from edgedistill.targets.local import LocalTarget

    # Record when each measurement really runs (monotonic start/end), to prove the two never overlap.
    spans: list[tuple[float, float]] = []
    measure = LocalTarget.measure

    def timed_measure(self, model, config):
        started = time.monotonic()
        try:
            return measure(self, model, config)
        finally:
            spans.append((started, time.monotonic()))  # list.append is atomic under the GIL

    monkeypatch.setattr(LocalTarget, "measure", timed_measure)
    results = tmp_path / "bench.jsonl"
    config = BenchConfig(num_runs=5)
    seen = []
    with caplog.at_level(logging.INFO, logger="edgedistill.bench"):
        first = run_grid(
            [models["tiny_int8"], models["tiny_float"]], ["local"], config, results_path=results, jobs=2, on_result=seen.append
        )
    assert [m.status for m in first] == ["ok", "ok"] and len(seen) == 2
    # A start line, then one progress line per pair measured.
    messages = [r.getMessage() for r in caplog.records if r.name == "edgedistill.bench"]
    assert messages[0].startswith("Benchmarking 2 pair(s)") and len(messages) == 3
    assert messages[1].startswith("[1/2] tiny_int8.tflite @ local: p50 ") and messages[2].startswith("[2/2] ")
    # Same device, jobs=2: measured one after another, never overlapping.
    assert len(spans) == 2
    (_, first_end), (second_start, _) = sorted(spans)
    assert first_end <= second_start, spans
    assert len(results.read_text().splitlines()) == 2
    skipped = []
    again = run_grid(
        [models["tiny_int8"], models["tiny_float"], models["conv_int8"]],
        ["local"],
        config,
        results_path=results,
        resume=True,
        on_skip=skipped.append,
    )
    assert [p.model.name for p in skipped] == ["tiny_int8.tflite", "tiny_float.tflite"]
    assert [m.model for m in again] == [str(models["conv_int8"])]
    # Other settings are another pair: not skipped.
    other = run_grid([models["tiny_int8"]], ["local"], BenchConfig(num_runs=6), results_path=results, resume=True)
    assert len(other) == 1
    assert len(results.read_text().splitlines()) == 4


def test_latency_stats_known_values():
    stats = latency_stats([4.0, 1.0, 3.0, 2.0])
    assert stats["min"] == 1.0 and stats["max"] == 4.0 and stats["mean"] == 2.5
    assert stats["p50"] == 2.5 and stats["p90"] == pytest.approx(3.7)
    assert latency_stats([])["p50"] is None


def test_importing_bench_does_not_import_tensorflow():
    code = (
        "import sys, edgedistill.bench, edgedistill.results, edgedistill.targets.local; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
