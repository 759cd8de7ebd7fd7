"""`--lr-schedule cosine` (issue 21): a per-epoch cosine decay to 1 % of --learning-rate over the epochs, QAT at the
rate it ended at unless --qat-learning-rate is set, a probe's first epochs on the full run's curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_RUN, invoke


def test_cosine_runs_from_the_start_rate_to_one_percent_of_it():
    from edgedistill.training import cosine_rate

    rates = [cosine_rate(1e-3, epoch, 10) for epoch in range(10)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[5] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * 5 / 9)))
    assert cosine_rate(1e-3, 20, 10) == pytest.approx(1e-5)  # past the end: stays at the end


@pytest.mark.parametrize("schedule_epochs, last_epoch_of", [(None, 3), (10, 10)])
def test_fit_sets_each_epochs_rate(digits, schedule_epochs, last_epoch_of):
    """The optimizer's rate after 3 epochs is the curve's at epoch 2 of the span: 3 epochs, or the first 3 of 10."""
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig, cosine_rate, train_classifier

    model = build_model("mlp", digits.input_shape, digits.num_classes, width=0.25)
    config = TrainConfig(
        epochs=3, learning_rate=2e-3, patience=0, verbose=0, lr_schedule="cosine", schedule_epochs=schedule_epochs
    )
    history = train_classifier(model, digits, config=config)
    assert len(history["loss"]) == 3
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(cosine_rate(2e-3, 2, last_epoch_of), rel=1e-5)


@pytest.mark.parametrize("lr_schedule", ["cosine", "constant"])
def test_a_keras3_student_is_distilled_on_the_same_curve(digits, lr_schedule):
    """The Keras 3 Distiller's rate per epoch: the first 3 epochs of a 5-epoch cosine, or the constant rate."""
    from edgedistill.keras3.backend import import_keras3
    from edgedistill.keras3.distiller import distill
    from edgedistill.training import cosine_rate

    keras, _ = import_keras3()

    def mlp(name: str):
        inputs = keras.Input(digits.input_shape)
        hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(keras.layers.Rescaling(1 / 16)(inputs)))
        return keras.Model(inputs, keras.layers.Dense(digits.num_classes)(hidden), name=name)

    teacher = mlp("teacher")
    _, history = distill(
        teacher, mlp("student"), digits, epochs=3, learning_rate=2e-3, patience=0, lr_schedule=lr_schedule, schedule_epochs=5
    )
    if lr_schedule == "cosine":
        assert history["learning_rate"] == pytest.approx([cosine_rate(2e-3, epoch, 5) for epoch in range(3)], rel=1e-5)
    else:  # Keras logs the rate only when a scheduler sets it: a constant run adds none
        assert "learning_rate" not in history
    assert len(history["loss"]) == 3


def test_qat_continues_where_the_cosine_ended_unless_told():
    from edgedistill.config import QAT_LEARNING_RATE, QatConfig, TrainingConfig
    from edgedistill.stages import qat_learning_rate

    cosine = TrainingConfig(lr_schedule="cosine", learning_rate=2e-3)
    assert qat_learning_rate(QatConfig(), cosine) == pytest.approx(2e-5)
    assert qat_learning_rate(QatConfig(qat_learning_rate=1e-4), cosine) == 1e-4
    # A user who types the constant schedule's rate means it: it is not "unset" after a cosine.
    assert qat_learning_rate(QatConfig(qat_learning_rate=QAT_LEARNING_RATE), cosine) == QAT_LEARNING_RATE
    assert qat_learning_rate(QatConfig(), TrainingConfig()) == QAT_LEARNING_RATE


def test_an_explicit_qat_rate_equal_to_the_constant_default_survives_a_cosine_run(tmp_path):
    options = ("--lr-schedule", "cosine", "--qat-learning-rate", "5e-4", "--no-chance-gate")
    result = invoke("run", *TINY_RUN, *options, "--output-dir", tmp_path, "--run-name", "explicit")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "explicit" / "report.json").read_text())
    assert report["qat"]["learning_rate"] == pytest.approx(5e-4)


def test_run_with_cosine_trains_every_stage_on_it(tmp_path):
    # Plumbing, not accuracy: 3 epochs on a decaying rate leave the tiny student near chance.
    result = invoke(
        "run", *TINY_RUN, "--lr-schedule", "cosine", "--no-chance-gate", "--output-dir", tmp_path, "--run-name", "cos"
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cos" / "report.json").read_text())
    assert report["config"]["lr_schedule"] == "cosine"
    assert report["qat"]["learning_rate"] == pytest.approx(report["config"]["learning_rate"] * 0.01)
    assert "cosine decay" in (tmp_path / "cos" / "report.md").read_text()


def test_unknown_schedule_is_one_error_line(tmp_path):
    result = invoke("run", "--lr-schedule", "linear", "--output-dir", tmp_path)
    assert result.exit_code == 2, result.output
    assert "linear" in result.output and "constant" in result.output and "cosine" in result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())
