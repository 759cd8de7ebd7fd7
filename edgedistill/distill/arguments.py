"""What every distillation entry point takes from its stage, and what it gives back.

:class:`TrainingArguments` is the same for every scheme, for pruning and for QAT, so a stage
calls them uniformly; :class:`SchemeResult` carries the trained student, its Keras history,
the scheme's own figures for ``report.json`` and, for the data-free scheme, the synthetic data
the later stages (QAT, int8 calibration) must use instead of the real data.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgedistill.distill.losses import DistillationLoss, LogitsDistillation, TemperatureLoss, get_loss

if TYPE_CHECKING:  # pragma: no cover
    from edgedistill._keras import keras
    from edgedistill.data import Dataset
    from edgedistill.training import TrainConfig


def _default_train_config() -> "TrainConfig":
    from edgedistill.training import TrainConfig

    return TrainConfig()


@dataclasses.dataclass(frozen=True)
class TrainingArguments:
    """How a distillation stage trains; the same for every scheme, pruning and QAT.

    ``distillation_losses`` are :class:`DistillationLoss` objects (or what
    :func:`~edgedistill.distill.losses.get_loss` accepts: they are resolved here).
    ``student_loss`` is the hard-label loss, anything ``keras.losses.get`` accepts; ``None`` is
    ``SparseCategoricalCrossentropy(from_logits=True)``. ``teacher_outputs`` holds the teacher's
    cached logits per split (``{"train": ..., "val": ...}``); ``None`` computes them once.
    """

    distillation_losses: list = dataclasses.field(default_factory=lambda: [LogitsDistillation()])
    student_loss_weight: float = 0.5
    config: "TrainConfig" = dataclasses.field(default_factory=_default_train_config)
    teacher_outputs: dict | None = None
    log_dir: Path | None = None
    student_loss: Any = None
    # Augmentation (edgedistill.augment.Augmentation) and how the teacher sees it: 0 = on every
    # augmented batch, N = cached outputs on N fixed views. Used by the schemes whose teacher is
    # the one model distilled from (standard, teacher_assistant), pruning and QAT.
    augmentation: Any = None
    augment_views: int = 0

    def __post_init__(self) -> None:
        losses = self.distillation_losses
        if isinstance(losses, (DistillationLoss, str, dict)):
            losses = [losses]
        object.__setattr__(self, "distillation_losses", [get_loss(loss) for loss in losses])

    def distill_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`edgedistill.distill.distill` these arguments stand for."""
        return {
            "distillation_losses": self.distillation_losses,
            "student_loss_weight": self.student_loss_weight,
            "config": self.config,
            "teacher_outputs": self.teacher_outputs,
            "log_dir": self.log_dir,
            "student_loss": self.student_loss,
        }

    def augment_options(self) -> dict[str, Any]:
        """The augmentation keywords of :func:`edgedistill.distill.distill` (kept apart from
        :meth:`distill_options`: schemes whose cached outputs are not the teacher's must not augment)."""
        return {"augmentation": self.augmentation, "augment_views": self.augment_views}

    def logits_temperature(self, default: float = 1.0) -> float:
        """The temperature of the first logit loss (:class:`TemperatureLoss`: ``logits``, ``dkd``, ``dist``, ...)
        among the losses (``default`` without one)."""
        for loss in self.distillation_losses:
            if isinstance(loss, TemperatureLoss):
                return loss.temperature
        return default


@dataclasses.dataclass
class SchemeResult:
    """What a scheme (or pruning, or QAT) returns.

    ``history`` is Keras' training history (per-epoch floats) of the last training run;
    ``report`` the scheme's own figures for ``report.json`` (plain JSON values, e.g.
    ``{"synthesis": {...}}`` or ``{"chain": [...]}``). ``quantization_data`` /
    ``quantization_teacher_outputs`` are set by schemes that must not let real data reach
    later stages (data-free): QAT and int8 calibration use them instead. Cached teacher outputs
    that are not the main teacher's own (an ensemble's) are set alone: QAT then trains on them
    without augmentation, as the scheme did.
    """

    student: "keras.Model"
    history: dict[str, list[float]]
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    quantization_data: "Dataset | None" = None
    quantization_teacher_outputs: dict | None = None


__all__ = ["TrainingArguments", "SchemeResult"]
