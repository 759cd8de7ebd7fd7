"""Small end-to-end runs of every distillation scheme on digits, and their bad inputs.

Tiny models (width 0.125-0.25) and 2 epochs: these check that each scheme trains a student
(finite losses, accuracy above chance), not how well; the benchmark measures that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgedistill.errors import InputError

EPOCHS = 2
CHANCE = 10.0  # digits: 10 balanced classes


@pytest.fixture(scope="module")
def setup(digits, tiny_teacher):
    """The session's digits and tiny trained cnn teacher (conftest), a student factory, a 2-epoch config."""
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig

    data, teacher = digits, tiny_teacher
    config = TrainConfig(epochs=EPOCHS, patience=0, verbose=0, learning_rate=3e-3)

    def student(width=0.125, preset="cnn", name="student"):
        return build_model(preset, data.input_shape, data.num_classes, width=width, name=name)

    return data, teacher, student, config


def _check_trained(student, history, data, *, minimum=2 * CHANCE, epochs=EPOCHS):
    from edgedistill.training import accuracy

    assert all(math.isfinite(v) for v in history["loss"])
    assert len(history["loss"]) == epochs
    assert accuracy(student, data.x_val, data.y_val) > minimum


def test_ensemble_logits_is_the_weighted_average_of_soft_targets():
    from edgedistill.distill.schemes import ensemble_logits

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    T = 3.0

    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    combined = ensemble_logits([a, b], weights=[3, 1], temperature=T)
    np.testing.assert_allclose(softmax(combined / T), 0.75 * softmax(a / T) + 0.25 * softmax(b / T), atol=1e-5)
    with pytest.raises(InputError, match="teacher_weights"):
        ensemble_logits([a, b], weights=[1, 2, 3])


def test_multi_teacher(setup):
    from edgedistill.distill.losses import LogitsDistillation
    from edgedistill.distill.schemes import EnsembleTeacher, distill_multi_teacher, ensemble_logits
    from edgedistill.models import predict_logits

    data, teacher, student, config = setup
    second = student(width=0.25, preset="dscnn", name="teacher2")
    # the graph ensemble (per-batch use) and the cached one agree
    ensemble = EnsembleTeacher([teacher, second], weights=[2, 1], temperature=4.0)
    np.testing.assert_allclose(
        np.asarray(ensemble(data.x_val[:16])),
        ensemble_logits(
            [predict_logits(teacher, data.x_val[:16]), predict_logits(second, data.x_val[:16])], weights=[2, 1], temperature=4.0
        ),
        atol=1e-4,
    )
    model, history = distill_multi_teacher(
        [teacher, second], student(), data, teacher_weights=[2, 1], distillation_losses=[LogitsDistillation(4.0)], config=config
    )
    _check_trained(model, history, data)


def test_teachers_with_different_class_counts(setup):
    from edgedistill.distill.schemes import EnsembleTeacher, distill_multi_teacher
    from edgedistill.models import build_model

    data, teacher, student, config = setup
    five_classes = build_model("cnn", data.input_shape, 5, width=0.125, name="five")
    with pytest.raises(InputError, match=r"different numbers of classes \(teacher 1: 10, teacher 2: 5\)"):
        distill_multi_teacher([teacher, five_classes], student(), data, config=config)
    with pytest.raises(InputError, match="different numbers of classes"):
        EnsembleTeacher([teacher, five_classes])


def test_self_distillation_ema(setup):
    from edgedistill.distill.schemes import EMADistiller, self_distill

    data, _, student, config = setup
    model, history = self_distill(None, student(), data, mode="ema", ema_decay=0.9, config=config)
    _check_trained(model, history, data)
    # the EMA teacher follows the student but lags behind it
    fresh = student()
    distiller = EMADistiller(fresh, ema_decay=0.5)
    before = [w.copy() for w in distiller.teacher.get_weights()]
    fresh.layers[1].kernel.assign_add(np.ones(fresh.layers[1].kernel.shape, dtype=np.float32))
    distiller._after_train_step()
    after = distiller.teacher.get_weights()[0]
    np.testing.assert_allclose(after, before[0] + 0.5, atol=1e-6)
    with pytest.raises(InputError, match="ema_decay"):
        EMADistiller(student(), ema_decay=1.0)


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_self_distillation_born_again(setup):
    from edgedistill.distill.schemes import self_distill

    data, _, student, config = setup
    first = student()
    model, history = self_distill(None, first, data, mode="born_again", generations=1, config=config)
    assert model is not first  # generation 1 is a fresh network
    _check_trained(model, history, data)
    with pytest.raises(InputError, match="mode"):
        self_distill(None, student(), data, mode="sideways", config=config)


