"""Distillation of a Keras 3 student: ``Distiller`` shaped like ``keras.distillation.Distiller``, and :func:`distill`.

``total = a * L_student(labels, student) + (1 - a) * sum_i w_i * L_i(teacher, student)``, ``a = student_loss_weight``.
The distillation losses are edgedistill's (:mod:`edgedistill.distill.losses`, written with TensorFlow ops, so
they run inside a Keras 3 training step on the TensorFlow backend): ``LogitsDistillation(temperature)`` (with
the ``T^2`` scaling), ``logit_standardization``, ``dkd``, ``dist``. Losses on intermediate layers (``feature``,
``attention``, ``rkd``) need a tf_keras student for now.

The teacher is anything that gives logits: a tf_keras model, a Keras 3 model, an
:class:`edgedistill.models.ExternalTeacher` or a callable. Its outputs are computed once (un-augmented data: they
never change) and passed as targets, so it never runs inside the student's training step.

Example::

    distiller = Distiller(teacher, student, distillation_losses=LogitsDistillation(temperature=4.0), student_loss_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    distiller.fit(x, teacher_targets(teacher, x, y), epochs=10)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from edgedistill.distill.losses import DistillationLoss, LogitsDistillation, get_loss
from edgedistill.errors import InputError, StageError
from edgedistill.keras3.backend import import_keras3

if TYPE_CHECKING:  # Keras 3 and TensorFlow have no type information: Any to the type checker, as base classes too
    import keras
    import tensorflow as tf
else:
    keras, tf = import_keras3()

LABELS = "labels"
TEACHER_OUTPUTS = "teacher_outputs"


def _checked_losses(distillation_losses, distillation_loss_weights, student_loss_weight) -> tuple[list, list[float]]:
    if distillation_losses is None:
        distillation_losses = [LogitsDistillation()]
    if isinstance(distillation_losses, (DistillationLoss, str, dict)):
        distillation_losses = [distillation_losses]
    losses = [get_loss(loss) for loss in distillation_losses]
    for loss in losses:
        if not loss.uses_final_outputs:
            raise InputError(
                f"{type(loss).__name__} matches intermediate layers; the Keras 3 Distiller supports losses on the final "
                "outputs (logits, logit_standardization, dkd, dist). Use one of those, or a tf_keras student (--keras 2)."
            )
    weights = [1.0] * len(losses) if distillation_loss_weights is None else [float(w) for w in distillation_loss_weights]
    if len(weights) != len(losses):
        raise InputError(f"`distillation_loss_weights` has {len(weights)} entries for {len(losses)} losses; give one per loss.")
    if isinstance(student_loss_weight, bool) or not 0.0 <= float(student_loss_weight) <= 1.0:
        raise InputError(f"`student_loss_weight` must be in [0, 1]. Received: student_loss_weight={student_loss_weight}.")
    return losses, weights


class Distiller(keras.Model):
    """Knowledge distillation of a Keras 3 ``student`` from a frozen ``teacher`` (see the module docstring).

    :meth:`compile` takes the student's hard-label ``loss`` (default
    ``SparseCategoricalCrossentropy(from_logits=True)``: the presets output logits) and ``metrics``. :meth:`fit`
    takes targets ``{"labels": y, "teacher_outputs": t}`` (:func:`teacher_targets`).
    """

    def __init__(
        self,
        teacher,
        student,
        distillation_losses=None,
        distillation_loss_weights: Sequence[float] | None = None,
        student_loss_weight: float = 0.5,
        name: str = "distiller",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.distillation_losses, self.distillation_loss_weights = _checked_losses(
            distillation_losses, distillation_loss_weights, student_loss_weight
        )
        self.student = student
        object.__setattr__(self, "teacher", teacher)  # never trained, never saved with the student
        self.student_loss_weight = float(student_loss_weight)
        self.student_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
        self.progress = keras.Variable(0.0, trainable=False, dtype="float32", name="progress")
        self.loss_trackers = {key: keras.metrics.Mean(name=key) for key in ("loss", "student_loss", "distillation_loss")}

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs) -> None:
        if loss is not None:
            loss = keras.losses.get(loss)
            self.student_loss_fn = (
                loss.__class__.from_config({**loss.get_config(), "reduction": None})
                if isinstance(loss, keras.losses.Loss)
                else loss
            )
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _compute_losses(self, labels, student_outputs, teacher_outputs):
        student_loss = tf.reduce_mean(self.student_loss_fn(labels, student_outputs))
        distillation_loss = tf.constant(0.0)
        for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
            options = {"progress": self.progress, "labels": labels}
            distillation_loss += weight * loss.compute_loss(teacher_outputs, student_outputs, **options)
        total = self.student_loss_weight * student_loss + (1.0 - self.student_loss_weight) * distillation_loss
        return total, student_loss, distillation_loss

    def _record(self, labels, student_outputs, losses) -> dict:
        for tracker, value in zip(self.loss_trackers.values(), losses):
            tracker.update_state(value)
        return self.compute_metrics(None, labels, student_outputs, None)

    def train_step(self, data):
        x, targets = data[0], data[1]
        labels, teacher_outputs = targets[LABELS], targets[TEACHER_OUTPUTS]
        with tf.GradientTape() as tape:
            student_outputs = self.student(x, training=True)
            losses = self._compute_losses(labels, student_outputs, teacher_outputs)
            objective = losses[0] + (tf.add_n(self.student.losses) if self.student.losses else 0.0)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))
        return self._record(labels, student_outputs, losses)

    def test_step(self, data):
        x, targets = data[0], data[1]
        labels, teacher_outputs = targets[LABELS], targets[TEACHER_OUTPUTS]
        student_outputs = self.student(x, training=False)
        return self._record(labels, student_outputs, self._compute_losses(labels, student_outputs, teacher_outputs))

    @property
    def metrics(self):
        return [*self.loss_trackers.values(), *super().metrics]


def teacher_targets(teacher, x: np.ndarray, y: np.ndarray, *, teacher_outputs: np.ndarray | None = None) -> dict:
    """``{"labels": y, "teacher_outputs": logits}`` with the teacher's outputs computed once."""
    from edgedistill.models import predict_logits

    if teacher_outputs is None:
        teacher_outputs = predict_logits(teacher, x) if hasattr(teacher, "predict") else np.asarray(teacher(x), np.float32)
    if len(teacher_outputs) != len(y):
        raise InputError(f"{len(teacher_outputs)} teacher outputs for {len(y)} labels; they must match.")
    return {LABELS: np.asarray(y), TEACHER_OUTPUTS: np.asarray(teacher_outputs, dtype=np.float32)}


