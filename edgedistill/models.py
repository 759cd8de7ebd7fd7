"""Teacher and student architecture presets, and loading users' model files.

Presets are functional ``tf_keras`` models sized by a width multiplier, built only from
layers that tfmot can quantize and TFLite Micro can run (Conv2D, DepthwiseConv2D, Dense,
BatchNormalization folded into the conv, ReLU/ReLU6, Add, ZeroPadding2D, pooling). They output logits.

- ``cnn``: a plain CNN, two conv blocks (32w, 64w channels) and a dense layer (256w);
- ``dscnn``: a depthwise-separable CNN (MobileNet-style blocks) with global pooling;
- ``mlp``: two dense layers (256w, 128w), for flat feature data;
- ``resnet8``: the MLPerf Tiny image classification reference (ResNet-8, 16w/32w/64w);
- ``mobilenet_v1``: MobileNetV1 with width = alpha (MLPerf Tiny visual wake words: width 0.25);
- ``mobilenet_v2``: ``keras.applications.MobileNetV2`` (``weights=None``, alpha = width; inputs >= 32x32);
- ``dscnn_kws``: the MLPerf Tiny keyword spotting DS-CNN (conv 10x4 stride 2, 64w, 4 DS blocks);
- ``dscnn_kws_large``: Hello Edge's DS-CNN-L (276w, 5 DS blocks), a keyword spotting teacher;
- ``dscnn_kws_temporal``: a DS-CNN over time only, the filter bank channels as input channels
  (TC-ResNet's idea; 64w, 4 DS blocks): ~3x fewer instructions than ``dscnn_kws`` on a Cortex-M4.

A teacher can also be a file: a tf_keras ``.h5`` / ``.keras`` / SavedModel folder, a Keras 3
``.keras`` file, or a plain TensorFlow SavedModel (used for its outputs only).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, TypeAlias

import numpy as np

from edgedistill.errors import InputError
from edgedistill.registry import Registry

logger = logging.getLogger(__name__)
PRESETS: Registry[Callable[..., Any]] = Registry("model preset")


def _channels(base: int, width: float) -> int:
    return max(2, int(round(base * width)))


def _check_width(width: float) -> None:
    if not width > 0:
        raise InputError(f"`width` must be > 0. Received: width={width}. Use e.g. 0.25 for a small student.")


# Batch-norm statistics must settle within a few hundred steps on small data sets (digits
# has ~20 batches an epoch); Keras' default momentum of 0.99 leaves them far from the data's
# after a short training, and inference-mode accuracy collapses to chance.
BN_MOMENTUM = 0.9

# A Keras model: tf_keras (Keras 2, the tfmot path) or Keras 3 (--keras 3). Neither package ships type
# information, so to a type checker it is Any; the name says what is meant.
KerasModel: TypeAlias = Any


def _conv_bn_relu(keras, x, filters: int, kernel_size: int | tuple[int, int], name: str, strides: int | tuple[int, int] = 1):
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@PRESETS.register("cnn")
def build_cnn(input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "cnn"):
    """Plain CNN: [conv3x3-BN-ReLU-maxpool] x 2 (32w, 64w channels), dense 256w, logits."""
    from edgedistill._keras import keras

    _check_width(width)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for index, base in enumerate((32, 64)):
        x = _conv_bn_relu(keras, x, _channels(base, width), 3, name=f"block{index + 1}")
        if x.shape[1] >= 2 and x.shape[2] >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"block{index + 1}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(_channels(256, width), name="features")(x)
    x = keras.layers.ReLU(name="features_relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


@PRESETS.register("dscnn")
def build_dscnn(input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "dscnn"):
    """Depthwise-separable CNN: conv stem (32w), three DW3x3 + PW1x1 blocks (64w, 128w, 128w), global average pool, logits."""
    from edgedistill._keras import keras

    _check_width(width)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv_bn_relu(keras, inputs, _channels(32, width), 3, name="stem")
    for index, (base, stride) in enumerate(((64, 2), (128, 2), (128, 1))):
        stride = stride if x.shape[1] >= 4 else 1  # tiny inputs (8x8 digits) keep their resolution
        block = f"block{index + 1}"
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{block}_dw")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{block}_dw_bn")(x)
        x = keras.layers.ReLU(name=f"{block}_dw_relu")(x)
        x = _conv_bn_relu(keras, x, _channels(base, width), 1, name=f"{block}_pw")
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


@PRESETS.register("mlp")
def build_mlp(input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "mlp"):
    """Multi-layer perceptron: flatten, dense 256w, dense 128w, logits."""
    from edgedistill._keras import keras

    _check_width(width)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for index, base in enumerate((256, 128)):
        x = keras.layers.Dense(_channels(base, width), name=f"dense{index + 1}")(x)
        x = keras.layers.ReLU(name=f"dense{index + 1}_relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _conv_bn(keras, x, filters: int, kernel_size, name: str, strides=1):
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)


def _depthwise_separable(keras, x, filters: int, name: str, strides=1, kernel_size=3):
    """DW3x3-BN-ReLU then PW1x1-BN-ReLU (MobileNetV1's block, also DS-CNN's)."""
    x = keras.layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_dw_relu")(x)
    return _conv_bn_relu(keras, x, filters, 1, name=f"{name}_pw")


def _pooled_head(keras, inputs, x, num_classes: int, dropout: float, name: str):
    """Global average pool (``features``), optional dropout, dense ``logits``: the presets' common head."""
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _check_image_input(preset: str, input_shape) -> None:
    if len(tuple(input_shape)) != 3:
        raise InputError(
            f"The {preset} preset needs height x width x channels inputs; received shape {tuple(input_shape)}. "
            "Use the mlp preset for flat feature data."
        )


