"""The fake-quant layers of Keras 3 QAT: int8 as TFLite computes it, simulated in float during training.

- :class:`ActivationQuantizer`: per-tensor, asymmetric 8-bit (``FakeQuantWithMinMaxVars``, 256 levels) with a
  moving-average range, as tfmot's ``MovingAverageQuantizer``: each training batch moves ``[min, max]`` towards the
  batch's ``[min(x, 0), max(x, 0)]`` with ``decay`` (TFLite wants 0 inside the range). Unlike tfmot (which starts
  at [-6, 6]) the first training batch sets the range: a short QAT then starts from the data, not from a guess.
  A *follower* uses another quantizer's range (the inputs of a Concatenate share its output's range).
- :class:`QuantConv2D`, :class:`QuantDepthwiseConv2D`, :class:`QuantDense`: the layer with its kernel
  fake-quantized per output channel, symmetric, narrow range ([-127, 127], scale ``max|w| / 127``: what TFLite's
  int8 spec requires of weights); bias and activation (ReLU/ReLU6, fused) as the float layer.

The TFLite converter turns ``FakeQuantWithMinMaxVars(PerChannel)`` ops into quantization parameters, so the
int8 model's scales are these ranges, not a representative set's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgedistill.keras3.backend import import_keras3

if TYPE_CHECKING:  # Keras 3 and TensorFlow have no type information: Any to the type checker, as base classes too
    import keras
    import tensorflow as tf
else:
    keras, tf = import_keras3()

NUM_BITS = 8
DEFAULT_DECAY = 0.999  # tfmot's MovingAverageQuantizer
_PACKAGE = "edgedistill_keras3"
# A kernel channel of zeros would give a zero scale: TFLite and the fake-quant op need a positive range.
_MIN_WEIGHT_RANGE = 1e-8


def fake_quant_kernel(kernel, channel_axes: int = 1):
    """``kernel`` fake-quantized per output channel: symmetric, narrow range, ``scale = max|w| / 127``.

    ``channel_axes`` is how many trailing axes form the output channel (2 for a depthwise kernel
    ``(kh, kw, in, multiplier)``, whose TFLite channels are ``in * multiplier``). The range carries no gradient
    (as tfmot's ``LastValueQuantizer``): the kernel gets the straight-through estimator's.
    """
    shape = tf.shape(kernel)
    flat = tf.reshape(kernel, tf.concat([shape[: kernel.shape.rank - channel_axes], [-1]], 0)) if channel_axes > 1 else kernel
    reduce_axes = list(range(flat.shape.rank - 1))
    bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(flat), axis=reduce_axes), _MIN_WEIGHT_RANGE))
    quantized = tf.quantization.fake_quant_with_min_max_vars_per_channel(
        flat, -bound, bound, num_bits=NUM_BITS, narrow_range=True
    )
    return tf.reshape(quantized, shape) if channel_axes > 1 else quantized


def kernel_scales(kernel: Any, channel_axes: int = 1) -> Any:
    """The per-channel int8 scales TFLite should get for ``kernel`` (numpy): ``max|w| / 127``."""
    import numpy as np

    kernel = np.asarray(kernel)
    flat = kernel.reshape(*kernel.shape[: kernel.ndim - channel_axes], -1)
    bound = np.maximum(np.abs(flat).reshape(-1, flat.shape[-1]).max(axis=0), _MIN_WEIGHT_RANGE)
    return bound / 127.0


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ActivationQuantizer(keras.layers.Layer):
    """Per-tensor asymmetric int8 fake quantization with a moving-average (or fixed) range.

    Args:
        decay: the moving average's decay per training batch (tfmot's 0.999).
        fixed_range: ``(min, max)`` never updated (the input of byte data: ``(0, 255)`` makes ``int8 = byte - 128``).

    Example::

        x = ActivationQuantizer(name="conv_out")(x)     # in a functional Keras 3 model
    """

    def __init__(self, decay: float = DEFAULT_DECAY, fixed_range: tuple[float, float] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.decay = float(decay)
        self.fixed_range = None if fixed_range is None else (float(fixed_range[0]), float(fixed_range[1]))
        self.leader: ActivationQuantizer | None = None

    def follow(self, leader: "ActivationQuantizer") -> None:
        """Use ``leader``'s range (read, never updated here). Kept out of Keras' tracking: the leader's
        variables belong to the leader."""
        object.__setattr__(self, "leader", leader)

    def build(self, input_shape) -> None:
        low, high = self.fixed_range or (-6.0, 6.0)
        self.range_min = self.add_weight(
            name="range_min", shape=(), initializer=keras.initializers.Constant(low), trainable=False
        )
        self.range_max = self.add_weight(
            name="range_max", shape=(), initializer=keras.initializers.Constant(high), trainable=False
        )
        self.initialized = self.add_weight(name="initialized", shape=(), initializer="zeros", trainable=False)

    def _updated_range(self, inputs):
        """Move the range towards this batch's (the first batch sets it); return the new ``(min, max)``."""
        batch_min = tf.minimum(tf.reduce_min(inputs), 0.0)
        batch_max = tf.maximum(tf.reduce_max(inputs), 0.0)
        started = tf.cast(self.initialized, tf.bool)
        new_min = tf.where(started, self.decay * self.range_min + (1.0 - self.decay) * batch_min, batch_min)
        new_max = tf.where(started, self.decay * self.range_max + (1.0 - self.decay) * batch_max, batch_max)
        self.range_min.assign(new_min)
        self.range_max.assign(new_max)
        self.initialized.assign(1.0)
        return new_min, new_max

    def current_range(self) -> tuple[float, float]:
        """The range the converted model gets for this tensor: ``scale = (max - min) / 255``."""
        source = self.leader or self
        return float(source.range_min.numpy()), float(source.range_max.numpy())

    def call(self, inputs, training=None):
        if self.fixed_range is not None:  # constants in the op's attributes: the converter reads them as they are
            low, high = self.fixed_range
            return tf.quantization.fake_quant_with_min_max_args(inputs, min=low, max=high, num_bits=NUM_BITS, narrow_range=False)
        if self.leader is not None:
            low, high = self.leader.range_min, self.leader.range_max
        elif training:
            low, high = self._updated_range(tf.stop_gradient(inputs))
        else:
            low, high = self.range_min, self.range_max
        return tf.quantization.fake_quant_with_min_max_vars(inputs, low, high, num_bits=NUM_BITS, narrow_range=False)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay": self.decay, "fixed_range": self.fixed_range}


