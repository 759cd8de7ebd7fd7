"""The ``data_free`` scheme: DeepInversion-style synthetic inputs from the teacher, then distillation."""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Sequence

import numpy as np

from edgedistill._keras import keras, tf
from edgedistill.config import at_least
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.losses import LogitsDistillation
from edgedistill.distill.schemes.base import SchemeOptions, option, register_scheme
from edgedistill.errors import InputError
from edgedistill.models import model_output_classes, predict_logits

logger = logging.getLogger(__name__)


def _total_variation(x):
    return tf.reduce_mean(tf.abs(x[:, 1:] - x[:, :-1])) + tf.reduce_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1]))


def _inversion_step(probe, statistics, weights: dict[str, float], strategy, value_range: tuple[float, float] = (0.0, 1.0)):
    """One Adam step on the synthetic batch ``low + (high - low) * sigmoid(variable)``; returns ``(cross entropy, bn loss)``."""
    low, span = float(value_range[0]), float(value_range[1] - value_range[0])

    def step(variable, targets, optimizer):
        with tf.GradientTape() as tape:
            unit = tf.sigmoid(variable)
            outputs = probe(low + span * unit, training=False)  # the teacher takes the data's raw values
            logits, inputs = outputs[0], outputs[1:]
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
            bn_loss = 0.0
            for features, (mean, variance) in zip(inputs, statistics):
                batch_mean, batch_variance = tf.nn.moments(features, axes=list(range(len(features.shape) - 1)))
                bn_loss += tf.norm(batch_mean - mean) + tf.norm(batch_variance - variance)
            total = (
                loss
                + weights["bn"] * bn_loss
                + weights["tv"] * _total_variation(unit)
                + weights["l2"] * tf.reduce_mean(tf.square(unit))
            )
            # Under a tf.distribute strategy every replica optimises the same inputs and the
            # optimizer sums their gradients: divide, as the Distiller does.
            total = total / strategy.num_replicas_in_sync
        optimizer.apply_gradients([(tape.gradient(total, variable), variable)])
        return loss, bn_loss

    return step


def _optimise(step, variable, targets, *, learning_rate: float, steps: int, strategy) -> tuple[float, float]:
    """``steps`` Adam steps on one synthetic batch; returns the last ``(cross entropy, bn loss)``."""
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build([variable])  # its slots must exist before tracing
    compiled = tf.function(functools.partial(strategy.run, functools.partial(step, variable, targets, optimizer)))
    for _ in range(steps):
        ce, bn = compiled()
    return float(strategy.experimental_local_results(ce)[0]), float(strategy.experimental_local_results(bn)[0])