class _Progress(keras.callbacks.Callback):
    """Training progress in [0, 1] per epoch, for temperature schedules."""

    def __init__(self, variable, epochs: int) -> None:
        super().__init__()
        self.variable, self.epochs = variable, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch / max(1, self.epochs - 1))


def _cosine_schedule(start: float, epochs: int):
    """The tf_keras path's per-epoch cosine (one home: edgedistill.training.cosine_rate) as a Keras 3 callback."""
    from edgedistill.training import cosine_rate

    return keras.callbacks.LearningRateScheduler(lambda epoch: cosine_rate(start, epoch, epochs))


def distill(
    teacher,
    student,
    data,
    *,
    epochs: int = 40,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    patience: int = 8,
    seed: int = 0,
    distillation_losses=None,
    distillation_loss_weights=None,
    student_loss_weight: float = 0.5,
    teacher_outputs: dict | None = None,
    verbose: int = 0,
    lr_schedule: str = "constant",
    schedule_epochs: int | None = None,
) -> tuple[Any, dict[str, list[float]]]:
    """Train the Keras 3 ``student`` (float or QAT) against ``teacher`` on ``data`` (a :class:`edgedistill.data.Dataset`).

    The same schedule as the tf_keras path (Adam, early stopping on validation accuracy with the best weights
    restored, ``patience=0`` disables it; ``lr_schedule="cosine"``: the per-epoch decay of
    :func:`edgedistill.training.cosine_rate` over ``schedule_epochs``, default ``epochs``, its rate per epoch in the
    history's ``learning_rate``); ``teacher_outputs`` may hold cached logits per split (``train``, ``val``).
    Returns ``(student, history)``; :class:`StageError` on a non-finite loss.
    """
    keras.utils.set_random_seed(seed)
    distiller = Distiller(teacher, student, distillation_losses, distillation_loss_weights, student_loss_weight)
    distiller.compile(
        optimizer=keras.optimizers.Adam(learning_rate), metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    )
    cached = teacher_outputs or {}
    train = teacher_targets(teacher, data.x_train, data.y_train, teacher_outputs=cached.get("train"))
    val = teacher_targets(teacher, data.x_val, data.y_val, teacher_outputs=cached.get("val"))
    callbacks: list = [_Progress(distiller.progress, epochs), keras.callbacks.TerminateOnNaN()]
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True)
        )
    if lr_schedule == "cosine":
        callbacks.append(_cosine_schedule(learning_rate, schedule_epochs or epochs))
    history = distiller.fit(
        np.asarray(data.x_train, np.float32),
        train,
        validation_data=(np.asarray(data.x_val, np.float32), val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=True,
    )
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise StageError(f"Distillation of {student.name} stopped: the loss became {losses[-1]}. Lower the learning rate.")
    return student, {key: [float(v) for v in values] for key, values in history.history.items()}


__all__ = ["Distiller", "LogitsDistillation", "distill", "teacher_targets"]
