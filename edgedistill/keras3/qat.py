"""Quantization-aware training (QAT) of Keras 3 models: :func:`quantize_model`, without tfmot or tf_keras.

The float model (functional or Sequential, Keras 3, TensorFlow backend) is rebuilt with fake-quant int8 as TFLite
will compute it (:mod:`edgedistill.keras3.layers`):

- Conv2D / DepthwiseConv2D / Dense: a BatchNormalization right after (and only fed by) it is folded into its
  kernel and bias as TFLite's converter folds it (``w * gamma / sqrt(var + eps)``, ``(b - mean) * gamma /
  sqrt(var + eps) + beta``), once, from the trained statistics; QAT then trains the folded weights. Kernels are
  fake-quantized per output channel, symmetric, narrow range;
- a ReLU / ReLU6 right after such a layer (or an Add) is fused: its output is quantized, not the layer's, so the
  converter emits one op with a fused activation and no requantization between them;
- activations are fake-quantized per tensor (asymmetric, moving-average range) where TFLite has a new scale: the
  model input, each linear layer's (fused) output, Add, GlobalAveragePooling2D (MEAN), the ``preprocess``
  Rescaling and a ReLU that is not fused; MaxPooling2D, AveragePooling2D (TFLite's int8 kernel keeps the scale),
  Flatten, Reshape, ZeroPadding2D, Permute and Dropout keep their input's range; a Concatenate's inputs share its
  output's range (TFLite wants one scale).

Anything else is refused up front (:func:`unsupported_layers`, :class:`InputError` naming the layer and what to do):
an "int8" model never keeps a silently float op.

Example::

    qat_student = quantize_model(float_student, input_range=(0, 255))   # byte inputs: int8 input = byte - 128
    # ... train qat_student (e.g. edgedistill.keras3.distiller.distill), then
    tflite_bytes = edgedistill.keras3.convert.convert_qat_model(qat_student)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgedistill.errors import InputError
from edgedistill.keras3.backend import import_keras3

LINEAR = ("Conv2D", "DepthwiseConv2D", "Dense")
# Layers whose output keeps its input's scale in TFLite (no quantizer of their own).
# AVERAGE_POOL_2D is one of them: TFLite's int8 kernel wants its input's scale (a range of its own would add a QUANTIZE).
PASS_THROUGH = (
    "MaxPooling2D",
    "AveragePooling2D",
    "Flatten",
    "Reshape",
    "Dropout",
    "ZeroPadding2D",
    "Permute",
    "Identity",
    "SpatialDropout2D",
)
# Layers whose output gets its own quantizer (a new scale in TFLite).
OUTPUT_QUANTIZED = ("Add", "GlobalAveragePooling2D", "Rescaling", "ReLU", "Activation", "Concatenate")
FUSABLE_ACTIVATIONS = ("relu", "relu6")
COVERED = (*LINEAR, "BatchNormalization", *PASS_THROUGH, *OUTPUT_QUANTIZED)
WHAT_TO_DO = (
    "Replace it with a covered layer (Conv2D, DepthwiseConv2D, Dense, BatchNormalization right after one of them, "
    "ReLU/ReLU6, Add, Concatenate, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, Reshape, "
    "ZeroPadding2D, Dropout), or quantize after training instead (PTQ: --qat-epochs 0; it refuses a layer the converter "
    "would leave in float), or use a tf_keras student (--keras 2)"
)


@dataclasses.dataclass
class Graph:
    """A functional model's layers by name, in order, with who feeds whom."""

    layers: dict[str, Any]
    producers: dict[str, list[str]]
    consumers: dict[str, list[str]]
    input_names: list[str]


def _as_functional(model: Any) -> Any:
    """``model`` as a functional model (a Sequential is rebuilt on its own layers, sharing their weights)."""
    keras, _ = import_keras3()
    if not isinstance(model, keras.Model):
        raise InputError(
            f"Keras 3 QAT needs a Keras 3 model; received {type(model).__module__}.{type(model).__name__}. "
            "Build the student with `import keras` (Keras 3) or use a tf_keras student (--keras 2)."
        )
    if isinstance(model, keras.Sequential):
        inputs = keras.Input(batch_shape=model.inputs[0].shape, name="input")
        outputs = inputs
        for layer in model.layers:
            outputs = layer(outputs)
        return keras.Model(inputs, outputs, name=model.name)
    if not hasattr(model, "_nodes_by_depth"):
        raise InputError(
            f"Keras 3 QAT needs a functional or Sequential model; {model.name!r} is a subclassed {type(model).__name__}. "
            "Build it with the functional API or from a preset."
        )
    return model


