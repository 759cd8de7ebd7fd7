"""The Distiller: a tf_keras Model that trains a student against a frozen teacher."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgedistill._keras import keras, tf
from edgedistill.distill.losses import DistillationLoss, LogitsDistillation, get_loss
from edgedistill.errors import InputError, StageError
from edgedistill.models import model_output_classes, predict_logits

LABELS = "labels"
TEACHER_OUTPUTS = "teacher_outputs"


class Distiller(keras.Model):
    """Knowledge distillation, with the names of ``keras.distillation``.

    ``total = student_loss_weight * CE(labels, student) + (1 - student_loss_weight) * sum_i w_i * L_i(teacher, student)``

    The teacher is frozen. When the targets given to :meth:`fit` already hold the
    teacher's outputs (``{"labels": y, "teacher_outputs": t}``, see
    :func:`teacher_targets`), the teacher is not run at all: with un-augmented data its
    outputs never change, so computing them once makes a distillation epoch cost about
    what a plain epoch costs. Otherwise the teacher runs on every batch.

    Example::

        distiller = Distiller(teacher, student, distillation_losses=LogitsDistillation(temperature=4.0),
                              student_loss_weight=0.5)
        distiller.compile(optimizer="adam", metrics=["accuracy"])
        distiller.fit(x, teacher_targets(teacher, x, y), epochs=10)
        student = distiller.student
    """

    def __init__(
        self,
        teacher,
        student: keras.Model,
        distillation_losses: DistillationLoss | str | dict | Sequence = None,
        distillation_loss_weights: Sequence[float] | None = None,
        student_loss_weight: float = 0.5,
        name: str = "distiller",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if distillation_losses is None:
            distillation_losses = [LogitsDistillation()]
        if isinstance(distillation_losses, (DistillationLoss, str, dict)):
            distillation_losses = [distillation_losses]
        losses = [get_loss(loss) for loss in distillation_losses]
        if distillation_loss_weights is None:
            distillation_loss_weights = [1.0] * len(losses)
        if len(distillation_loss_weights) != len(losses):
            raise InputError(
                f"`distillation_loss_weights` has {len(distillation_loss_weights)} entries for {len(losses)} losses; "
                "give one weight per distillation loss."
            )
        if isinstance(student_loss_weight, bool) or not 0.0 <= float(student_loss_weight) <= 1.0:
            raise InputError(
                f"`student_loss_weight` must be in [0, 1]. Received: student_loss_weight={student_loss_weight}."
            )
        teacher_classes, student_classes = model_output_classes(teacher), model_output_classes(student)
        if teacher_classes is not None and student_classes is not None and teacher_classes != student_classes:
            raise InputError(
                f"The teacher outputs {teacher_classes} classes and the student {student_classes}; "
                "they must match. Build the student with the teacher's number of classes."
            )
        self.student = student
        # A teacher that is not a tf_keras Model (Keras 3, SavedModel) is kept out of
        # Keras' tracking: it is only ever used through its cached outputs.
        if isinstance(teacher, keras.Model):
            self.teacher = teacher
            self.teacher.trainable = False
        else:
            self._external_teacher = [teacher]
            self.teacher = None
        self.distillation_losses = losses
        self.distillation_loss_weights = [float(w) for w in distillation_loss_weights]
        self.student_loss_weight = float(student_loss_weight)
        self.student_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        for loss in losses:
            if not loss.uses_final_outputs:
                raise InputError(
                    f"{type(loss).__name__} matches intermediate layers, which this Distiller does not extract yet; "
                    "use a loss on final outputs such as `logits`."
                )

    @property
    def can_cache_teacher(self) -> bool:
        """True when every loss uses only the teacher's final outputs."""
        return all(loss.uses_final_outputs for loss in self.distillation_losses)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.student_loss_tracker, self.distillation_loss_tracker] + self.compiled_metrics.metrics

    def _split_targets(self, y):
        if isinstance(y, dict):
            return y[LABELS], y.get(TEACHER_OUTPUTS)
        return y, None

    def _teacher_outputs(self, x, cached):
        if cached is not None:
            return cached
        if self.teacher is None:
            raise StageError(
                "This teacher (Keras 3 or SavedModel) cannot run inside a tf_keras training step; "
                "pass its cached outputs (teacher_targets) or use a tf_keras teacher."
            )
        return tf.stop_gradient(self.teacher(x, training=False))

    def _compute_losses(self, labels, student_outputs, teacher_outputs):
        student_loss = self.student_loss_fn(labels, student_outputs)
        distillation_loss = tf.constant(0.0, dtype=student_outputs.dtype)
        for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
            distillation_loss += weight * loss.compute_loss(teacher_outputs, student_outputs)
        total = self.student_loss_weight * student_loss + (1.0 - self.student_loss_weight) * distillation_loss
        return total, student_loss, distillation_loss

    def _update(self, labels, student_outputs, total, student_loss, distillation_loss):
        self.total_loss_tracker.update_state(total)
        self.student_loss_tracker.update_state(student_loss)
        self.distillation_loss_tracker.update_state(distillation_loss)
        self.compiled_metrics.update_state(labels, student_outputs)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels, cached = self._split_targets(y)
        teacher_outputs = self._teacher_outputs(x, cached)
        with tf.GradientTape() as tape:
            student_outputs = self.student(x, training=True)
            total, student_loss, distillation_loss = self._compute_losses(labels, student_outputs, teacher_outputs)
            regularization = tf.add_n(self.student.losses) if self.student.losses else 0.0
            objective = total + regularization
        variables = self.student.trainable_variables
        gradients = tape.gradient(objective, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update(labels, student_outputs, total, student_loss, distillation_loss)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels, cached = self._split_targets(y)
        student_outputs = self.student(x, training=False)
        if cached is None and self.teacher is None:
            teacher_outputs = student_outputs  # no teacher available: report the supervised loss only
        else:
            teacher_outputs = self._teacher_outputs(x, cached)
        total, student_loss, distillation_loss = self._compute_losses(labels, student_outputs, teacher_outputs)
        return self._update(labels, student_outputs, total, student_loss, distillation_loss)

    def get_config(self):
        return {
            "distillation_losses": [
                {"kind": loss.name, **loss.get_config()} for loss in self.distillation_losses
            ],
            "distillation_loss_weights": self.distillation_loss_weights,
            "student_loss_weight": self.student_loss_weight,
        }


def teacher_targets(teacher, x: np.ndarray, y: np.ndarray, *, teacher_outputs: np.ndarray | None = None) -> dict:
    """Targets for :meth:`Distiller.fit` with the teacher's outputs computed once (cached)."""
    if teacher_outputs is None:
        teacher_outputs = predict_logits(teacher, x)
    if len(teacher_outputs) != len(y):
        raise InputError(f"{len(teacher_outputs)} teacher outputs for {len(y)} labels; they must match.")
    return {LABELS: np.asarray(y), TEACHER_OUTPUTS: np.asarray(teacher_outputs, dtype=np.float32)}


__all__ = ["Distiller", "teacher_targets"]
