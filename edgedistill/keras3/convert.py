"""Keras 3 QAT model -> full-int8 TFLite flatbuffer, through TensorFlow's converter (no Flex ops).

Keras 3's own ``model.export(format="litert")`` enables ``SELECT_TF_OPS`` (Flex ops, which TFLite Micro cannot
run), so the model is traced as a ``tf.function`` on the TensorFlow backend and converted with
``TFLITE_BUILTINS_INT8`` only, int8 input and output. The converter reads every scale from the model's
fake-quant ops (no representative set): activations ``(max - min) / 255``, weights ``max|w| / 127`` per channel.

The result is checked: every op's tensors are integers (no float op), and there is no QUANTIZE or DEQUANTIZE
inside the model (a missing or mismatched range would put one there).
"""

from __future__ import annotations

import logging
from typing import Any

from edgedistill.errors import InputError, StageError
from edgedistill.keras3.backend import import_keras3

logger = logging.getLogger(__name__)

# Requantization ops the converter inserts where ranges are missing or differ; none may remain.
QUANTIZE_OPS = ("QUANTIZE", "DEQUANTIZE")
INTEGER_TYPES = ("int8", "int32", "int16", "int64", "bool")


def _concrete_function(model: Any) -> Any:
    """The model's inference function (``training=False``), batch dimension left open as tf_keras' converter does."""
    keras, tf = import_keras3()
    shape = [None, *[int(d) for d in model.inputs[0].shape[1:]]]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
    def serve(inputs):
        return model(inputs, training=False)

    return serve.get_concrete_function()


def float_ops(tflite_bytes: bytes) -> list[str]:
    """``"OP (tensor dtypes)"`` of every op that reads or writes a non-integer (float) tensor."""
    from edgedistill.tflite_model import operator_names, schema_module, tensor_type_names

    schema = schema_module()
    model = schema.Model.GetRootAs(tflite_bytes, 0)
    names = operator_names(model, schema)
    types = tensor_type_names()
    found = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for j in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(j)
            indices = [int(i) for i in (*operator.InputsAsNumpy(), *operator.OutputsAsNumpy()) if i >= 0]
            floats = sorted({types[subgraph.Tensors(i).Type()] for i in indices} - set(INTEGER_TYPES))
            if floats:
                found.append(f"{names[operator.OpcodeIndex()]} ({', '.join(floats)})")
    return found


def check_int8_model(tflite_bytes: bytes, *, source: str = "model") -> None:
    """Raise :class:`StageError` if the model has a float op or a QUANTIZE/DEQUANTIZE inside."""
    from edgedistill.tflite_model import read_model_info

    info = read_model_info(tflite_bytes, source=source)
    inner = [op for op in info.ops if op in QUANTIZE_OPS]
    floats = float_ops(tflite_bytes)
    if floats or inner:
        raise StageError(
            f"The int8 conversion of {source} is not full-integer: "
            + "; ".join(
                filter(
                    None,
                    [
                        f"float ops: {', '.join(floats[:5])}" if floats else "",
                        f"requantization ops inside: {', '.join(inner)}" if inner else "",
                    ],
                )
            )
            + ". A tensor had no trained range, or ranges that TFLite wants equal differ; report it with the model."
        )


def _zeros_dataset(model: Any):
    shape = [1, *[int(d) for d in model.inputs[0].shape[1:]]]

    def generate():
        import numpy as np

        yield [np.zeros(shape, dtype=np.float32)]

    return generate


def convert_qat_model(model: Any, *, check: bool = True) -> bytes:
    """Convert a Keras 3 QAT model (:func:`edgedistill.keras3.qat.quantize_model`) to full-int8 TFLite bytes.

    int8 input and output, ``TFLITE_BUILTINS_INT8`` ops only; ``check`` (default) refuses a result with a float
    op or an inner QUANTIZE/DEQUANTIZE (:func:`check_int8_model`).
    """
    keras, tf = import_keras3()
    if not isinstance(model, keras.Model):
        raise InputError(f"convert_qat_model needs a Keras 3 model; received {type(model).__name__}.")
    if not any(type(layer).__name__ == "ActivationQuantizer" for layer in model.layers):
        raise InputError(
            f"{model.name!r} has no fake-quant layers: it is a float model. Make it with "
            "edgedistill.keras3.qat.quantize_model (and train it) before converting to int8."
        )
    from edgedistill.keras3.layers import kernels_on_grid

    with kernels_on_grid(model):
        return _convert(model, check=check)