@PRESETS.register("resnet8")
def build_resnet8(input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "resnet8"):
    """ResNet-8, the MLPerf Tiny image classification reference (tiny v0.5, CIFAR-10 32x32x3).

    Stem conv3x3 (16w), then 3 residual stacks of (16w, 32w, 64w) channels: two conv3x3-BN
    (the first with stride 2 in stacks 2 and 3) added to the shortcut (identity in stack 1, a
    strided conv1x1 after), ReLU; global average pool, logits. As the reference, without its
    L2 weight decay (training owns regularisation) and with bias-free convs before batch norm
    (the same model once the batch norm is folded).
    """
    from edgedistill._keras import keras

    _check_width(width)
    _check_image_input("resnet8", input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv_bn_relu(keras, inputs, _channels(16, width), 3, name="stem")
    for index, base in enumerate((16, 32, 64)):
        stack, strides = f"stack{index + 1}", 1 if index == 0 else 2
        filters = _channels(base, width)
        y = _conv_bn_relu(keras, x, filters, 3, name=f"{stack}_a", strides=strides)
        y = _conv_bn(keras, y, filters, 3, name=f"{stack}_b")
        if index > 0:
            x = keras.layers.Conv2D(filters, 1, strides=strides, padding="same", name=f"{stack}_shortcut")(x)
        x = keras.layers.Add(name=f"{stack}_add")([x, y])
        x = keras.layers.ReLU(name=f"{stack}_relu")(x)
    return _pooled_head(keras, inputs, x, num_classes, dropout, name)


# MobileNetV1's 13 depthwise-separable blocks: (pointwise channels at width 1, stride).
MOBILENET_V1_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


@PRESETS.register("mobilenet_v1")
def build_mobilenet_v1(input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "mobilenet_v1"):
    """MobileNetV1 (Howard et al. 2017) with width = alpha; the MLPerf Tiny visual wake words
    reference is width 0.25 on 96x96x3 (2 classes).

    Conv3x3 stride 2 (32w), 13 depthwise-separable blocks (64w ... 1024w, strides as the paper),
    global average pool, logits. Without the reference's L2 weight decay.
    """
    from edgedistill._keras import keras

    _check_width(width)
    _check_image_input("mobilenet_v1", input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv_bn_relu(keras, inputs, _channels(32, width), 3, name="stem", strides=2)
    for index, (base, strides) in enumerate(MOBILENET_V1_BLOCKS):
        x = _depthwise_separable(keras, x, _channels(base, width), name=f"block{index + 1}", strides=strides)
    return _pooled_head(keras, inputs, x, num_classes, dropout, name)


def _build_kws_dscnn(inputs, *, filters: int, stem_strides, num_blocks: int, block_strides, keras):
    x = _conv_bn_relu(keras, inputs, filters, (10, 4), name="stem", strides=stem_strides)
    for index in range(num_blocks):
        x = _depthwise_separable(keras, x, filters, name=f"block{index + 1}", strides=block_strides if index == 0 else 1)
    return x


@PRESETS.register("dscnn_kws")
def build_dscnn_kws(input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "dscnn_kws"):
    """DS-CNN, the MLPerf Tiny keyword spotting reference (Zhang et al. 2017, "Hello Edge", DS-CNN-S;
    49 frames x 10 MFCC x 1 inputs, 12 classes).

    Conv 10x4 stride 2 (64w), 4 depthwise-separable blocks (DW3x3 + PW1x1, 64w), global average
    pool, logits. Without the reference's dropouts (0.2, 0.4; ``dropout`` sets the one before
    the logits) and L2 weight decay. Not the ``dscnn`` preset (the default image student).
    """
    from edgedistill._keras import keras

    _check_width(width)
    _check_image_input("dscnn_kws", input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _build_kws_dscnn(inputs, filters=_channels(64, width), stem_strides=2, num_blocks=4, block_strides=1, keras=keras)
    return _pooled_head(keras, inputs, x, num_classes, dropout, name)


@PRESETS.register("dscnn_kws_large")
def build_dscnn_kws_large(
    input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "dscnn_kws_large"
):
    """DS-CNN-L of "Hello Edge" (Zhang et al. 2017): a keyword spotting teacher (~0.4 M parameters at width 1).

    Conv 10x4 stride (2, 1) (276w), 5 depthwise-separable blocks of 276w (the first with stride
    2), global average pool, logits. About 8x the parameters of ``dscnn_kws`` at the same width.
    """
    from edgedistill._keras import keras

    _check_width(width)
    _check_image_input("dscnn_kws_large", input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _build_kws_dscnn(inputs, filters=_channels(276, width), stem_strides=(2, 1), num_blocks=5, block_strides=2, keras=keras)
    return _pooled_head(keras, inputs, x, num_classes, dropout, name)


@PRESETS.register("dscnn_kws_temporal")
def build_dscnn_kws_temporal(
    input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "dscnn_kws_temporal"
):
    """A temporal DS-CNN for keyword spotting: convolutions over time only, the features of a frame
    as input channels (the idea of TC-ResNet, Choi et al. 2019, "Temporal Convolution for Real-time
    Keyword Spotting on Mobile Devices", in DS-CNN's blocks).

    ``(frames, channels, 1)`` is transposed to ``(frames, 1, channels)``; conv 10x1 stride 2 (64w),
    4 depthwise-separable blocks (DW 3x1 + PW 1x1, 64w), global average pool, logits. Why: the 2-D
    ``dscnn_kws`` stem sees one input channel, which CMSIS-NN runs at ~8 instructions per MAC on a
    Cortex-M4, and its blocks run on frames x channels positions; here the stem has ``channels``
    input channels and the blocks run on ~frames/2 positions (on 49 x 20 features, width 0.75:
    1.6 M instructions per inference with CMSIS-NN on the M4 against 7.8 M for ``dscnn_kws``
    width 0.5; ``benchmarks/keyword_spotting.py``).
    """
    from edgedistill._keras import keras

    _check_width(width)
    _check_image_input("dscnn_kws_temporal", input_shape)
    frames, columns, depth = (int(size) for size in input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    if depth == 1:  # a TRANSPOSE of a unit axis; a Reshape converts to SHAPE, STRIDED_SLICE, PACK, RESHAPE (the batch is dynamic)
        x = keras.layers.Permute((1, 3, 2), name="frames_as_channels")(inputs)
    else:
        x = keras.layers.Reshape((frames, 1, columns * depth), name="frames_as_channels")(inputs)
    filters = _channels(64, width)
    x = _conv_bn_relu(keras, x, filters, (10, 1), name="stem", strides=(2, 1))
    for index in range(4):
        x = _depthwise_separable(keras, x, filters, name=f"block{index + 1}", kernel_size=(3, 1))
    return _pooled_head(keras, inputs, x, num_classes, dropout, name)


MOBILENET_V2_MIN_SIZE = 32  # keras.applications.MobileNetV2 refuses smaller inputs


@PRESETS.register("mobilenet_v2")
def build_mobilenet_v2(input_shape, num_classes: int, *, width: float = 1.0, dropout: float = 0.0, name: str = "mobilenet_v2"):
    """MobileNetV2 (Sandler et al. 2018) from ``keras.applications`` with ``weights=None`` and alpha = width.

    The application's body (inverted residual blocks, ReLU6, its last 1x1 conv of 1280 channels
    for width <= 1), global average pool and this project's logits head. Inputs must be at least
    32x32. Batch norms get this project's momentum so that short trainings settle.
    """
    from edgedistill._keras import keras

    _check_width(width)
    _check_image_input("mobilenet_v2", input_shape)
    height, width_pixels = tuple(input_shape)[:2]
    if height < MOBILENET_V2_MIN_SIZE or width_pixels < MOBILENET_V2_MIN_SIZE:
        raise InputError(
            f"The mobilenet_v2 preset needs inputs of at least {MOBILENET_V2_MIN_SIZE}x{MOBILENET_V2_MIN_SIZE} "
            f"(keras.applications.MobileNetV2); received {height}x{width_pixels}. Resize the data "
            "(e.g. --image-size 32x32) or use mobilenet_v1 or resnet8."
        )
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    body = keras.applications.MobileNetV2(input_tensor=inputs, include_top=False, weights=None, alpha=width, pooling=None)
    for layer in body.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM  # the application's 0.999 leaves the statistics unsettled after short trainings
    return _pooled_head(keras, inputs, body.output, num_classes, dropout, name)


def build_model(preset: str, input_shape, num_classes: int, *, width: float = 1.0, name: str | None = None, **options):
    """Build a preset by name (``cnn``, ``dscnn``, ``mlp``, ``resnet8``, ``mobilenet_v1``, ``mobilenet_v2``,
    ``dscnn_kws``, ``dscnn_kws_large``; see :data:`PRESETS`), sized by ``width``."""
    builder = PRESETS.get(preset)
    return builder(input_shape, num_classes, width=width, name=name or preset, **options)


def count_parameters(model) -> int:
    """Number of parameters of a Keras model (trainable and not), or 0 for a plain callable."""
    try:
        return int(model.count_params())
    except Exception:
        return 0


class ExternalTeacher:
    """A teacher that is not a tf_keras model: a Keras 3 model or a TensorFlow SavedModel.

    Only its outputs are used: the distiller caches them (teachers of this kind cannot be
    traced into a tf_keras training step, so augmentation that needs the teacher per batch
    requires a tf_keras teacher).
    """

    def __init__(self, function: Callable[[np.ndarray], Any], *, description: str, num_params: int = 0) -> None:
        self._function = function
        self.description = description
        self.num_params = num_params

    def __call__(self, x, training: bool = False):
        return self._function(x)

    def count_params(self) -> int:
        return self.num_params

    def predict(self, x: np.ndarray, batch_size: int = 256, verbose: int = 0) -> np.ndarray:
        outputs = [np.asarray(self._function(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(outputs, axis=0)


def _looks_like_keras3_file(path: Path) -> bool:
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read("metadata.json"))
    except Exception:
        return False
    return str(metadata.get("keras_version", "")).startswith("3")


# Layers whose configuration carries Python code that runs when the model is loaded or called.
CODE_LAYERS = ("Lambda", "__lambda__")
# tf_keras' TFOpLambda / SlicingOpLambda call the TensorFlow symbol their config names (`"function":
# "math.add"`), resolved in the whole tf namespace: harmless for math, but `io.write_file`,
# `py_function` or `raw_ops.WriteFile` would act on the host when the model runs. A deny-list of the
# namespaces and symbols that reach files, Python, the network or the process (prefixes of the
# dotted name, `compat.v1.` / `compat.v2.` stripped first); anything else is a pure tensor op.
OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")
DANGEROUS_TF_SYMBOLS = (
    "io.",
    "py_function",
    "numpy_function",
    "py_func",
    "raw_ops.",
    "print",
    "debugging.",
    "summary.",
    "data.",
    "saved_model.",
    "distribute.",
    "config.",
    "experimental.",
    "train.",
    "lookup.",
    "sysconfig.",
    "profiler.",
    "autograph.",
    "load_op_library",
    "load_library",
    "gfile.",
    "compat.",
    "__internal__.",
    "tpu.",
    "queue.",
    "random.experimental.",
    "strings.format",
    "write_file",
    "read_file",
    "Print",
    "Assert",
    "keras.",
)
_TRUST_MODEL_CODE: contextvars.ContextVar[bool] = contextvars.ContextVar("edgedistill_trust_model_code", default=False)


@contextlib.contextmanager
def trust_model_code(enabled: bool = True) -> Iterator[None]:
    """Within this block, :func:`load_model_file` loads models whose layers carry Python code.

    Off by default: a tf_keras ``.h5`` file with a ``Lambda`` layer runs its bytecode when loaded
    (tf_keras applies ``safe_mode`` to ``.keras`` files only). ``--trust-model-code`` turns it on.
    """
    token = _TRUST_MODEL_CODE.set(enabled)
    try:
        yield
    finally:
        _TRUST_MODEL_CODE.reset(token)


def _zip_configs(path: Path) -> list[Any]:
    """``config.json`` of a zip (a ``.keras`` file: tf_keras' and Keras 3's saving_lib read it)."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [json.loads(archive.read("config.json"))] if "config.json" in archive.namelist() else []


def _hdf5_configs(path: Path) -> list[Any]:
    """``model_config`` of an HDF5 file (tf_keras' and Keras 3's legacy ``.h5`` loaders read it)."""
    import json

    import h5py

    with h5py.File(path, "r") as handle:
        text = handle.attrs.get("model_config")
    return [json.loads(text)] if text is not None else []


def _saved_model_configs(path: Path) -> list[Any]:
    """Keras configs of a SavedModel folder, from every place a loader reads them.

    tf_keras reads ``keras_metadata.pb`` when present, else (SavedModels written before TF 2.5)
    the ``user_object.metadata`` of the object graph in ``saved_model.pb`` (or ``saved_model.pbtxt``);
    Keras 3 reads ``config.json`` from a folder. All of them are checked, whichever the loader picks.
    """
    import json

    configs: list[Any] = []
    metadata = path / "keras_metadata.pb"
    if metadata.exists():
        from tf_keras.protobuf import saved_metadata_pb2

        saved = saved_metadata_pb2.SavedMetadata()
        saved.ParseFromString(_regular_file(metadata).read_bytes())
        configs += [json.loads(node.metadata) for node in saved.nodes if node.metadata]
    graph = _saved_model_proto(path)
    if graph is not None:
        for meta_graph in graph.meta_graphs:
            for node in meta_graph.object_graph_def.nodes:
                if node.WhichOneof("kind") == "user_object" and node.user_object.metadata:
                    configs.append(json.loads(node.user_object.metadata))
    if (path / "config.json").exists():
        configs.append(json.loads(_regular_file(path / "config.json").read_text()))
    return configs


# Graph ops that act on the host when a SavedModel's functions run (tf.saved_model.load and tf_keras both run
# them): files written or read, Python called back. Checkpoint ops (SaveV2, RestoreV2) are in every SavedModel's
# saver graph, never in its serving functions, and are not listed.
DANGEROUS_GRAPH_OPS = (
    "WriteFile",
    "ReadFile",
    "MatchingFiles",
    "PyFunc",
    "PyFuncStateless",
    "EagerPyFunc",
    "WriteSummary",
    "WriteRawProtoSummary",
    "CreateSummaryFileWriter",
)


def find_dangerous_ops(path: Path) -> list[str]:
    """Ops of :data:`DANGEROUS_GRAPH_OPS` (and PrintV2 to a file) in the functions of a SavedModel folder."""
    graph = _saved_model_proto(path)
    found: list[str] = []
    for meta_graph in graph.meta_graphs if graph is not None else []:
        nodes = list(meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            nodes.extend(function.node_def)
        for node in nodes:
            to_file = node.op == "PrintV2" and node.attr["output_stream"].s.startswith(b"file://")
            if node.op in DANGEROUS_GRAPH_OPS or to_file:
                found.append(f"{node.name} ({node.op})")
    return list(dict.fromkeys(found))


def _saved_model_proto(path: Path) -> Any:
    """``saved_model.pb`` (binary) or ``saved_model.pbtxt`` (text) of a folder, as TensorFlow's loader reads them."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    if (path / "saved_model.pb").exists():
        proto.ParseFromString(_regular_file(path / "saved_model.pb").read_bytes())
        return proto
    if (path / "saved_model.pbtxt").exists():
        from google.protobuf import text_format

        text_format.Parse(_regular_file(path / "saved_model.pbtxt").read_text(), proto)
        return proto
    return None


def _regular_file(path: Path) -> Path:
    """``path`` if it is a regular file: a FIFO, a device (/dev/zero) or a socket would block or never end."""
    import stat

    if not stat.S_ISREG(path.stat().st_mode):
        raise InputError(f"{path} is not a regular file (a device, FIFO or socket); expected a model file.")
    return path


def trusted() -> bool:
    """Whether :func:`trust_model_code` is on here (loaders pass it to Keras as ``safe_mode=not trusted()``)."""
    return _TRUST_MODEL_CODE.get()


def _model_configs(path: Path) -> list[Any]:
    """The Keras configuration(s) a model file holds, read as JSON without deserializing anything.

    A file is read as *every* format a loader may take it for, not the first that fits: an HDF5
    file with a zip appended is a zip to :func:`zipfile.is_zipfile` and an HDF5 model to tf_keras'
    ``.h5`` loader (which runs its Lambda layers); HDF5 may also start after a user block.
    """
    import zipfile

    import h5py

    if path.is_dir():
        return _saved_model_configs(path)
    _regular_file(path)
    configs: list[Any] = []
    if zipfile.is_zipfile(path):
        configs += _zip_configs(path)
    if h5py.is_hdf5(str(path)):
        configs += _hdf5_configs(path)
    return configs


def _dangerous_symbol(function: Any) -> bool:
    name = str(function)
    for prefix in ("tf.", "compat.v1.", "compat.v2."):
        name = name.removeprefix(prefix)
    return any(name == entry.rstrip(".") or name.startswith(entry) for entry in DANGEROUS_TF_SYMBOLS)


def _code_layer(config: dict) -> str | None:
    """``"name (kind)"`` when this config entry runs Python code or a side-effecting tf symbol, else None."""
    class_name = config.get("class_name")
    nested = config.get("config")
    inner = nested if isinstance(nested, dict) else {}
    name = inner.get("name") or config.get("name") or "?"
    if class_name in CODE_LAYERS or inner.get("function_type") == "lambda" or config.get("function_type") == "lambda":
        return f"{name} ({class_name or 'lambda function'})"  # any layer whose config holds marshalled bytecode
    if class_name in OP_LAYERS and _dangerous_symbol(inner.get("function", "")):
        return f"{name} ({class_name} calling tf.{inner.get('function')})"
    return None


def find_code_layers(config: Any) -> list[str]:
    """``"name (Lambda)"`` for every layer in a Keras config (nested models included) that carries code
    (or, for ``TFOpLambda``, calls a TensorFlow symbol with side effects)."""
    found: list[str] = []
    if isinstance(config, dict):
        layer = _code_layer(config)
        if layer:
            return [layer]  # its own config (the bytecode) is not searched again
        for value in config.values():
            found.extend(find_code_layers(value))
    elif isinstance(config, list):
        for value in config:
            found.extend(find_code_layers(value))
    return list(dict.fromkeys(found))


def refuse_code_layers(path: Path) -> None:
    """Refuse a model with Python-code layers unless :func:`trust_model_code` is on.

    Fails closed: a configuration a loader would read but this check cannot is refused too.
    """
    if _TRUST_MODEL_CODE.get():
        return
    try:
        layers = find_code_layers(_model_configs(path))
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - what cannot be checked is not loaded
        raise InputError(
            f"Cannot load model {path}: it is corrupt or not a Keras/SavedModel model (its configuration cannot be "
            f"read to check it for code layers: {_first_line(error)}). Re-export it, or pass --trust-model-code if "
            "you trust this file."
        ) from None
    if not layers and path.is_dir():
        layers = find_dangerous_ops(path)
    if layers:
        raise InputError(
            f"{path} has layer(s) that run Python code when loaded (or ops that touch files when run): "
            f"{', '.join(layers[:5])}. Refused for safety. "
            "Rewrite them as built-in layers, or pass --trust-model-code if you trust this file."
        )


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else error.__class__.__name__


def _load_tf_keras(path: Path, *, compile: bool):
    from edgedistill._keras import import_tfmot, keras

    from edgedistill.preprocessing import preprocessing_quantize_config

    options = {"safe_mode": not _TRUST_MODEL_CODE.get()} if path.suffix == ".keras" else {}
    preprocessing_quantize_config()  # registered before loading: QAT students carry it on their `preprocess` layer
    # The quantize scope lets QAT (fake-quant) models saved by edgedistill load too.
    with import_tfmot().quantization.keras.quantize_scope():
        loaded = keras.models.load_model(path, compile=compile, **options)
    # A SavedModel without Keras metadata loads as a bare trackable: it is read by _load_saved_model.
    return loaded if isinstance(loaded, keras.Model) else None


def _load_keras3(path: Path) -> ExternalTeacher:
    import keras as keras3  # Keras 3 is independent of TF_USE_LEGACY_KERAS

    # A saved Keras 3 QAT student loads once edgedistill.keras3.loading.register_layers() ran (the callers above do).
    model = keras3.saving.load_model(path, compile=False, safe_mode=not _TRUST_MODEL_CODE.get())
    return ExternalTeacher(
        lambda x: np.asarray(model(np.asarray(x, dtype=np.float32), training=False)),
        description=f"Keras {keras3.__version__} model {path.name}",
        num_params=int(model.count_params()),
    )


def is_keras3_file(path: str | os.PathLike) -> bool:
    """A ``.keras`` file saved by Keras 3 (its ``metadata.json`` says so); False for tf_keras files and anything else."""
    path = Path(path).expanduser()
    return path.suffix == ".keras" and path.is_file() and _looks_like_keras3_file(path)


def _load_saved_model(path: Path) -> ExternalTeacher:
    from edgedistill._keras import tf

    logger.warning(
        "Loading TensorFlow SavedModel %s: its graph runs whenever it is used (side effects included); "
        "use SavedModels only from sources you trust.",
        path,
    )
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    input_name = list(signature.structured_input_signature[1].keys())[0]
    output_name = list(signature.structured_outputs.keys())[0]

    def run(x):
        return signature(**{input_name: tf.constant(np.asarray(x, dtype=np.float32))})[output_name].numpy()

    num_params = int(sum(np.prod(v.shape) for v in getattr(loaded, "variables", [])))
    return ExternalTeacher(run, description=f"SavedModel {path.name}", num_params=num_params)


def _check_model_path(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"Model file not found: {path}. Expected a .keras, .h5 file or a SavedModel folder.")
    if not path.is_dir() and not path.is_file():  # /dev/zero would be read until memory runs out, a FIFO blocks
        raise InputError(
            f"{path} is not a regular file or a folder (a device, FIFO or socket); expected a .keras, "
            ".h5 file or a SavedModel folder."
        )
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"Model file {path} is empty (0 bytes). Re-export the model.")
    if path.is_file() and path.suffix == ".tflite":
        raise InputError(f"{path} is a TFLite flatbuffer; a Keras model (.keras, .h5 or a SavedModel folder) is needed here.")
    return path


def load_model_file(path: str | os.PathLike, *, compile: bool = False):
    """Load a teacher or student from a file.

    Accepts tf_keras ``.h5`` / ``.keras`` / SavedModel folders (returned as ``tf_keras.Model``),
    Keras 3 ``.keras`` files and plain TensorFlow SavedModels (returned as
    :class:`ExternalTeacher`: usable as a teacher, not as a student). Models with layers that
    carry Python code (``Lambda``) are refused unless :func:`trust_model_code` is on.
    """
    path = _check_model_path(path)
    refuse_code_layers(path)
    errors: list[str] = []
    loaders = []
    if not (path.suffix == ".keras" and _looks_like_keras3_file(path)):
        loaders.append(("tf_keras", lambda: _load_tf_keras(path, compile=compile)))
    if path.suffix == ".keras":
        loaders.append(("keras 3", lambda: _load_keras3(path)))
    if path.is_dir():
        loaders.append(("SavedModel", lambda: _load_saved_model(path)))
    for name, loader in loaders:
        try:
            loaded = loader()
        except Exception as error:  # noqa: BLE001 - every loader failure is reported together below
            errors.append(f"{name}: {_first_line(error)}")
            continue
        if loaded is not None:
            return loaded
    raise InputError(
        f"Cannot load model {path}: it is corrupt or not a Keras/SavedModel model ({'; '.join(errors)}). "
        "Expected a tf_keras or Keras 3 .keras file, an .h5 file or a SavedModel folder."
    )


def model_output_classes(model) -> int | None:
    """Number of classes a classifier outputs (last dimension), when it can be read."""
    shape = getattr(model, "output_shape", None)
    if isinstance(shape, tuple) and shape and shape[-1] is not None:
        return int(shape[-1])
    return None


def check_classes(model_or_outputs, num_classes: int, role: str) -> None:
    """The model (or an array of its outputs) must give one value per class of the data."""
    shape = getattr(model_or_outputs, "shape", None)
    classes: int | None
    if shape is not None and not callable(model_or_outputs):
        classes = int(shape[-1])
    else:
        classes = model_output_classes(model_or_outputs)
    if classes is not None and classes != num_classes:
        raise InputError(
            f"The {role} outputs {classes} classes but the data has {num_classes}; they must match. "
            f"Use a {role} trained on this data set, or the data it was trained on."
        )


def predict_logits(model, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Model outputs as logits.

    A model that ends in a softmax outputs probabilities; ``log(p)`` differs from its logits
    only by a per-sample constant, to which softmax (at any temperature) is invariant, so
    distillation can use it as logits.
    """
    # In blocks: Keras copies its whole input into one tensor (a memory-mapped split would land in RAM).
    block = 8192
    outputs = (
        np.concatenate(
            [
                np.asarray(model.predict(x[start : start + block], batch_size=batch_size, verbose=0), dtype=np.float32)
                for start in range(0, max(len(x), 1), block)
            ]
        )
        if len(x) > block
        else np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
    )
    if outputs.ndim != 2:
        raise InputError(f"The model outputs shape {outputs.shape}; expected (batch, num_classes) logits or probabilities.")
    if np.all(outputs >= 0) and np.all(outputs <= 1) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        outputs = np.log(np.clip(outputs, 1e-12, 1.0))
    return outputs


__all__ = [
    "PRESETS",
    "build_model",
    "build_cnn",
    "build_dscnn",
    "build_mlp",
    "build_resnet8",
    "build_mobilenet_v1",
    "build_mobilenet_v2",
    "build_dscnn_kws",
    "build_dscnn_kws_large",
    "count_parameters",
    "load_model_file",
    "predict_logits",
    "check_classes",
    "ExternalTeacher",
    "trust_model_code",
    "find_code_layers",
]
