"""The ``multi_teacher`` scheme: several teachers whose soft targets are averaged."""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

from edgedistill._keras import keras, tf
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.schemes.base import SchemeOptions, option, register_scheme
from edgedistill.errors import InputError
from edgedistill.models import model_output_classes, predict_logits

logger = logging.getLogger(__name__)


def check_same_classes(models: Sequence, *, role: str = "teacher") -> int | None:
    """All models output the same number of classes; returns it (None when unknown)."""
    classes = [model_output_classes(model) for model in models]
    known = {c for c in classes if c is not None}
    if len(known) > 1:
        listing = ", ".join(f"{role} {index + 1}: {c}" for index, c in enumerate(classes))
        raise InputError(
            f"The {role}s output different numbers of classes ({listing}); every {role} must be trained on the same classes."
        )
    return known.pop() if known else None


def _normalised_weights(weights: Sequence[float] | None, count: int) -> np.ndarray:
    array = np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(array) != count or np.any(array < 0) or array.sum() <= 0:
        raise InputError(f"`teacher_weights` must hold {count} non-negative numbers, not all 0. Received: {list(array)}.")
    return array / array.sum()


def ensemble_logits(
    logits: Sequence[np.ndarray], *, weights: Sequence[float] | None = None, temperature: float = 1.0
) -> np.ndarray:
    """Soft targets of an ensemble, as logits.

    ``p = sum_i w_i softmax(z_i / T)`` (weights normalised to sum 1); returned as ``T * log p``
    so that :class:`LogitsDistillation` at the same ``T`` sees exactly ``p``
    (``softmax(T log p / T) = p``). Averaging probabilities, not logits, is the usual
    multi-teacher target (Hinton et al. 2015 section 3; You et al. 2017).
    """
    logits = [np.asarray(z, dtype=np.float64) for z in logits]
    shapes = {z.shape for z in logits}
    if len(shapes) != 1:
        raise InputError(
            f"The teachers' outputs have different shapes {sorted(shapes)}; they must classify the same samples into the same "
            f"classes."
        )
    normalised = _normalised_weights(weights, len(logits))
    probabilities = np.zeros_like(logits[0])
    for weight, z in zip(normalised, logits):
        shifted = z / temperature - (z / temperature).max(axis=-1, keepdims=True)
        probabilities += weight * np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    return (temperature * np.log(np.clip(probabilities, 1e-12, 1.0))).astype(np.float32)


class EnsembleTeacher(keras.Model):
    """Several tf_keras teachers as one: outputs ``T * log(sum_i w_i softmax(z_i / T))`` (see :func:`ensemble_logits`).

    Usable wherever a teacher runs per batch (e.g. the ``patient`` scheme).
    """

    def __init__(
        self,
        teachers: Sequence[keras.Model],
        *,
        weights: Sequence[float] | None = None,
        temperature: float = 1.0,
        name: str = "ensemble_teacher",
    ) -> None:
        super().__init__(name=name)
        if len(teachers) < 1:
            raise InputError("An ensemble needs at least one teacher.")
        self.num_classes = check_same_classes(teachers)
        self.teachers = list(teachers)
        for teacher in self.teachers:
            teacher.trainable = False
        self.teacher_weights = [float(w) for w in _normalised_weights(weights, len(teachers))]
        self.temperature = float(temperature)

    def call(self, inputs, training=False):
        probabilities = 0.0
        for weight, teacher in zip(self.teacher_weights, self.teachers):
            probabilities += weight * tf.nn.softmax(teacher(inputs, training=False) / self.temperature, axis=-1)
        return self.temperature * tf.math.log(tf.maximum(probabilities, 1e-12))

    @property
    def output_shape(self):
        return (None, self.num_classes)


def _ensemble_outputs(teachers, data, *, weights, temperature, teacher_outputs) -> dict:
    """The ensemble's cached targets per split (see :func:`ensemble_logits`)."""
    outputs = {}
    for split, x in (("train", data.x_train), ("val", data.x_val)):
        per_teacher = [
            (teacher_outputs[index][split] if teacher_outputs else predict_logits(teacher, x))
            for index, teacher in enumerate(teachers)
        ]
        if len({z.shape[-1] for z in per_teacher}) > 1:
            listing = ", ".join(f"teacher {index + 1}: {z.shape[-1]}" for index, z in enumerate(per_teacher))
            raise InputError(
                f"The teachers output different numbers of classes ({listing}); every teacher must be trained on the same "
                f"classes."
            )
        outputs[split] = ensemble_logits(per_teacher, weights=weights, temperature=temperature)
    return outputs


def distill_multi_teacher(
    teachers: Sequence,
    student: keras.Model,
    data,
    *,
    teacher_weights: Sequence[float] | None = None,
    training: TrainingArguments | None = None,
    teacher_outputs: Sequence[dict] | None = None,
    stage: str = "distill",
) -> SchemeResult:
    """Distill from several teachers whose soft targets are averaged (weighted by ``teacher_weights``).

    The ensemble's targets are cached once (see :func:`ensemble_logits`) at the temperature of
    the training's logits loss; teachers may be any kind (tf_keras, Keras 3, SavedModel). All
    must output the same classes. ``teacher_outputs`` optionally holds each teacher's cached logits.

    Example::

        result = distill_multi_teacher([cnn_teacher, dscnn_teacher], student, data, teacher_weights=[2, 1],
                                       training=TrainingArguments(distillation_losses=[LogitsDistillation(4)]))
    """
    from edgedistill.distill.distiller import distill

    training = training or TrainingArguments()
    teachers = list(teachers) if isinstance(teachers, (list, tuple)) else [teachers]
    check_same_classes(teachers)
    outputs = _ensemble_outputs(
        teachers, data, weights=teacher_weights, temperature=training.logits_temperature(), teacher_outputs=teacher_outputs
    )
    options = {**training.distill_options(), "teacher_outputs": outputs}
    student, history = distill(teachers[0], student, data, stage=stage, **options)
    # QAT is guided by the same ensemble the student was distilled from, not by the main teacher alone.
    return SchemeResult(student=student, history=history, quantization_teacher_outputs=outputs)


@dataclasses.dataclass(frozen=True)
class MultiTeacherOptions(SchemeOptions):
    teachers: tuple[str, ...] = option((), "Model files of the extra teachers (besides the main one), separated by |.")
    teacher_weights: tuple[float, ...] | None = option(
        None, "Weight of each teacher, the main one first, separated by | (default: equal)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.teachers:
            raise InputError("The multi_teacher scheme needs extra teachers: --scheme-options 'teachers=a.keras|b.keras'.")
        if self.teacher_weights is not None and len(self.teacher_weights) != len(self.teachers) + 1:
            raise InputError(
                f"`teacher_weights` needs {len(self.teachers) + 1} numbers (the main teacher first, then each of `teachers`). "
                f"Received: teacher_weights={'|'.join(str(w) for w in self.teacher_weights)}."
            )


@register_scheme("multi_teacher", MultiTeacherOptions)
def run_multi_teacher(teacher, student, data, options: MultiTeacherOptions, training: TrainingArguments) -> SchemeResult:
    """Several teachers (the main one and ``teachers=a.keras|b.keras``), soft targets averaged."""
    from edgedistill.models import load_model_file

    teachers = [teacher, *[load_model_file(path) for path in options.teachers]]
    return distill_multi_teacher(teachers, student, data, teacher_weights=options.teacher_weights, training=training)


__all__ = [
    "check_same_classes",
    "ensemble_logits",
    "EnsembleTeacher",
    "distill_multi_teacher",
    "MultiTeacherOptions",
    "run_multi_teacher",
]
