"""Issue 23, part A: the model-code check, outputs that would destroy inputs, hangs, config files.

Round two of tests/test_hostile_inputs.py: every case ends in one `Error:` line (or a warning that
names the option), never runs a model's code without --trust-model-code, and never destroys an input.
The hostile models are real: a test first shows that plain tf_keras runs their Lambda (the marker
file appears), then that edgedistill refuses them (the marker never appears).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bench_helpers import make_models
from conftest import invoke
from test_hostile_inputs import _result_line, assert_one_line_error

PYTHON = sys.executable


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    """edgedistill's warnings (the CLI stops them propagating to the root logger, so caplog misses them)."""
    handler = _Records()
    logger = logging.getLogger("edgedistill")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


MARKER_NAME = "edgedistill_lambda_ran"

MAKE_HOSTILE = textwrap.dedent(
    """
    import io, os, sys, zipfile
    from pathlib import Path
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_keras as keras
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    out, marker = Path(sys.argv[1]), sys.argv[2]

    def payload(x, path=marker):
        open(path, "w").close()  # what an attacker's Lambda would do, harmlessly
        return x

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(payload, name="payload")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    # 1. An HDF5 model with a small zip appended: a zip to zipfile.is_zipfile, an HDF5 model to tf_keras.
    model.save(out / "zip_appended.h5")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("readme.txt", "nothing to see here")
    with open(out / "zip_appended.h5", "ab") as handle:
        handle.write(archive.getvalue())
    # 2. The pre-TF-2.5 SavedModel layout: Keras metadata in the object graph, no keras_metadata.pb.
    model.save(out / "legacy_savedmodel")
    metadata = saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString((out / "legacy_savedmodel" / "keras_metadata.pb").read_bytes())
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((out / "legacy_savedmodel" / "saved_model.pb").read_bytes())
    nodes = proto.meta_graphs[0].object_graph_def.nodes
    for node in metadata.nodes:
        nodes[node.node_id].user_object.metadata = node.metadata
    (out / "legacy_savedmodel" / "saved_model.pb").write_bytes(proto.SerializeToString())
    (out / "legacy_savedmodel" / "keras_metadata.pb").unlink()
    # 3. The same, as saved_model.pbtxt (TensorFlow's loader reads it when saved_model.pb is absent).
    import shutil
    shutil.copytree(out / "legacy_savedmodel", out / "legacy_pbtxt")
    (out / "legacy_pbtxt" / "saved_model.pb").unlink()
    (out / "legacy_pbtxt" / "saved_model.pbtxt").write_text(text_format.MessageToString(proto))
    # 4. A plain TensorFlow SavedModel whose serving function writes a file (no Python: a WriteFile op).
    import tensorflow as tf

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32)])
        def __call__(self, x):
            tf.io.write_file(marker, "written by the model's graph")
            return {"logits": tf.reshape(x, [-1, 64])[:, :10]}

    writer = Writer()
    tf.saved_model.save(writer, str(out / "writer_savedmodel"), signatures=writer.__call__)
    if os.path.exists(marker):
        os.remove(marker)  # saving traced the layer once
    """
)