def read_graph(model: Any) -> Graph:
    """The layer graph of a functional Keras 3 model (one call per layer)."""
    nodes = [node for depth in sorted(model._nodes_by_depth, reverse=True) for node in model._nodes_by_depth[depth]]
    producers: dict[str, list[str]] = {}
    layers: dict[str, Any] = {}
    input_names = []
    for node in nodes:
        layer = node.operation
        if type(layer).__name__ == "InputLayer":
            input_names.append(layer.name)
        if layer.name in producers:
            raise InputError(
                f"Layer {layer.name!r} is called more than once in {model.name!r}; Keras 3 QAT needs one call per "
                "layer. Use a separate layer for each call."
            )
        producers[layer.name] = [t._keras_history.operation.name for t in node.arguments.keras_tensors]
        layers[layer.name] = layer
    consumers: dict[str, list[str]] = {name: [] for name in layers}
    for name, sources in producers.items():
        for source in sources:
            consumers[source].append(name)
    return Graph(layers, producers, consumers, input_names)


def _activation_name(layer: Any) -> str | None:
    """``relu`` / ``relu6`` / ``linear`` for a layer's activation (or a ReLU / Activation layer); None if other."""
    kind = type(layer).__name__
    if kind == "ReLU":
        config = layer.get_config()
        if config.get("negative_slope", 0) or config.get("threshold", 0):
            return None
        return {None: "relu", 6.0: "relu6"}.get(None if config.get("max_value") is None else float(config["max_value"]))
    activation = layer.get_config().get("activation", "linear")
    return activation if activation in ("linear", *FUSABLE_ACTIVATIONS) else None


def _layer_problem(layer: Any, graph: Graph) -> str | None:
    """Why Keras 3 QAT cannot cover this layer, or None when it can."""
    keras, _ = import_keras3()
    kind = type(layer).__name__
    if kind == "InputLayer":
        return None
    if isinstance(layer, keras.Model):
        return "a model nested in the model (flatten it into one functional model)"
    if kind not in COVERED or type(layer).__module__.split(".")[0] != "keras":
        return "not covered by Keras 3 QAT (no int8 rule for it: it would stay float)"
    config = layer.get_config()
    if kind in LINEAR or kind in ("ReLU", "Activation"):
        if _activation_name(layer) is None:
            return f"activation {config.get('activation', config)!r} cannot be fused (only relu, relu6)"
    if kind == "Conv2D" and (config.get("groups", 1) != 1 or config.get("data_format") == "channels_first"):
        return "grouped or channels_first Conv2D"
    if kind == "Dense" and len(layer.input.shape) != 2:
        return f"Dense on a rank-{len(layer.input.shape)} input (Flatten first)"
    if kind == "Add" and len(graph.producers[layer.name]) != 2:
        return "Add of more than two tensors (TFLite ADD takes two)"
    if kind == "BatchNormalization" and _folded_into(layer.name, graph) is None:
        return "BatchNormalization not right after a linear Conv2D/DepthwiseConv2D/Dense that feeds only it (it cannot be folded)"
    return None


def _folded_into(name: str, graph: Graph) -> str | None:
    """The Conv2D/DepthwiseConv2D/Dense a BatchNormalization folds into (its only producer, feeding only it)."""
    layer = graph.layers[name]
    sources = graph.producers[name]
    if len(sources) != 1 or layer.get_config().get("axis") not in (
        -1,
        [-1],
        len(layer.input.shape) - 1,
        [len(layer.input.shape) - 1],
    ):
        return None
    source = graph.layers[sources[0]]
    if type(source).__name__ in LINEAR and _activation_name(source) == "linear" and len(graph.consumers[source.name]) == 1:
        return source.name
    return None


def unsupported_layers(model: Any) -> list[tuple[str, str, str]]:
    """``(name, type, reason)`` of each layer Keras 3 QAT does not cover (an empty list: the whole model is covered)."""
    graph = read_graph(_as_functional(model))
    problems = []
    for name, layer in graph.layers.items():
        reason = _layer_problem(layer, graph)
        if reason:
            problems.append((name, type(layer).__name__, reason))
    return problems


