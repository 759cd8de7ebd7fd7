"""The ``mutual`` scheme: deep mutual learning, students teaching each other without a teacher."""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

from edgedistill._keras import keras, tf
from edgedistill.config import positive
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.distiller import default_student_loss
from edgedistill.distill.losses import LogitsDistillation, keras_loss
from edgedistill.distill.schemes.base import SchemeOptions, build_like_student, compile_learner, option, register_scheme
from edgedistill.distill.schemes.multi_teacher import check_same_classes
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)


class MutualLearner(keras.Model):
    """Deep mutual learning (Zhang, Xiang, Hospedales & Lu 2018, "Deep Mutual Learning").

    ``K`` students train together; student ``k`` minimises
    ``L_k = CE(y, z_k) + 1/(K-1) * sum_{l != k} T^2 KL(softmax(z_l / T) || softmax(z_k / T))``
    with the peers' predictions held fixed (stop-gradient). All students update in one step
    (the paper alternates; the joint update is the common implementation). Metrics:
    ``accuracy`` is student 0's, ``peer<k>_accuracy`` the others'. ``compile(loss=...)``
    replaces ``CE`` as in :meth:`~edgedistill.distill.distiller.Distiller.compile`.
    """

    def __init__(self, students: Sequence[keras.Model], *, temperature: float = 1.0, name: str = "mutual_learner") -> None:
        super().__init__(name=name)
        if len(students) < 2:
            raise InputError(f"Mutual learning needs at least 2 students; received {len(students)}.")
        check_same_classes(students, role="student")
        self.students = list(students)
        self.temperature = float(temperature)
        self.loss_fn = keras_loss(default_student_loss(), role="student loss")
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.peer_accuracy = [keras.metrics.SparseCategoricalAccuracy(name=f"peer{k}_accuracy") for k in range(1, len(students))]

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """``loss``: every student's hard-label loss (``keras.losses.get`` values; default sparse CE on logits)."""
        if loss is not None:
            self.loss_fn = keras_loss(loss, role="MutualLearner.compile `loss`")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def call(self, inputs, training=None):
        return self.students[0](inputs, training=training)

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.distillation_loss_tracker, *self.peer_accuracy] + self.compiled_metrics.metrics

    def _mutual_losses(self, labels, outputs):
        distillation = LogitsDistillation(self.temperature)
        total, kl_total = 0.0, 0.0
        for k, z_k in enumerate(outputs):
            kl = tf.add_n(
                [distillation.compute_loss(tf.stop_gradient(z_l), z_k) for other, z_l in enumerate(outputs) if other != k]
            ) / (len(outputs) - 1)
            total += tf.reduce_mean(self.loss_fn(labels, z_k)) + kl
            kl_total += kl
        return total, kl_total / len(outputs)

    def _update(self, labels, outputs, total, kl):
        self.total_loss_tracker.update_state(total)
        self.distillation_loss_tracker.update_state(kl)
        for metric, z in zip(self.peer_accuracy, outputs[1:]):
            metric.update_state(labels, z)
        self.compiled_metrics.update_state(labels, outputs[0])
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            outputs = [student(x, training=True) for student in self.students]
            total, kl = self._mutual_losses(labels, outputs)
            regularization = [loss for student in self.students for loss in student.losses]
            objective = total + (tf.add_n(regularization) if regularization else 0.0)
        variables = [v for student in self.students for v in student.trainable_variables]
        self.optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))
        return self._update(labels, outputs, total, kl)

    def test_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = [student(x, training=False) for student in self.students]
        total, kl = self._mutual_losses(labels, outputs)
        return self._update(labels, outputs, total, kl)


def mutual_distill(
    student: keras.Model,
    data,
    *,
    peers: Sequence[keras.Model] | None = None,
    temperature: float = 1.0,
    training: TrainingArguments | None = None,
    stage: str = "distill",
) -> SchemeResult:
    """Deep mutual learning of ``student`` with ``peers`` (default: one fresh copy of the student's
    architecture); see :class:`MutualLearner`. No pretrained teacher is needed. The peers are
    trained in place (pass your own ``peers`` list to keep them). The training's distillation
    losses are not used: the loss is the mutual KL at ``temperature``.
    """
    from edgedistill.training import fit, set_seed

    training = training or TrainingArguments()
    set_seed(training.config.seed)
    peers = list(peers) if peers else [keras.models.clone_model(student)]
    learner = compile_learner(MutualLearner([student, *peers], temperature=temperature), training)
    history = fit(
        learner,
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        config=training.config,
        stage=stage,
        log_dir=training.log_dir,
    )
    return SchemeResult(student=student, history=history)


@dataclasses.dataclass(frozen=True)
class MutualOptions(SchemeOptions):
    peer_width: float | None = option(
        None, "Width of the peer built from `peer_preset`; unset: a fresh copy of the student.", check=positive, expected="> 0"
    )
    peer_preset: str = option("cnn", "Model preset of the peer when `peer_width` is set (cnn, dscnn, mlp).")


@register_scheme("mutual", MutualOptions)
def run_mutual(teacher, student, data, options: MutualOptions, training: TrainingArguments) -> SchemeResult:
    """Deep mutual learning with one peer, at the temperature of the training's logits loss; no teacher is used."""
    peers = None
    if options.peer_width is not None:
        peers = [build_like_student(student, options.peer_preset, data, width=options.peer_width, name="peer1")]
    return mutual_distill(student, data, peers=peers, temperature=training.logits_temperature(), training=training)


__all__ = ["MutualLearner", "mutual_distill", "MutualOptions", "run_mutual"]
