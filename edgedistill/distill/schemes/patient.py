"""The ``patient`` scheme: patient and consistent function matching with mixup (Beyer et al. 2022)."""

from __future__ import annotations

import dataclasses
import logging

from edgedistill._keras import keras, tf
from edgedistill.config import at_least, between
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.distiller import Distiller, teacher_targets
from edgedistill.distill.losses import LogitsDistillation
from edgedistill.distill.schemes.base import SchemeOptions, compile_learner, option, register_scheme
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)


def _beta(alpha: float, shape):
    first = tf.random.gamma(shape, alpha)
    second = tf.random.gamma(shape, alpha)
    return first / (first + second)


@dataclasses.dataclass(frozen=True)
class PatientOptions(SchemeOptions):
    mixup_alpha: float = option(
        1.0, "Mixup Beta(alpha, alpha) parameter; 0 disables mixup.", check=at_least(0), expected=">= 0 (0 disables mixup)"
    )
    translation: float = option(
        0.1,
        "Random translation, as a fraction of height and width; 0 disables it.",
        check=lambda value: between(0, 1)(value) and value < 1,
        expected="in [0, 1)",
    )


class ConsistentDistiller(Distiller):
    """ "Knowledge distillation: a good teacher is patient and consistent" (Beyer et al. 2022).

    Every step the *same* augmented batch goes to teacher and student (the teacher runs per
    batch; nothing is cached): random translation, then mixup
    ``x = lambda x_i + (1 - lambda) x_j`` with ``lambda ~ Beta(alpha, alpha)`` per sample.
    The paper's "function matching" uses only the KL term (``student_loss_weight=0``, the
    default of :func:`patient_distill`); with a label term the mixed labels' student loss
    ``lambda L(y_i) + (1 - lambda) L(y_j)`` is used. Patience = long schedules: give many epochs.
    """

    def __init__(
        self,
        teacher,
        student,
        *,
        mixup_alpha: float = PatientOptions.mixup_alpha,
        translation: float = PatientOptions.translation,
        **kwargs,
    ) -> None:
        super().__init__(teacher, student, **kwargs)
        if self.teacher is None:
            raise InputError(
                "The patient-and-consistent scheme runs the teacher on every augmented batch; it needs a tf_keras teacher."
            )
        PatientOptions(mixup_alpha=mixup_alpha, translation=translation)  # the options' own checks
        self.mixup_alpha = float(mixup_alpha)
        self.augment = keras.Sequential(
            [keras.layers.RandomTranslation(translation, translation, fill_mode="constant")] if translation > 0 else [],
            name="augment",
        )

    def _mix(self, x):
        """The consistent batch: augmented, then mixed with a shuffled copy; returns ``(x, lambda, order)``."""
        x = self.augment(x, training=True) if self.augment.layers else x
        batch = tf.shape(x)[0]
        if self.mixup_alpha <= 0:
            return x, tf.ones([batch]), tf.range(batch)
        lam = _beta(self.mixup_alpha, [batch])
        order = tf.random.shuffle(tf.range(batch))
        lam_x = tf.reshape(lam, [-1] + [1] * (len(x.shape) - 1))
        return lam_x * x + (1.0 - lam_x) * tf.gather(x, order), lam, order

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels, _ = self._split_targets(y)
        x, lam, order = self._mix(x)
        with tf.GradientTape() as tape:
            student_outputs, student_features, teacher_outputs, teacher_features = self._forward(x, None, training=True)
            if teacher_outputs is None:
                teacher_outputs = tf.stop_gradient(self.teacher(x, training=False))
            _, _, distillation_loss = self._compute_losses(
                labels, student_outputs, teacher_outputs, student_features, teacher_features
            )

            def per_sample(target):
                return tf.cast(self.student_loss_fn(target, student_outputs), student_outputs.dtype)

            student_loss = tf.reduce_mean(lam * per_sample(labels) + (1.0 - lam) * per_sample(tf.gather(labels, order)))
            total = self.student_loss_weight * student_loss + (1.0 - self.student_loss_weight) * distillation_loss
            objective = total + (tf.add_n(self.student.losses) if self.student.losses else 0.0)
        variables = self.trainable_weights_to_update
        self.optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))
        return self._update(labels, student_outputs, total, student_loss, distillation_loss)


def patient_distill(
    teacher,
    student: keras.Model,
    data,
    *,
    mixup_alpha: float = PatientOptions.mixup_alpha,
    translation: float = PatientOptions.translation,
    training: TrainingArguments | None = None,
    stage: str = "distill",
) -> SchemeResult:
    """Patient and consistent distillation (see :class:`ConsistentDistiller`).

    Without ``training`` it is the paper's function matching: ``LogitsDistillation(1.0)`` and
    ``student_loss_weight=0``. The training accuracy it logs is measured on mixed inputs against
    the first image's label, so it is lower than the validation accuracy (clean images).
    """
    from edgedistill.training import fit, set_seed

    training = training or TrainingArguments(distillation_losses=[LogitsDistillation(1.0)], student_loss_weight=0.0)
    set_seed(training.config.seed)
    distiller = ConsistentDistiller(
        teacher,
        student,
        mixup_alpha=mixup_alpha,
        translation=translation,
        distillation_losses=training.distillation_losses,
        student_loss_weight=training.student_loss_weight,
    )
    compile_learner(distiller, training)
    val_targets = teacher_targets(teacher, data.x_val, data.y_val)
    history = fit(
        distiller,
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, val_targets),
        config=training.config,
        stage=stage,
        log_dir=training.log_dir,
    )
    return SchemeResult(student=distiller.student, history=history)


@register_scheme("patient", PatientOptions)
def run_patient(teacher, student, data, options: PatientOptions, training: TrainingArguments) -> SchemeResult:
    """Teacher and student see the same mixup/translated batch every step (the teacher runs per batch)."""
    return patient_distill(
        teacher, student, data, mixup_alpha=options.mixup_alpha, translation=options.translation, training=training
    )


__all__ = ["ConsistentDistiller", "patient_distill", "PatientOptions", "run_patient"]
