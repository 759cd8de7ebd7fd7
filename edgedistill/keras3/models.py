"""Keras 3 versions of the student presets: the same architectures as :mod:`edgedistill.models`, built with Keras 3.

They reuse that module's block builders (which take the Keras module as an argument), so a tf_keras and a Keras 3
student of one preset and width are the same network: layer names, channels, strides, BatchNorm momentum.

Example::

    student = build_model("dscnn", (8, 8, 1), 10, width=0.5, preprocessing=Preprocessing("unit", (1 / 16,), (0.0,)))
"""

from __future__ import annotations

from typing import Any, Callable

from edgedistill import models as presets
from edgedistill.errors import InputError
from edgedistill.keras3.backend import import_keras3

PRESET_NAMES = ("cnn", "dscnn", "mlp", "resnet8")


def _cnn(keras, x, num_classes: int, width: float, dropout: float):
    for index, base in enumerate((32, 64)):
        x = presets._conv_bn_relu(keras, x, presets._channels(base, width), 3, name=f"block{index + 1}")
        if x.shape[1] >= 2 and x.shape[2] >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"block{index + 1}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(presets._channels(256, width), name="features")(x)
    x = keras.layers.ReLU(name="features_relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def _dscnn(keras, x, num_classes: int, width: float, dropout: float):
    x = presets._conv_bn_relu(keras, x, presets._channels(32, width), 3, name="stem")
    for index, (base, stride) in enumerate(((64, 2), (128, 2), (128, 1))):
        stride = stride if x.shape[1] >= 4 else 1  # tiny inputs (8x8 digits) keep their resolution, as the preset
        x = presets._depthwise_separable(keras, x, presets._channels(base, width), name=f"block{index + 1}", strides=stride)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def _mlp(keras, x, num_classes: int, width: float, dropout: float):
    x = keras.layers.Flatten(name="flatten")(x)
    for index, base in enumerate((256, 128)):
        x = keras.layers.Dense(presets._channels(base, width), name=f"dense{index + 1}")(x)
        x = keras.layers.ReLU(name=f"dense{index + 1}_relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def _resnet8(keras, x, num_classes: int, width: float, dropout: float):
    x = presets._conv_bn_relu(keras, x, presets._channels(16, width), 3, name="stem")
    for index, base in enumerate((16, 32, 64)):
        stack, strides = f"stack{index + 1}", 1 if index == 0 else 2
        filters = presets._channels(base, width)
        y = presets._conv_bn_relu(keras, x, filters, 3, name=f"{stack}_a", strides=strides)
        y = presets._conv_bn(keras, y, filters, 3, name=f"{stack}_b")
        if index > 0:
            x = keras.layers.Conv2D(filters, 1, strides=strides, padding="same", name=f"{stack}_shortcut")(x)
        x = keras.layers.Add(name=f"{stack}_add")([x, y])
        x = keras.layers.ReLU(name=f"{stack}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


_BODIES: dict[str, Callable[..., Any]] = {"cnn": _cnn, "dscnn": _dscnn, "mlp": _mlp, "resnet8": _resnet8}


def build_model(
    preset: str,
    input_shape,
    num_classes: int,
    *,
    width: float = 1.0,
    dropout: float = 0.0,
    name: str | None = None,
    preprocessing: Any = None,
):
    """A Keras 3 preset (``cnn``, ``dscnn``, ``mlp``, ``resnet8``), sized by ``width``; logits out.

    ``preprocessing`` (:class:`edgedistill.preprocessing.Preprocessing`) becomes the first layer (``preprocess``,
    a Rescaling) as :func:`edgedistill.preprocessing.with_preprocessing` does for tf_keras students: the model
    then takes the data's raw values.
    """
    keras, _ = import_keras3()
    if preset not in _BODIES:
        raise InputError(
            f"Unknown Keras 3 preset {preset!r}. Expected one of: {', '.join(PRESET_NAMES)} "
            "(the other presets need a tf_keras student: --keras 2)."
        )
    presets._check_width(width)
    if preset in ("cnn", "dscnn", "resnet8"):
        presets._check_image_input(preset, input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    if preprocessing is not None and not preprocessing.is_identity:
        from edgedistill.preprocessing import PREPROCESS_LAYER_NAME

        def value(values):
            return float(values[0]) if len(values) == 1 else [float(v) for v in values]

        x = keras.layers.Rescaling(value(preprocessing.scale), offset=value(preprocessing.offset), name=PREPROCESS_LAYER_NAME)(x)
    outputs = _BODIES[preset](keras, x, num_classes, width, dropout)
    return keras.Model(inputs, outputs, name=name or preset)


__all__ = ["build_model", "PRESET_NAMES"]
