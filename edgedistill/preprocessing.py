"""The input contract: a data set keeps its raw values; each model carries its own preprocessing.

A :class:`~edgedistill.data.Dataset` holds what the sensor gives (8-bit pixels stay ``uint8``,
0..255; the embedded digits are ``uint8`` counts 0..16) and says so (``value_range``,
``value_description``). Every model of a run takes those raw values:

- the **teacher**'s preprocessing is declared (``--teacher-preprocessing``) or detected (the
  convention under which it scores best on the validation split), and becomes the first layer of
  the teacher (:func:`with_preprocessing`);
- the **student**'s preprocessing is the project's choice, :func:`student_preprocessing`:
  ``(x - low) / (high - low)`` of the data's value range (``x / 255`` for pixels), also its first
  layer. Its int8 model then takes the raw bytes: for ``uint8`` data the converter is given the
  byte range 0..255 for the input, so ``int8 input = byte - 128`` (scale 1, zero point -128)
  exactly, and firmware feeds camera bytes directly.

Conventions (``--teacher-preprocessing``), for data whose values span ``[low, high]``
(``[0, 255]`` for pixels):

- ``unit``: ``(x - low) / (high - low)``, i.e. ``x / 255``: [0, 1];
- ``raw``: the values as stored (0..255 for pixels);
- ``symmetric``: ``2 (x - low) / (high - low) - 1``, i.e. ``x / 127.5 - 1``: [-1, 1];
- ``standardize``: ``(x - mean) / std`` per channel, over the training split, or given as
  ``standardize:mean=125.3|123.0|113.9,std=63.0|62.1|66.7``;
- ``SCALE,OFFSET``: ``x * SCALE + OFFSET`` (e.g. ``0.00392157,0``).

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Sequence

import numpy as np

from edgedistill.errors import InputError

logger = logging.getLogger(__name__)

NAMED_CONVENTIONS: tuple[str, ...] = ("unit", "raw", "symmetric", "standardize")
# The first layer of a model that takes raw values (a Keras Rescaling layer).
PREPROCESS_LAYER_NAME = "preprocess"
# The raw range of a byte input: the int8 model maps it onto -128..127 one to one.
BYTE_RANGE: tuple[float, float] = (0.0, 255.0)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """``x * scale + offset`` (per channel when the tuples have one value per channel).

    ``name`` is the convention (``unit``, ``raw``, ``symmetric``, ``standardize``, ``affine``);
    ``how`` says where it came from (``declared``, ``detected``, ``project``).
    """

    name: str
    scale: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)
    how: str = "declared"

    def __post_init__(self) -> None:
        values = (*self.scale, *self.offset)
        if not all(math.isfinite(v) for v in values) or not all(s != 0 for s in self.scale):
            raise InputError(
                f"Preprocessing {self.name!r} needs finite values and non-zero scales. Received: scale={self.scale}, "
                f"offset={self.offset}."
            )

    @property
    def is_identity(self) -> bool:
        return all(s == 1.0 for s in self.scale) and all(o == 0.0 for o in self.offset)

    def check_channels(self, channels: int | None, what: str) -> None:
        """Per-channel values must be one per channel of ``what`` (else NumPy or Keras broadcast them into a traceback)."""
        count = max(len(self.scale), len(self.offset))
        if count > 1 and channels is not None and count != channels:
            raise InputError(
                f"Preprocessing {self.describe()} has {count} per-channel values, but {what} has {channels} channel(s). "
                f"Give one mean and one std per channel (e.g. standardize:mean={'|'.join(['127.5'] * channels)},"
                f"std={'|'.join(['64'] * channels)}), or a bare `standardize` to compute them from the training split."
            )

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The preprocessed values, float32 (a batch or a whole split)."""
        self.check_channels(int(np.shape(x)[-1]) if np.ndim(x) else None, f"the data (shape {tuple(np.shape(x))[1:]})")
        scale = np.asarray(self.scale, dtype=np.float32)
        offset = np.asarray(self.offset, dtype=np.float32)
        return np.asarray(x, dtype=np.float32) * scale + offset

    def formula(self) -> str:
        """``x / 255``, ``x / 127.5 - 1``, ``x * [..] + [..]``: for logs and reports."""
        if self.is_identity:
            return "x"
        if len(self.scale) == 1 and len(self.offset) == 1:
            scale, offset = self.scale[0], self.offset[0]
            inverse = 1.0 / scale
            core = f"x / {inverse:.6g}" if abs(inverse - round(inverse, 3)) < 1e-6 else f"x * {scale:.6g}"
            return core + (f" {'+' if offset > 0 else '-'} {abs(offset):.6g}" if offset else "")
        scales = ", ".join(f"{s:.6g}" for s in self.scale)
        offsets = ", ".join(f"{o:.6g}" for o in self.offset)
        return f"x * [{scales}] + [{offsets}]"

    def describe(self) -> str:
        return f"{self.name} ({self.formula()})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "formula": self.formula(),
            "how": self.how,
            "scale": list(self.scale),
            "offset": list(self.offset),
        }


