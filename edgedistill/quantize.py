"""Quantization-aware training (QAT) models through tfmot: fake-quant int8 wrappers, nothing else.

``quantize_model`` wraps a float tf_keras model in fake-quant ops (int8 weights per channel,
int8 activations) with tfmot's default 8-bit scheme. Training the result is the caller's
business: :func:`edgedistill.distill.quantize_distill` continues distillation on it (the float
teacher pulls the fake-quant student). This module knows nothing of distillation.
"""

from __future__ import annotations

import logging

from edgedistill._keras import import_tfmot, keras
from edgedistill.errors import InputError, StageError

logger = logging.getLogger(__name__)

# tfmot's default 8-bit layout transforms fold a BatchNormalization into the linear layer
# that feeds it (Conv2DBatchNormQuantize, DenseBatchNormQuantize and their +ReLU forms), so
# such a BatchNormalization is quantized although the registry does not list it.
_FOLDED_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")


def _producers(model: keras.Model) -> dict[str, list[str]]:
    """``layer name -> names of the layers feeding it`` in this model's graph.

    Read from the model's config, as tfmot's transforms do: a layer object reused by another
    model (e.g. after ``strip_pruning``) has inbound nodes in both, its config here only one.
    """
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        return {name: [previous] for previous, name in zip(names, names[1:])}
    producers = {}
    for layer in model.get_config()["layers"]:
        nodes = layer.get("inbound_nodes") or []
        producers[layer["name"]] = [entry[0] for entry in nodes[0]] if len(nodes) == 1 else []
    return producers


def _folded_batch_norm(layer, producers: dict[str, list[str]], model: keras.Model) -> bool:
    if not isinstance(layer, keras.layers.BatchNormalization):
        return False
    inbound = producers.get(layer.name, [])
    if len(inbound) != 1:
        return False
    source = model.get_layer(inbound[0])
    return type(source).__name__ in _FOLDED_INTO and source.get_config().get("activation") == "linear"


def unsupported_layers(model: keras.Model) -> list[tuple[str, str]]:
    """``(name, type)`` of each layer tfmot's default 8-bit scheme cannot quantize.

    A layer passes when it is already annotated or wrapped by tfmot (``QuantizeAnnotate``,
    ``QuantizeWrapper``: its QuantizeConfig decides), when
    ``Default8BitQuantizeRegistry().supports(layer)``, when it is a BatchNormalization folded
    into the Conv2D/DepthwiseConv2D/Dense before it, an input, or a Lambda (tfmot leaves
    Lambda layers in float and warns). A nested model is reported: tfmot refuses them.
    """
    quantization = import_tfmot().quantization.keras
    # The annotation wrapper has no public name: tfmot's own `quantize` module imports it.
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_annotate import QuantizeAnnotate

    registry = quantization.default_8bit.Default8BitQuantizeRegistry()
    already_quantizable = (QuantizeAnnotate, quantization.QuantizeWrapper, keras.layers.InputLayer)
    producers = _producers(model)
    unsupported = []
    for layer in model.layers:
        if isinstance(layer, already_quantizable) or _is_preprocessing(layer):
            continue
        if isinstance(layer, keras.Model):
            unsupported.append((layer.name, f"{type(layer).__name__} (a model nested in the model)"))
        elif isinstance(layer, keras.layers.Lambda):
            logger.warning("tfmot leaves Lambda layer %r in float: the int8 model may keep float ops.", layer.name)
        elif not (registry.supports(layer) or _folded_batch_norm(layer, producers, model)):
            unsupported.append((layer.name, type(layer).__name__))
    return unsupported


def _is_preprocessing(layer) -> bool:
    """The ``preprocess`` Rescaling of a model taking raw values (:mod:`edgedistill.preprocessing`)."""
    from edgedistill.preprocessing import PREPROCESS_LAYER_NAME

    return isinstance(layer, keras.layers.Rescaling) and layer.name.startswith(PREPROCESS_LAYER_NAME)


def _annotate_preprocessing(model: keras.Model) -> tuple[keras.Model, dict]:
    """``model`` with its ``preprocess`` layer annotated for tfmot (its output quantized, nothing else),
    and the custom objects tfmot needs; the model itself when it has none."""
    from edgedistill.preprocessing import preprocessing_quantize_config

    if not any(_is_preprocessing(layer) for layer in model.layers):
        return model, {}
    config_class = preprocessing_quantize_config()
    annotate = import_tfmot().quantization.keras.quantize_annotate_layer

    def clone(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        return annotate(fresh, quantize_config=config_class()) if _is_preprocessing(layer) else fresh

    annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return annotated, {config_class.__name__: config_class}


def quantize_model(model: keras.Model, *, input_range: tuple[float, float] | None = None) -> keras.Model:
    """Wrap a float tf_keras model for QAT (``tfmot.quantization.keras.quantize_model``).

    Every layer is checked first (:func:`unsupported_layers`): one tfmot cannot quantize
    raises :class:`StageError` naming the layer and its type, before tfmot clones anything.
    A ``preprocess`` layer (raw values -> the model's inputs) keeps its float map and gets its output
    quantized. ``input_range`` fixes the input quantizer's range (0..255 for byte data).
    """
    tfmot = import_tfmot()
    if not isinstance(model, keras.Model):
        raise InputError(
            f"QAT needs a tf_keras model; received {type(model).__module__}.{type(model).__name__}. "
            "Build the student with tf_keras (Keras 2) or from a preset."
        )
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise InputError(
            f"QAT needs a functional or Sequential tf_keras model; {model.name!r} is a subclassed "
            f"{type(model).__name__}. Build it with the functional API or from a preset."
        )
    unsupported = unsupported_layers(model)
    if unsupported:
        listing = ", ".join(f"{name!r} of type {layer_type}" for name, layer_type in unsupported)
        raise StageError(
            f"tfmot cannot quantize layer {listing} (model {model.name!r}). "
            "Replace it with a supported layer (Conv2D, DepthwiseConv2D, Dense, BatchNormalization after a conv or dense, "
            "ReLU, pooling, Reshape/Flatten) or annotate it with a tfmot QuantizeConfig."
        )
    from edgedistill.preprocessing import set_quantized_input_range

    try:
        annotated, custom_objects = _annotate_preprocessing(model)
        with tfmot.quantization.keras.quantize_scope(custom_objects):
            quantized = tfmot.quantization.keras.quantize_model(annotated)
        if input_range is not None:
            set_quantized_input_range(quantized, input_range)
        return quantized
    except (ValueError, RuntimeError) as error:
        # What the layer check above cannot foresee (e.g. a custom QuantizeConfig that fails).
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StageError(f"tfmot cannot quantize model {model.name!r}: {message}") from None


__all__ = ["quantize_model", "unsupported_layers"]
