"""Distillation losses and the Distiller: the contract every registered loss keeps, numpy references
for the logit loss and for the Distiller's loss combination with a user's `compile(loss=...)`,
Keras loss specs (`keras.losses.get` values) where `keras.distillation` accepts them, and the
feature-extraction errors. Models are tiny presets on 8x8 digits so the file runs in seconds.
"""

from __future__ import annotations

import math

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
        tiny_teacher,
        student,
        digits,
        distillation_losses=[LogitsDistillation(2.0)],
        student_loss_weight=0.0,
        config=TrainConfig(epochs=4, patience=0, verbose=0),
    )
    agreement = np.mean(
        student.predict(digits.x_test, verbose=0).argmax(1) == tiny_teacher.predict(digits.x_test, verbose=0).argmax(1)
    )
    assert agreement > 0.6
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]


# Arguments that make each loss applicable to two `cnn` presets (all defaults today). A new
# loss whose defaults do not fit a cnn gets its entry here; a missing entry fails loudly below.
CONTRACT_ARGUMENTS: dict[str, dict] = {
    "logits": {"temperature": 4.0},
    "logit_standardization": {"temperature": 2.0},
    "dkd": {"temperature": 4.0, "beta": 8.0},
    "dist": {"temperature": 4.0, "beta": 2.0, "gamma": 2.0},
    "feature": {"teacher_layer_name": "block2_relu", "student_layer_name": "block2_relu"},
    "attention": {"teacher_layer_name": "block2_relu", "student_layer_name": "block2_relu"},
    "rkd": {},
}


@pytest.fixture(scope="module")
def tiny():
    from edgedistill.data import load_dataset
    from edgedistill.models import build_model

    data = load_dataset("digits", seed=0)
    teacher = build_model("cnn", data.input_shape, data.num_classes, width=0.25, name="teacher")
    different = build_model("cnn", data.input_shape, data.num_classes, width=0.125, name="student")
    return data, teacher, different


def _clone(model):
    from edgedistill._keras import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def test_every_loss_has_contract_arguments():
    assert sorted(CONTRACT_ARGUMENTS) == LOSSES.names(), "add the new loss to CONTRACT_ARGUMENTS"


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_contract(name, tiny):
    from edgedistill.distill.distiller import Distiller
    from edgedistill.quantize import quantize_model

    data, teacher, different = tiny
    x = data.x_train[:64]
    loss = get_loss({"kind": name, **CONTRACT_ARGUMENTS[name]})

    # get_config round trip, through the class and through the YAML-style dict
    config = loss.get_config()
    assert type(loss).from_config(config).get_config() == config
    assert get_loss({"kind": name, **config}).get_config() == config

    # finite and positive for an unrelated student
    value_different = Distiller(teacher, different, distillation_losses=[loss]).distillation_loss_value(x)
    assert math.isfinite(value_different)

    # zero when the student is the teacher (same architecture, same weights)
    value_same = Distiller(
        teacher, _clone(teacher), distillation_losses=[get_loss({"kind": name, **config})]
    ).distillation_loss_value(x)
    assert abs(value_same) < 1e-4
    assert value_different > value_same + 1e-4

    # a fake-quant (tfmot QAT) student keeps the same loss: layer names resolve through
    # the quantize wrappers and one epoch of training gives a finite loss
    qat_student = quantize_model(_clone(different))
    distiller = Distiller(teacher, qat_student, distillation_losses=[get_loss({"kind": name, **config})], student_loss_weight=0.5)
    from edgedistill._keras import keras

    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    history = distiller.fit(x, data.y_train[:64], epochs=1, batch_size=32, verbose=0)
    assert all(math.isfinite(v) for v in history.history["distillation_loss"])


def test_unknown_layer_lists_the_layers(tiny):
    from edgedistill.distill.distiller import Distiller
    from edgedistill.distill.losses import FeatureDistillation

    _, teacher, different = tiny
    with pytest.raises(InputError) as error:
        Distiller(teacher, different, distillation_losses=[FeatureDistillation("block2_relu", "no_such_layer")])
    message = str(error.value)
    assert "no_such_layer" in message and "block1_conv" in message and "logits" in message


