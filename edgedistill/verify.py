"""The parity gate: accuracy of every form of the model on the test split, and agreement.

Teacher, float student and QAT student run in Keras; the int8 model runs on the host LiteRT
interpreter and on the real TFLite Micro interpreter. Besides accuracies, the gate reports
how often the forms agree on the predicted class, and the largest difference between
LiteRT and TFLM int8 outputs in quantization steps (the reference kernels of TFLM and the
optimised kernels of LiteRT may round differently by 1-2 steps).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from edgedistill.errors import GateFailed, InputError
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
    # The chance gate: the share of the most frequent test label (what a constant guess scores, at
    # least 100 / classes), and the forms whose accuracy is not CHANCE_MARGIN_POINTS above it.
    chance_accuracy: float | None = None
    at_chance: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# A form must beat chance by this many points: a model that learned nothing (a diverged learning rate,
# shuffled labels) scores about chance and must never pass.
CHANCE_MARGIN_POINTS = 5.0


def chance_accuracy(y_test: np.ndarray) -> float:
    """Test accuracy (percent) of always guessing the most frequent test label."""
    _, counts = np.unique(np.asarray(y_test), return_counts=True)
    return float(counts.max() / counts.sum() * 100.0) if counts.size else 0.0


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


def _keras_input_shape(model: Any) -> tuple | None:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):  # several inputs: verify feeds one array
        return ("several inputs",)
    return tuple(shape[1:]) if isinstance(shape, tuple) else None


def check_input_shapes(keras_models: dict[str, Any], int8_tflite: bytes | None, data_shape: tuple) -> None:
    """Every form must take the data's samples: one InputError naming the form and both shapes (not Keras' traceback)."""
    shapes = {name: _keras_input_shape(model) for name, model in keras_models.items() if model is not None}
    if int8_tflite is not None:
        from edgedistill.tflite_model import read_model_info

        inputs = read_model_info(int8_tflite).inputs
        shapes["int8 model"] = tuple(int(d) for d in inputs[0].shape[1:]) if len(inputs) == 1 else ("several inputs",)
    for name, shape in shapes.items():
        fits = (
            shape is not None
            and len(shape) == len(data_shape)
            and all(expected is None or int(expected) == int(received) for expected, received in zip(shape, data_shape))
        )
        if shape is not None and not fits:
            raise InputError(
                f"The {name} takes inputs of shape {shape}, but the test samples of --data have shape {data_shape}. "
                "Compare models trained on the same data: pass the --data (and --image-size / --audio-* options) they "
                "were trained on, or a --reference of the same input shape."
            )


def check_output_sizes(keras_models: dict[str, Any], num_labels: int) -> None:
    """A model with fewer outputs than the test labels' classes can never be right on them: said, not scored."""
    for name, model in keras_models.items():
        shape = getattr(model, "output_shape", None)
        units = shape[-1] if isinstance(shape, tuple) and shape and isinstance(shape[-1], int) else None
        if units is not None and units < num_labels:
            raise InputError(
                f"The {name} has {units} outputs, but the test labels of --data go up to {num_labels - 1} ({num_labels} "
                "classes). Pass the --data it was trained on, or a model with one output per class."
            )


