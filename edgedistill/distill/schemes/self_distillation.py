"""The ``self`` scheme: the student's own earlier self teaches it (EMA or born-again)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from edgedistill._keras import keras
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.distiller import Distiller
from edgedistill.distill.schemes.base import compile_learner, option, register_scheme
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)

SELF_MODES = ("ema", "born_again")


class EMADistiller(Distiller):
    """Self-distillation from an exponential moving average of the student (Mean Teacher:
    Tarvainen & Valpola 2017; as self-distillation e.g. Caron et al. 2021).

    After every step ``theta_t <- d * theta_t + (1 - d) * theta_s`` (all weights, batch-norm
    statistics included); the EMA teacher runs on every batch.
    """

    def __init__(self, student: keras.Model, *, ema_decay: float = 0.99, **kwargs) -> None:
        if not 0.0 < ema_decay < 1.0:
            raise InputError(f"`ema_decay` must be in (0, 1). Received: ema_decay={ema_decay}. Typical: 0.99 to 0.999.")
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
        student, data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
        config=training.config, stage=f"{stage}_generation0", log_dir=training.log_dir,
    )  # fmt: skip
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
    mode: str = "ema",
    ema_decay: float = 0.99,
    generations: int = 2,
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
    if mode == "ema":
        return _ema_distill(student, data, ema_decay=ema_decay, training=training, stage=stage)
    if mode == "born_again":
        if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
            raise InputError(f"`generations` must be an integer >= 1. Received: generations={generations!r}.")
        return _born_again(student, data, generations=generations, build_student=build_student, training=training, stage=stage)
    raise InputError(f"Unknown self-distillation mode {mode!r}. Expected one of: {', '.join(SELF_MODES)}.")


@dataclasses.dataclass(frozen=True)
class SelfOptions:
    mode: str = option("ema", "ema: an EMA copy of the student teaches it; born_again: each generation teaches the next.")
    ema_decay: float = option(0.99, "EMA decay d of mode=ema, in (0, 1): teacher <- d teacher + (1 - d) student.")
    generations: int = option(2, "Distilled generations of mode=born_again (after generation 0 on labels).")

    def __post_init__(self) -> None:
        if self.mode not in SELF_MODES:
            raise InputError(f"Unknown self-distillation mode {self.mode!r}. Expected one of: {', '.join(SELF_MODES)}.")
        if not 0.0 < self.ema_decay < 1.0:
            raise InputError(f"`ema_decay` must be in (0, 1). Received: ema_decay={self.ema_decay}. Typical: 0.99 to 0.999.")
        if self.generations < 1:
            raise InputError(f"`generations` must be an integer >= 1. Received: generations={self.generations!r}.")


@register_scheme("self", SelfOptions)
def run_self(teacher, student, data, options: SelfOptions, training: TrainingArguments) -> SchemeResult:
    """Self-distillation (EMA teacher or born-again generations); the pipeline's teacher is not used."""
    return self_distill(
        student, data, mode=options.mode, ema_decay=options.ema_decay, generations=options.generations, training=training
    )


__all__ = ["EMADistiller", "self_distill", "SelfOptions", "run_self", "SELF_MODES"]