def test_feature_adapter_only_when_channels_differ(tiny):
    from edgedistill.distill.distiller import Distiller
    from edgedistill.distill.losses import FeatureDistillation

    _, teacher, different = tiny
    mismatched = Distiller(teacher, different, distillation_losses=[FeatureDistillation("block2_relu", "block2_relu")])
    assert len(mismatched.adapters) == 1 and mismatched.adapters[0].kernel.shape == (1, 1, 8, 16)
    # the adapter trains with the student
    assert any(v is mismatched.adapters[0].kernel for v in mismatched.trainable_weights_to_update)
    matched = Distiller(teacher, _clone(teacher), distillation_losses=[FeatureDistillation("block2_relu", "block2_relu")])
    assert matched.adapters == []
    with pytest.raises(InputError, match="adapter='none'"):
        Distiller(teacher, different, distillation_losses=[FeatureDistillation("block2_relu", "block2_relu", adapter="none")])


def test_attention_needs_conv_layers(tiny):
    from edgedistill.distill.distiller import Distiller
    from edgedistill.distill.losses import AttentionTransfer

    _, teacher, different = tiny
    with pytest.raises(InputError, match="4-D"):
        Distiller(teacher, different, distillation_losses=[AttentionTransfer("features", "block2_relu")])


def test_temperature_schedule():
    from edgedistill.distill.losses import LogitsDistillation

    linear = LogitsDistillation(temperature=8.0, final_temperature=2.0)
    cosine = LogitsDistillation(temperature=8.0, final_temperature=2.0, schedule="cosine")
    assert float(linear.temperature_at(0.0)) == pytest.approx(8.0)
    assert float(linear.temperature_at(0.5)) == pytest.approx(5.0)
    assert float(linear.temperature_at(1.0)) == pytest.approx(2.0)
    assert float(cosine.temperature_at(0.25)) > float(linear.temperature_at(0.25))  # cosine stays high longer
    assert LogitsDistillation(4.0).temperature_at(0.7) == 4.0
    with pytest.raises(InputError, match="schedule"):
        LogitsDistillation(4.0, final_temperature=1.0, schedule="step")


def test_schedule_reaches_the_loss_through_fit(tiny):
    """The Distiller feeds the epoch's progress: the last epoch's loss is computed at T1."""
    from edgedistill._keras import keras
    from edgedistill.distill.distiller import Distiller
    from edgedistill.distill.losses import LogitsDistillation

    data, teacher, different = tiny
    distiller = Distiller(teacher, _clone(different), distillation_losses=[LogitsDistillation(8.0, final_temperature=1.0)])
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    distiller.fit(data.x_train[:32], data.y_train[:32], epochs=3, batch_size=32, verbose=0)
    assert float(distiller.progress.numpy()) == pytest.approx(1.0)


def test_rkd_is_invariant_to_embedding_scale():
    """RKD's distance potential divides by the mean distance: scaling the teacher does not change the loss."""
    import tensorflow as tf

    from edgedistill.distill.losses import RelationalDistillation

    rng = np.random.default_rng(0)
    teacher = tf.constant(rng.normal(size=(16, 12)), dtype=tf.float32)
    student = tf.constant(rng.normal(size=(16, 5)), dtype=tf.float32)
    loss = RelationalDistillation()
    assert float(loss.compute_loss(teacher, student)) == pytest.approx(float(loss.compute_loss(3.0 * teacher, student)), rel=1e-4)
    assert float(loss.compute_loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)


def test_user_loss_without_kwargs_and_adapter_kept_for_qat(tiny):
    """A user's loss whose compute_loss takes only (teacher, student) works; a feature loss
    reused for the QAT student keeps the adapter it learned."""
    import tensorflow as tf

    from edgedistill.distill.distiller import Distiller
    from edgedistill.distill.losses import DistillationLoss, FeatureDistillation
    from edgedistill.quantize import quantize_model

    class MeanSquaredLogits(DistillationLoss):
        def compute_loss(self, teacher_outputs, student_outputs):
            return tf.reduce_mean(tf.square(teacher_outputs - student_outputs))

    data, teacher, different = tiny
    value = Distiller(teacher, different, distillation_losses=[MeanSquaredLogits()]).distillation_loss_value(data.x_train[:16])
    assert math.isfinite(value) and value > 0
    hint = FeatureDistillation("block2_relu", "block2_relu")
    float_adapter = Distiller(teacher, different, distillation_losses=[hint]).adapters[0]
    qat_adapter = Distiller(teacher, quantize_model(_clone(different)), distillation_losses=[hint]).adapters[0]
    assert qat_adapter is float_adapter


