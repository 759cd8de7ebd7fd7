"""Teacher calibration: temperature scaling and the expected calibration error (ECE).

Temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural
Networks") divides a model's logits by one scalar ``T`` fitted on held-out data by minimising
the negative log-likelihood ``NLL(T) = -mean_i log softmax(z_i / T)[y_i]``. It does not change
any prediction (argmax is invariant) but makes the confidences honest, which changes the soft
targets a student learns from.

``ECE = sum_b (|B_b| / n) * |acc(B_b) - conf(B_b)|`` over ``num_bins`` equal-width confidence
bins ``B_b`` (confidence = max softmax probability), in percent here.

Pure NumPy/SciPy: usable on cached logits without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from edgedistill.errors import InputError

logger = logging.getLogger(__name__)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise InputError(
            f"Calibration needs (num_samples, num_classes) logits and one label per sample; received logits {logits.shape} and "
            f"{labels.shape} labels."
        )
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise InputError(f"Labels must be in [0, {logits.shape[1]}); received {labels.min()}..{labels.max()}.")
    return logits, labels


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of ``softmax(logits / temperature)``."""
    logits, labels = _check(logits, labels)
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    log_probs = scaled - np.log(np.exp(scaled).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, *, temperature: float = 1.0, num_bins: int = 15) -> float:
    """ECE in percent (Naeini et al. 2015; Guo et al. 2017) of ``softmax(logits / temperature)``."""
    logits, labels = _check(logits, labels)
    probabilities = _softmax(logits / temperature)
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece * 100.0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` (bounded search on log T).

    NLL is convex in ``1/T``, so a bounded scalar search finds the global minimum.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = _check(logits, labels)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_logits`: the fitted temperature and the figures before/after."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    num_samples: int

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated logits ``logits / T`` (softmax of these are the calibrated probabilities)."""
        return (np.asarray(logits, dtype=np.float32) / np.float32(self.temperature)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": round(self.temperature, 4),
            "ece_before_percent": round(self.ece_before, 3),
            "ece_after_percent": round(self.ece_after, 3),
            "nll_before": round(self.nll_before, 4),
            "nll_after": round(self.nll_after, 4),
            "num_samples": self.num_samples,
        }


def calibrate_logits(logits: np.ndarray, labels: np.ndarray, *, num_bins: int = 15) -> Calibration:
    """Fit temperature scaling on ``(logits, labels)`` (the validation split) and measure ECE/NLL before and after.

    Example::

        calibration = calibrate_logits(teacher_val_logits, data.y_val)
        teacher_outputs = {split: calibration.apply(z) for split, z in teacher_outputs.items()}
    """
    temperature = fit_temperature(logits, labels)
    return Calibration(
        temperature=temperature,
        ece_before=expected_calibration_error(logits, labels, num_bins=num_bins),
        ece_after=expected_calibration_error(logits, labels, temperature=temperature, num_bins=num_bins),
        nll_before=negative_log_likelihood(logits, labels),
        nll_after=negative_log_likelihood(logits, labels, temperature),
        num_samples=int(len(labels)),
    )


__all__ = ["Calibration", "calibrate_logits", "expected_calibration_error", "fit_temperature", "negative_log_likelihood"]
