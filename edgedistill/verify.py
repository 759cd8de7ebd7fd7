"""The parity gate: accuracy of every form of the model on the test split, and agreement.

Teacher, float student and QAT student run in Keras; the int8 model runs on the host LiteRT
interpreter and on the real TFLite Micro interpreter. Besides accuracies, the gate reports
how often the forms agree on the predicted class, and the largest difference between
LiteRT and TFLM int8 outputs in quantization steps (the reference kernels of TFLM and the
optimised kernels of LiteRT may round differently by 1-2 steps).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgedistill.errors import GateFailed
from edgedistill.tflite_model import LiteRTModel
from edgedistill.tflm import TFLMModel


@dataclasses.dataclass
class VerifyResult:
    accuracy: dict[str, float]
    agreement: dict[str, float]
    max_int8_output_difference_steps: int | None
    max_int8_output_difference_steps_xnnpack: int | None
    num_test_samples: int
    max_int8_drop: float
    int8_drop: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _max_steps(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.max(np.abs(a.astype(np.int32) - b.astype(np.int32))))


def _percent(mask: np.ndarray) -> float:
    return float(np.mean(mask) * 100.0)


def _int8_predictions(
    int8_tflite: bytes, x_test: np.ndarray, tflm_arena_size: int | None, predictions: dict[str, np.ndarray]
) -> tuple[int | None, int | None]:
    """Adds the LiteRT (and TFLM) predictions; returns the largest int8 output differences
    LiteRT builtin~TFLM and LiteRT XNNPACK~TFLM, in quantization steps."""
    litert_raw = LiteRTModel(int8_tflite).raw_outputs(x_test)
    predictions["int8_litert"] = litert_raw.argmax(axis=-1)
    if tflm_arena_size is None:
        return None, None
    tflm_raw = TFLMModel(int8_tflite, arena_size=tflm_arena_size).raw_outputs(x_test)
    predictions["int8_tflm"] = tflm_raw.argmax(axis=-1)
    if not np.issubdtype(litert_raw.dtype, np.integer):
        return None, None
    # Like for like: LiteRT's own kernels (no XNNPACK delegate) against TFLM's.
    builtin_raw = LiteRTModel(int8_tflite, kernels="builtin").raw_outputs(x_test)
    return _max_steps(builtin_raw, tflm_raw), _max_steps(litert_raw, tflm_raw)


def verify_models(
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    keras_models: dict[str, Any] | None = None,
    int8_tflite: bytes | None = None,
    tflm_arena_size: int | None = None,
    max_int8_drop: float = 1.0,
    reference: str = "qat_student",
    max_samples: int | None = None,
) -> VerifyResult:
    """Accuracy (percent) per form of the model and agreement between forms.

    Args:
        keras_models: e.g. ``{"teacher": t, "float_student": s, "qat_student": q}``.
        int8_tflite: the int8 flatbuffer, run on LiteRT (``int8_litert``) and, when
            ``tflm_arena_size`` is given, on TFLM (``int8_tflm``).
        max_int8_drop: the gate: the int8 (LiteRT) accuracy may be at most this many
            points below ``reference`` (default the QAT student).
    """
    if max_samples is not None:
        x_test, y_test = x_test[:max_samples], y_test[:max_samples]
    predictions: dict[str, np.ndarray] = {}
    for name, model in (keras_models or {}).items():
        if model is not None:
            predictions[name] = np.asarray(model.predict(x_test, batch_size=256, verbose=0)).argmax(axis=-1)
    max_steps = max_steps_xnnpack = None
    if int8_tflite is not None:
        max_steps, max_steps_xnnpack = _int8_predictions(int8_tflite, x_test, tflm_arena_size, predictions)
    accuracy = {name: _percent(p == y_test) for name, p in predictions.items()}
    agreement: dict[str, float] = {}
    pairs = [("int8_litert", "int8_tflm"), ("qat_student", "int8_litert"), ("float_student", "qat_student"), ("teacher", "float_student")]
    for a, b in pairs:
        if a in predictions and b in predictions:
            agreement[f"{a}~{b}"] = _percent(predictions[a] == predictions[b])
    drop = None
    if "int8_litert" in accuracy and reference in accuracy:
        drop = accuracy[reference] - accuracy["int8_litert"]
    return VerifyResult(
        accuracy=accuracy,
        agreement=agreement,
        max_int8_output_difference_steps=max_steps,
        max_int8_output_difference_steps_xnnpack=max_steps_xnnpack,
        num_test_samples=int(len(y_test)),
        max_int8_drop=max_int8_drop,
        int8_drop=drop,
        passed=drop is None or drop <= max_int8_drop,
    )


def raise_if_failed(result: VerifyResult, *, reference: str = "qat_student") -> None:
    if not result.passed:
        raise GateFailed(
            f"int8 accuracy {result.accuracy['int8_litert']:.2f}% is {result.int8_drop:.2f} points below the "
            f"{reference} ({result.accuracy[reference]:.2f}%); the limit is --max-int8-drop {result.max_int8_drop}. "
            "Train QAT longer, calibrate on more samples, or raise the limit."
        )


__all__ = ["VerifyResult", "verify_models", "raise_if_failed"]
