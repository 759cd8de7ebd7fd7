"""Quantization-aware training (QAT) through tfmot, with the teacher still guiding.

``quantize_model`` wraps the float student in fake-quant ops (int8 weights per channel,
int8 activations), then the same distillation loss continues: the float teacher pulls the
fake-quant student, so the student learns weights that survive int8 rounding.
"""

from __future__ import annotations

import re

from edgedistill._keras import import_tfmot, keras
from edgedistill.errors import InputError, StageError

_UNSUPPORTED = re.compile(r"Layer (?P<name>[^:]+):<class '(?P<type>[^']+)'> is not supported")


def quantize_model(model: keras.Model) -> keras.Model:
    """Wrap a float tf_keras model for QAT (``tfmot.quantization.keras.quantize_model``).

    A layer tfmot cannot quantize raises :class:`StageError` naming the layer and its type.
    """
    tfmot = import_tfmot()
    if not isinstance(model, keras.Model):
        raise InputError(
            f"QAT needs a tf_keras model; received {type(model).__module__}.{type(model).__name__}. "
            "Build the student with tf_keras (Keras 2) or from a preset."
        )
    try:
        return tfmot.quantization.keras.quantize_model(model)
    except RuntimeError as error:
        match = _UNSUPPORTED.search(str(error))
        if not match:
            raise
        layer_type = match.group("type").rsplit(".", 1)[-1]
        raise StageError(
            f"tfmot cannot quantize layer {match.group('name')!r} of type {layer_type}. "
            "Replace it with a supported layer (Conv2D, DepthwiseConv2D, Dense, BatchNormalization, ReLU, pooling, "
            "Reshape/Flatten) or annotate it with a tfmot QuantizeConfig."
        ) from None
    except ValueError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StageError(f"tfmot cannot quantize model {model.name!r}: {message}") from None


def quantize_distill(teacher, float_student: keras.Model, data, *, config=None, teacher_outputs=None, log_dir=None, **distill_options):
    """QAT of ``float_student`` with the same distillation loss; returns ``(qat_student, history)``."""
    from edgedistill.distill import distill

    qat_student = quantize_model(float_student)
    return distill(
        teacher,
        qat_student,
        data,
        config=config,
        teacher_outputs=teacher_outputs,
        stage="qat",
        log_dir=log_dir,
        **distill_options,
    )


__all__ = ["quantize_model", "quantize_distill"]