def check_covered(model: Any) -> None:
    """Raise :class:`InputError` naming every layer Keras 3 QAT does not cover, and what to do."""
    problems = unsupported_layers(model)
    if problems:
        listing = "; ".join(f"layer {name!r} of type {kind}: {reason}" for name, kind, reason in problems)
        raise InputError(f"Keras 3 QAT cannot quantize {getattr(model, 'name', 'the model')!r}: {listing}. {WHAT_TO_DO}.")


@dataclasses.dataclass
class Plan:
    """Where quantizers go: ``quantized`` = the layers whose output gets a quantizer; ``folded`` = BatchNorm ->
    the layer it folds into; ``skipped`` = layers that become identities (folded BatchNorms); ``concat_inputs`` =
    quantized layer -> the Concatenate whose range it takes."""

    quantized: list[str]
    folded: dict[str, str]
    concat_followers: dict[str, str]


def _tail(name: str, graph: Graph, folded: dict[str, str]) -> str:
    """The last layer of the fused group starting at ``name``: through a folded BatchNorm, then a fusable ReLU."""
    tail = name
    following = graph.consumers[tail]
    if len(following) == 1 and following[0] in folded:
        tail = following[0]
        following = graph.consumers[tail]
    if len(following) == 1:
        relu = graph.layers[following[0]]
        if type(relu).__name__ in ("ReLU", "Activation") and _activation_name(relu) in FUSABLE_ACTIVATIONS:
            return relu.name
    return tail


def _quantizing_source(name: str, graph: Graph, quantized: set[str]) -> str:
    """The quantized layer whose range a tensor has: back through pass-through layers."""
    while name not in quantized:
        kind = type(graph.layers[name]).__name__
        if kind not in PASS_THROUGH:
            raise InputError(
                f"Layer {name!r} ({kind}) feeds a Concatenate without its own quantizer; Keras 3 QAT cannot "
                f"share the Concatenate's range with it. {WHAT_TO_DO}."
            )
        name = graph.producers[name][0]
    return name


def make_plan(graph: Graph) -> Plan:
    """Decide, for every layer, whether its output is quantized (see the module docstring)."""
    folded = {
        name: source
        for name, layer in graph.layers.items()
        if type(layer).__name__ == "BatchNormalization" and (source := _folded_into(name, graph))
    }
    fused_tails: set[str] = set()
    quantized = list(graph.input_names)
    for name, layer in graph.layers.items():
        kind = type(layer).__name__
        if kind in LINEAR or kind == "Add":
            tail = _tail(name, graph, folded)
            quantized.append(tail)
            fused_tails.add(tail)
        elif kind in ("GlobalAveragePooling2D", "Rescaling", "Concatenate"):
            quantized.append(name)
        elif kind in ("ReLU", "Activation") and name not in fused_tails:
            quantized.append(name)
    followers: dict[str, str] = {}
    for name, layer in graph.layers.items():
        if type(layer).__name__ == "Concatenate":
            for source in graph.producers[name]:
                followers.setdefault(_quantizing_source(source, graph, set(quantized)), name)
    return Plan(quantized=list(dict.fromkeys(quantized)), folded=folded, concat_followers=followers)


