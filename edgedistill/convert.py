"""Keras -> TFLite flatbuffer bytes: full-integer int8, or float32 for comparison."""

from __future__ import annotations

import logging

import numpy as np

from edgedistill.errors import InputError, StageError

logger = logging.getLogger(__name__)

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
    input_range: tuple[float, float] | None = None,
) -> bytes:
    """Convert a tf_keras model to a TFLite flatbuffer.

    Args:
        quantization: ``int8`` (full-integer: int8 weights and activations, only int8 builtin
            ops) or ``float32``.
        io_type: element type of the model's input and output for ``int8`` models:
            ``int8`` (default, what microcontrollers want) or ``float32``.
        representative_data: training images used to calibrate activation ranges; needed
            for ``int8`` (a QAT model carries its ranges, but the input's still need it).
        input_range: the raw range the int8 input covers exactly, instead of the calibrated one:
            ``(0, 255)`` for byte data makes ``int8 input = byte - 128`` (scale 1, zero point -128),
            so firmware feeds sensor bytes directly.

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
        if quantization == "int8" and input_range is not None:
            return _convert_with_input_range(converter, model, input_range, io_type)
        return bytes(converter.convert())
    except Exception as error:  # the converter raises many types; all mean "this model does not convert"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StageError(f"TFLite conversion ({quantization}) of {model.name!r} failed: {first_line[:300]}") from None


def _convert_with_input_range(converter, model, input_range: tuple[float, float], io_type: str) -> bytes:
    """int8 conversion whose input covers ``input_range`` exactly.

    A QAT model's input quantizer is set to the range. A float model is calibrated, the input's
    calibrated range replaced by ``input_range``, then quantized: the converter's own steps
    (``_experimental_calibrate_only`` and ``mlir_quantize``), as ``convert()`` runs them.
    """
    from edgedistill._keras import tf
    from edgedistill.preprocessing import set_quantized_input_range

    if set_quantized_input_range(model, input_range):
        return _checked(bytes(converter.convert()), input_range, model.name)
    from tensorflow.lite.python.convert import mlir_quantize
    from tensorflow.lite.tools import flatbuffer_utils

    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    flatbuffer = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    subgraph = flatbuffer.subgraphs[0]
    tensor = subgraph.tensors[subgraph.inputs[0]]
    tensor.quantization.min, tensor.quantization.max = [float(input_range[0])], [float(input_range[1])]
    patched = bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer))
    io = tf.int8 if io_type == "int8" else tf.float32
    return _checked(bytes(mlir_quantize(patched, input_data_type=io, output_data_type=io)), input_range, model.name)


def _checked(content: bytes, input_range: tuple[float, float], name: str) -> bytes:
    """Warn when the int8 input does not map ``input_range`` one to one (e.g. data-free inputs widened it)."""
    from edgedistill.preprocessing import input_quantization_for
    from edgedistill.tflite_model import read_model_info

    quantization = read_model_info(content).inputs[0].quantization
    scale, zero_point = input_quantization_for(input_range)
    if quantization and (abs(quantization["scale"] - scale) > 1e-6 * scale or quantization["zero_point"] != zero_point):
        logger.warning(
            "%s: the int8 input has scale %g and zero point %d, not %g and %d: raw values are not fed one to one.",
            name,
            quantization["scale"],
            quantization["zero_point"],
            scale,
            zero_point,
        )
    return content


__all__ = ["convert_keras_model", "representative_dataset", "QUANTIZATIONS", "IO_TYPES"]
