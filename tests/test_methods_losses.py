"""The contract every registered distillation loss keeps, and the feature-extraction errors.

One parametrized test runs the same checks over every entry of ``LOSSES``: a finite value,
zero when the student *is* the teacher, a ``get_config`` round trip, and training a fake-quant
(tfmot QAT) student. Models are tiny presets on 8x8 digits so the whole file runs in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgedistill.distill.losses import LOSSES, get_loss
from edgedistill.errors import InputError

# Arguments that make each loss applicable to two `cnn` presets (all defaults today). A new
# loss whose defaults do not fit a cnn gets its entry here; a missing entry fails loudly below.
CONTRACT_ARGUMENTS: dict[str, dict] = {
    "logits": {"temperature": 4.0},
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