def _convert(model: Any, *, check: bool) -> bytes:
    keras, tf = import_keras3()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete_function(model)], model)
    # Frozen (variables -> constants) rather than lowered through a SavedModel, where the ranges stay variables
    # and the converter cannot fold FakeQuantWithMinMaxVars into quantization parameters.
    converter.experimental_lower_to_saved_model = False
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # TF 2.21's converter refuses full-int8 without a representative set even for a fake-quant model (its check
    # runs before it reads the graph, and its QAT test then fails on an attribute set too late). A set of zeros
    # satisfies it: every tensor's range comes from the fake-quant ops (tests/test_keras3_qat.py checks that the
    # scales are the trained ranges; zeros would give degenerate ones).
    converter.representative_dataset = _zeros_dataset(model)
    try:
        content = bytes(converter.convert())
    except Exception as error:  # the converter raises many types; all mean "this model does not convert"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        logger.debug("converter error: %s", error)
        raise StageError(f"TFLite int8 conversion of Keras 3 model {model.name!r} failed: {first_line[:300]}") from None
    if check:
        check_int8_model(content, source=f"Keras 3 model {model.name!r}")
    return content


def convert_float_model(
    model: Any,
    *,
    quantization: str = "float32",
    io_type: str = "int8",
    representative_data=None,
    num_calibration_samples: int = 200,
    input_range: tuple[float, float] | None = None,
) -> bytes:
    """A float Keras 3 model as a float32 flatbuffer, or int8 by post-training quantization (PTQ, calibrated on
    ``representative_data``; ``input_range`` fixes the input's range as for tf_keras models): the same options as
    :func:`edgedistill.convert.convert_keras_model`, with the converter built from the traced Keras 3 model."""
    from edgedistill.convert import IO_TYPES, QUANTIZATIONS, _convert_with_input_range, representative_dataset

    keras, tf = import_keras3()
    if quantization not in QUANTIZATIONS or io_type not in IO_TYPES:
        raise InputError(
            f"quantization must be one of {', '.join(QUANTIZATIONS)} and io_type one of {', '.join(IO_TYPES)}; "
            f"received {quantization!r}, {io_type!r}."
        )
    if not isinstance(model, keras.Model):
        raise InputError(f"convert_float_model needs a Keras 3 model; received {type(model).__name__}.")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete_function(model)], model)
    converter.experimental_lower_to_saved_model = False  # variables frozen to constants (else READ_VARIABLE ops remain)
    if quantization == "int8":
        if representative_data is None or len(representative_data) == 0:
            raise InputError("int8 conversion needs representative data (training samples) to calibrate ranges.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(representative_data, num_samples=num_calibration_samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # no float fallback, no Flex ops
        if io_type == "int8":
            converter.inference_input_type, converter.inference_output_type = tf.int8, tf.int8
    try:
        if quantization == "int8" and input_range is not None:
            content = _convert_with_input_range(converter, model, input_range, io_type)
        else:
            content = bytes(converter.convert())
    except Exception as error:  # the converter raises many types; all mean "this model does not convert"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StageError(f"TFLite {quantization} conversion of Keras 3 model {model.name!r} failed: {first_line[:300]}") from None
    if quantization == "int8":
        check_ptq_model(content, io_type=io_type, source=f"Keras 3 model {model.name!r}")
    return content


def check_ptq_model(tflite_bytes: bytes, *, io_type: str = "int8", source: str = "model") -> None:
    """Raise :class:`StageError` when a post-training int8 model kept float ops (the converter leaves some, e.g. the
    NEG of a LayerNormalization, between a DEQUANTIZE and a QUANTIZE even with ``TFLITE_BUILTINS_INT8`` only).
    With ``io_type`` float32 the QUANTIZE / DEQUANTIZE at the model's edges are expected."""
    floats = float_ops(tflite_bytes)
    if io_type != "int8":
        floats = [op for op in floats if not op.startswith(QUANTIZE_OPS)]
    if floats:
        raise StageError(
            f"The post-training int8 model of {source} is not full-integer: float ops {', '.join(floats[:6])}. Replace the "
            "layers that make them (e.g. LayerNormalization) with int8-friendly ones, or use a tf_keras student (--keras 2)."
        )


__all__ = ["convert_qat_model", "convert_float_model", "check_int8_model", "check_ptq_model", "float_ops", "QUANTIZE_OPS"]
