"""Quantization-aware distillation: QAT with the teacher still guiding.

:func:`edgedistill.quantize.quantize_model` wraps the float student in fake-quant ops (int8
weights per channel, int8 activations); the same distillation losses then continue on it: the
float teacher pulls the fake-quant student, so the student learns weights that survive int8
rounding (the "quantization-aware knowledge distillation" of Mishra & Marr 2018, "Apprentice",
and Kim et al. 2019, "QKD").
"""

from __future__ import annotations

import logging

from edgedistill.distill.arguments import SchemeResult, TrainingArguments

logger = logging.getLogger(__name__)


def quantize_distill(
    teacher,
    float_student,
    data,
    *,
    training: TrainingArguments | None = None,
    preserve_sparsity: bool = False,
    stage: str = "qat",
) -> SchemeResult:
    """QAT of ``float_student`` with ``training``'s distillation losses; returns the fake-quant student.

    ``data`` is what QAT trains on: the scheme's ``quantization_data`` when it has one (data-free),
    else the real data; ``training.teacher_outputs`` must belong to that data.
    ``preserve_sparsity`` re-applies each kernel's zero mask after every step (a pruned student).
    """
    from edgedistill.distill.distiller import distill
    from edgedistill.quantize import quantize_model

    from edgedistill.preprocessing import BYTE_RANGE

    training = training or TrainingArguments()
    # Byte data: the input quantizer covers 0..255 from the start, as the int8 model will (byte - 128).
    qat_student = quantize_model(float_student, input_range=BYTE_RANGE if getattr(data, "raw_bytes", False) else None)
    logger.info("%s: quantization-aware distillation of %s (%d epochs)", stage, float_student.name, training.config.epochs)
    student, history = distill(
        teacher,
        qat_student,
        data,
        stage=stage,
        preserve_sparsity=preserve_sparsity,
        **training.distill_options(),
        **training.augment_options(),
    )
    return SchemeResult(student=student, history=history)


__all__ = ["quantize_distill"]
