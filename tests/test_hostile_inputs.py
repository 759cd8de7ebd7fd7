"""Issue 12: what a careless or hostile user feeds the command line never breaks it.

Every case ends in one `Error:` line (what was received, what was expected, how to fix it) and
the documented exit code (2 bad input, 1 a stage failed, 3 a gate failed, 130 interrupted),
never a traceback, a silently wrong result, or lost data. The ssh cases (quoting, changed host
keys, temporary folders) are in test_bench_ssh.py, against a real sshd. The fuzz test at the end
feeds truncated and byte-flipped copies of real .tflite files to `info`, `micro` and `bench`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from bench_helpers import make_models
from conftest import invoke, write_npz

PYTHON = sys.executable

MAKE_EXTRA_MODELS = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np, tensorflow as tf, tf_keras as keras
    out = sys.argv[1]
    keras.utils.set_random_seed(0)

    def int8(model, samples):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        return converter.convert()

    # Hybrid: int8 weights, float activations (dynamic-range quantization); TFLM cannot run it.
    dense = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    converter = tf.lite.TFLiteConverter.from_keras_model(dense)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    open(os.path.join(out, "hybrid.tflite"), "wb").write(converter.convert())
    # Two inputs.
    a, b = keras.layers.Input((4,)), keras.layers.Input((4,))
    two = keras.Model([a, b], keras.layers.Dense(10)(keras.layers.Concatenate()([a, b])))
    pairs = lambda: ([np.random.rand(1, 4).astype("float32"), np.random.rand(1, 4).astype("float32")] for _ in range(8))
    open(os.path.join(out, "two_inputs_int8.tflite"), "wb").write(int8(two, pairs))
    # Needs a ~150 KB arena: more than bench's first guess for tflm (10x the model + 16 KiB).
    big = keras.Sequential([keras.layers.Input((64, 64, 3)), keras.layers.Conv2D(16, 3, padding="same"),
                            keras.layers.Conv2D(16, 3, padding="same"), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(10)])
    images = lambda: ([np.random.rand(1, 64, 64, 3).astype("float32")] for _ in range(4))
    open(os.path.join(out, "big_arena_int8.tflite"), "wb").write(int8(big, images))
    """
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    found = make_models(tmp_path_factory.mktemp("hostile_models"))
    extra = tmp_path_factory.mktemp("hostile_extra")
    subprocess.run([PYTHON, "-c", MAKE_EXTRA_MODELS, str(extra)], check=True, capture_output=True, timeout=300)
    found.update({name: extra / f"{name}.tflite" for name in ("hybrid", "two_inputs_int8", "big_arena_int8")})
    return found


def repeated_sentence(text: str) -> str | None:
    """A sentence said twice in one message (TFLM used to repeat one per node, 14 times)."""
    sentences = [s.strip() for s in re.split(r"(?<=[.;])\s+", text) if len(s.strip()) > 20]
    seen = set()
    for sentence in sentences:
        if sentence in seen:
            return sentence
        seen.add(sentence)
    return None


