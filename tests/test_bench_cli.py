"""`edgedistill bench` and `edgedistill results` through CliRunner on edgedistill.cli:cli (local target)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bench_helpers import make_models
from edgedistill.cli import cli


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("cli_models"))


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_bench_grid_table_and_resume(models, tmp_path):
    results = tmp_path / "bench.jsonl"
    first = invoke("bench", models["tiny_int8"], models["tiny_float"], "--num-runs", "5", "--results", results)
    assert first.exit_code == 0, first.output
    assert "tiny_int8.tflite" in first.output and "tiny_float.tflite" in first.output and "p50 ms" in first.output
    again = invoke(
        "bench",
        models["tiny_int8"],
        models["tiny_float"],
        models["conv_int8"],
        "--num-runs",
        "5",
        "--results",
        results,
        "--resume",
    )
    assert again.exit_code == 0, again.output
    assert "Skipped 2 pair(s)" in again.output
    assert len(results.read_text().splitlines()) == 3


def test_suite_file(models, tmp_path):
    suite = tmp_path / "suite.yaml"
    (tmp_path / "m").mkdir()
    for name in ("tiny_int8", "tiny_float"):
        (tmp_path / "m" / f"{name}.tflite").write_bytes(models[name].read_bytes())
    suite.write_text(
        "models: [m/tiny_int8.tflite, m/tiny_float.tflite]\ntargets: [local, tflm]\n"
        "num_runs: 4\nwarmup_runs: 2\nresults: out/bench.jsonl\njobs: 2\n"
    )
    outcome = invoke("bench", "--suite", suite, "--num-runs", "6")  # the command line wins over the file
    assert outcome.exit_code == 0, outcome.output
    lines = [json.loads(line) for line in (tmp_path / "out" / "bench.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(line["status"] == "ok" for line in lines)  # 2 models x 2 targets
    assert {line["num_runs"] for line in lines} == {6} and {line["warmup_runs"] for line in lines} == {2}


def test_bad_suite_lists_valid_keys(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("models: [a.tflite]\nnum_run: 3\n")
    outcome = invoke("bench", "--suite", suite)
    assert outcome.exit_code == 2 and "Unknown key(s) in suite file" in outcome.output and "num_runs" in outcome.output


def test_bad_inputs_exit_2(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default results file (bench.jsonl) lands here, not in the repository
    assert invoke("bench", tmp_path / "missing.tflite").exit_code == 2
    outcome = invoke("bench", models["tiny_int8"], "--target", "nowhere", "--results", tmp_path / "r.jsonl")
    assert outcome.exit_code == 2 and "Unknown benchmark target 'nowhere'" in outcome.output
    outcome = invoke("bench", models["tiny_int8"], "--num-runs", "0")
    assert outcome.exit_code == 2 and "num_runs" in outcome.output
    assert invoke("bench").exit_code == 2


def test_per_pair_timeout_grid_goes_on(models, tmp_path):
    results = tmp_path / "bench.jsonl"
    outcome = invoke(
        "bench",
        models["conv_int8"],
        "-t",
        "local",
        "-t",
        "tflm",
        "--min-secs",
        "30",
        "--timeout",
        "2",
        "--results",
        results,
        "--jobs",
        "2",
    )
    assert outcome.exit_code == 1
    assert "2 of 2 pair(s) failed" in outcome.output and "timed out after 2 s" in outcome.output
    assert len(results.read_text().splitlines()) == 2


def test_compare_and_plot(models, tmp_path):
    x, y = tmp_path / "x" / "bench.jsonl", tmp_path / "y" / "bench.jsonl"
    assert invoke("bench", models["tiny_int8"], "--num-runs", "20", "--results", x).exit_code == 0
    assert (
        invoke(
            "bench", models["tiny_int8"], "--num-runs", "20", "--num-threads", "1", "--results", y, "-t", "local", "-t", "tflm"
        ).exit_code
        == 0
    )
    outcome = invoke("results", "compare", x, y)
    assert outcome.exit_code == 0, outcome.output
    assert "x/bench.jsonl" in outcome.output and "p50 ratio [y/bench.jsonl]" in outcome.output
    assert "tflm [emulated]" in outcome.output
    rows = json.loads(invoke("results", "compare", x, y, "--json").output)
    local = next(r for r in rows if r["target"] == "local")
    assert local["ratios_p50"][0] == pytest.approx(local["p50_ms"][1] / local["p50_ms"][0])
    pandas = pytest.importorskip("pandas")
    table = pandas.read_json(y, lines=True)  # one row per pair, one column per Measurement field
    assert list(table["target"].map(lambda target: target["spec"])) == ["local", "tflm"]
    assert list(table["kind"]) == ["measured", "emulated"] and all(len(s) == 20 for s in table["samples_ms"])
    pytest.importorskip("matplotlib")
    png = tmp_path / "plot.png"
    outcome = invoke("results", "plot", y, "-o", png)
    assert outcome.exit_code == 0, outcome.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_bad_files(tmp_path):
    assert invoke("results", "compare", tmp_path / "a.jsonl").exit_code == 2
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"not": "a result"}\n{"model": "x"')
    outcome = invoke("results", "compare", broken, broken)
    assert outcome.exit_code == 2 and "line 1 is not a benchmark result" in outcome.output


def test_help_is_fast_and_imports_no_tensorflow():
    code = (
        "import sys; from click.testing import CliRunner; from edgedistill.cli import cli; "
        "r = CliRunner().invoke(cli, ['bench', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--num-runs' in r.output; r = CliRunner().invoke(cli, ['results', '--help']); "
        "assert 'compare' in r.output; assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
