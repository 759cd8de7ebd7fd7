"""`edgedistill run` end to end, the stage commands, and every bad input of the spine."""

import json

import numpy as np
import pytest
import yaml

from conftest import TINY_RUN, invoke, write_npz

EXPECTED_FILES = [
    "config.yaml",
    "teacher.keras",
    "student_float.keras",
    "student_qat.h5",
    "student_int8.tflite",
    "student_float32.tflite",
    "teacher_float32.tflite",
    "micro/model_data.cc",
    "micro/model_data.h",
    "micro/model_op_resolver.h",
    "micro/model_settings.h",
    "micro/test_data.cc",
    "micro/micro_export.json",
    "bench.jsonl",
    "report.json",
    "report.md",
]


def test_run_writes_a_complete_run_folder(pipeline_run):
    result, run_dir, report = pipeline_run
    assert result.exit_code == 0, result.output
    missing = [name for name in EXPECTED_FILES if not (run_dir / name).exists()]
    assert not missing
    assert list((run_dir / "logs").glob("*/train/events.out.tfevents.*")), "TensorBoard logs"
    assert not list(run_dir.rglob("*.partial"))


def test_report_has_every_figure(pipeline_run):
    _, run_dir, report = pipeline_run
    assert report["schema_version"] == 1 and report["status"] == "ok"
    accuracy = report["verify"]["accuracy"]
    assert set(accuracy) == {"teacher", "float_student", "qat_student", "int8_litert", "int8_tflm"}
    assert all(0 <= value <= 100 for value in accuracy.values())
    assert accuracy["teacher"] > 50  # 3 epochs on digits: far above chance (10 %)
    assert report["verify"]["passed"] == (report["verify"]["int8_drop"] <= 1.0)
    assert report["verify"]["max_int8_output_difference_steps"] <= 2
    assert report["tflite"]["student_int8.tflite"]["size_bytes"] == (run_dir / "student_int8.tflite").stat().st_size
    assert report["micro"]["kTensorArenaSize"] > report["micro"]["arena_bytes_host"] > 0
    assert set(report["stages"]) == {"data", "teacher", "distill", "qat", "convert", "micro", "verify", "baseline", "bench"}
    assert report["versions"]["tensorflow"] and report["versions"]["tflite-micro"]
    assert report["config"]["epochs"] == 3
    assert report["teacher"]["parameters"] > report["student"]["parameters"]
    bench = report["bench"]["student_int8.tflite"]
    assert bench["latency_ms"]["p50"] > 0 and bench["num_runs"] == 20
    lines = [json.loads(line) for line in (run_dir / "bench.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(line["kind"] == "measured" and len(line["samples_ms"]) == 20 for line in lines)
    markdown = (run_dir / "report.md").read_text()
    assert "student int8 on TFLM" in markdown and "kTensorArenaSize" in markdown


def test_scratch_baseline_is_measured_beside_the_distilled_student(pipeline_run):
    """Issue 21: "did distillation help" is a measured line: the same student from scratch, in every form."""
    _, run_dir, report = pipeline_run
    baseline, distilled = report["baseline"], report["verify"]["accuracy"]
    assert baseline["method"] == "scratch" and baseline["int8_form"] == "int8_tflm"
    assert set(baseline["accuracy"]) == {"float_student", "qat_student", "int8_litert", "int8_tflm"}
    # The gains are the differences of two measured figures, not a figure of their own.
    for form, gain in baseline["gain_points"].items():
        assert gain == round(distilled[form] - baseline["accuracy"][form], 2)
    assert baseline["distillation_helped"] == (baseline["gain_points"]["int8_tflm"] > 0)
    scratch_int8 = run_dir / "baseline_int8.tflite"
    assert scratch_int8.stat().st_size == (run_dir / "student_int8.tflite").stat().st_size  # same student, same ops
    assert "Did distillation help?" in (run_dir / "report.md").read_text()


def test_the_paired_test_counts_the_saved_models_predictions(pipeline_run):
    """The baseline's paired test is recomputed here from the two int8 files the run left and the same test split."""
    import numpy as np

    from edgedistill.config import RunConfig
    from edgedistill.stages import load_data
    from edgedistill.tflite_model import LiteRTModel

    _, run_dir, report = pipeline_run
    paired = report["baseline"]["paired_test"]
    data = load_data(RunConfig.from_options(yaml.safe_load((run_dir / "config.yaml").read_text())).data)[0]
    right = {
        name: LiteRTModel((run_dir / name).read_bytes()).raw_outputs(data.x_test).argmax(axis=-1) == data.y_test
        for name in ("student_int8.tflite", "baseline_int8.tflite")
    }
    distilled, scratch = right["student_int8.tflite"], right["baseline_int8.tflite"]
    assert paired["samples"] == len(data.y_test)
    assert paired["only_distilled_right"] == int(np.sum(distilled & ~scratch))
    assert paired["only_scratch_right"] == int(np.sum(scratch & ~distilled))
    assert paired["verdict"] in {"helped", "hurt", "not resolved"}
    assert 0.0 <= paired["p_value"] <= 1.0
    markdown = (run_dir / "report.md").read_text()
    # The bold verdict is the paired test's; the accuracy difference's sign alone is not called help.
    assert "McNemar's exact p" in markdown and f"**{paired['verdict']}**" in markdown
    assert "**distillation helped**" not in markdown and "**distillation did not help**" not in markdown


def test_baseline_is_skipped_where_it_would_not_answer_the_question():
    from edgedistill.config import DistillConfig
    from edgedistill.models import build_model
    from edgedistill.stages import baseline_skip_reason

    student = build_model("mlp", (8, 8, 1), 10, width=0.25)
    assert baseline_skip_reason(DistillConfig(), student) is None
    assert "never trains its student on the data" in baseline_skip_reason(DistillConfig(scheme="data_free"), student)
    assert "pruned" in baseline_skip_reason(DistillConfig(prune_sparsity=0.5), student)


def test_resolved_config_is_saved(pipeline_run):
    _, run_dir, _ = pipeline_run
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["qat_epochs"] == 1 and saved["data"] == "digits" and saved["temperature"] == 4.0


def test_stage_commands_chain(pipeline_run, tmp_path):
    """convert -> verify -> micro from the files of a run, as a user would chain them."""
    _, run_dir, _ = pipeline_run
    out = tmp_path / "again int8.tflite"
    result = invoke("convert", run_dir / "student_qat.h5", "-o", out)
    assert result.exit_code == 0, result.output
    result = invoke("verify", out, "--reference", run_dir / "student_qat.h5", "--json")
    assert result.exit_code in (0, 3), result.output
    verified = json.loads(result.stdout)  # the JSON alone on stdout; progress goes to stderr
    assert "int8_tflm" in verified["accuracy"]
    result = invoke("micro", out, "-o", tmp_path / "micro", "--data", "digits")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "micro" / "micro_export.json").exists()


def test_config_file_feeds_the_options(tmp_path, monkeypatch):
    """--config YAML is read as click default_map; an unknown key is refused."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"epochs": 1, "teacher-preset": "nope"}))
    result = invoke("run", "--config", config, "--output-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert (
        "Unknown model preset 'nope'. Expected one of: cnn, dscnn, dscnn_kws, dscnn_kws_large, dscnn_kws_temporal, "
        "mlp, mobilenet_v1, mobilenet_v2, resnet8." in result.output
    )
    config.write_text(yaml.safe_dump({"epochs": 1, "colour": "blue"}))
    result = invoke("run", "--config", config)
    assert result.exit_code == 2 and "unknown option(s) colour" in result.output


def _assert_one_line_error(result, exit_code, *fragments):
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


def test_missing_model_files(tmp_path):
    _assert_one_line_error(invoke("info", tmp_path / "nope.tflite"), 2, "Model file not found")
    _assert_one_line_error(invoke("micro", tmp_path / "nope.tflite", "-o", tmp_path / "m"), 2, "Model file not found")
    _assert_one_line_error(
        invoke("run", "--teacher", tmp_path / "nope.keras", "--output-dir", tmp_path / "r"), 2, "Model file not found"
    )


def test_corrupt_teacher_file(tmp_path):
    bad = tmp_path / "teacher.keras"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    result = invoke("run", "--teacher", bad, "--output-dir", tmp_path / "runs", "--run-name", "x")
    _assert_one_line_error(result, 2, "Cannot load model", "corrupt")
    report = json.loads((tmp_path / "runs" / "x" / "report.json").read_text())
    assert report["status"] == "failed" and report["error"]["stage"] == "teacher"
    assert not (tmp_path / "runs" / "x" / "student_int8.tflite").exists()


def test_float_tflite_given_to_micro(float_file, tmp_path):
    _assert_one_line_error(invoke("micro", float_file, "-o", tmp_path / "m"), 2, "not a full-integer int8 model")
    assert not (tmp_path / "m").exists()


def test_teacher_with_other_number_of_classes(teacher_file, tmp_path):
    rng = np.random.default_rng(0)
    data = write_npz(
        tmp_path / "three.npz",
        x_train=rng.random((60, 8, 8)),
        y_train=rng.integers(0, 3, 60),
        x_test=rng.random((9, 8, 8)),
        y_test=rng.integers(0, 3, 9),
    )
    result = invoke("run", "--teacher", teacher_file, "--data", f"npz:{data}", "--output-dir", tmp_path / "r")
    _assert_one_line_error(result, 2, "teacher outputs 10 classes but the data has 3")
    result = invoke("distill", "--teacher", teacher_file, "--data", f"npz:{data}", "-o", tmp_path / "s.keras")
    _assert_one_line_error(result, 2, "teacher outputs 10 classes")
    assert not (tmp_path / "s.keras").exists()


def test_wrong_shape_and_labels_out_of_range(tmp_path):
    rng = np.random.default_rng(0)
    bad_shape = write_npz(
        tmp_path / "a.npz",
        x_train=rng.random((10, 2, 2, 2, 2)),
        y_train=np.zeros(10),
        x_test=rng.random((2, 2, 2)),
        y_test=np.zeros(2),
    )
    _assert_one_line_error(
        invoke("run", "--data", f"npz:{bad_shape}", "--output-dir", tmp_path / "r"), 2, "x_train has shape (10, 2, 2, 2, 2)"
    )
    bad_labels = write_npz(
        tmp_path / "b.npz",
        x_train=rng.random((10, 4, 4)),
        y_train=np.arange(10) - 5,
        x_test=rng.random((2, 4, 4)),
        y_test=np.zeros(2),
    )
    _assert_one_line_error(invoke("run", "--data", f"npz:{bad_labels}", "--output-dir", tmp_path / "r"), 2, "label -5")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--student-preset", "resnet"],
            "Unknown model preset 'resnet'. Expected one of: cnn, dscnn, dscnn_kws, dscnn_kws_large, dscnn_kws_temporal, "
            "mlp, mobilenet_v1, mobilenet_v2, resnet8.",
        ),
        (["--distillation-loss", "magic"], "Unknown distillation loss 'magic'. Expected one of:"),
        (
            ["--data", "imagenet"],
            "Unknown data set 'imagenet'. Expected one of: audio, digits, fashion_mnist, images, mnist, npz.",
        ),
        (["--data", "mnist"], "Received `--data mnist` without a folder; no copy of MNIST ships with this machine."),
        (["--temperature", "0"], "`temperature` must be > 0"),
    ],
)
def test_unknown_names_list_the_valid_ones(tmp_path, args, message):
    _assert_one_line_error(invoke("run", *args, "--output-dir", tmp_path / "r"), 2, message)


def test_nan_loss_stops_training_with_a_message(tmp_path):
    result = invoke("run", *TINY_RUN, "--learning-rate", "1e30", "--output-dir", tmp_path / "r", "--run-name", "nan")
    _assert_one_line_error(result, 1, "loss became NaN", "Lower the learning rate")
    report = json.loads((tmp_path / "r" / "nan" / "report.json").read_text())
    assert report["status"] == "failed"


def test_failed_parity_gate_exits_3_and_marks_the_report(tmp_path, monkeypatch):
    """The gate's plumbing: a failing verification still writes every artefact and the report."""
    import edgedistill.verify as verify_module

    real = verify_module.verify_models

    def strict(*args, **kwargs):
        result = real(*args, **kwargs)
        result.int8_drop, result.passed = 5.0, False  # as if int8 had lost 5 points
        return result

    monkeypatch.setattr(verify_module, "verify_models", strict)
    result = invoke("run", *TINY_RUN, "--no-bench", "--output-dir", tmp_path / "r", "--run-name", "gate")
    _assert_one_line_error(result, 3, "5.00 points below the qat_student")
    report = json.loads((tmp_path / "r" / "gate" / "report.json").read_text())
    assert report["status"] == "failed" and report["error"]["stage"] == "verify"
    assert (tmp_path / "r" / "gate" / "student_int8.tflite").exists()
    assert "**FAIL**" in (tmp_path / "r" / "gate" / "report.md").read_text()


def test_bench_target_is_checked_before_anything_trains(tmp_path):
    result = invoke("run", "--bench-target", "gpu://box", "--output-dir", tmp_path / "r", "--run-name", "x")
    _assert_one_line_error(result, 2, "gpu://box", "Expected one of: adb, local, qemu-aarch64, ssh, tflm")
    assert not (tmp_path / "r" / "x").exists()  # refused before the run folder, let alone the teacher


def test_a_stage_list_without_an_earlier_stage_is_refused_by_name(tmp_path):
    """run_pipeline(stages=...) without the data stage: the teacher stage names what is missing (no AttributeError)."""
    from edgedistill.config import RunConfig
    from edgedistill.errors import InputError
    from edgedistill.pipeline import STAGES, run_pipeline

    teacher_only = [stage for stage in STAGES if stage.name == "teacher"]
    with pytest.raises(InputError, match="needs the output of the `data` stage"):
        run_pipeline(RunConfig(), run_dir=tmp_path / "run", stages=teacher_only)