# ---------------------------------------------------------------------------------------
# Keras conventions: compile(loss=..., metrics=...) and keras.losses.get values


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sparse_ce(labels, logits):
    return float(np.mean(-np.log(_softmax(logits)[np.arange(len(labels)), labels])))


def _evaluate(distiller, x, targets):
    """The Distiller's figures on one batch (its Mean trackers then hold exactly that batch's values)."""
    return distiller.evaluate(x, targets, batch_size=len(x), verbose=0, return_dict=True)


@pytest.mark.parametrize("student_loss_weight", [0.0, 0.3, 1.0])
def test_distiller_combines_the_default_student_loss_and_kl_like_numpy(tiny, student_loss_weight):
    from edgedistill._keras import keras
    from edgedistill.distill.distiller import Distiller, teacher_targets
    from edgedistill.models import predict_logits

    data, teacher, student = tiny
    x, y = data.x_val[:48], data.y_val[:48]
    distiller = Distiller(
        teacher, student, distillation_losses=[LogitsDistillation(2.0)], student_loss_weight=student_loss_weight
    )
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))  # no loss: sparse CE on logits
    figures = _evaluate(distiller, x, teacher_targets(teacher, x, y))
    z_t, z_s = predict_logits(teacher, x).astype(np.float64), predict_logits(student, x).astype(np.float64)
    student_loss = _sparse_ce(y, z_s)
    distillation_loss = _kl(z_t, z_s, 2.0) * 4.0
    assert figures["student_loss"] == pytest.approx(student_loss, rel=1e-4)
    assert figures["distillation_loss"] == pytest.approx(distillation_loss, rel=1e-4)
    expected = student_loss_weight * student_loss + (1 - student_loss_weight) * distillation_loss
    assert figures["loss"] == pytest.approx(expected, rel=1e-4)


