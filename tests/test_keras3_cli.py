"""Keras 3 students through `edgedistill run` and the stage commands (issue 20): --keras 3, Keras 3 student files,
the up-front refusals (QAT coverage, unsupported options), the run folder and --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import invoke

# A quick Keras 3 run on part of digits; epochs a little above TINY_RUN's so every form is clearly above chance.
TINY_KERAS3_RUN = [
    "--keras",
    "3",
    "--teacher-epochs",
    "6",
    "--teacher-width",
    "0.5",
    "--epochs",
    "6",
    "--qat-epochs",
    "1",
    "--student-width",
    "0.5",
    "--max-train-samples",
    "600",
    "--num-runs",
    "20",
    "--warmup-runs",
    "2",
    "--verbose",
    "0",
]


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error: ")]


def assert_one_error(result, *fragments: str) -> str:
    lines = error_lines(result)
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _save_keras3_student(path: Path, *, layer_norm: bool = False) -> Path:
    """A Keras 3 dscnn student of digits (raw bytes in: its first layer scales them), optionally with a LayerNormalization."""
    from edgedistill.data import load_dataset
    from edgedistill.keras3.backend import import_keras3
    from edgedistill.keras3.models import build_model
    from edgedistill.preprocessing import student_preprocessing

    keras, _ = import_keras3()
    data = load_dataset("digits")
    preprocessing = student_preprocessing(data.value_range, raw_bytes=True)
    if layer_norm:
        inputs = keras.Input(shape=data.input_shape, name="input")
        x = keras.layers.Rescaling(1 / 16, name="preprocess")(inputs)
        x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
        x = keras.layers.LayerNormalization(name="norm")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        model = keras.Model(inputs, keras.layers.Dense(data.num_classes, name="logits")(x), name="k3_layernorm")
    else:
        model = build_model(
            "dscnn", data.input_shape, data.num_classes, width=0.5, preprocessing=preprocessing, name="k3_student"
        )
    model.save(path)
    return path


@pytest.fixture(scope="module")
def keras3_student_file(tmp_path_factory) -> Path:
    return _save_keras3_student(tmp_path_factory.mktemp("keras3") / "k3_student.keras")


@pytest.fixture(scope="module")
def keras3_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("runs")
    result = invoke("run", *TINY_KERAS3_RUN, "--output-dir", output_dir, "--run-name", "k3")
    run_dir = output_dir / "k3"
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").exists() else None
    return result, run_dir, report


@pytest.mark.slow
def test_run_keras3_preset_ends_in_a_verified_tflm_model(keras3_run):
    from edgedistill.keras3.convert import float_ops
    from edgedistill.tflite_model import read_model_info

    result, run_dir, report = keras3_run
    assert result.exit_code == 0, result.output
    assert report["status"] == "ok"
    assert report["student"]["keras"] == "3" and report["student"]["keras_version"].startswith("3.")
    assert report["qat"]["keras"] == "3" and report["qat"]["method"] == "edgedistill.keras3 QAT"
    assert (run_dir / "student_float.keras").is_file() and (run_dir / "student_qat.keras").is_file()
    content = (run_dir / "student_int8.tflite").read_bytes()
    info = read_model_info(content)
    assert info.is_int8 and info.inputs[0].dtype == "int8" and float_ops(content) == []
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(info.ops)
    accuracy = report["verify"]["accuracy"]
    assert accuracy["int8_tflm"] > 50.0, accuracy  # digits: chance is 10 %
    assert abs(accuracy["int8_tflm"] - accuracy["qat_student"]) <= 3.0, accuracy
    assert report["verify"]["passed"] is True
    assert (run_dir / "micro" / "micro_export.json").is_file()
    assert any((run_dir / "micro").glob("*.cc"))


@pytest.mark.slow
def test_resume_of_a_keras3_run_restores_its_students(keras3_run):
    """Keep data..qat in progress.json, drop the int8 model: --resume reloads the Keras 3 float and QAT students
    from the run folder and converts the reloaded QAT student again (its trained ranges saved with it)."""
    result, run_dir, report = keras3_run
    assert result.exit_code == 0, result.output
    progress_path = run_dir / "progress.json"
    progress = json.loads(progress_path.read_text())
    progress["stages"] = {
        name: value for name, value in progress["stages"].items() if name in ("data", "teacher", "distill", "qat")
    }
    progress_path.write_text(json.dumps(progress))
    before = (run_dir / "student_int8.tflite").read_bytes()
    (run_dir / "student_int8.tflite").unlink()
    resumed = invoke("run", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    again = json.loads((run_dir / "report.json").read_text())
    assert again["status"] == "ok"
    assert {"distill", "qat"} <= set(again["resumed"]["restored_stages"])
    # The same QAT weights and ranges: the same Keras-side accuracy and the same int8 flatbuffer.
    assert again["verify"]["accuracy"]["qat_student"] == report["verify"]["accuracy"]["qat_student"]
    assert (run_dir / "student_int8.tflite").read_bytes() == before


@pytest.mark.slow
def test_a_keras3_student_file_is_accepted(keras3_student_file, tmp_path):
    result = invoke(
        "run",
        "--student",
        keras3_student_file,
        "--teacher-epochs",
        "6",
        "--teacher-width",
        "0.5",
        "--epochs",
        "6",
        "--qat-epochs",
        "1",
        "--max-train-samples",
        "600",
        "--no-bench",
        "--verbose",
        "0",
        "--output-dir",
        tmp_path,
        "--run-name",
        "file",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "file" / "report.json").read_text())
    assert report["status"] == "ok" and report["student"]["source"] == str(keras3_student_file)
    assert report["student"]["keras"] == "3"  # chosen by the file: no --keras given
    assert report["verify"]["accuracy"]["int8_tflm"] > 50.0


def test_a_layer_keras3_qat_does_not_cover_is_named_before_the_teacher_trains(tmp_path):
    student = _save_keras3_student(tmp_path / "k3_layernorm.keras", layer_norm=True)
    result = invoke("run", "--student", student, "--output-dir", tmp_path / "runs", "--run-name", "refused")
    line = assert_one_error(result, "'norm'", "LayerNormalization", "--qat-epochs 0", "--keras 2")
    assert "not covered" in line
    assert not (tmp_path / "runs" / "refused").exists()  # refused before the run folder, let alone teacher.keras


def test_ptq_of_a_keras3_student_that_would_keep_a_float_op_is_refused_before_training(tmp_path):
    """--qat-epochs 0 (the alternative the QAT refusal offers): the converter would leave LayerNormalization's NEG in
    float between a DEQUANTIZE and a QUANTIZE; said before the teacher trains, never an "int8" model with a float op."""
    student = _save_keras3_student(tmp_path / "k3_layernorm.keras", layer_norm=True)
    result = invoke("run", "--student", student, "--qat-epochs", "0", "--output-dir", tmp_path / "runs", "--run-name", "refused")
    assert_one_error(result, "--qat-epochs 0", "not full-integer", "float ops", "--keras 2")
    assert not (tmp_path / "runs" / "refused").exists()


@pytest.mark.slow
def test_run_keras3_with_post_training_quantization(tmp_path):
    from edgedistill.keras3.convert import float_ops
    from edgedistill.tflite_model import read_model_info

    result = invoke("run", *TINY_KERAS3_RUN, "--qat-epochs", "0", "--no-bench", "--output-dir", tmp_path, "--run-name", "ptq")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ptq" / "report.json").read_text())
    assert report["status"] == "ok" and report["verify"]["reference"] == "float_student"
    content = (tmp_path / "ptq" / "student_int8.tflite").read_bytes()
    assert float_ops(content) == [] and read_model_info(content).inputs[0].quantization == {"scale": 1.0, "zero_point": -128}
    accuracy = report["verify"]["accuracy"]
    assert accuracy["int8_tflm"] > 50.0 and abs(accuracy["int8_tflm"] - accuracy["float_student"]) <= 3.0, accuracy


@pytest.mark.slow
def test_run_keras3_with_a_cosine_schedule_trains_qat_at_the_rate_it_ended(tmp_path):
    options = ["--lr-schedule", "cosine", "--baseline", "none", "--no-bench", "--no-chance-gate"]
    result = invoke("run", *TINY_KERAS3_RUN, *options, "--output-dir", tmp_path, "--run-name", "cos")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cos" / "report.json").read_text())
    assert report["status"] == "ok" and report["config"]["lr_schedule"] == "cosine"
    assert report["qat"]["learning_rate"] == pytest.approx(report["config"]["learning_rate"] * 0.01)


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--scheme", "mutual"], ["--scheme mutual", "--keras 2"]),
        (["--augment"], ["--augment", "--keras 2"]),
        (["--distillation-loss", "feature"], ["--distillation-loss feature", "--keras 2"]),
        (["--prune-sparsity", "0.5"], ["--prune-sparsity 0.5", "--keras 2"]),
        (["--student-preset", "mobilenet_v2"], ["mobilenet_v2", "no Keras 3 version", "--keras 2"]),
        (["--io-type", "float32"], ["--io-type float32", "--keras 2"]),
    ],
)
def test_options_the_keras3_path_does_not_support_are_one_error_line(tmp_path, options, fragments):
    result = invoke("run", "--keras", "3", *options, "--output-dir", tmp_path, "--run-name", "refused")
    assert_one_error(result, *fragments)
    assert not (tmp_path / "refused").exists()


def test_keras_option_and_student_file_must_agree(tmp_path, keras3_student_file, teacher_file):
    assert_one_error(
        invoke("run", "--keras", "2", "--student", keras3_student_file, "--output-dir", tmp_path),
        "--keras 2",
        "Keras 3 model",
        "--keras 3",
    )
    assert_one_error(
        invoke("run", "--keras", "3", "--student", teacher_file, "--output-dir", tmp_path),
        "not a Keras 3 .keras file",
        "--keras 2",
    )
    assert_one_error(invoke("run", "--keras", "4", "--output-dir", tmp_path), "keras", "2 or 3")


@pytest.mark.slow
def test_stage_commands_carry_a_keras3_student_to_a_verified_int8_model(keras3_student_file, teacher_file, tmp_path):
    """distill -> quantize -> convert -> verify with a Keras 3 student file and a tf_keras teacher file."""
    from edgedistill.tflite_model import read_model_info

    common = ["--teacher", teacher_file, "--max-train-samples", "600", "--verbose", "0"]
    student, qat, int8 = tmp_path / "student.keras", tmp_path / "student_qat.keras", tmp_path / "student_int8.tflite"
    result = invoke("distill", *common, "--student", keras3_student_file, "--epochs", "6", "-o", student)
    assert result.exit_code == 0, result.output
    result = invoke("quantize", *common, "--student", student, "--epochs", "1", "-o", tmp_path / "student_qat.h5")
    assert_one_error(result, "student_qat.h5", ".keras")  # a Keras 3 QAT student is saved as .keras only
    result = invoke("quantize", *common, "--student", student, "--epochs", "1", "-o", qat)
    assert result.exit_code == 0, result.output
    assert_one_error(invoke("convert", qat, "-o", int8, "--quantization", "float32"), "Keras 3 QAT model", "int8")
    result = invoke("convert", qat, "-o", int8)
    assert result.exit_code == 0, result.output
    assert read_model_info(int8.read_bytes()).is_int8
    result = invoke("verify", int8, "--reference", qat, "--json", "--no-chance-gate")
    assert result.exit_code == 0, result.output
    verified = json.loads(result.output[result.output.index("{") :])
    assert abs(verified["accuracy"]["int8_tflm"] - verified["accuracy"]["reference"]) <= 3.0, verified["accuracy"]