def _batch_norm_probe(teacher):
    """A model returning the teacher's logits and the input of each batch-norm layer, with their running statistics."""
    if not isinstance(teacher, keras.Model) or not getattr(teacher, "_is_graph_network", False):
        raise InputError("Data-free synthesis optimises inputs through the teacher; it needs a functional tf_keras teacher.")
    batch_norms = [layer for layer in teacher.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(teacher.inputs, [teacher.outputs[0], *[layer.input for layer in batch_norms]])
    probe.trainable = False
    statistics = [(tf.constant(layer.moving_mean), tf.constant(layer.moving_variance)) for layer in batch_norms]
    return probe, statistics


@dataclasses.dataclass(frozen=True)
class DataFreeOptions(SchemeOptions):
    num_samples: int = option(2000, "Number of synthetic inputs (10 % of them validate).", check=at_least(1), expected=">= 1")
    steps: int = option(200, "Adam steps optimising each batch of synthetic inputs.", check=at_least(1), expected=">= 1")
    bn_weight: float = option(
        1.0, "Weight of the batch-norm statistics term of the synthesis loss.", check=at_least(0), expected=">= 0"
    )


def _checked_num_classes(teacher: keras.Model, num_samples: int, steps: int, num_classes: int | None) -> int:
    """The number of classes to synthesise (given, else the teacher's output size), after checking the counts."""
    for name, value in (("num_samples", num_samples), ("steps", steps)):
        if value < 1:
            raise InputError(f"`{name}` must be >= 1. Received: {name}={value}.")
    num_classes = num_classes or model_output_classes(teacher)
    if num_classes is None:
        raise InputError(
            f"The number of classes to synthesise is unknown: the teacher's output shape "
            f"{getattr(teacher, 'output_shape', None)} does not end in a class count. Pass num_classes=N."
        )
    return num_classes


def synthesize_inputs(
    teacher: keras.Model,
    *,
    num_samples: int,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    steps: int = DataFreeOptions.steps,
    batch_size: int = 128,
    learning_rate: float = 0.1,
    bn_weight: float = DataFreeOptions.bn_weight,
    tv_weight: float = 1e-3,
    l2_weight: float = 1e-5,
    seed: int = 0,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Synthetic inputs the teacher classifies confidently, DeepInversion-style (Yin et al. 2020,
    "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion").

    Inputs ``x = low + (high - low) * sigmoid(v)`` (within ``value_range``, the data's raw range:
    0..255 for pixels, 0..16 for digits; the priors act on ``sigmoid(v)``), each assigned a
    target class ``c`` (classes in turn), optimise with Adam::

        L(x) = CE(teacher(x), c)
             + bn_weight * sum_l ( ||mu_l(x) - mu_l||_2 + ||sigma^2_l(x) - sigma^2_l||_2 )
             + tv_weight * TV(x) + l2_weight * ||x||^2

    where ``mu_l, sigma^2_l`` are the running statistics of the teacher's batch-norm layer ``l``
    and ``mu_l(x), sigma^2_l(x)`` the statistics of its input on the synthetic batch. A teacher
    without batch-norm layers gets the output term and the priors only (reported in ``info``).
    Returns ``(x, info)``.
    """
    probe, statistics = _batch_norm_probe(teacher)
    num_classes = _checked_num_classes(teacher, num_samples, steps, num_classes)
    rng = np.random.default_rng(seed)
    # The current strategy (the default one outside any scope) runs the step in its replica
    # context, where optimizers may update (mirrored) variables.
    strategy = tf.distribute.get_strategy()
    step = _inversion_step(probe, statistics, {"bn": bn_weight, "tv": tv_weight, "l2": l2_weight}, strategy, value_range)
    logger.info("data_free: synthesising %d inputs from the teacher (%d steps per batch)", num_samples, int(steps))
    synthesis = _synthesize_batches(
        step,
        rng,
        num_samples=num_samples,
        batch_size=batch_size,
        input_shape=input_shape,
        num_classes=num_classes,
        value_range=value_range,
        learning_rate=learning_rate,
        steps=int(steps),
        strategy=strategy,
    )
    info = _synthesis_info(teacher, synthesis, num_samples, num_classes=num_classes, steps=steps, num_batch_norms=len(statistics))
    return synthesis.x, info


def _synthesis_info(
    teacher: keras.Model, synthesis: _Synthesis, num_samples: int, *, num_classes: int, steps: int, num_batch_norms: int
) -> dict[str, Any]:
    """What the synthesis reached: its last losses, and how often the teacher classifies an input as its target."""
    agrees = predict_logits(teacher, synthesis.x).argmax(axis=-1) == np.arange(num_samples) % num_classes
    return {
        "num_samples": int(num_samples),
        "steps": int(steps),
        "num_batch_norm_layers": num_batch_norms,
        "final_cross_entropy": synthesis.final_cross_entropy,
        "final_bn_loss": synthesis.final_bn_loss,
        "teacher_agrees_with_target_percent": float(agrees.mean() * 100.0),
    }


@dataclasses.dataclass(frozen=True)
class _Synthesis:
    """The synthetic inputs, and the mean over their batches of the last step's cross entropy and batch-norm loss."""

    x: np.ndarray
    final_cross_entropy: float
    final_bn_loss: float


def _synthesize_batches(
    step,
    rng: np.random.Generator,
    *,
    num_samples: int,
    batch_size: int,
    input_shape: Sequence[int],
    num_classes: int,
    value_range: tuple[float, float],
    learning_rate: float,
    steps: int,
    strategy,
) -> _Synthesis:
    """Optimise ``num_samples`` inputs, ``batch_size`` at a time; sample ``i`` targets class ``i % num_classes``."""
    batches, final_ce, final_bn = [], [], []
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        targets = tf.constant((np.arange(start, start + count) % num_classes).astype(np.int64))
        variable = tf.Variable(rng.normal(0.0, 1.0, size=(count, *input_shape)).astype(np.float32))
        ce, bn = _optimise(step, variable, targets, learning_rate=learning_rate, steps=steps, strategy=strategy)
        batches.append((value_range[0] + (value_range[1] - value_range[0]) * tf.sigmoid(tf.convert_to_tensor(variable))).numpy())
        final_ce.append(ce)
        final_bn.append(bn)
    x = np.concatenate(batches).astype(np.float32)
    return _Synthesis(x=x, final_cross_entropy=float(np.mean(final_ce)), final_bn_loss=float(np.mean(final_bn)))


def _synthetic_dataset(teacher, data, x: np.ndarray, seed: int):
    """The synthetic inputs labelled by the teacher, 10 % held out for validation; and the teacher's logits per split."""
    from edgedistill.data import Dataset

    logits = predict_logits(teacher, x)
    labels = logits.argmax(axis=-1).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    num_val = max(1, len(x) // 10)
    val, train = order[:num_val], order[num_val:]
    synthetic = Dataset(
        name=f"synthetic({data.name})",
        x_train=x[train],
        y_train=labels[train],
        x_val=x[val],
        y_val=labels[val],
        x_test=data.x_test,
        y_test=data.y_test,
        num_classes=data.num_classes,
        class_names=data.class_names,
    )
    return synthetic, {"train": logits[train], "val": logits[val]}


def data_free_distill(
    teacher,
    student: keras.Model,
    data,
    *,
    num_samples: int = DataFreeOptions.num_samples,
    steps: int = DataFreeOptions.steps,
    bn_weight: float = DataFreeOptions.bn_weight,
    training: TrainingArguments | None = None,
    stage: str = "distill",
) -> SchemeResult:
    """Distill without the training data: synthesise inputs from the teacher
    (:func:`synthesize_inputs`), then distill on them with the teacher's cached outputs.

    ``data`` is used only for its input shape and number of classes (and its test split, by
    the caller, for evaluation): no training or validation image reaches the student.
    Validation (early stopping) uses 10 % of the synthetic set labelled by the teacher.
    The synthesis figures are in ``report["synthesis"]``; the synthetic set and the teacher's
    logits on it are the result's ``quantization_data`` / ``quantization_teacher_outputs``
    (QAT and int8 calibration must not see real data either). Without ``training``:
    ``LogitsDistillation()`` and ``student_loss_weight=0``.
    """
    from edgedistill.distill.distiller import distill

    training = training or TrainingArguments(distillation_losses=[LogitsDistillation()], student_loss_weight=0.0)
    x, info = synthesize_inputs(
        teacher,
        num_samples=int(num_samples),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        steps=int(steps),
        bn_weight=float(bn_weight),
        seed=training.config.seed,
        value_range=tuple(getattr(data, "value_range", None) or (0.0, 1.0)),
    )
    synthetic, outputs = _synthetic_dataset(teacher, data, x, training.config.seed)
    options = {**training.distill_options(), "teacher_outputs": outputs}
    student, history = distill(teacher, student, synthetic, stage=stage, **options)
    return SchemeResult(
        student=student,
        history=history,
        report={"synthesis": info},
        quantization_data=synthetic,
        quantization_teacher_outputs=outputs,
    )


@register_scheme("data_free", DataFreeOptions, trains_on_data=False)
def run_data_free(teacher, student, data, options: DataFreeOptions, training: TrainingArguments) -> SchemeResult:
    """Synthesise inputs from the teacher (DeepInversion), then distill on them; no real training image is used."""
    return data_free_distill(
        teacher,
        student,
        data,
        num_samples=options.num_samples,
        steps=options.steps,
        bn_weight=options.bn_weight,
        training=training,
    )


__all__ = ["synthesize_inputs", "data_free_distill", "DataFreeOptions", "run_data_free"]
