"""The one place that selects Keras 2 (``tf_keras``) for TensorFlow.

tensorflow-model-optimization's quantization-aware training only works with Keras 2, so
``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported. Every module
that needs TensorFlow or Keras imports them from here::

    from edgedistill._keras import tf, keras
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

if os.environ["TF_USE_LEGACY_KERAS"] != "1":  # pragma: no cover - user override
    raise RuntimeError(
        "edgedistill needs Keras 2 (tf_keras) for quantization-aware training. "
        f"Received: TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r}; expected '1'. "
        "Unset the variable or set it to 1 before importing edgedistill."
    )

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402


def import_tfmot():
    """Return ``tensorflow_model_optimization`` (imported lazily: it is slow)."""
    import tensorflow_model_optimization as tfmot

    return tfmot


__all__ = ["tf", "keras", "import_tfmot"]