def assert_one_line_error(result, exit_code: int, *fragments: str) -> str:
    """Exit code, exactly one `Error:` line holding every fragment, no traceback, no repeated sentence."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert repeated_sentence(errors[0]) is None, errors[0]
    return errors[0]


# ---------------------------------------------------------------------------------------------------------------
# The table: (id, function building the arguments from (models, tmp_path), exit code, fragments of the Error line)


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _suite(tmp_path: Path, models, text: str) -> Path:
    return _file(tmp_path, "suite.yaml", f"models: [{models['tiny_int8']}]\n{text}")


def _result_line(model: str = "m.tflite", **fields) -> str:
    record = {
        "model": model,
        "model_size_bytes": 10,
        "target": {"spec": "local"},
        "kind": "measured",
        "status": "ok",
        "num_threads": 1,
        "latency_ms": {"p50": 1.0},
        "samples_ms": [1.0],
        **fields,
    }
    return json.dumps(record) + "\n"


def _build_json(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "run" / "firmware" / "nucleo-f446re_reference"
    folder.mkdir(parents=True)
    (folder / "build.json").write_text(text)
    return tmp_path / "run"


def _a_file(tmp_path: Path) -> Path:
    return _file(tmp_path, "a_file", "I am a file, not a folder\n")


def _channels3(tmp_path: Path) -> str:
    rng = np.random.default_rng(0)
    path = write_npz(
        tmp_path / "rgb.npz",
        x_train=rng.random((20, 8, 8, 3)),
        y_train=np.arange(20) % 10,
        x_test=rng.random((10, 8, 8, 3)),
        y_test=np.arange(10),
    )
    return f"npz:{path}"


CASES = [
    # 9: ranges at the option, including 0, NaN and infinity
    (
        "micro-vectors-negative",
        lambda m, t: ["micro", m["tiny_int8"], "-o", t / "o", "--num-test-vectors", "-3"],
        2,
        ["num_test_vectors", ">= 1"],
    ),
    (
        "micro-vectors-zero",
        lambda m, t: ["micro", m["tiny_int8"], "-o", t / "o", "--num-test-vectors", "0"],
        2,
        ["num_test_vectors"],
    ),
    (
        "micro-margin-nan",
        lambda m, t: ["micro", m["tiny_int8"], "-o", t / "o", "--arena-margin", "nan"],
        2,
        ["arena_margin", "nan"],
    ),
    ("micro-margin-negative", lambda m, t: ["micro", m["tiny_int8"], "-o", t / "o", "--arena-margin", "-1"], 2, ["arena_margin"]),
    (
        "run-max-train-samples-negative",
        lambda m, t: ["run", "--max-train-samples", "-5", "--output-dir", t],
        2,
        ["max_train_samples"],
    ),
    ("run-learning-rate-inf", lambda m, t: ["run", "--learning-rate", "inf", "--output-dir", t], 2, ["learning_rate"]),
    ("run-temperature-nan", lambda m, t: ["run", "--temperature", "nan", "--output-dir", t], 2, ["temperature"]),
    ("run-seed-negative", lambda m, t: ["run", "--seed", "-1", "--output-dir", t], 2, ["seed"]),
    ("run-name-escapes", lambda m, t: ["run", "--run-name", "../../elsewhere", "--output-dir", t], 2, ["run_name"]),
    ("bench-num-runs-zero", lambda m, t: ["bench", m["tiny_int8"], "--num-runs", "0"], 2, ["num_runs", ">= 1"]),
    ("bench-warmup-negative", lambda m, t: ["bench", m["tiny_int8"], "--warmup-runs", "-1"], 2, ["warmup_runs"]),
    ("bench-threads-zero", lambda m, t: ["bench", m["tiny_int8"], "--num-threads", "0"], 2, ["num_threads"]),
    ("bench-min-secs-nan", lambda m, t: ["bench", m["tiny_int8"], "--min-secs", "nan"], 2, ["min_secs", "finite"]),
    ("bench-timeout-inf", lambda m, t: ["bench", m["tiny_int8"], "--timeout", "inf"], 2, ["timeout_s", "finite"]),
    ("bench-timeout-zero", lambda m, t: ["bench", m["tiny_int8"], "--timeout", "0"], 2, ["timeout_s"]),
    ("bench-connect-timeout-nan", lambda m, t: ["bench", m["tiny_int8"], "--connect-timeout", "nan"], 2, ["connect_timeout"]),
    ("bench-jobs-zero", lambda m, t: ["bench", m["tiny_int8"], "--jobs", "0"], 2, ["jobs"]),
    ("bench-arena-negative", lambda m, t: ["bench", m["tiny_int8"], "-t", "tflm", "--arena-bytes", "-1"], 2, ["arena_bytes"]),
    (
        "firmware-arena-negative",
        lambda m, t: ["firmware", "build", t, "--board", "host", "--arena-bytes", "-1"],
        2,
        ["arena_bytes"],
    ),
    (
        "firmware-timeout-nan",
        lambda m, t: ["firmware", "run", t, "--board", "host", "--timeout", "nan"],
        2,
        ["timeout_seconds", "finite"],
    ),
    ("search-temperature-inf", lambda m, t: ["search", "--temperatures", "2,inf", "-o", t / "s"], 2, ["finite", "'2,inf'"]),
    ("search-width-nan", lambda m, t: ["search", "--widths", "nan", "-o", t / "s"], 2, ["finite", "'nan'"]),
    # 10, 15: result files, suites, YAML configs and build.json of the wrong kind or types
    (
        "compare-empty",
        lambda m, t: ["results", "compare", _file(t, "empty.jsonl", ""), _file(t, "ok.jsonl", _result_line())],
        2,
        ["empty.jsonl", "the file is empty"],
    ),
    (
        "compare-not-json",
        lambda m, t: ["results", "compare", _file(t, "ok.jsonl", _result_line()), _file(t, "notes.txt", "hello\n")],
        2,
        ["notes.txt", "not a complete JSON"],
    ),
    (
        "compare-not-json-lines",
        lambda m, t: ["results", "compare", _file(t, "x.jsonl", "hello\nworld\n"), _file(t, "ok.jsonl", _result_line())],
        2,
        ["x.jsonl", "line 1"],
    ),
    (
        "compare-wrong-types",
        lambda m, t: ["results", "compare", _file(t, "ok.jsonl", _result_line()), _file(t, "typed.jsonl", _result_line(model=5))],
        2,
        ["typed.jsonl", "line 1", "field 'model'"],
    ),
    (
        "compare-wrong-nested-types",
        lambda m, t: [
            "results",
            "compare",
            _file(t, "ok.jsonl", _result_line()),
            _file(t, "typed.jsonl", _result_line(samples_ms=["fast"])),
        ],
        2,
        ["typed.jsonl", "must hold numbers"],
    ),
    (
        "compare-only-failures",
        lambda m, t: [
            "results",
            "compare",
            _file(t, "ok.jsonl", _result_line()),
            _file(t, "failed.jsonl", _result_line(status="failed")),
        ],
        2,
        ["failed.jsonl", "no successful measurement"],
    ),
    ("compare-folder", lambda m, t: ["results", "compare", t, _file(t, "ok.jsonl", _result_line())], 2, ["is a folder"]),
    (
        "suite-targets-int",
        lambda m, t: ["bench", "--suite", _suite(t, m, "targets: 5\n")],
        2,
        ["suite.yaml", "`targets`", "Received: 5"],
    ),
    (
        "suite-num-runs-text",
        lambda m, t: ["bench", "--suite", _suite(t, m, 'num_runs: "many"\n')],
        2,
        ["suite.yaml", "`num_runs`", "'many'"],
    ),
    (
        "suite-models-numbers",
        lambda m, t: ["bench", "--suite", _file(t, "suite.yaml", "models: [1, 2]\n")],
        2,
        ["suite.yaml", "`models`"],
    ),
    ("suite-timeout-nan", lambda m, t: ["bench", "--suite", _suite(t, m, "timeout: .nan\n")], 2, ["`timeout`"]),
    (
        "config-temperature-text",
        lambda m, t: ["run", "--config", _file(t, "c.yaml", "temperature: hot\n"), "--output-dir", t],
        2,
        ["c.yaml", "`temperature`", "'hot'"],
    ),
    (
        "config-epochs-list",
        lambda m, t: ["run", "--config", _file(t, "c.yaml", "epochs: [1, 2]\n"), "--output-dir", t],
        2,
        ["c.yaml", "`epochs`", "whole number"],
    ),
    (
        "config-epochs-fraction",
        lambda m, t: ["run", "--config", _file(t, "c.yaml", "distill: {epochs: 2.5}\n"), "--output-dir", t],
        2,
        ["c.yaml", "`epochs`"],
    ),
    (
        "config-empty-value",
        lambda m, t: ["run", "--config", _file(t, "c.yaml", "temperature:\n"), "--output-dir", t],
        2,
        ["c.yaml", "`temperature` has no value"],
    ),
    (
        "config-bool-text",
        lambda m, t: ["run", "--config", _file(t, "c.yaml", "bench: maybe\n"), "--output-dir", t],
        2,
        ["c.yaml", "`bench`", "true or false"],
    ),
    (
        "config-out-of-range",
        lambda m, t: ["run", "--config", _file(t, "c.yaml", "temperature: -1\n"), "--output-dir", t],
        2,
        ["c.yaml", "`temperature` must be > 0"],
    ),
    (
        "config-in-stage-command",
        lambda m, t: ["teacher", "--config", _file(t, "c.yaml", "teacher_epochs: many\n"), "-o", t / "t.keras"],
        2,
        ["c.yaml", "`teacher_epochs`"],
    ),
    (
        "flash-build-json-not-json",
        lambda m, t: ["flash", _build_json(t, "{not json"), "--board", "nucleo-f446re", "--dry-run"],
        2,
        ["build.json", "not valid JSON", "firmware build"],
    ),
    (
        "flash-build-json-list",
        lambda m, t: ["flash", _build_json(t, "[1, 2]"), "--board", "nucleo-f446re", "--dry-run"],
        2,
        ["build.json", "not an object"],
    ),
    # 11: output folders that cannot be written, refused before the work
    (
        "micro-output-under-proc",
        lambda m, t: ["micro", m["tiny_int8"], "-o", "/proc/edgedistill-test"],
        2,
        ["Cannot write", "/proc/edgedistill-test"],
    ),
    ("micro-output-is-a-file", lambda m, t: ["micro", m["tiny_int8"], "-o", _a_file(t)], 2, ["is a file, not a folder"]),
    (
        "micro-output-under-a-file",
        lambda m, t: ["micro", m["tiny_int8"], "-o", _a_file(t) / "sub"],
        2,
        ["is a file, not a folder"],
    ),
    (
        "run-output-under-proc",
        lambda m, t: ["run", "--output-dir", "/proc/edgedistill-test"],
        2,
        ["Cannot write", "--output-dir"],
    ),
    ("run-output-is-a-file", lambda m, t: ["run", "--output-dir", _a_file(t)], 2, ["is a file, not a folder"]),
    (
        "convert-output-under-proc",
        lambda m, t: ["convert", m["tiny_int8"], "-o", "/proc/edgedistill-test/m.tflite"],
        2,
        ["Cannot write", "/proc/edgedistill-test"],
    ),
    (
        "convert-output-under-a-file",
        lambda m, t: ["convert", m["tiny_int8"], "-o", _a_file(t) / "m.tflite"],
        2,
        ["is a file, not a folder"],
    ),
    ("teacher-output-under-proc", lambda m, t: ["teacher", "-o", "/proc/edgedistill-test/t.keras"], 2, ["Cannot write"]),
    (
        "bench-results-under-proc",
        lambda m, t: ["bench", m["tiny_int8"], "--results", "/proc/edgedistill-test/r.jsonl"],
        2,
        ["Cannot write", "--results"],
    ),
    ("search-output-under-proc", lambda m, t: ["search", "-o", "/proc/edgedistill-test"], 2, ["Cannot write"]),
    (
        "plot-output-under-proc",
        lambda m, t: ["results", "plot", _file(t, "ok.jsonl", _result_line()), "-o", "/proc/edgedistill-test/p.png"],
        2,
        ["Cannot write", "plot"],
    ),
    # 14: micro --data that does not fit the model
    (
        "micro-data-other-shape",
        lambda m, t: ["micro", m["conv_int8"], "-o", t / "o", "--data", "digits"],
        2,
        ["(8, 8, 1)", "(32, 32, 3)", "--data"],
    ),
    (
        "micro-data-other-channels",
        lambda m, t: ["micro", m["tiny_int8"], "-o", t / "o", "--data", _channels3(t)],
        2,
        ["(8, 8, 3)", "(8, 8, 1)"],
    ),
    # 17-20: third-party models
    ("micro-two-inputs", lambda m, t: ["micro", m["two_inputs_int8"], "-o", t / "o"], 2, ["has 2 inputs", "single input"]),
    ("micro-hybrid", lambda m, t: ["micro", m["hybrid"], "-o", t / "o"], 2, ["not a full-integer int8 model"]),
    ("info-folder", lambda m, t: ["info", m["tiny_int8"].parent], 2, ["is a folder", "conv_int8.tflite"]),
    ("micro-folder", lambda m, t: ["micro", m["tiny_int8"].parent, "-o", t / "o"], 2, ["is a folder"]),
    ("bench-folder", lambda m, t: ["bench", m["tiny_int8"].parent, "--results", t / "r.jsonl"], 2, ["is a folder"]),
    (
        "bench-tflm-hybrid",
        lambda m, t: ["bench", m["hybrid"], "-t", "tflm", "--results", t / "r.jsonl"],
        1,
        ["TFLM cannot run the model", "not supported"],
    ),
    (
        "bench-tflm-arena-given-too-small",
        lambda m, t: ["bench", m["big_arena_int8"], "-t", "tflm", "--arena-bytes", "5000", "--results", t / "r.jsonl"],
        1,
        ["5000-byte arena", "--arena-bytes"],
    ),
    (
        "bench-tflm-truncated",
        lambda m, t: ["bench", _cut(m["tiny_int8"], t), "-t", "tflm", "--results", t / "r.jsonl"],
        2,
        ["corrupt"],
    ),
]


def _cut(model: Path, tmp_path: Path) -> Path:
    path = tmp_path / "cut.tflite"
    path.write_bytes(model.read_bytes()[: len(model.read_bytes()) * 3 // 4])
    return path


@pytest.mark.parametrize("arguments, exit_code, fragments", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_hostile_command_lines(models, tmp_path, arguments, exit_code, fragments):
    started = time.monotonic()
    result = invoke(*arguments(models, tmp_path))
    assert_one_line_error(result, exit_code, *fragments)
    assert time.monotonic() - started < 60  # refused before any long work (no training, no conversion)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(models, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert_one_line_error(invoke("micro", models["tiny_int8"], "-o", folder / "m"), 2, "Cannot write")
        assert_one_line_error(invoke("run", "--output-dir", folder), 2, "Cannot write")
        assert_one_line_error(invoke("convert", models["tiny_int8"], "-o", folder / "m.tflite"), 2, "Cannot write")
    finally:
        folder.chmod(0o700)


def test_refused_output_leaves_nothing(models, tmp_path):
    """A refused command writes nothing (no half-made output folder)."""
    assert_one_line_error(invoke("micro", models["two_inputs_int8"], "-o", tmp_path / "m"), 2, "inputs")
    assert_one_line_error(invoke("micro", models["conv_int8"], "-o", tmp_path / "m", "--data", "digits"), 2, "shape")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------------------------------
# 6: bench --resume on a results file whose last line was cut


def test_resume_after_a_cut_line_sets_the_fragment_aside(models, tmp_path):
    results = tmp_path / "bench.jsonl"
    first = invoke("bench", models["tiny_int8"], "--num-runs", "3", "--results", results)
    assert first.exit_code == 0, first.output
    complete = results.read_bytes()
    fragment = b'{"model": "/somewhere/conv_int8.tflite", "model_size_bytes": 6312, "target": {"spe'
    with open(results, "ab") as handle:  # the crash --resume exists for: a line cut while it was written
        handle.write(fragment)
    again = invoke("bench", models["tiny_int8"], models["conv_int8"], "--num-runs", "3", "--results", results, "--resume")
    assert again.exit_code == 0, again.output
    content = results.read_bytes()
    assert content.startswith(complete)  # complete lines are never rewritten
    lines = content.decode().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["status"] == "ok" for line in lines)
    assert json.loads(lines[1])["model"] == str(models["conv_int8"])
    (side,) = tmp_path.glob("bench.jsonl.cut*")
    assert side.read_bytes() == fragment
    # The next --resume reads the file (nothing left to measure).
    third = invoke("bench", models["tiny_int8"], models["conv_int8"], "--num-runs", "3", "--results", results, "--resume")
    assert third.exit_code == 0 and "Skipped 2 pair(s)" in third.output
    assert results.read_bytes() == content


def test_a_whole_last_line_missing_its_newline_gets_one(tmp_path):
    from edgedistill.results import read_results, set_aside_cut_line

    results = tmp_path / "bench.jsonl"
    results.write_text(_result_line() + _result_line(model="n.tflite").rstrip("\n"))
    assert set_aside_cut_line(results) is None
    assert results.read_text().endswith("}\n") and len(read_results(results)) == 2
    assert not list(tmp_path.glob("*.cut*"))
    assert set_aside_cut_line(tmp_path / "absent.jsonl") is None


# ---------------------------------------------------------------------------------------------------------------
# 8: the gate fails a model at chance


def test_gate_fails_a_model_at_chance():
    from edgedistill.errors import GateFailed
    from edgedistill.verify import raise_if_failed, verify_models

    class Constant:
        def __init__(self, label: int) -> None:
            self.label = label

        def predict(self, x, **_):
            outputs = np.zeros((len(x), 10), dtype=np.float32)
            outputs[:, self.label] = 1.0
            return outputs

    class Perfect:
        def predict(self, x, **_):
            return np.eye(10, dtype=np.float32)[np.asarray(x[:, 0], dtype=int)]

    y = np.arange(200) % 10
    x = y[:, None].astype(np.float32)
    result = verify_models(x, y, keras_models={"teacher": Perfect(), "float_student": Constant(3)})
    assert result.chance_accuracy == pytest.approx(10.0) and result.at_chance == ["float_student"]
    assert not result.passed
    with pytest.raises(GateFailed, match=r"at chance: float_student 10\.00%.*--learning-rate"):
        raise_if_failed(result, reference="float_student")
    assert verify_models(x, y, keras_models={"teacher": Perfect()}).passed
    assert verify_models(x, y, keras_models={"float_student": Constant(3)}, chance_gate=False).passed
    # An unbalanced test split: always guessing its most frequent label is "chance".
    unbalanced = np.array([3] * 150 + list(range(10)) * 5)
    assert verify_models(
        unbalanced[:, None].astype(np.float32), unbalanced, keras_models={"float_student": Constant(3)}
    ).at_chance == ["float_student"]


@pytest.mark.slow
@pytest.mark.parametrize("given_teacher", [False, True], ids=["teacher-trained-here", "teacher-given"])
def test_a_diverged_learning_rate_never_passes(tmp_path, teacher_file, given_teacher):
    """--learning-rate 1e6: the teacher trained here is stopped by the teacher gate (exit 2); with a good
    teacher given, the student diverges (NaN loss, exit 1) or ends at chance (the verify gate, exit 3)."""
    from conftest import TINY_RUN

    teacher = ["--teacher", teacher_file] if given_teacher else []
    result = invoke(
        "run", *TINY_RUN, *teacher, "--learning-rate", "1e6", "--no-bench", "--output-dir", tmp_path, "--run-name", "lr"
    )
    assert result.exit_code in ((1, 3) if given_teacher else (2,)), result.output
    assert "Traceback" not in result.output
    report = json.loads((tmp_path / "lr" / "report.json").read_text())
    assert report["status"] == "failed"


# ---------------------------------------------------------------------------------------------------------------
# 16, 17, 19, 20: firmware build's hint, the tflm arena, a grid with unreadable models, test_data.h


def test_firmware_build_without_micro_suggests_a_command_that_works(models, tmp_path):
    from edgedistill.micro import load_micro_export

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "student_int8.tflite").write_bytes(models["tiny_int8"].read_bytes())
    error = assert_one_line_error(invoke("firmware", "build", run_dir, "--board", "host"), 2, "edgedistill micro")
    command = re.search(r"`(edgedistill micro [^`]+)`", error).group(1)
    result = invoke(*shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    assert load_micro_export(run_dir).model_path == run_dir / "student_int8.tflite"


def test_bench_tflm_grows_the_arena_or_takes_one(models, tmp_path):
    results = tmp_path / "bench.jsonl"
    result = invoke("bench", models["big_arena_int8"], "-t", "tflm", "--num-runs", "2", "--results", results)
    assert result.exit_code == 0, result.output
    grown = json.loads(results.read_text())["extra"]
    assert grown["arena_size_bytes"] > grown["arena_grown_from_bytes"]
    result = invoke(
        "bench",
        models["big_arena_int8"],
        "-t",
        "tflm",
        "--num-runs",
        "2",
        "--results",
        results,
        "--arena-bytes",
        str(grown["arena_size_bytes"]),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(results.read_text().splitlines()[-1])["extra"]["arena_size_bytes"] == grown["arena_size_bytes"]


def test_one_unreadable_model_does_not_stop_a_grid(models, tmp_path):
    results = tmp_path / "bench.jsonl"
    garbage = _file(tmp_path, "garbage.tflite", "not a model at all\n")
    grid = [models["tiny_int8"], garbage, tmp_path / "missing.tflite", _cut(models["conv_int8"], tmp_path), models["conv_int8"]]
    result = invoke("bench", *grid, "--num-runs", "3", "--results", results)
    error = assert_one_line_error(result, 1, "3 of 5 pair(s) failed")
    assert "garbage.tflite" in error
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    status = {Path(line["model"]).name: line["status"] for line in lines}
    assert status == {
        "tiny_int8.tflite": "ok",
        "garbage.tflite": "failed",
        "missing.tflite": "failed",
        "cut.tflite": "failed",
        "conv_int8.tflite": "ok",
    }
    assert "flatbuffer is corrupt" in next(line["error"] for line in lines if line["model"].endswith("cut.tflite"))


def test_test_data_header_says_where_its_samples_come_from(models, tmp_path):
    assert invoke("micro", models["tiny_int8"], "-o", tmp_path / "random").exit_code == 0
    header = (tmp_path / "random" / "test_data.h").read_text()
    assert "Seeded random inputs" in header and "Real samples" not in header
    assert invoke("micro", models["tiny_int8"], "-o", tmp_path / "real", "--data", "digits").exit_code == 0
    assert "Real samples of the test split" in (tmp_path / "real" / "test_data.h").read_text()


def test_tflm_messages_say_each_reason_once():
    from edgedistill.tflm import is_arena_failure, tflm_error_text

    node = "Hybrid models are not supported on TFLite Micro."
    text = tflm_error_text("\n".join([node] * 14 + ["Node FULLY_CONNECTED (number 3) failed to prepare."]))
    assert text.count("Hybrid models") == 1 and "(x14)" in text and len(text) < 200
    assert is_arena_failure("Failed to resize buffer. Requested: 131072, available 77016, missing: 54056")
    assert not is_arena_failure("Input type: FLOAT32 with filter type: INT8 not supported")


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C: exit 130, the report says interrupted, `run --resume RUN_DIR` goes on from the last completed stage


def test_ctrl_c_during_a_run_exits_130_and_the_report_says_interrupted(tmp_path, monkeypatch):
    from edgedistill import stages

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "load_data", interrupted)
    result = invoke("run", "--output-dir", tmp_path, "--run-name", "x")
    assert_one_line_error(result, 130, "interrupted")
    report = json.loads((tmp_path / "x" / "report.json").read_text())
    assert report["status"] == "interrupted" and report["error"] == {"stage": "data", "message": "interrupted (Ctrl-C)"}
    markdown = (tmp_path / "x" / "report.md").read_text()
    assert "KeyboardInterrupt" not in markdown and f"edgedistill run --resume {tmp_path / 'x'}" in markdown


def _as_a_terminal_starts_it() -> None:
    """SIGINT at its default and unblocked in the child, as a shell starts a foreground command.

    Within the whole suite the pytest process had SIGINT ignored or blocked by then (passed alone, failed
    in the suite, twice): both are inherited through exec, and Python installs its KeyboardInterrupt
    handler only for a default SIGINT.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_to_a_benchmark_exits_130(models, tmp_path):
    """A real Ctrl-C (SIGINT to the process group, as a terminal sends it) during a long benchmark."""
    model = tmp_path / "sigint_probe.tflite"
    model.write_bytes(models["conv_int8"].read_bytes())
    command = [
        os.path.join(os.path.dirname(PYTHON), "edgedistill"),
        "bench",
        str(model),
        "--min-secs",
        "60",
        "--results",
        str(tmp_path / "r.jsonl"),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_as_a_terminal_starts_it,
    )

    def runner_alive() -> bool:
        # The measuring child (edgedistill/_runner.py on this model), not the `edgedistill bench` process,
        # whose command line names the model too: interrupting before the child runs tests less.
        return subprocess.run(["pgrep", "-f", f"_runner.py --model {model}"], capture_output=True).returncode == 0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not runner_alive():
        time.sleep(0.2)
    assert runner_alive(), "the measuring child never started"
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)  # the foreground process group, as the terminal's Ctrl-C
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(
            f"no exit 60 s after SIGINT; in pytest: SIGINT handler {signal.getsignal(signal.SIGINT)!r}, "
            f"blocked {signal.pthread_sigmask(signal.SIG_BLOCK, set())}"
        ) from None
    assert process.returncode == 130, stderr
    assert "Error: interrupted" in stderr and "Traceback" not in stderr
    time.sleep(0.5)
    assert not runner_alive()  # the measuring child went with it


