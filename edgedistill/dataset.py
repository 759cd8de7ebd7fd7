"""The one data set type: train / validation / test splits and what their values are.

Every loader makes one (:mod:`edgedistill.data` for arrays, :mod:`edgedistill.audio` for WAV
folders, which split by their own rules), so it sits below both; ``edgedistill.data.Dataset`` is
the same class.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class Dataset:
    """Train / validation / test splits of one data set.

    Images are NHWC arrays of raw values: ``uint8`` for bytes (pixels 0..255, digits 0..16), else
    float32; ``value_range`` is their nominal range and ``value_description`` says what they are.
    Labels are int64 class indices in [0, num_classes).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()
    audio: Any = None  # audio:DIR only: edgedistill.audio.AudioData (the front end, the raw test clips)
    value_range: tuple[float, float] | None = None  # None: measured from x_train when asked
    value_description: str = ""
    notes: dict = dataclasses.field(default_factory=dict)  # what loading did (images resized, converted)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def raw_bytes(self) -> bool:
        """The values are bytes (``uint8``): the deployed int8 model takes them as ``byte - 128``."""
        return self.x_train.dtype == np.uint8

    @property
    def values(self) -> dict:
        """What the values are, for reports: dtype, nominal range, description."""
        low, high = self.value_range or nominal_range(self.x_train)
        return {
            "dtype": str(self.x_train.dtype),
            "range": [float(low), float(high)],
            "description": self.value_description or f"{self.x_train.dtype} values in [{low:g}, {high:g}]",
        }

    def summary(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "num_train": int(len(self.x_train)),
            "num_val": int(len(self.x_val)),
            "num_test": int(len(self.x_test)),
            "values": self.values,
            **({"loading": self.notes} if self.notes else {}),
        }


def nominal_range(x: np.ndarray) -> tuple[float, float]:
    """The range a data set's values are meant to span: 0..255 for bytes; [0, 1], [-1, 1] or
    [0, 255] when float values lie within them; else their measured min and max."""
    if x.dtype == np.uint8:
        return 0.0, 255.0
    low, high = float(np.min(x)), float(np.max(x))
    for candidate in ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)):
        if candidate[0] <= low and high <= candidate[1]:
            return candidate
    return (low, high) if high > low else (low, low + 1.0)


__all__ = ["Dataset", "nominal_range"]