# Loads a file with plain tf_keras (no edgedistill) and calls it: proves the file is hostile.
RAW_LOAD = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np, tf_keras as keras
    model = keras.models.load_model(sys.argv[1], compile=False)
    model(np.zeros((1, 8, 8, 1), dtype="float32"))
    """
)
HOSTILE = ["zip_appended.h5", "legacy_savedmodel", "legacy_pbtxt"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_round2")
    marker = folder / MARKER_NAME
    subprocess.run([PYTHON, "-c", MAKE_HOSTILE, str(folder), str(marker)], check=True, capture_output=True, timeout=300)
    assert not marker.exists()
    return folder, marker


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("round2_models"))


# ---------------------------------------------------------------------------------------------------------------
# Security 1, 2: every format a loader may take a file for is checked


@pytest.mark.parametrize("name", ["zip_appended.h5", "legacy_savedmodel"])
def test_plain_tf_keras_runs_the_hostile_models_code(hostile, name):
    """The test models are really hostile: tf_keras alone runs their Lambda (so the refusals below mean something)."""
    folder, marker = hostile
    subprocess.run([PYTHON, "-c", RAW_LOAD, str(folder / name)], check=True, capture_output=True, timeout=300)
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("name", HOSTILE)
def test_loader_refuses_every_layout(hostile, name):
    from edgedistill.errors import InputError
    from edgedistill.models import load_model_file

    folder, marker = hostile
    with pytest.raises(InputError, match=r"payload \(Lambda\).*--trust-model-code"):
        load_model_file(folder / name)
    assert not marker.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "{model}", "-o", "{tmp}/m.tflite"],
        ["run", "--teacher", "{model}", "--output-dir", "{tmp}"],
        ["verify", "{int8}", "--reference", "{model}"],
    ],
    ids=["convert", "run-teacher", "verify-reference"],
)
@pytest.mark.parametrize("name", ["zip_appended.h5", "legacy_savedmodel"])
def test_commands_refuse_the_disguised_models(hostile, models, tmp_path, command, name):
    folder, marker = hostile
    arguments = [part.format(model=folder / name, tmp=tmp_path, int8=models["tiny_int8"]) for part in command]
    assert_one_line_error(invoke(*arguments), 2, "payload (Lambda)", "--trust-model-code")
    assert not marker.exists()


def test_savedmodel_whose_graph_writes_files_is_refused(hostile):
    """No Python at all: a WriteFile op in the serving function. tf.saved_model.load runs it; edgedistill refuses."""
    import numpy as np
    import tensorflow as tf

    from edgedistill.errors import InputError
    from edgedistill.models import load_model_file

    folder, marker = hostile
    with pytest.raises(InputError, match=r"\(WriteFile\).*--trust-model-code"):
        load_model_file(folder / "writer_savedmodel")
    assert not marker.exists()
    tf.saved_model.load(str(folder / "writer_savedmodel")).signatures["serving_default"](
        x=tf.constant(np.zeros((1, 8, 8, 1), np.float32))
    )
    assert marker.exists()  # the op is real: plain TensorFlow runs it
    marker.unlink()


def test_trust_on_the_command_line_still_loads_them(hostile):
    from edgedistill.models import load_model_file, trust_model_code

    folder, marker = hostile
    with trust_model_code():
        assert load_model_file(folder / "zip_appended.h5") is not None
    marker.unlink(missing_ok=True)


def _op_layer(function: str, class_name: str = "TFOpLambda") -> dict:
    return {"class_name": class_name, "config": {"name": f"tf.{function}", "function": function}}


@pytest.mark.parametrize(
    "config, refused",
    [
        (_op_layer("io.write_file"), True),
        (_op_layer("py_function"), True),
        (_op_layer("numpy_function"), True),
        (_op_layer("raw_ops.WriteFile"), True),
        (_op_layer("print"), True),
        (_op_layer("compat.v1.py_func"), True),
        (_op_layer("compat.v1.io.write_file"), True),
        (_op_layer("__operators__.getitem", "SlicingOpLambda"), False),
        (_op_layer("math.add"), False),
        (_op_layer("nn.relu"), False),
        (_op_layer("compat.v1.transpose"), False),
        ({"class_name": "Dense", "config": {"name": "d", "activation": {"class_name": "__lambda__", "config": {}}}}, True),
        ({"class_name": "Dense", "config": {"name": "d", "activation": "relu"}}, False),
    ],
)
def test_tf_op_layers_with_side_effects_are_code(config, refused):
    """TFOpLambda calls the tf symbol its config names: side-effecting namespaces are refused like Lambda."""
    from edgedistill.models import find_code_layers

    model = {"class_name": "Functional", "config": {"layers": [config]}}
    assert bool(find_code_layers(model)) is refused


def test_unreadable_config_fails_closed(tmp_path):
    """A zip whose config.json a loader would read but the check cannot parse is refused, never passed."""
    import zipfile

    from edgedistill.errors import InputError
    from edgedistill.models import load_model_file

    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{not json")
    with pytest.raises(InputError, match="cannot be read to check it for code layers"):
        load_model_file(path)


# ---------------------------------------------------------------------------------------------------------------
# Security 3: only the command line grants trust


def test_config_file_cannot_grant_trust(hostile, tmp_path, warnings_logged):
    folder, marker = hostile
    config = tmp_path / "shared.yaml"
    config.write_text(f"teacher: {{teacher: {folder / 'zip_appended.h5'}}}\ntrust: {{trust_model_code: true}}\n")
    result = invoke("run", "--config", config, "--output-dir", tmp_path / "runs")
    assert_one_line_error(result, 2, "payload (Lambda)", "--trust-model-code")
    assert not marker.exists()
    assert any("shared.yaml" in message and "IGNORED" in message for message in warnings_logged)


def test_resumed_run_folder_cannot_grant_trust(hostile, tmp_path, warnings_logged):
    """A run folder's config.yaml edited to say trust_model_code: true is warned about and ignored."""
    from edgedistill.config import RunConfig, render_config

    folder, marker = hostile
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = RunConfig.from_options({"teacher": str(folder / "zip_appended.h5"), "max_train_samples": 100})
    (run_dir / "config.yaml").write_text(render_config(config) + "trust_model_code: true\n")
    assert "trust_model_code" not in render_config(config.replace(trust_model_code=True)).split("# trust")[0]
    result = invoke("run", "--resume", run_dir)
    assert_one_line_error(result, 2, "payload (Lambda)", "--trust-model-code")
    assert not marker.exists()
    assert any("config.yaml" in message and "IGNORED" in message for message in warnings_logged)


