"""Keras -> TFLite flatbuffer bytes: full-integer int8, or float32 for comparison."""

from __future__ import annotations

import numpy as np

from edgedistill.errors import InputError, StageError

QUANTIZATIONS = ("int8", "float32")
IO_TYPES = ("int8", "float32")


def representative_dataset(x: np.ndarray, *, num_samples: int = 200, seed: int = 0):
    """A generator function over ``num_samples`` training images, for calibration."""
    rng = np.random.default_rng(seed)
    index = rng.choice(len(x), size=min(num_samples, len(x)), replace=False)
    samples = np.asarray(x[index], dtype=np.float32)

    def generate():
        for sample in samples:
            yield [sample[None, ...]]

    return generate


def convert_keras_model(
    model,
    *,
    quantization: str = "int8",
    io_type: str = "int8",
    representative_data: np.ndarray | None = None,
    num_calibration_samples: int = 200,
) -> bytes:
    """Convert a tf_keras model to a TFLite flatbuffer.

    Args:
        quantization: ``int8`` (full-integer: int8 weights and activations, only int8 builtin
            ops) or ``float32``.
        io_type: element type of the model's input and output for ``int8`` models:
            ``int8`` (default, what microcontrollers want) or ``float32``.
        representative_data: training images used to calibrate activation ranges; needed
            for ``int8`` (a QAT model carries its ranges, but the input's still need it).

    Returns:
        The flatbuffer bytes.
    """
    from edgedistill._keras import keras, tf

    if quantization not in QUANTIZATIONS:
        raise InputError(f"Unknown quantization {quantization!r}. Expected one of: {', '.join(QUANTIZATIONS)}.")
    if io_type not in IO_TYPES:
        raise InputError(f"Unknown io_type {io_type!r}. Expected one of: {', '.join(IO_TYPES)}.")
    if not isinstance(model, keras.Model):
        raise InputError(f"Conversion needs a tf_keras model; received {type(model).__name__}.")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "int8":
        if representative_data is None or len(representative_data) == 0:
            raise InputError("int8 conversion needs representative data (training images) to calibrate ranges.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(representative_data, num_samples=num_calibration_samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        return bytes(converter.convert())
    except Exception as error:  # the converter raises many types; all mean "this model does not convert"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StageError(f"TFLite conversion ({quantization}) of {model.name!r} failed: {first_line[:300]}") from None


__all__ = ["convert_keras_model", "representative_dataset", "QUANTIZATIONS", "IO_TYPES"]
