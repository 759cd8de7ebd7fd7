"""Knowledge distillation on tf_keras: losses, the Distiller, schemes, pruning and QAT with the teacher.

Everything a distillation stage calls takes the same :class:`TrainingArguments` and returns a
:class:`SchemeResult`::

    from edgedistill.distill import LogitsDistillation, TrainingArguments, quantize_distill, run_scheme

    training = TrainingArguments(distillation_losses=[LogitsDistillation(4.0)], student_loss_weight=0.5)
    result = run_scheme("standard", teacher, student, data, options="", training=training)
    qat = quantize_distill(teacher, result.student, result.quantization_data or data, training=training)

Importing this package does not import TensorFlow: the names that need it (the Distiller,
the schemes, pruning, QAT) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.losses import (
    LOSSES,
    AttentionTransfer,
    DecoupledKD,
    DISTDistillation,
    DistillationLoss,
    FeatureDistillation,
    LogitsDistillation,
    LogitStandardization,
    RelationalDistillation,
    get_loss,
    register_loss,
)

if TYPE_CHECKING:  # what editors and type checkers see: the same names from the same modules as _LAZY
    from edgedistill.distill.calibration import calibrate_logits as calibrate_logits
    from edgedistill.distill.distiller import Distiller as Distiller
    from edgedistill.distill.distiller import distill as distill
    from edgedistill.distill.distiller import teacher_targets as teacher_targets
    from edgedistill.distill.pruning import prune_distill as prune_distill
    from edgedistill.distill.pruning import quantize_distill_pruned as quantize_distill_pruned
    from edgedistill.distill.qat import quantize_distill as quantize_distill
    from edgedistill.distill.schemes import SCHEMES as SCHEMES
    from edgedistill.distill.schemes import Scheme as Scheme
    from edgedistill.distill.schemes import parse_scheme_options as parse_scheme_options
    from edgedistill.distill.schemes import register_scheme as register_scheme
    from edgedistill.distill.schemes import run_scheme as run_scheme

# Public names whose modules import TensorFlow: name -> module, imported on first access.
_LAZY = {
    "Distiller": "edgedistill.distill.distiller",
    "distill": "edgedistill.distill.distiller",
    "teacher_targets": "edgedistill.distill.distiller",
    "quantize_distill": "edgedistill.distill.qat",
    "prune_distill": "edgedistill.distill.pruning",
    "quantize_distill_pruned": "edgedistill.distill.pruning",
    "SCHEMES": "edgedistill.distill.schemes",
    "Scheme": "edgedistill.distill.schemes",
    "run_scheme": "edgedistill.distill.schemes",
    "parse_scheme_options": "edgedistill.distill.schemes",
    "register_scheme": "edgedistill.distill.schemes",
    "calibrate_logits": "edgedistill.distill.calibration",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "TrainingArguments",
    "SchemeResult",
    "DistillationLoss",
    "LogitsDistillation",
    "LogitStandardization",
    "DecoupledKD",
    "DISTDistillation",
    "FeatureDistillation",
    "AttentionTransfer",
    "RelationalDistillation",
    "LOSSES",
    "get_loss",
    "register_loss",
    *_LAZY,
]
