"""The methods' options of `edgedistill run`: names and combinations checked before any training."""

from __future__ import annotations

import pytest
from click.testing import CliRunner


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--scheme", "nope"],
            "Unknown distillation scheme 'nope'. Expected one of: "
            "data_free, multi_teacher, mutual, patient, self, standard, teacher_assistant",
        ),
        (
            ["--distillation-loss", "hint"],
            "Unknown distillation loss 'hint'. Expected one of: "
            "attention, dist, dkd, feature, logit_standardization, logits, rkd",
        ),
        (["--prune-sparsity", "0.5", "--scheme", "mutual"], "--prune-sparsity works with the standard scheme only"),
        (["--prune-sparsity", "1.5"], "`prune_sparsity` must be in [0, 1)"),
        (["--max-arena-kb", "0"], "`max_arena_kb` must be > 0"),
    ],
)
def test_run_rejects_bad_method_options(arguments, message, tmp_path):
    from edgedistill.cli import cli

    result = CliRunner().invoke(cli, ["run", "--output-dir", str(tmp_path), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_loss_spec_with_arguments():
    from edgedistill.config import DistillConfig as RunConfig  # the loss options are the distill section's
    from edgedistill.distill.losses import AttentionTransfer, DISTDistillation, LogitsDistillation
    from edgedistill.stages import resolve_loss
    from edgedistill.errors import InputError

    loss = resolve_loss(
        RunConfig(distillation_loss="attention:teacher_layer_name=block2_relu,student_layer_name=block2_pw_relu,beta=500")
    )
    assert isinstance(loss, AttentionTransfer) and loss.student_layer_name == "block2_pw_relu" and loss.beta == 500.0
    logits = resolve_loss(RunConfig(distillation_loss="logits", temperature=6.0, final_temperature=2.0))
    assert isinstance(logits, LogitsDistillation) and logits.get_config() == {
        "temperature": 6.0,
        "final_temperature": 2.0,
        "schedule": "linear",
    }
    assert resolve_loss(RunConfig(distillation_loss="logits")).get_config() == {"temperature": 4.0}
    # The default (issue 21, benchmarks/kd_defaults.py): DIST at its CIFAR-100 setting, T from --temperature.
    default = resolve_loss(RunConfig())
    assert isinstance(default, DISTDistillation)
    assert (default.beta, default.gamma, default.temperature) == (2.0, 2.0, 4.0)
    with pytest.raises(InputError, match="not key=value"):
        resolve_loss(RunConfig(distillation_loss="attention:block2_relu"))
    with pytest.raises(InputError, match="Bad arguments for distillation loss 'rkd'"):
        resolve_loss(RunConfig(distillation_loss="rkd:gamma=2"))


def test_run_data_free_calibrated_under_a_strategy_end_to_end(tmp_path):
    """The CLI path of three method options at once: a data-free student (whose QAT and int8
    calibration must use the synthetic inputs too), a calibrated teacher and a tf.distribute strategy."""
    import json

    from conftest import TINY_RUN, invoke

    result = invoke(
        "run",
        *TINY_RUN,
        "--scheme",
        "data_free",
        "--scheme-options",
        "num_samples=120,steps=10",
        "--calibrate-teacher",
        "--strategy",
        "mirrored",
        "--no-bench",
        "--max-int8-drop",
        "100",
        "--no-chance-gate",
        "--output-dir",
        tmp_path,
        "--run-name",
        "datafree",
    )
    run_dir = tmp_path / "datafree"
    report = json.loads((run_dir / "report.json").read_text())
    assert result.exit_code == 0, result.output
    assert report["config"]["strategy"] == "mirrored"
    assert report["student"]["scheme"] == "data_free" and report["student"]["synthesis"]["num_samples"] == 120
    assert report["qat"]["data"].startswith("synthetic(")
    assert report["tflite"]["student_int8.tflite"]["calibration_data"].startswith("synthetic(")
    calibration = report["teacher"]["calibration"]
    assert calibration["temperature"] > 0 and calibration["ece_after_percent"] <= calibration["ece_before_percent"] + 1e-9
    markdown = (run_dir / "report.md").read_text()
    assert "Method: scheme `data_free`" in markdown and "strategy mirrored" in markdown
    assert f"ECE {calibration['ece_before_percent']:.2f}% -> {calibration['ece_after_percent']:.2f}%" in markdown
    assert "QAT and int8 calibration used `synthetic(" in markdown


def test_run_teacher_assistant_from_a_yaml_config(tmp_path):
    import json

    from conftest import TINY_RUN, invoke

    config = tmp_path / "ta.yaml"
    config.write_text("scheme: teacher_assistant\nscheme-options: assistant_widths=0.5\nqat_epochs: 0\nbench: false\n")
    result = invoke("run", "--config", config, *TINY_RUN, "--qat-epochs", "0", "--output-dir", tmp_path, "--run-name", "ta")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ta" / "report.json").read_text())
    chain = report["student"]["chain"]
    assert [step["model"] for step in chain][-1] == "student" and len(chain) == 2
    assert chain[0]["parameters"] > chain[1]["parameters"]  # the assistant sits between teacher and student
    assert "Teacher-assistant chain: " in (tmp_path / "ta" / "report.md").read_text()


def test_unknown_strategy_is_a_one_line_error():
    from conftest import invoke

    result = invoke("run", "--strategy", "tpu")
    assert result.exit_code == 2
    assert "`strategy` must be one of: none, mirrored, multi_worker. Received: strategy='tpu'." in result.output


def test_stage_commands_train_under_a_strategy(tmp_path):
    """teacher -> distill -> quantize, each with --strategy mirrored, as a user would chain them."""
    from conftest import invoke

    common = ["--data", "digits", "--batch-size", "128", "--patience", "0", "--strategy", "mirrored"]
    teacher = tmp_path / "teacher.keras"
    result = invoke("teacher", *common, "--width", "0.25", "--epochs", "1", "-o", teacher)
    assert result.exit_code == 0, result.output
    student = tmp_path / "student.keras"
    result = invoke("distill", *common, "--teacher", teacher, "--student-width", "0.25", "--epochs", "1", "-o", student)
    assert result.exit_code == 0, result.output
    qat = tmp_path / "qat.h5"
    result = invoke("quantize", *common, "--teacher", teacher, "--student", student, "--epochs", "1", "-o", qat)
    assert result.exit_code == 0, result.output
    assert qat.is_file() and "QAT student: test accuracy" in result.output
