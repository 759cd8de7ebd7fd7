"""Knowledge distillation on tf_keras: losses, the Distiller, and the distill stage."""

from __future__ import annotations

from pathlib import Path

from edgedistill.distill.losses import (
    LOSSES,
    AttentionTransfer,
    DistillationLoss,
    FeatureDistillation,
    LogitsDistillation,
    RelationalDistillation,
    get_loss,
    register_loss,
)


def distill(
    teacher,
    student,
    data,
    *,
    distillation_losses=None,
    distillation_loss_weights=None,
    student_loss_weight: float = 0.5,
    config=None,
    teacher_outputs: dict | None = None,
    stage: str = "distill",
    log_dir: str | Path | None = None,
    preserve_sparsity: bool = False,
):
    """Train ``student`` against a frozen ``teacher`` on ``data``; return ``(student, history)``.

    ``teacher_outputs`` may hold the teacher's cached logits per split
    (``{"train": ..., "val": ...}``); they are computed here when absent, once.
    ``preserve_sparsity`` keeps a pruned student's zero weights at zero (QAT after pruning).
    """
    from edgedistill.distill.distiller import Distiller, teacher_targets
    from edgedistill.training import TrainConfig, fit, set_seed
    from edgedistill._keras import keras

    config = config or TrainConfig()
    set_seed(config.seed)
    distiller = Distiller(
        teacher,
        student,
        distillation_losses=distillation_losses,
        distillation_loss_weights=distillation_loss_weights,
        student_loss_weight=student_loss_weight,
        preserve_sparsity=preserve_sparsity,
    )
    distiller.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    cached = teacher_outputs or {}
    train_targets = teacher_targets(teacher, data.x_train, data.y_train, teacher_outputs=cached.get("train"))
    val_targets = teacher_targets(teacher, data.x_val, data.y_val, teacher_outputs=cached.get("val"))
    history = fit(
        distiller,
        data.x_train,
        train_targets,
        validation_data=(data.x_val, val_targets),
        config=config,
        stage=stage,
        log_dir=log_dir,
    )
    return distiller.student, history


def __getattr__(name: str):
    # The Distiller subclasses tf_keras.Model, so importing it imports TensorFlow: do it on demand.
    if name in ("Distiller", "teacher_targets"):
        from edgedistill.distill import distiller

        return getattr(distiller, name)
    raise AttributeError(name)


__all__ = [
    "Distiller",
    "DistillationLoss",
    "LogitsDistillation",
    "FeatureDistillation",
    "AttentionTransfer",
    "RelationalDistillation",
    "LOSSES",
    "distill",
    "get_loss",
    "register_loss",
    "teacher_targets",
]
