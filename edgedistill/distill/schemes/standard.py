"""The ``standard`` scheme: one frozen teacher with cached outputs (Hinton et al. 2015)."""

from __future__ import annotations

import dataclasses
import logging

from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.schemes.base import SchemeOptions, register_scheme

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StandardOptions(SchemeOptions):
    """The standard scheme has no options: the losses and their weights are the training's."""


@register_scheme("standard", StandardOptions, augments=True, standard_step=True)
def run_standard(teacher, student, data, options: StandardOptions, training: TrainingArguments) -> SchemeResult:
    """One frozen teacher, its outputs computed once (:func:`edgedistill.distill.distill`)."""
    from edgedistill.distill.distiller import distill

    student, history = distill(teacher, student, data, **training.distill_options(), **training.augment_options())
    return SchemeResult(student=student, history=history)


__all__ = ["StandardOptions", "run_standard"]
