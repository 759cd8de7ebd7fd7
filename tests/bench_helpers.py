"""Shared helpers for the bench tests: tiny int8 models written once per session (in a subprocess,
so the test process does not pay TensorFlow's import)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

MAKE_MODELS = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np, tensorflow as tf, tf_keras as keras
    out = sys.argv[1]
    keras.utils.set_random_seed(0)

    def convert(model, name, int8):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            shape = (1,) + tuple(model.input_shape[1:])
            converter.representative_dataset = lambda: ([np.random.rand(*shape).astype("float32")] for _ in range(8))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        open(os.path.join(out, name), "wb").write(converter.convert())

    small = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    convert(small, "tiny_int8.tflite", True)
    convert(small, "tiny_float.tflite", False)
    # A larger model: enough work per invoke (~0.1-1 ms) that timings mean something.
    big = keras.Sequential([keras.layers.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                            keras.layers.DepthwiseConv2D(3, activation="relu"), keras.layers.Conv2D(32, 1),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    convert(big, "conv_int8.tflite", True)
    # `edgedistill run`'s default student (dscnn width 0.5 on digits' 8x8x1, 10 classes), untrained.
    from edgedistill.models import build_model
    convert(build_model("dscnn", (8, 8, 1), 10, width=0.5), "default_student_int8.tflite", True)
    """
)

PYTHON = sys.executable


_SHARED: Path | None = None


def make_models(directory: Path) -> dict[str, Path]:
    """Write the models once per test process (every bench test module shares them); ``directory``
    is used only by the first caller."""
    global _SHARED
    if _SHARED is not None:
        directory = _SHARED
    _SHARED = directory
    directory.mkdir(parents=True, exist_ok=True)
    names = ("tiny_int8.tflite", "tiny_float.tflite", "conv_int8.tflite", "default_student_int8.tflite")
    if not all((directory / name).exists() for name in names):
        subprocess.run([PYTHON, "-c", MAKE_MODELS, str(directory)], check=True, capture_output=True, timeout=300)
    return {name.split(".")[0]: directory / name for name in names}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
