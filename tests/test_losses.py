"""Logit distillation: T^2 scaling, zero loss at equality, config round trip, bad arguments."""

import numpy as np
import pytest

from edgedistill.distill.losses import LOSSES, LogitsDistillation, get_loss
from edgedistill.errors import InputError


def _kl(teacher, student, temperature):
    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    p, q = softmax(teacher / temperature), softmax(student / temperature)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_logits_loss_is_kl_times_t_squared(temperature):
    from edgedistill._keras import tf

    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(16, 10)) * 3, rng.normal(size=(16, 10)) * 3
    loss = LogitsDistillation(temperature).compute_loss(tf.constant(teacher, tf.float32), tf.constant(student, tf.float32))
    expected = _kl(teacher, student, temperature) * temperature**2
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_logits_loss_is_zero_when_student_equals_teacher():
    from edgedistill._keras import tf

    logits = tf.constant(np.random.default_rng(1).normal(size=(8, 5)), tf.float32)
    assert float(LogitsDistillation(4.0).compute_loss(logits, logits)) == pytest.approx(0.0, abs=1e-6)


def test_config_round_trip_and_registry():
    loss = LogitsDistillation(temperature=3.5)
    clone = LogitsDistillation.from_config(loss.get_config())
    assert clone.temperature == 3.5
    assert isinstance(get_loss({"kind": "logits", "temperature": 2}), LogitsDistillation)
    assert "logits" in LOSSES


@pytest.mark.parametrize("temperature", [0, -1.0, "4"])
def test_bad_temperature_is_rejected(temperature):
    with pytest.raises(InputError, match="temperature"):
        LogitsDistillation(temperature)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(InputError, match=r"Unknown distillation loss 'nope'\. Expected one of: .*logits"):
        get_loss("nope")


def test_distiller_rejects_class_mismatch(tiny_teacher, digits):
    from edgedistill.distill import Distiller
    from edgedistill.models import build_model

    student = build_model("mlp", digits.input_shape, 3, width=0.1)
    with pytest.raises(InputError, match="teacher outputs 10 classes and the student 3"):
        Distiller(tiny_teacher, student)


def test_cached_distillation_trains_the_student_towards_the_teacher(tiny_teacher, digits):
    """Pure distillation (no labels) must raise agreement with the teacher well above chance."""
    from edgedistill.distill import distill
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig

    student = build_model("mlp", digits.input_shape, digits.num_classes, width=0.25)
    student, history = distill(
        tiny_teacher, student, digits, distillation_losses=[LogitsDistillation(2.0)], student_loss_weight=0.0,
        config=TrainConfig(epochs=4, patience=0, verbose=0),
    )
    agreement = np.mean(student.predict(digits.x_test, verbose=0).argmax(1) == tiny_teacher.predict(digits.x_test, verbose=0).argmax(1))
    assert agreement > 0.6
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