def test_distiller_honours_compile_loss_and_metrics(tiny):
    """A user's loss (name, Loss instance or callable) replaces the hard-label loss; metrics are the user's."""
    import tensorflow as tf

    from edgedistill._keras import keras
    from edgedistill.distill.distiller import Distiller, teacher_targets
    from edgedistill.models import predict_logits

    data, teacher, student = tiny
    x, y = data.x_val[:32], data.y_val[:32]
    targets = teacher_targets(teacher, x, y)
    z_s = predict_logits(student, x).astype(np.float64)
    margin = z_s.max(axis=-1) - z_s[np.arange(len(y)), y]  # >= 0, 0 when the label wins

    def label_margin(labels, logits):
        return tf.reduce_max(logits, axis=-1) - tf.gather(logits, tf.cast(labels, tf.int32), batch_dims=1)

    smoothed = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # default reduction: rebuilt per sample
    for loss, expected in ((label_margin, margin.mean()), (smoothed, _sparse_ce(y, z_s))):
        distiller = Distiller(teacher, student, student_loss_weight=0.5)
        distiller.compile(optimizer="adam", loss=loss, metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
        figures = _evaluate(distiller, x, targets)
        assert figures["student_loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert "acc" in figures and "accuracy" not in figures
    # a name keras.losses.get knows, with Keras' meaning: this function expects probabilities
    # (from_logits=False), so it clips the logits to [eps, 1 - eps] and normalises them
    distiller = Distiller(teacher, student, student_loss_weight=1.0)
    distiller.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    figures = _evaluate(distiller, x, targets)
    clipped = np.clip(z_s, 1e-7, 1 - 1e-7)
    expected = np.mean(-np.log(clipped[np.arange(len(y)), y] / clipped.sum(axis=-1)))
    assert figures["loss"] == pytest.approx(float(expected), rel=1e-4)
    assert distiller.get_config()["student_loss"] == "sparse_categorical_crossentropy"
    with pytest.raises(InputError, match="Distiller.compile `loss`"):
        Distiller(teacher, student).compile(optimizer="adam", loss="no_such_loss")


def test_distiller_student_loss_is_used_for_training(tiny):
    """compile(loss=...) is not ignored by fit: a zero student loss leaves only distillation to learn from."""
    import tensorflow as tf

    from edgedistill._keras import keras
    from edgedistill.distill.distiller import Distiller

    data, teacher, student = tiny
    distiller = Distiller(teacher, _clone(student), student_loss_weight=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), loss=lambda y, z: tf.zeros_like(z[:, 0]))
    history = distiller.fit(data.x_train[:64], data.y_train[:64], epochs=1, batch_size=32, verbose=0)
    assert history.history["student_loss"] == [0.0] and history.history["loss"] == [0.0]


def test_logits_loss_accepts_keras_losses_like_keras_distillation():
    """As keras.distillation.LogitsDistillation: KL keeps T^2; other losses see z / T without the factor."""
    from edgedistill._keras import keras, tf

    rng = np.random.default_rng(2)
    teacher, student = rng.normal(size=(16, 10)) * 3, rng.normal(size=(16, 10)) * 3
    t, s = tf.constant(teacher, tf.float32), tf.constant(student, tf.float32)
    kl = LogitsDistillation(4.0).compute_loss(t, s)
    for spec in ("kl_divergence", "kld", keras.losses.KLDivergence(), keras.losses.kl_divergence):
        assert float(LogitsDistillation(4.0, loss=spec).compute_loss(t, s)) == pytest.approx(float(kl), rel=1e-5)
    mse = LogitsDistillation(4.0, loss="mse").compute_loss(t, s)
    assert float(mse) == pytest.approx(float(np.mean((teacher / 4 - student / 4) ** 2)), rel=1e-4)
    huber = LogitsDistillation(2.0, loss=keras.losses.Huber(delta=0.5))
    assert math.isfinite(float(huber.compute_loss(t, s)))
    # the config names the loss only when it is not the default, and round-trips
    assert LogitsDistillation(4.0).get_config() == {"temperature": 4.0}
    config = LogitsDistillation(4.0, loss="mse").get_config()
    assert config == {"temperature": 4.0, "loss": "mse"} and get_loss({"kind": "logits", **config}).get_config() == config
    assert get_loss("logits:temperature=2,loss=mse").get_config() == {"temperature": 2.0, "loss": "mse"}
    with pytest.raises(InputError, match="LogitsDistillation `loss`"):
        LogitsDistillation(4.0, loss="no_such_loss")


def test_feature_loss_accepts_keras_losses_and_the_former_metric_name():
    from edgedistill._keras import keras, tf
    from edgedistill.distill.losses import FeatureDistillation

    rng = np.random.default_rng(3)
    teacher, student = rng.normal(size=(4, 3, 3, 6)), rng.normal(size=(4, 3, 3, 6))
    t, s = tf.constant(teacher, tf.float32), tf.constant(student, tf.float32)
    mae = FeatureDistillation("a", "b", loss="mae", adapter="none")
    assert float(mae.compute_loss(t, s)) == pytest.approx(float(np.mean(np.abs(teacher - student))), rel=1e-5)
    mse = FeatureDistillation("a", "b", adapter="none")
    assert float(mse.compute_loss(t, s)) == pytest.approx(float(np.mean((teacher - student) ** 2)), rel=1e-5)
    cosine = FeatureDistillation("a", "b", metric="cosine", adapter="none")  # the former keyword still works
    assert cosine.get_config()["loss"] == "cosine"
    flat_t, flat_s = teacher.reshape(4, -1), student.reshape(4, -1)
    cos = np.sum(flat_t * flat_s, -1) / np.linalg.norm(flat_t, axis=-1) / np.linalg.norm(flat_s, axis=-1)
    assert float(cosine.compute_loss(t, s)) == pytest.approx(float(np.mean(1 - cos)), rel=1e-4)
    huber = FeatureDistillation("a", "b", loss=keras.losses.Huber(), adapter="none")
    config = huber.get_config()
    assert FeatureDistillation.from_config(config).get_config() == config
    with pytest.raises(InputError, match="not both"):
        FeatureDistillation("a", "b", loss="mae", metric="cosine")