def test_resume_walks_only_the_stages_left(tmp_path):
    """The walk itself, with cheap stages: completed ones are restored, the rest run, once."""
    from edgedistill.config import RunConfig
    from edgedistill.pipeline import Stage, run_pipeline

    calls: list[str] = []
    interrupt = {"at": "two"}

    def stage(name):
        def run(config, artifacts):
            calls.append(f"run {name}")
            if interrupt["at"] == name:
                raise KeyboardInterrupt
            (artifacts.run_dir / f"{name}.out").write_text(name)
            return {f"section_{name}": {"value": name}}

        def restore(config, artifacts, sections):
            calls.append(f"restore {name}")
            return (artifacts.run_dir / f"{name}.out").exists()

        return Stage(name, run, restore=restore)

    stages = [stage("one"), stage("two"), stage("three")]
    config = RunConfig.from_options({"output_dir": str(tmp_path), "run_name": "walk"})
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, run_dir=tmp_path / "walk", stages=stages)
    assert calls == ["run one", "run two"]
    assert json.loads((tmp_path / "walk" / "report.json").read_text())["status"] == "interrupted"
    calls.clear()
    interrupt["at"] = None
    report = run_pipeline(config, run_dir=tmp_path / "walk", stages=stages, resume=True)
    assert calls == ["restore one", "run two", "run three"]
    assert report["status"] == "ok" and report["resumed"] == {"restored_stages": ["one"]}
    assert report["section_one"] == {"value": "one"} and report["section_three"] == {"value": "three"}


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    assert_one_line_error(invoke("run", "--resume", tmp_path / "nowhere"), 2, "Run folder not found")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("run", "--resume", tmp_path / "empty"), 2, "config.yaml")
    assert_one_line_error(invoke("run", "--resume", tmp_path / "empty", "--epochs", "3"), 2, "--epochs")