def _bn_factors(bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(multiplier, shift)`` per channel of a BatchNormalization in inference: ``y = x * multiplier + shift``."""
    config = bn.get_config()
    weights = {variable.path.split("/")[-1]: np.asarray(variable.numpy(), dtype=np.float64) for variable in bn.weights}
    mean, variance = weights["moving_mean"], weights["moving_variance"]
    gamma = weights.get("gamma", np.ones_like(mean)) if config.get("scale", True) else np.ones_like(mean)
    beta = weights.get("beta", np.zeros_like(mean)) if config.get("center", True) else np.zeros_like(mean)
    multiplier = gamma / np.sqrt(variance + config["epsilon"])
    return multiplier, beta - mean * multiplier


def folded_weights(layer: Any, bn: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias of ``layer`` with ``bn`` (or nothing) folded in, as TFLite's converter folds them."""
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
    channels = kernel.shape[-2] * kernel.shape[-1] if type(layer).__name__ == "DepthwiseConv2D" else kernel.shape[-1]
    bias = np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.bias is not None else np.zeros(channels)
    if bn is None:
        return kernel.astype(np.float32), bias.astype(np.float32)
    multiplier, shift = _bn_factors(bn)
    flat = kernel.reshape(*kernel.shape[:-2], channels) if type(layer).__name__ == "DepthwiseConv2D" else kernel
    folded_kernel = (flat * multiplier).reshape(kernel.shape)
    return folded_kernel.astype(np.float32), (bias * multiplier + shift).astype(np.float32)


def _quantized_linear(layer: Any, bn: Any | None) -> Any:
    """The fake-quant twin of a Conv2D/DepthwiseConv2D/Dense, built, with ``bn`` folded into its weights."""
    from edgedistill.keras3.layers import QUANTIZED_LINEAR

    config = {**layer.get_config(), "use_bias": True}
    twin = QUANTIZED_LINEAR[type(layer).__name__].from_config(config)
    twin.build(layer.input.shape)
    twin.set_weights(list(folded_weights(layer, bn)))
    return twin


def quantize_model(
    model: Any, *, input_range: tuple[float, float] | None = None, decay: float | None = None, name: str | None = None
) -> Any:
    """A Keras 3 QAT model of the float ``model``: BatchNorms folded, fake-quant int8 weights and activations.

    ``input_range`` fixes the input's range (``(0, 255)`` for byte data: the int8 input is then ``byte - 128``);
    otherwise it is learnt like the other activations. ``decay`` is the ranges' moving-average decay per
    training batch (default 0.999, tfmot's). The float model is left untouched. Raises :class:`InputError`
    for a layer that is not covered (:func:`check_covered`).
    """
    from edgedistill.keras3.layers import DEFAULT_DECAY, ActivationQuantizer

    keras, _ = import_keras3()
    functional = _as_functional(model)
    check_covered(functional)
    graph = read_graph(functional)
    plan = make_plan(graph)
    quantizers = {
        layer_name: ActivationQuantizer(decay=decay or DEFAULT_DECAY, name=f"{layer_name}_quant")
        for layer_name in plan.quantized
        if layer_name not in graph.input_names
    }
    for follower, leader in plan.concat_followers.items():
        quantizers[follower].follow(quantizers[leader])
    inputs = [keras.Input(batch_shape=graph.layers[n].output.shape, name=n) for n in graph.input_names]
    tensors = {}
    for input_name, tensor in zip(graph.input_names, inputs):
        tensors[input_name] = ActivationQuantizer(
            decay=decay or DEFAULT_DECAY, fixed_range=input_range, name=f"{input_name}_quant"
        )(tensor)
    folded_by = {source: bn for bn, source in plan.folded.items()}
    for layer_name, layer in graph.layers.items():
        if layer_name in graph.input_names:
            continue
        arguments = [tensors[source] for source in graph.producers[layer_name]]
        if layer_name in plan.folded:
            output = arguments[0]  # folded into the layer before: an identity
        else:
            if type(layer).__name__ in LINEAR:
                bn = graph.layers[folded_by[layer_name]] if layer_name in folded_by else None
                clone = _quantized_linear(layer, bn)
            else:
                clone = layer.__class__.from_config(layer.get_config())
            output = clone(arguments if len(arguments) > 1 or type(layer).__name__ in ("Add", "Concatenate") else arguments[0])
        tensors[layer_name] = quantizers[layer_name](output) if layer_name in quantizers else output
    outputs = [tensors[t._keras_history.operation.name] for t in functional.outputs]
    # One input as a tensor, not a list of one: Keras 3 warns on every predict when the structures differ.
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=name or f"{functional.name}_qat",
    )


def activation_quantizers(qat_model: Any) -> dict[str, Any]:
    """``layer name -> ActivationQuantizer`` of a model made by :func:`quantize_model` (for reports and tests)."""
    from edgedistill.keras3.layers import ActivationQuantizer

    return {layer.name: layer for layer in qat_model.layers if isinstance(layer, ActivationQuantizer)}


__all__ = [
    "quantize_model",
    "unsupported_layers",
    "check_covered",
    "read_graph",
    "make_plan",
    "folded_weights",
    "activation_quantizers",
    "COVERED",
]