def _range_map(name: str, value_range: tuple[float, float], low: float, high: float, how: str) -> Preprocessing:
    """The affine map of ``value_range`` onto ``[low, high]``."""
    data_low, data_high = value_range
    scale = (high - low) / (data_high - data_low)
    return Preprocessing(name, (scale,), (low - data_low * scale,), how=how)


def convention(
    name: str,
    *,
    value_range: tuple[float, float],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    how: str = "declared",
) -> Preprocessing:
    """A named convention for data spanning ``value_range`` (see the module docstring)."""
    if name == "unit":
        return _range_map(name, value_range, 0.0, 1.0, how)
    if name == "raw":
        return Preprocessing(name, how=how)
    if name == "symmetric":
        return _range_map(name, value_range, -1.0, 1.0, how)
    if name == "standardize":
        if mean is None or std is None:
            raise InputError("`standardize` needs the per-channel mean and std (of the training split, or given).")
        std = [max(float(s), 1e-6) for s in std]
        return Preprocessing(name, tuple(1.0 / s for s in std), tuple(-float(m) / s for m, s in zip(mean, std)), how=how)
    raise InputError(
        f"Unknown preprocessing {name!r}. Expected one of: {', '.join(NAMED_CONVENTIONS)}, "
        "standardize:mean=M1|M2|M3,std=S1|S2|S3, or SCALE,OFFSET (e.g. 0.00392157,0)."
    )