def test_interrupted_run_resumes_from_the_last_completed_stage(tmp_path):  # ~30 s: a tiny run
    """A real run interrupted at the start of `convert` (after teacher, distill and QAT trained), then resumed."""
    import dataclasses

    from edgedistill.config import RunConfig
    from edgedistill.pipeline import STAGES, run_pipeline

    # conftest's TINY_RUN (a teacher good enough for the teacher gate), one distillation epoch.
    options = {
        "teacher_epochs": 6,
        "teacher_width": 0.5,
        "epochs": 1,
        "qat_epochs": 1,
        "student_width": 0.25,
        "max_train_samples": 600,
        "verbose": 0,
        "bench": False,
        "chance_gate": False,
        "max_int8_drop": 100,
    }
    config = RunConfig.from_options({**options, "output_dir": str(tmp_path), "run_name": "r"})
    run_dir = tmp_path / "r"

    def ctrl_c(config, artifacts):
        raise KeyboardInterrupt

    stages = [dataclasses.replace(s, run=ctrl_c) if s.name == "convert" else s for s in STAGES]
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, run_dir=run_dir, stages=stages)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "interrupted" and report["error"]["stage"] == "convert"
    trained = {name: (run_dir / name).stat().st_mtime_ns for name in ("teacher.keras", "student_float.keras", "student_qat.h5")}
    assert not (run_dir / "student_int8.tflite").exists()

    result = invoke("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "ok" and report["resumed"]["restored_stages"] == ["data", "teacher", "distill", "qat"]
    assert {name: (run_dir / name).stat().st_mtime_ns for name in trained} == trained  # restored, not trained again
    assert (run_dir / "student_int8.tflite").exists() and (run_dir / "micro" / "micro_export.json").exists()
    assert report["verify"]["accuracy"]["int8_litert"] >= 0 and report["teacher"]["source"].startswith("preset")


# ---------------------------------------------------------------------------------------------------------------
# Fuzz: truncated and byte-flipped copies of real .tflite files through info, micro and bench (local, tflm).
# Each command runs in a driver process (the CLI in-process, as users run it), so a crash shows up as the
# driver dying, and the test names the file that did it.

FUZZ_DRIVER = textwrap.dedent(
    """
    import json, sys
    from click.testing import CliRunner
    from edgedistill.cli import cli

    for index, arguments in enumerate(json.load(open(sys.argv[1]))):
        print(json.dumps({"start": index, "arguments": arguments}), flush=True)
        result = CliRunner().invoke(cli, arguments)
        bug = result.exception is not None and not isinstance(result.exception, SystemExit)
        print(json.dumps({"index": index, "exit_code": result.exit_code, "output": result.output[-3000:],
                          "bug": repr(result.exception) if bug else None}), flush=True)
    """
)


def _mutants(models, folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` seeded copies of the models, truncated (a third) or with 1-8 bytes flipped (the rest)."""
    rng = np.random.default_rng(seed)
    sources = [
        models[name].read_bytes()
        for name in ("tiny_int8", "conv_int8", "tiny_float", "hybrid", "two_inputs_int8", "big_arena_int8")
    ]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        data = bytearray(sources[rng.integers(len(sources))])
        if rng.random() < 1 / 3:
            data = data[: rng.integers(0, len(data))]
        else:
            for position in rng.integers(8 if rng.random() < 0.9 else 0, len(data), size=rng.integers(1, 9)):
                data[position] ^= int(rng.integers(1, 256))
        path = folder / f"mutant_{index:04d}.tflite"
        path.write_bytes(bytes(data))
        paths.append(path)
    return paths


def _parses(path: Path) -> bool:
    from edgedistill.errors import InputError
    from edgedistill.tflite_model import read_model_info

    try:
        read_model_info(path.read_bytes())
    except InputError:
        return False
    return True


def _run_fuzz(models, tmp_path: Path, *, num_info: int, num_micro: int, num_bench: int, seed: int) -> None:
    mutants = _mutants(models, tmp_path / "mutants", num_info, seed)
    parsing = [path for path in mutants if _parses(path)]
    broken = [path for path in mutants if path not in parsing]

    # micro and bench get mostly mutants that parse (they reach TFLM and LiteRT), some that do not.
    def pick(count: int) -> list[Path]:
        chosen = parsing[: count * 3 // 4]
        return chosen + broken[: count - len(chosen)]

    jobs = [["info", str(path)] for path in mutants]
    jobs += [["micro", str(path), "-o", str(tmp_path / "micro" / path.stem)] for path in pick(num_micro)]
    for target in ("local", "tflm"):
        jobs += [
            [
                "bench",
                str(path),
                "-t",
                target,
                "--num-runs",
                "2",
                "--warmup-runs",
                "0",
                "--timeout",
                "30",
                "--results",
                str(tmp_path / f"{target}.jsonl"),
            ]
            for path in pick(num_bench)
        ]
    job_file = tmp_path / "jobs.json"
    job_file.write_text(json.dumps(jobs))
    driver = subprocess.run(
        [PYTHON, "-c", FUZZ_DRIVER, str(job_file)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines = [json.loads(line) for line in driver.stdout.splitlines() if line.startswith("{")]
    results = {line["index"]: line for line in lines if "index" in line}
    started = [line for line in lines if "start" in line]
    assert driver.returncode == 0 and len(results) == len(jobs), (
        f"the process died (exit {driver.returncode}) on {started[-1]['arguments'] if started else '?'}: {driver.stderr[-2000:]}"
    )
    outcomes: dict[str, int] = {}
    for index, result in results.items():
        where = " ".join(jobs[index])
        assert result["bug"] is None, f"{where}: {result['bug']}\n{result['output']}"
        assert result["exit_code"] in (0, 1, 2), f"{where}: exit {result['exit_code']}\n{result['output']}"
        assert "Traceback" not in result["output"], f"{where}:\n{result['output']}"
        if result["exit_code"]:
            errors = [line for line in result["output"].splitlines() if line.startswith("Error: ")]
            assert len(errors) == 1, f"{where}:\n{result['output']}"
            assert repeated_sentence(errors[0]) is None, errors[0]
        key = f"{jobs[index][0]} exit {result['exit_code']}"
        outcomes[key] = outcomes.get(key, 0) + 1
    print("fuzz outcomes:", outcomes)
    # The mutants reached every layer: some are refused, some run (a flipped weight is still a model).
    assert outcomes.get("info exit 0") and outcomes.get("info exit 2"), outcomes
    assert sum(v for k, v in outcomes.items() if k.startswith("micro exit 0")), outcomes


def test_fuzzed_tflite_files_never_break_info_micro_or_bench(models, tmp_path):
    _run_fuzz(models, tmp_path, num_info=300, num_micro=24, num_bench=10, seed=12)


@pytest.mark.slow
def test_fuzzed_tflite_files_many(models, tmp_path):
    _run_fuzz(models, tmp_path, num_info=2000, num_micro=150, num_bench=60, seed=2024)