def _agreement(predictions: dict[str, np.ndarray]) -> dict[str, float]:
    """Percent of test samples on which neighbouring forms of the model (each step of the pipeline) predict alike."""
    agreement: dict[str, float] = {}
    pairs = [
        ("int8_litert", "int8_tflm"),
        ("qat_student", "int8_litert"),
        ("float_student", "qat_student"),
        ("teacher", "float_student"),
    ]
    for a, b in pairs:
        if a in predictions and b in predictions:
            agreement[f"{a}~{b}"] = _percent(predictions[a] == predictions[b])
    return agreement


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
    chance_gate: bool = True,
) -> VerifyResult:
    """Accuracy (percent) per form of the model and agreement between forms.

    Args:
        keras_models: e.g. ``{"teacher": t, "float_student": s, "qat_student": q}``.
        int8_tflite: the int8 flatbuffer, run on LiteRT (``int8_litert``) and, when
            ``tflm_arena_size`` is given, on TFLM (``int8_tflm``).
        max_int8_drop: the gate: the int8 (LiteRT) accuracy may be at most this many
            points below ``reference`` (default the QAT student).
        chance_gate: also fail when any form scores at most chance + ``CHANCE_MARGIN_POINTS``.
    """
    if max_samples is not None:
        x_test, y_test = x_test[:max_samples], y_test[:max_samples]
    check_input_shapes(keras_models or {}, int8_tflite, tuple(np.shape(x_test)[1:]))
    check_output_sizes(keras_models or {}, int(np.max(y_test)) + 1 if len(y_test) else 0)
    predictions: dict[str, np.ndarray] = {}
    for name, model in (keras_models or {}).items():
        if model is not None:
            predictions[name] = np.asarray(model.predict(x_test, batch_size=256, verbose=0)).argmax(axis=-1)
    max_steps = max_steps_xnnpack = None
    if int8_tflite is not None:
        max_steps, max_steps_xnnpack = _int8_predictions(int8_tflite, x_test, tflm_arena_size, predictions)
    accuracy = {name: _percent(p == y_test) for name, p in predictions.items()}
    agreement = _agreement(predictions)
    drop = None
    if "int8_litert" in accuracy and reference in accuracy:
        drop = accuracy[reference] - accuracy["int8_litert"]
    chance = chance_accuracy(y_test) if len(y_test) else None
    at_chance = [
        name for name, value in accuracy.items() if chance_gate and chance is not None and value <= chance + CHANCE_MARGIN_POINTS
    ]
    return VerifyResult(
        accuracy=accuracy,
        agreement=agreement,
        max_int8_output_difference_steps=max_steps,
        max_int8_output_difference_steps_xnnpack=max_steps_xnnpack,
        num_test_samples=int(len(y_test)),
        max_int8_drop=max_int8_drop,
        int8_drop=drop,
        passed=(drop is None or drop <= max_int8_drop) and not at_chance,
        chance_accuracy=chance,
        at_chance=at_chance,
    )


def raise_if_failed(result: VerifyResult, *, reference: str = "qat_student") -> None:
    if result.at_chance:
        assert result.chance_accuracy is not None  # at_chance is only filled when the chance accuracy is known
        scores = ", ".join(f"{name} {result.accuracy[name]:.2f}%" for name in result.at_chance)
        raise GateFailed(
            f"test accuracy at chance: {scores}; guessing the most frequent label scores {result.chance_accuracy:.2f}% "
            f"and the gate needs more than {result.chance_accuracy + CHANCE_MARGIN_POINTS:.2f}%. The model learned "
            "nothing: lower --learning-rate, train longer, or check the labels (--no-chance-gate skips this check)."
        )
    if not result.passed:
        raise GateFailed(
            f"int8 accuracy {result.accuracy['int8_litert']:.2f}% is {result.int8_drop:.2f} points below the "
            f"{reference} ({result.accuracy[reference]:.2f}%); the limit is --max-int8-drop {result.max_int8_drop}. "
            "Train QAT longer, calibrate on more samples, or raise the limit."
        )


# A paired difference of two models on one test split is called a win or a loss below this p-value (two-sided).
PAIRED_TEST_LEVEL = 0.05


def mcnemar_exact_p(only_first_right: int, only_second_right: int) -> float:
    """Two-sided p-value of McNemar's exact test: under "the two models are equally good" each test sample that
    exactly one of them gets right is a fair coin's toss between them."""
    discordant = only_first_right + only_second_right
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_first_right, only_second_right) + 1))
    return min(1.0, 2.0 * tail / 2**discordant)


def paired_comparison(y_test: np.ndarray, first: np.ndarray, second: np.ndarray) -> dict[str, Any]:
    """Two models' predicted classes on the same test samples: how many each alone gets right, McNemar's exact
    p-value and the verdict for the first: "better", "worse" or "not resolved" (p >= PAIRED_TEST_LEVEL).

    Unlike two accuracies side by side, this says whether the test split can tell the models apart at all."""
    first_right, second_right = np.asarray(first) == y_test, np.asarray(second) == y_test
    only_first = int(np.sum(first_right & ~second_right))
    only_second = int(np.sum(~first_right & second_right))
    p_value = mcnemar_exact_p(only_first, only_second)
    verdict = "not resolved"
    if p_value < PAIRED_TEST_LEVEL:
        verdict = "better" if only_first > only_second else "worse"
    return {
        "samples": int(len(y_test)),
        "only_first_right": only_first,
        "only_second_right": only_second,
        "p_value": round(p_value, 4),
        "verdict": verdict,
    }


__all__ = [
    "VerifyResult",
    "verify_models",
    "check_input_shapes",
    "check_output_sizes",
    "raise_if_failed",
    "chance_accuracy",
    "CHANCE_MARGIN_POINTS",
    "PAIRED_TEST_LEVEL",
    "mcnemar_exact_p",
    "paired_comparison",
]