def _numbers(text: str, what: str, spec: str) -> list[float]:
    try:
        values = [float(item) for item in text.split("|") if item.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise InputError(
            f"Bad --teacher-preprocessing {spec!r}: {what} must be numbers separated by | "
            "(e.g. standardize:mean=125.3|123.0|113.9,std=63.0|62.1|66.7)."
        )
    return values


def parse_preprocessing(
    spec: str,
    *,
    value_range: tuple[float, float],
    statistics: Any = None,
    how: str = "declared",
) -> Preprocessing:
    """``unit``, ``raw``, ``symmetric``, ``standardize[:mean=..,std=..]`` or ``SCALE,OFFSET``.

    ``statistics`` is a callable returning ``(mean, std)`` per channel of the training split,
    called only for a bare ``standardize``.
    """
    text = spec.strip()
    name, _, arguments = text.partition(":")
    if name == "standardize" and arguments:
        parts = dict(item.partition("=")[::2] for item in arguments.split(","))
        if set(parts) != {"mean", "std"}:
            raise InputError(f"Bad --teacher-preprocessing {spec!r}: expected standardize:mean=M1|M2|M3,std=S1|S2|S3.")
        mean, std = _numbers(parts["mean"], "mean", spec), _numbers(parts["std"], "std", spec)
        if len(mean) != len(std):
            raise InputError(f"Bad --teacher-preprocessing {spec!r}: {len(mean)} means for {len(std)} stds.")
        return convention("standardize", value_range=value_range, mean=mean, std=std, how=how)
    if name == "standardize":
        mean, std = statistics()
        return convention("standardize", value_range=value_range, mean=mean, std=std, how=how)
    if "," in text and not arguments:
        pieces = text.split(",")
        try:
            scale, offset = (float(p) for p in pieces)
        except ValueError:
            scale = offset = float("nan")
        if len(pieces) != 2 or not (math.isfinite(scale) and math.isfinite(offset)) or scale == 0:
            raise InputError(
                f"Bad --teacher-preprocessing {spec!r}: SCALE,OFFSET must be two finite numbers, SCALE not 0 "
                "(e.g. 0.00392157,0 for x/255)."
            )
        return Preprocessing("affine", (scale,), (offset,), how=how)
    return convention(name, value_range=value_range, how=how)


def channel_statistics(x: np.ndarray, *, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each channel (last axis), read in chunks (no float copy of ``x``)."""
    if len(x) == 0:
        raise InputError("Cannot compute standardize statistics of an empty training split.")
    channels = x.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for start in range(0, len(x), chunk):
        block = np.asarray(x[start : start + chunk], dtype=np.float64).reshape(-1, channels)
        total += block.sum(axis=0)
        squares += (block**2).sum(axis=0)
        count += len(block)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean.tolist(), std.tolist()


def student_preprocessing(value_range: tuple[float, float], *, raw_bytes: bool) -> Preprocessing | None:
    """The project's choice for the student: ``unit`` over the data's value range, for byte data.

    Float data (features, already normalised images) is used as given: ``None``.
    """
    if not raw_bytes:
        return None
    return convention("unit", value_range=value_range, how="project")


def input_convention(
    values: dict[str, Any],
    *,
    raw_bytes: bool,
    student: Preprocessing | None,
    input_quantization: dict | None,
    teacher: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the deployed int8 model takes, for ``report.json``, ``micro_export.json`` and ``test_data.h``.

    ``values`` is :attr:`edgedistill.data.Dataset.values`; ``input_quantization`` the int8 model's
    input ``{"scale", "zero_point"}`` (``None`` for a float input).
    """
    convention_ = {
        "raw_values": values.get("description", ""),
        "dtype": values.get("dtype"),
        "value_range": values.get("range"),
        "student_preprocessing": student.to_dict() if student is not None else None,
        "preprocessing_in_model": student is not None,
    }
    if teacher is not None:
        convention_["teacher_preprocessing"] = teacher
    scale, zero_point = input_quantization_for(BYTE_RANGE)
    if input_quantization is None:
        convention_["int8_input"] = "float32 input: the raw values as they are"
    elif raw_bytes and abs(input_quantization["scale"] - scale) < 1e-6 and input_quantization["zero_point"] == zero_point:
        convention_["int8_input"] = "raw byte - 128 (input scale 1, zero point -128): feed the sensor's bytes minus 128"
        convention_["raw_bytes"] = True
    else:
        convention_["int8_input"] = (
            f"round(x / {input_quantization['scale']:.9g}) + {input_quantization['zero_point']} of the raw value x, clipped to "
            f"-128..127"
        )
        convention_["raw_bytes"] = False
    convention_["input_quantization"] = input_quantization
    return convention_


# ---------------------------------------------------------------------------------------
# Keras side: the preprocessing as a model's first layer


def preprocessing_layer(preprocessing: Preprocessing, *, name: str = PREPROCESS_LAYER_NAME):
    """A Keras ``Rescaling`` layer computing ``x * scale + offset`` (per channel when given so)."""
    from edgedistill._keras import keras

    def value(values: tuple[float, ...]):
        return float(values[0]) if len(values) == 1 else [float(v) for v in values]

    return keras.layers.Rescaling(value(preprocessing.scale), offset=value(preprocessing.offset), name=name)


def find_preprocessing_layer(model) -> Any | None:
    """The ``preprocess`` layer of a model made by :func:`with_preprocessing` (or its QAT wrapper)."""
    for layer in getattr(model, "layers", [])[:3]:
        if layer.name in (PREPROCESS_LAYER_NAME, f"quant_{PREPROCESS_LAYER_NAME}"):
            return layer
    return None


def _unique_name(model, base: str) -> str:
    names = {layer.name for layer in model.layers}
    name, index = base, 1
    while name in names:
        index += 1
        name = f"{base}_{index}"
    return name


def _insert_after_input(model, layer):
    """A functional model equal to ``model`` with ``layer`` between its input and the rest (one flat graph).

    Rebuilt from the model's config (so intermediate layers keep their names for feature losses)
    with the weights copied layer by layer.
    """
    from edgedistill._keras import keras

    config = model.get_config()
    if len(config.get("input_layers", [])) != 1:
        raise ValueError("only single-input models")
    input_name = config["input_layers"][0][0]
    for layer_config in config["layers"]:
        for node in layer_config.get("inbound_nodes", []):
            for entry in node if isinstance(node, list) else []:
                if isinstance(entry, list) and entry and entry[0] == input_name:
                    entry[0] = layer.name
    position = [entry["name"] for entry in config["layers"]].index(input_name) + 1
    config["layers"].insert(
        position,
        {
            "class_name": "Rescaling",
            "config": layer.get_config(),
            "name": layer.name,
            "inbound_nodes": [[[input_name, 0, 0, {}]]],
        },
    )
    rebuilt = keras.Model.from_config(config)
    for original in model.layers:
        rebuilt.get_layer(original.name).set_weights(original.get_weights())
    return rebuilt


def with_preprocessing(model, preprocessing: Preprocessing | None):
    """``model`` taking raw values: ``preprocessing`` becomes its first layer (``preprocess``).

    Functional and Sequential tf_keras models stay one flat graph (feature losses still find their
    layers); anything else is wrapped. ``None`` or the identity returns ``model`` unchanged.
    """
    from edgedistill._keras import keras

    if preprocessing is None or preprocessing.is_identity:
        return model
    if not isinstance(model, keras.Model):
        raise InputError(f"Preprocessing can be added to tf_keras models only; received {type(model).__name__}.")
    input_shape = model.input_shape if isinstance(model.input_shape, tuple) else None
    if input_shape:
        preprocessing.check_channels(input_shape[-1], f"the model {model.name!r} (input {tuple(input_shape[1:])})")
    layer = preprocessing_layer(preprocessing, name=_unique_name(model, PREPROCESS_LAYER_NAME))
    if isinstance(model, keras.Sequential):
        rebuilt = keras.Sequential([keras.Input(model.input_shape[1:], name="input"), layer, *model.layers], name=model.name)
        return rebuilt
    if getattr(model, "_is_graph_network", False):
        try:
            return _insert_after_input(model, layer)
        except Exception as error:  # noqa: BLE001 - custom layers, several inputs: wrap instead
            logger.debug("cannot rebuild %s with its preprocessing inside (%s); wrapping it", model.name, error)
    inputs = keras.Input(model.input_shape[1:], name="input")
    return keras.Model(inputs, model(layer(inputs)), name=model.name)


def set_quantized_input_range(qat_model, input_range: tuple[float, float]) -> bool:
    """Fix the range of a QAT model's input quantizer (tfmot's ``QuantizeLayer``); False if it has none.

    For byte data the range 0..255 makes the int8 input exactly ``byte - 128`` (scale 1, zero
    point -128). tfmot's input quantizer only ever widens its range, so data within it keeps it.
    """
    for layer in getattr(qat_model, "layers", [])[:3]:
        if type(layer).__name__ == "QuantizeLayer":
            for weight in layer.weights:
                if weight.name.endswith("_min:0"):
                    weight.assign(float(input_range[0]))
                elif weight.name.endswith("_max:0"):
                    weight.assign(float(input_range[1]))
            return True
    return False


def input_quantization_for(input_range: tuple[float, float]) -> tuple[float, int]:
    """The int8 ``(scale, zero_point)`` that maps ``input_range`` onto -128..127 (``(1.0, -128)`` for bytes)."""
    low, high = input_range
    scale = (high - low) / 255.0
    return scale, int(round(-128 - low / scale))


def preprocessing_quantize_config():
    """tfmot's QuantizeConfig of the ``preprocess`` layer: nothing to quantize but its output.

    Registered with Keras once, so QAT models saved with it load again.
    """
    global _QUANTIZE_CONFIG
    if _QUANTIZE_CONFIG is None:
        from edgedistill._keras import import_tfmot, keras

        quantization = import_tfmot().quantization.keras
        # a base class known only at run time (tfmot is imported lazily): Any to the type checker
        quantize_config_base: Any = quantization.QuantizeConfig

        @keras.utils.register_keras_serializable(package="edgedistill")
        class PreprocessingQuantizeConfig(quantize_config_base):
            """The output of ``x * scale + offset`` is quantized over all values seen (it is a fixed map)."""

            def get_weights_and_quantizers(self, layer):
                return []

            def get_activations_and_quantizers(self, layer):
                return []

            def set_quantize_weights(self, layer, quantize_weights):
                pass

            def set_quantize_activations(self, layer, quantize_activations):
                pass

            def get_output_quantizers(self, layer):
                return [
                    quantization.quantizers.AllValuesQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)
                ]

            def get_config(self):
                return {}

        _QUANTIZE_CONFIG = PreprocessingQuantizeConfig
    return _QUANTIZE_CONFIG


_QUANTIZE_CONFIG: Any = None


__all__ = [
    "Preprocessing",
    "NAMED_CONVENTIONS",
    "PREPROCESS_LAYER_NAME",
    "BYTE_RANGE",
    "convention",
    "parse_preprocessing",
    "channel_statistics",
    "student_preprocessing",
    "preprocessing_layer",
    "find_preprocessing_layer",
    "with_preprocessing",
    "preprocessing_quantize_config",
    "set_quantized_input_range",
    "input_quantization_for",
    "input_convention",
]