class _KernelQuantized:
    """The kernel fake-quantized per channel in training; for export the kernel is stored already on the int8 grid
    (:func:`kernels_on_grid`) and used as it is: the converter's per-channel weight quantization (``max|w| / 127``)
    then gives back exactly those values (it does not fold a per-channel fake-quant of a depthwise kernel)."""

    channel_axes = 1
    kernel_on_grid = False
    kernel: Any  # the Keras layer's weight (this class is mixed into Conv2D, DepthwiseConv2D, Dense)

    def quantized_kernel(self):
        return self.kernel if self.kernel_on_grid else fake_quant_kernel(self.kernel, self.channel_axes)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantConv2D(_KernelQuantized, keras.layers.Conv2D):
    """``Conv2D`` with its kernel fake-quantized per output channel (BatchNorm already folded into it)."""

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.quantized_kernel())
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantDepthwiseConv2D(_KernelQuantized, keras.layers.DepthwiseConv2D):
    """``DepthwiseConv2D`` with its kernel fake-quantized per output channel (``in * multiplier`` channels)."""

    channel_axes = 2

    def call(self, inputs):
        outputs = keras.ops.depthwise_conv(
            inputs,
            self.quantized_kernel(),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantDense(_KernelQuantized, keras.layers.Dense):
    """``Dense`` with its kernel fake-quantized per output unit."""

    def call(self, inputs, training=None):
        outputs = tf.matmul(inputs, self.quantized_kernel())
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs


class kernels_on_grid:  # noqa: N801 - a context manager used like a function
    """Within this block the model's quantized layers hold their fake-quantized kernels (for tracing an export);
    the trained kernels are restored after."""

    def __init__(self, model) -> None:
        self.layers = [layer for layer in model.layers if isinstance(layer, _KernelQuantized)]
        self.saved: list = []

    def __enter__(self):
        for layer in self.layers:
            self.saved.append(layer.kernel.numpy())
            layer.kernel.assign(fake_quant_kernel(layer.kernel, layer.channel_axes))
            layer.kernel_on_grid = True
        return self

    def __exit__(self, *exc_info) -> None:
        for layer, kernel in zip(self.layers, self.saved):
            layer.kernel.assign(kernel)
            layer.kernel_on_grid = False


QUANTIZED_LINEAR: dict[str, Any] = {"Conv2D": QuantConv2D, "DepthwiseConv2D": QuantDepthwiseConv2D, "Dense": QuantDense}

__all__ = [
    "ActivationQuantizer",
    "QuantConv2D",
    "QuantDepthwiseConv2D",
    "QuantDense",
    "QUANTIZED_LINEAR",
    "fake_quant_kernel",
    "kernels_on_grid",
    "kernel_scales",
]