# ---------------------------------------------------------------------------------------------------------------
# Security 4: names reach generated C++ only as safe text


HOSTILE_NAME = 'evil\n#error injected\nint x = "\\\n??= \r.tflite'  # no "/": a file name cannot hold one


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
def test_hostile_model_name_cannot_inject_code(models, tmp_path):
    model = tmp_path / HOSTILE_NAME
    model.write_bytes(models["tiny_int8"].read_bytes())
    output = tmp_path / "micro"
    result = invoke("micro", model, "-o", output)
    assert result.exit_code == 0, result.output
    for name in ("model_data.h", "model_data.cc", "test_data.h", "test_data.cc", "model_settings.h"):
        text = (output / name).read_text()
        assert "#error injected" not in text.split("\n", 1)[1] and "\\\n" not in text, name
        assert all(line.startswith("// ") for line in text.splitlines()[:1]), name
    for source in ("model_data.cc", "test_data.cc"):
        compiled = subprocess.run(
            ["g++", "-std=c++17", "-trigraphs", "-fsyntax-only", "-Werror", "-I", str(output), str(output / source)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert compiled.returncode == 0, compiled.stderr


def test_c_string_literal_round_trips():
    from edgedistill.micro.sources import c_comment_text, c_string_literal

    text = 'a"b\\c\nd??/é*/'
    literal = c_string_literal(text)
    assert "\n" not in literal and literal.count('"') == 2
    assert bytes(literal[1:-1], "ascii").decode("unicode_escape").encode("latin-1") == text.encode("utf-8")
    assert not set(c_comment_text(text)) & set("\\\n?") and "*/" not in c_comment_text(text)


# ---------------------------------------------------------------------------------------------------------------
# Data loss: an output that is an input, or a file of another kind, is refused before anything is written


def _report_json(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "report.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"status": "ok", "run_dir": "x"}, indent=2))
    return path


def _copy(source: Path, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(Path(source).read_bytes())
    return path


def _results_as(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(_result_line())
    return path


LOSS_CASES = [
    (
        "bench-results-is-the-model",
        lambda m, t: (p := _copy(m["tiny_int8"], t, "m.tflite"), ["bench", p, "--results", p]),
        ["is the model"],
    ),
    (
        "bench-results-is-a-report",
        lambda m, t: (p := _report_json(t), ["bench", m["tiny_int8"], "--results", p]),
        ["not a results file"],
    ),
    (
        "bench-results-is-a-hard-link",
        lambda m, t: (p := _copy(m["tiny_int8"], t, "m.tflite"), ["bench", p, "--results", _link(p, t)]),
        ["is the model"],
    ),
    (
        "convert-output-is-the-input",
        lambda m, t: (p := _copy(m["tiny_int8"], t, "m.h5"), ["convert", p, "-o", p]),
        ["is the model"],
    ),
    (
        "plot-output-is-the-input",
        lambda m, t: (p := _results_as(t, "r.jsonl"), ["results", "plot", p, "-o", p]),
        ["is the results file"],
    ),
    (
        "plot-default-output-is-the-input",
        lambda m, t: (p := _results_as(t, "r.png"), ["results", "plot", p]),
        ["is the results file"],
    ),
    (
        "plot-output-is-a-model",
        lambda m, t: (p := _copy(m["tiny_int8"], t, "m.tflite"), ["results", "plot", _results_as(t, "r.jsonl"), "-o", p]),
        ["not a PNG"],
    ),
    (
        "distill-output-is-the-teacher",
        lambda m, t: (p := _copy(m["tiny_int8"], t, "t.keras"), ["distill", "--teacher", p, "-o", p]),
        ["--teacher file"],
    ),
    (
        "teacher-output-is-the-config",
        lambda m, t: (p := _text(t, "c.yaml", "teacher_epochs: 1\n"), ["teacher", "--config", p, "-o", p]),
        ["--config file"],
    ),
    ("convert-output-is-dev-null", lambda m, t: (None, ["convert", m["tiny_int8"], "-o", "/dev/null"]), ["not a regular file"]),
]


def _link(path: Path, tmp_path: Path) -> Path:
    link = tmp_path / "link.jsonl"
    os.link(path, link)
    return link


@pytest.mark.parametrize("build, fragments", [c[1:] for c in LOSS_CASES], ids=[c[0] for c in LOSS_CASES])
def test_outputs_never_destroy_inputs(models, tmp_path, build, fragments):
    protected, arguments = build(models, tmp_path)
    before = protected.read_bytes() if protected else None
    result = invoke(*arguments)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    if fragments:
        assert_one_line_error(result, 2, *fragments)
    if protected:
        assert protected.read_bytes() == before
        assert not list(tmp_path.rglob("*.cut*")) and not list(tmp_path.rglob("*.partial"))
    assert Path("/dev/null").is_char_device()


def test_results_to_dev_full_is_one_error_line(models):
    result = invoke("bench", models["tiny_int8"], "--num-runs", "2", "--results", "/dev/full")
    assert_one_line_error(result, 1, "/dev/full", "No space left on device")


def test_append_never_leaves_half_a_line(tmp_path, monkeypatch):
    """ENOSPC in the middle of a line: the file is cut back to its old size, one project error."""
    from edgedistill.errors import StageError
    from edgedistill.fileio import append_jsonl

    path = tmp_path / "bench.jsonl"
    path.write_text(_result_line())
    before = path.read_bytes()
    real_write = os.write
    calls = []

    def half_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StageError, match="No space left"):
        append_jsonl(path, json.loads(_result_line()))
    monkeypatch.undo()
    assert len(calls) == 2 and path.read_bytes() == before


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_leaves_no_half_file(models, tiny_tmpfs):
    """A real full file system (a 64 KiB tmpfs): the conversion's output is not left half-written."""
    from edgedistill.errors import StageError
    from edgedistill.fileio import append_jsonl, write_bytes_atomic

    with pytest.raises(StageError, match="No space left"):
        write_bytes_atomic(tiny_tmpfs / "big.tflite", b"x" * 200_000)
    assert list(tiny_tmpfs.iterdir()) == []
    (tiny_tmpfs / "filler").write_bytes(b"x" * (64 * 1024 - 100))  # room for less than one record
    path = tiny_tmpfs / "bench.jsonl"
    with pytest.raises(StageError, match="No space left"):
        append_jsonl(path, {"model": "m" * 5000})
    assert not path.exists() or path.stat().st_size == 0


LONG = "n" * 300
NAME_CASES = [
    ("convert", lambda m, t: ["convert", m["tiny_int8"], "-o", t / f"{LONG}.tflite"]),
    ("run-name", lambda m, t: ["run", "--run-name", LONG, "--output-dir", t]),
    ("output-dir", lambda m, t: ["run", "--output-dir", t / LONG]),
    ("micro", lambda m, t: ["micro", m["tiny_int8"], "-o", t / LONG]),
    ("plot", lambda m, t: ["results", "plot", _results_as(t, "r.jsonl"), "-o", t / f"{LONG}.png"]),
    ("teacher", lambda m, t: ["teacher", "-o", t / f"{LONG}.keras"]),
]


@pytest.mark.parametrize("build", [c[1] for c in NAME_CASES], ids=[c[0] for c in NAME_CASES])
def test_names_beyond_the_file_system_limit(models, tmp_path, build):
    result = invoke(*build(models, tmp_path))
    assert_one_line_error(result, 2)
    assert "255" in result.output or "200 bytes" in result.output


# ---------------------------------------------------------------------------------------------------------------
# Hangs and resource exhaustion: refused before reading, before the first stage


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "teacher.h5"
    os.mkfifo(path)
    return path


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" + "".join(
    f"{chr(99 + i)}: &{chr(99 + i)} [{', '.join(['*' + chr(98 + i)] * 9)}]\n" for i in range(6)
)

HANG_CASES = [
    ("teacher-dev-zero", lambda m, t: ["run", "--teacher", "/dev/zero", "--output-dir", t], ["/dev/zero", "regular"]),
    ("teacher-fifo", lambda m, t: ["distill", "--teacher", _fifo(t), "-o", t / "s.keras"], ["FIFO"]),
    ("reference-dev-zero", lambda m, t: ["verify", m["tiny_int8"], "--reference", "/dev/zero"], ["regular"]),
    ("convert-dev-zero", lambda m, t: ["convert", "/dev/zero", "-o", t / "m.tflite"], ["regular"]),
    ("config-alias-bomb", lambda m, t: ["run", "--config", _text(t, "bomb.yaml", ALIAS_BOMB), "--output-dir", t], ["aliases"]),
    ("suite-alias-bomb", lambda m, t: ["bench", "--suite", _text(t, "suite.yaml", ALIAS_BOMB)], ["aliases"]),
    ("config-dev-zero", lambda m, t: ["run", "--config", "/dev/zero", "--output-dir", t], ["regular file"]),
    ("epochs-huge", lambda m, t: ["run", "--epochs", str(10**23), "--output-dir", t], ["epochs"]),
    ("teacher-epochs-huge", lambda m, t: ["teacher", "--epochs", str(10**9), "-o", t / "t.keras"], ["teacher_epochs"]),
    ("batch-size-huge", lambda m, t: ["run", "--batch-size", str(10**12), "--output-dir", t], ["batch_size"]),
    ("width-huge", lambda m, t: ["run", "--student-width", "1e6", "--output-dir", t], ["student_width"]),
    (
        "test-vectors-huge",
        lambda m, t: ["micro", m["tiny_int8"], "-o", t / "o", "--num-test-vectors", "100000000"],
        ["num_test_vectors"],
    ),
    ("bench-runs-huge", lambda m, t: ["run", "--num-runs", str(10**12), "--output-dir", t], ["num_runs"]),
    (
        "quantize-zero-epochs",
        lambda m, t: ["quantize", "--teacher", m["tiny_int8"], "--student", m["tiny_int8"], "--epochs", "0", "-o", t / "q.h5"],
        ["--epochs", ">= 1"],
    ),
    ("student-file-missing", lambda m, t: ["run", "--student", t / "nope.keras", "--output-dir", t], ["not found"]),
]


def _text(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("build, fragments", [c[1:] for c in HANG_CASES], ids=[c[0] for c in HANG_CASES])
def test_refused_before_reading_or_training(models, tmp_path, build, fragments):
    started = time.monotonic()
    result = invoke(*build(models, tmp_path))
    error = assert_one_line_error(result, 2, *fragments)
    assert len(error) < 2000  # an alias bomb is never expanded into the message
    assert time.monotonic() - started < 30
    assert not list(tmp_path.rglob("report.json"))  # no stage ran


# ---------------------------------------------------------------------------------------------------------------
# Config files: a key under a section belongs to it; keys given twice are refused


CONFIG_CASES = [
    ("qat-temperature", "qat: {temperature: 5}\n", ["`temperature` under `qat:`", "`distill:`"]),
    ("teacher-epochs", "teacher: {epochs: 7}\n", ["`epochs` under `teacher:`", "`teacher_epochs`"]),
    ("unknown-in-section", "distill: {nonsense: 1}\n", ["`nonsense` under `distill:`", "not an option"]),
    ("duplicate-key", "temperature: 2\ntemperature: 5\n", ["temperature given twice"]),
    ("top-and-section", "temperature: 2\ndistill: {temperature: 5}\n", ["temperature given twice"]),
    ("not-utf8", "temperature: \udcff\n", ["not UTF-8"]),
]


@pytest.mark.parametrize("text, fragments", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_config_sections_are_respected(tmp_path, text, fragments):
    path = tmp_path / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert_one_line_error(invoke("run", "--config", path, "--output-dir", tmp_path), 2, "c.yaml", *fragments)


def test_section_keys_land_in_their_section(tmp_path):
    from edgedistill.config import RunConfig, read_config_file

    path = _text(tmp_path, "c.yaml", "distill: {temperature: 5, epochs: 3}\nteacher: {teacher_epochs: 7}\n")
    config = RunConfig.from_options(read_config_file(path))
    assert (config.distill.temperature, config.distill.epochs, config.teacher.teacher_epochs) == (5, 3, 7)


# ---------------------------------------------------------------------------------------------------------------
# Options that do nothing here are named in one warning line each


@pytest.mark.parametrize(
    "options, ignored",
    [
        ({"data": "npz:x.npz", "class_names": "a,b"}, ["class_names"]),
        ({"augment_views": 4}, ["augment_views"]),
        ({"teacher": "t.keras", "teacher_epochs": 3}, ["teacher_epochs"]),
        ({"teacher_preprocessing": "unit"}, ["teacher_preprocessing"]),
        ({"student": "s.keras", "max_flash_kb": 30}, ["max_flash_kb"]),
        ({"qat_epochs": 0, "qat_learning_rate": 0.1}, ["qat_learning_rate"]),
        ({"bench": False, "num_runs": 5}, ["num_runs"]),
        ({"audio_clip_ms": 500}, ["audio_clip_ms"]),
        ({"augment": True, "augment_views": 4, "data": "images:x", "class_names": "a,b"}, []),
    ],
)
def test_ineffective_options_are_named(options, ignored, warnings_logged):
    from edgedistill.config import RunConfig
    from edgedistill.stages import warn_ineffective_options

    found = warn_ineffective_options(RunConfig.from_options(options))
    assert found == ignored and len(warnings_logged) == len(ignored)
    for name, message in zip(ignored, warnings_logged):
        assert f"--{name.replace('_', '-')}" in message and "ignored" in message and "\n" not in message


# ---------------------------------------------------------------------------------------------------------------
# --resume after an edit; --no-chance-gate on resume, teacher and search


def _run_folder(tmp_path: Path, recorded: dict | None = None) -> Path:
    from edgedistill.config import RunConfig, render_config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = RunConfig.from_options({"max_train_samples": 100, "temperature": 4.0})
    (run_dir / "config.yaml").write_text(render_config(config))
    if recorded is not None:
        (run_dir / "report.json").write_text(json.dumps({"config": {**config.to_options(), **recorded}}))
    return run_dir


def test_resume_refuses_options_that_differ_from_the_saved_run(tmp_path):
    run_dir = _run_folder(tmp_path)
    result = invoke("run", "--resume", run_dir, "--temperature", "9", "--epochs", "2")
    assert_one_line_error(result, 2, "--temperature: saved 4.0, given 9.0", "--epochs: saved 40, given 2")


def test_resume_refuses_a_config_yaml_edited_after_the_run(tmp_path):
    run_dir = _run_folder(tmp_path, recorded={"temperature": 2.0})
    assert_one_line_error(
        invoke("run", "--resume", run_dir), 2, "edited after the run", "temperature: run made with 2.0, config.yaml now says 4.0"
    )


def test_resume_takes_gate_options_and_reruns_verify(tmp_path, monkeypatch):
    import edgedistill.pipeline as pipeline

    run_dir = _run_folder(tmp_path)
    seen = {}

    def fake_run_pipeline(config, **kwargs):
        seen.update(config=config, **kwargs)
        return {"run_dir": str(run_dir)}

    monkeypatch.setattr(pipeline, "run_pipeline", fake_run_pipeline)
    result = invoke("run", "--resume", run_dir, "--no-chance-gate", "--trust-model-code", "--max-train-samples", "100")
    assert result.exit_code == 0, result.output
    assert seen["config"].verify.chance_gate is False and seen["config"].trust.trust_model_code is True
    assert seen["rerun_from"] == "verify" and seen["resume"] is True


def test_rerun_from_runs_the_stage_again(tmp_path):
    from edgedistill.config import RunConfig
    from edgedistill.pipeline import Stage, run_pipeline

    ran = []
    stages = [
        Stage(name, lambda c, a, name=name: ran.append(name) or {f"test_{name}": {}}, restore=lambda c, a, s: True)
        for name in ("data", "verify", "bench")
    ]
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    run_pipeline(RunConfig(), run_dir=run_dir, stages=stages)
    ran.clear()
    run_pipeline(RunConfig(), run_dir=run_dir, stages=stages, resume=True, rerun_from="verify")
    assert ran == ["verify", "bench"]


@pytest.mark.parametrize(
    "arguments",
    [
        ["teacher", "--no-chance-gate", "--epochs", "1", "-o", "{tmp}/t.keras"],
        ["search", "--no-chance-gate", "-o", "{tmp}/s"],
        ["distill", "--teacher", "{model}", "--no-chance-gate", "-o", "{tmp}/s.keras"],
    ],
    ids=["teacher", "search", "distill"],
)
def test_no_chance_gate_reaches_the_teacher_gate(tmp_path, models, monkeypatch, arguments):
    import edgedistill.stages as stages
    from edgedistill.errors import InputError

    seen = {}

    def fake_prepare_teacher(*args, chance_gate=True, **kwargs):
        seen["chance_gate"] = chance_gate
        raise InputError("stopped here by the test")

    monkeypatch.setattr(stages, "prepare_teacher", fake_prepare_teacher)
    teacher = _copy(models["tiny_int8"], tmp_path, "t.keras")
    monkeypatch.setattr("edgedistill.models._check_model_path", lambda path: Path(path))
    result = invoke(*[part.format(tmp=tmp_path, model=teacher) for part in arguments])
    assert_one_line_error(result, 2, "stopped here by the test")
    assert seen == {"chance_gate": False}


# ---------------------------------------------------------------------------------------------------------------
# More cases found by trying the commands as a hostile user (each refused before any stage runs)


def _nan_results(tmp_path: Path) -> Path:
    return _text(tmp_path, "nan.jsonl", _result_line().replace('"p50": 1.0', '"p50": NaN'))


EXTRA_CASES = [
    (
        "config-section-not-a-mapping",
        lambda m, t: ["run", "--config", _text(t, "c.yaml", "distill: 5\n"), "--output-dir", t],
        ["`distill:` is a section"],
    ),
    ("results-nan", lambda m, t: ["results", "compare", _nan_results(t), _nan_results(t)], ["finite numbers"]),
    ("plot-nan", lambda m, t: ["results", "plot", _nan_results(t), "-o", t / "p.png"], ["finite numbers"]),
    ("results-dev-zero", lambda m, t: ["results", "compare", "/dev/zero", _results_as(t, "r.jsonl")], ["regular file"]),
    ("teacher-output-tflite", lambda m, t: ["teacher", "-o", t / "t.tflite"], ["a Keras model", ".tflite"]),
    ("convert-output-keras", lambda m, t: ["convert", m["tiny_int8"], "-o", t / "m.keras"], ["a .tflite flatbuffer"]),
    (
        "teacher-preprocessing-syntax",
        lambda m, t: [
            "run",
            "--teacher",
            m["tiny_int8"].with_suffix(".keras"),
            "--teacher-preprocessing",
            "standardize:mean=x",
            "--output-dir",
            t,
        ],
        None,
    ),
    ("search-width-huge", lambda m, t: ["search", "--widths", "100", "-o", t / "s"], ["student_widths", "<= 16"]),
    (
        "search-trials-huge",
        lambda m, t: ["search", "--method", "random", "--num-trials", "100000000", "-o", t / "s"],
        ["num_trials"],
    ),
    ("bench-dev-zero", lambda m, t: ["bench", "/dev/zero", "--results", t / "r.jsonl"], ["regular file"]),
    ("bench-fifo", lambda m, t: ["bench", _fifo(t), "--results", t / "r.jsonl"], ["FIFO"]),
    ("suite-dev-zero", lambda m, t: ["bench", "--suite", "/dev/zero"], ["regular file"]),
    ("resume-not-a-run-folder", lambda m, t: ["run", "--resume", t], ["not a run folder"]),
    ("resume-with-edited-option", lambda m, t: ["run", "--resume", t, "--epochs", "3"], ["--epochs"]),
]


@pytest.mark.parametrize("build, fragments", [c[1:] for c in EXTRA_CASES], ids=[c[0] for c in EXTRA_CASES])
def test_more_hostile_cases(models, tmp_path, build, fragments):
    arguments = build(models, tmp_path)
    if "--teacher-preprocessing" in arguments:  # a teacher file that exists, so only the preprocessing is wrong
        _copy(models["tiny_int8"], tmp_path, "teacher.keras")
        arguments[arguments.index("--teacher") + 1] = tmp_path / "teacher.keras"
        fragments = ["Bad --teacher-preprocessing"]
    started = time.monotonic()
    assert_one_line_error(invoke(*arguments), 2, *fragments)
    assert time.monotonic() - started < 30 and not list(tmp_path.rglob("report.json"))


def test_config_keys_a_stage_command_does_not_take_are_named(tmp_path, warnings_logged):
    config = _text(tmp_path, "shared.yaml", "teacher_epochs: 1\ntemperature: 3\n")
    assert_one_line_error(invoke("teacher", "--config", config, "-o", tmp_path / "t.tflite"), 2, ".tflite")
    assert any("shared.yaml" in m and "temperature" in m and "`teacher`" in m and "ignored" in m for m in warnings_logged)
    assert not any("teacher_epochs" in m for m in warnings_logged)


def test_cli_on_a_full_file_system_is_one_error_line(tiny_tmpfs, tmp_path):
    """The plot (a few tens of KB) on a full 64 KiB tmpfs: exit 1, one `Error:` line, nothing half-written."""
    (tiny_tmpfs / "filler").write_bytes(b"x" * (60 * 1024))
    results = _results_as(tmp_path, "r.jsonl")
    result = invoke("results", "plot", results, "-o", tiny_tmpfs / "plot.png")
    assert_one_line_error(result, 1, "plot.png", "No space left on device")
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["filler"]


def test_plot_of_a_file_with_only_p50(tmp_path):
    """A hand-made results file without p90/p99 (read_results accepts it): the plot computes them from the samples."""
    results = _text(tmp_path, "r.jsonl", _result_line(samples_ms=[1.0, 2.0, 3.0]))
    result = invoke("results", "plot", results, "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
