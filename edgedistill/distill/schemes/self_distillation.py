"""The ``self`` scheme: the student's own earlier self teaches it (EMA or born-again)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from edgedistill._keras import keras
from edgedistill.config import between
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.distiller import Distiller
from edgedistill.distill.schemes.base import SchemeOptions, compile_learner, option, register_scheme

logger = logging.getLogger(__name__)

SELF_MODES = ("ema", "born_again")


@dataclasses.dataclass(frozen=True)
class SelfOptions(SchemeOptions):
    mode: str = option(
        "ema", "ema: an EMA copy of the student teaches it; born_again: each generation teaches the next.", choices=SELF_MODES
    )
    ema_decay: float = option(
        0.99,
        "EMA decay d of mode=ema, in (0, 1): teacher <- d teacher + (1 - d) student.",
        check=between(0, 1, closed=False),
        expected="in (0, 1) (typical: 0.99 to 0.999)",
    )
    generations: int = option(
        2,
        "Distilled generations of mode=born_again (after generation 0 on labels).",
        check=lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        expected="an integer >= 1",
    )


class EMADistiller(Distiller):
    """Self-distillation from an exponential moving average of the student (Mean Teacher:
    Tarvainen & Valpola 2017; as self-distillation e.g. Caron et al. 2021).

    After every step ``theta_t <- d * theta_t + (1 - d) * theta_s`` (all weights, batch-norm
    statistics included); the EMA teacher runs on every batch.
    """

    def __init__(self, student: keras.Model, *, ema_decay: float = SelfOptions.ema_decay, **kwargs) -> None:
        SelfOptions(ema_decay=ema_decay)  # the option's own check
        teacher = keras.models.clone_model(student)
        teacher.set_weights(student.get_weights())
        super().__init__(teacher, student, **kwargs)
        self.ema_decay = float(ema_decay)

    def _after_train_step(self) -> None:
        super()._after_train_step()
        for teacher_weight, student_weight in zip(self.teacher.weights, self.student.weights):
            teacher_weight.assign(self.ema_decay * teacher_weight + (1.0 - self.ema_decay) * student_weight)


def _ema_distill(student, data, *, ema_decay: float, training: TrainingArguments, stage: str) -> SchemeResult:
    from edgedistill.training import fit, set_seed

    set_seed(training.config.seed)
    distiller = EMADistiller(
        student,
        ema_decay=ema_decay,
        distillation_losses=training.distillation_losses,
        student_loss_weight=training.student_loss_weight,
    )
    compile_learner(distiller, training)
    history = fit(
        distiller,
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        config=training.config,
        stage=stage,
        log_dir=training.log_dir,
    )
    return SchemeResult(student=distiller.student, history=history)


def _born_again(student, data, *, generations: int, build_student, training: TrainingArguments, stage: str) -> SchemeResult:
    from edgedistill.distill.distiller import distill
    from edgedistill.training import compile_classifier, fit, set_seed

    build_student = build_student or (lambda: keras.models.clone_model(student))
    # Generation 0 learns from the labels alone, with the training's student loss.
    set_seed(training.config.seed)
    if training.student_loss is None:
        compile_classifier(student, training.config.learning_rate)
    else:
        compile_learner(student, training)
    history = fit(
        student,
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        config=training.config,
        stage=f"{stage}_generation0",
        log_dir=training.log_dir,
    )
    previous = student
    options = {**training.distill_options(), "teacher_outputs": None}
    for generation in range(1, generations + 1):
        logger.info("%s: born-again generation %d of %d", stage, generation, generations)
        previous, history = distill(previous, build_student(), data, stage=f"{stage}_generation{generation}", **options)
    return SchemeResult(student=previous, history=history, report={"generations": generations})


def self_distill(
    student: keras.Model,
    data,
    *,
    mode: str = SelfOptions.mode,
    ema_decay: float = SelfOptions.ema_decay,
    generations: int = SelfOptions.generations,
    build_student: Callable[[], keras.Model] | None = None,
    training: TrainingArguments | None = None,
    stage: str = "distill",
) -> SchemeResult:
    """Self-distillation: the student's own earlier self teaches it (no pretrained teacher).

    - ``mode="ema"``: an EMA copy of the student is the teacher (see :class:`EMADistiller`);
    - ``mode="born_again"`` (Furlanello et al. 2018, "Born-Again Neural Networks"):
      generation 0 is trained on labels; generation ``k`` is a fresh student of the same
      architecture (``build_student``, default a clone) distilled from generation ``k-1``;
      ``generations`` distilled generations.
    """
    training = training or TrainingArguments()
    SelfOptions(mode=mode, ema_decay=ema_decay, generations=generations)  # the options' own checks
    if mode == "ema":
        return _ema_distill(student, data, ema_decay=ema_decay, training=training, stage=stage)
    return _born_again(student, data, generations=generations, build_student=build_student, training=training, stage=stage)


@register_scheme("self", SelfOptions)
def run_self(teacher, student, data, options: SelfOptions, training: TrainingArguments) -> SchemeResult:
    """Self-distillation (EMA teacher or born-again generations); the pipeline's teacher is not used."""
    return self_distill(
        student, data, mode=options.mode, ema_decay=options.ema_decay, generations=options.generations, training=training
    )


__all__ = ["EMADistiller", "self_distill", "SelfOptions", "run_self", "SELF_MODES"]
