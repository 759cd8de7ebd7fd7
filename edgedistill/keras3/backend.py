"""The Keras 3 side of edgedistill: ``keras`` (Keras 3) on the TensorFlow backend, beside tf_keras.

``edgedistill._keras`` sets ``TF_USE_LEGACY_KERAS=1`` so that ``tf.keras`` is tf_keras (Keras 2, for tfmot);
that variable only redirects ``tf.keras``: ``import keras`` still gives Keras 3. The QAT here emits TensorFlow
fake-quant ops that the TFLite converter turns into int8 quantization parameters, so Keras 3 must run on the
TensorFlow backend.
"""

from __future__ import annotations

from typing import Any

from edgedistill.errors import InputError


def import_keras3() -> tuple[Any, Any]:
    """``(keras, tf)``: Keras 3 and TensorFlow; :class:`InputError` when Keras 3 runs on another backend."""
    from edgedistill._keras import tf  # first: sets TF_USE_LEGACY_KERAS before TensorFlow loads

    import keras

    if not str(keras.__version__).startswith("3"):
        raise InputError(
            f"Keras 3 is needed for a Keras 3 student; `import keras` gives Keras {keras.__version__}. "
            "Install keras>=3 (TensorFlow >= 2.16 ships it)."
        )
    if keras.backend.backend() != "tensorflow":
        raise InputError(
            f"Keras 3 runs on the {keras.backend.backend()!r} backend; int8 export goes through TensorFlow's converter. "
            "Set KERAS_BACKEND=tensorflow before starting Python."
        )
    return keras, tf


def is_keras3_model(model: Any) -> bool:
    """True for a Keras 3 ``keras.Model`` (not a tf_keras one), without importing Keras when it is not loaded."""
    import sys

    keras = sys.modules.get("keras")
    return keras is not None and str(getattr(keras, "__version__", "")).startswith("3") and isinstance(model, keras.Model)


__all__ = ["import_keras3", "is_keras3_model"]