def test_mutual_learning(setup):
    from edgedistill.distill.schemes import mutual_distill

    data, _, student, config = setup
    peer = student(name="peer")
    model, history = mutual_distill(None, student(), data, peers=[peer], config=config)
    assert "val_peer1_accuracy" in history
    _check_trained(model, history, data)
    _check_trained(peer, history, data)


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_teacher_assistant(setup):
    from edgedistill.distill.schemes import teacher_assistant_distill

    data, teacher, student, config = setup
    model, history = teacher_assistant_distill(
        teacher, student(width=0.125), data, assistants=[student(width=0.25, name="assistant")], config=config
    )
    assert [step["model"] for step in history["chain"]] == ["assistant", "student"]
    _check_trained(model, history, data)
    with pytest.raises(InputError, match="assistant"):
        teacher_assistant_distill(teacher, student(), data, assistants=[], config=config)


def test_patient_and_consistent(setup):
    from edgedistill.distill.schemes import patient_distill

    data, teacher, student, config = setup
    model, history = patient_distill(teacher, student(), data, mixup_alpha=0.4, config=config)
    _check_trained(model, history, data)


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_patient_with_feature_hint(setup):
    """Schemes compose with layer losses: the consistent batch feeds the feature extractors too."""
    from edgedistill.distill.losses import FeatureDistillation, LogitsDistillation
    from edgedistill.distill.schemes import patient_distill

    import dataclasses

    data, teacher, student, config = setup
    model, history = patient_distill(
        teacher,
        student(),
        data,
        config=dataclasses.replace(config, epochs=5),  # two layer losses on a mixed batch: 2 epochs sat near chance
        student_loss_weight=0.2,
        distillation_losses=[LogitsDistillation(2.0), FeatureDistillation("block2_relu", "block2_relu")],
    )
    _check_trained(model, history, data, epochs=5)


def test_data_free(setup):
    from edgedistill.distill.schemes import data_free_distill, synthesize_inputs

    data, teacher, student, config = setup
    x, info = synthesize_inputs(teacher, num_samples=40, input_shape=data.input_shape, num_classes=10, steps=40, batch_size=40)
    assert x.shape == (40, *data.input_shape) and 0.0 <= x.min() and x.max() <= 1.0
    assert info["num_batch_norm_layers"] == 2
    # the optimisation works: the teacher assigns most synthetic images their target class
    assert info["teacher_agrees_with_target_percent"] >= 80.0
    model, history = data_free_distill(teacher, student(), data, num_samples=200, steps=30, config=config)
    assert history["synthesis"]["num_samples"] == 200
    assert all(math.isfinite(v) for v in history["loss"])


def test_run_scheme_options(setup):
    from edgedistill.distill.schemes import run_scheme

    data, teacher, student, config = setup
    with pytest.raises(InputError, match="Unknown distillation scheme 'nope'. Expected one of: data_free, multi_teacher"):
        run_scheme("nope", teacher, student(), data, config=config)
    with pytest.raises(InputError, match="Bad options for scheme 'patient'"):
        run_scheme("patient", teacher, student(), data, options="mixup=0.2", config=config)
    with pytest.raises(InputError, match="assistant_widths"):
        run_scheme("teacher_assistant", teacher, student(), data, config=config)
    with pytest.raises(InputError, match="teachers=a.keras"):
        run_scheme("multi_teacher", teacher, student(), data, config=config)
    with pytest.raises(InputError, match="Model file not found"):
        run_scheme("multi_teacher", teacher, student(), data, options="teachers=/nonexistent.keras", config=config)


def test_temperature_scaling_and_ece():
    from edgedistill.distill.calibration import calibrate_logits, expected_calibration_error, fit_temperature

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=4000)
    # calibrated logits: sample labels from softmax(z), then make the model 3x over-confident
    logits = rng.normal(size=(4000, 5)) * 2.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in probabilities])
    overconfident = logits * 3.0
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.15)
    calibration = calibrate_logits(overconfident, labels)
    assert calibration.ece_after < calibration.ece_before / 2
    assert calibration.nll_after < calibration.nll_before
    # predictions unchanged
    assert (calibration.apply(overconfident).argmax(1) == overconfident.argmax(1)).all()
    assert expected_calibration_error(logits, labels) < 3.0  # the true model is calibrated (percent)
