"""Magnitude pruning during distillation, kept through QAT and int8 export.

Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune") through tfmot:
``prune_low_magnitude`` with a polynomial schedule that raises the sparsity of every
kernel from 0 to ``sparsity`` over the first 75 % of the distillation steps,
``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n dt))^3``, then holds it while the student
recovers. The wrappers are stripped afterwards (plain layers with zeros in their kernels);
QAT then re-applies each kernel's zero mask after every step so the zeros survive into the
int8 model. Sparsity does not shrink a dense TFLite flatbuffer by itself; it pays off with
compression (zip: the zeros compress) and sparse kernels.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from edgedistill._keras import import_tfmot, keras
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.errors import InputError, StageError

logger = logging.getLogger(__name__)


def _check_sparsity(sparsity: float) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 < sparsity < 1.0:
        raise InputError(f"`prune_sparsity` must be in (0, 1). Received: prune_sparsity={sparsity!r}. Typical: 0.5 to 0.8.")
    return float(sparsity)


def prune_model(model: keras.Model, *, sparsity: float, end_step: int, begin_step: int = 0, frequency: int = 10) -> keras.Model:
    """Wrap ``model``'s prunable layers with ``tfmot.sparsity.keras.prune_low_magnitude`` (gradual schedule)."""
    tfmot = import_tfmot()
    sparsity = _check_sparsity(sparsity)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=begin_step,
        end_step=max(begin_step + 1, end_step),
        frequency=frequency,
    )
    try:
        return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    except (ValueError, RuntimeError) as error:
        raise StageError(f"tfmot cannot prune model {model.name!r}: {str(error).splitlines()[0]}") from None


def strip_pruning(model: keras.Model) -> keras.Model:
    """Remove the pruning wrappers (the zeros stay in the kernels)."""
    return import_tfmot().sparsity.keras.strip_pruning(model)


def is_pruned(model) -> bool:
    """True when ``model`` holds tfmot pruning wrappers."""
    return any(type(layer).__name__ == "PruneLowMagnitude" for layer in getattr(model, "layers", []))


def model_sparsity(model: keras.Model) -> float:
    """Fraction of exact zeros among the kernels (conv, depthwise, dense) of ``model``."""
    zeros = total = 0
    for variable in model.weights:
        name = variable.name
        # QAT wrappers add per-tensor ranges (kernel_min / kernel_max): not weights.
        if "kernel" in name and not any(part in name for part in ("quantize", "optimizer", "_min", "_max")):
            values = np.asarray(variable.numpy())
            zeros += int(np.sum(values == 0))
            total += values.size
    return zeros / total if total else 0.0


def tflite_weight_sparsity(tflite_bytes: bytes) -> float:
    """Fraction of exact zeros among the int8 weight tensors (constant, rank >= 2) of a TFLite model."""
    from edgedistill.tflite_model import litert_interpreter_class, read_model_info

    info = read_model_info(tflite_bytes)
    interpreter = litert_interpreter_class()(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    zeros = total = 0
    for tensor in info.tensors:
        if tensor.is_constant and tensor.dtype == "int8" and len(tensor.shape) >= 2:
            values = interpreter.get_tensor(tensor.index)
            zeros += int(np.sum(values == 0))
            total += values.size
    return zeros / total if total else 0.0


def quantize_distill_pruned(
    teacher, pruned_student: keras.Model, data, *, training: TrainingArguments | None = None
) -> SchemeResult:
    """QAT of a pruned (stripped) student that keeps its zeros; ``report["sparsity"]`` is measured after QAT.

    tfmot's own prune-preserving scheme (``Default8BitPrunePreserveQuantizeScheme``) lost
    the sparsity of a Dense layer followed by ReLU here (0.50 -> 0.18 after one epoch), so the
    standard ``quantize_model`` is used with the Distiller's ``preserve_sparsity`` masks.
    """
    from edgedistill.distill.qat import quantize_distill

    result = quantize_distill(teacher, pruned_student, data, training=training, preserve_sparsity=True)
    result.report["sparsity"] = model_sparsity(result.student)
    return result


def prune_distill(
    teacher,
    student: keras.Model,
    data,
    *,
    sparsity: float,
    training: TrainingArguments | None = None,
    distillation_loss_weights=None,
    stage: str = "distill",
) -> SchemeResult:
    """Distill ``student`` while pruning it to ``sparsity``; returns the stripped student.

    Early stopping is turned off for this stage: restoring an early epoch's weights would
    also restore its lower sparsity. ``report["sparsity"]`` holds the measured result.
    """
    from edgedistill.distill.distiller import distill

    sparsity = _check_sparsity(sparsity)
    training = training or TrainingArguments()
    config = dataclasses.replace(training.config, patience=0)
    steps = math.ceil(len(data.x_train) / config.batch_size) * config.epochs
    pruned = prune_model(student, sparsity=sparsity, end_step=int(steps * 0.75), frequency=max(1, min(10, steps // 20)))
    logger.info("%s: distilling %s while pruning it to %.0f %% sparsity", stage, student.name, sparsity * 100)
    options = {**training.distill_options(), **training.augment_options(), "config": config}
    pruned, history = distill(teacher, pruned, data, distillation_loss_weights=distillation_loss_weights, stage=stage, **options)
    stripped = strip_pruning(pruned)
    measured = model_sparsity(stripped)
    logger.info("%s: measured kernel sparsity %.3f", stage, measured)
    return SchemeResult(student=stripped, history=history, report={"sparsity": measured})


__all__ = [
    "prune_model",
    "strip_pruning",
    "is_pruned",
    "model_sparsity",
    "quantize_distill_pruned",
    "tflite_weight_sparsity",
    "prune_distill",
]
