"""Budget-driven student: the largest preset width whose int8 model fits the device.

Before any training, untrained students of a preset are built at a ladder of widths,
converted to full-integer int8 TFLite (calibrated on random inputs: the byte count and the
arena do not depend on the weights' values) and measured:

- ``flash``: the bytes of the model array that goes to flash, the int8 ``.tflite`` as the micro
  export stores it (compacted: :mod:`edgedistill.micro.compact`; the TFLM runtime code is not included);
- ``arena``: the smallest tensor arena the real TFLM interpreter allocates
  (:func:`edgedistill.micro.measure_arena`);
- ``latency`` (optional): mean latency on a benchmark target (default the host, ``local``).

Size grows with width, so the ladder is bisected: about log2(len(widths)) + 1 measurements.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgedistill.errors import InputError

logger = logging.getLogger(__name__)
DEFAULT_WIDTHS = (0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.75, 1.0, 1.5, 2.0)


@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits a student must meet; ``None`` means no limit."""

    max_flash_kb: float | None = None
    max_arena_kb: float | None = None
    max_latency_ms: float | None = None
    target: str = "local"

    def __post_init__(self) -> None:
        for name in ("max_flash_kb", "max_arena_kb", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InputError(f"`{name}` must be > 0 (or unset). Received: {name}={value}.")

    @property
    def is_set(self) -> bool:
        return any(v is not None for v in (self.max_flash_kb, self.max_arena_kb, self.max_latency_ms))

    def describe(self) -> str:
        parts = []
        if self.max_flash_kb is not None:
            parts.append(f"flash <= {self.max_flash_kb:g} KB")
        if self.max_arena_kb is not None:
            parts.append(f"arena <= {self.max_arena_kb:g} KB")
        if self.max_latency_ms is not None:
            parts.append(f"latency <= {self.max_latency_ms:g} ms on {self.target}")
        return ", ".join(parts) or "no limit"


@dataclasses.dataclass(frozen=True)
class StudentMeasurement:
    """One candidate: an untrained preset at one width, measured as int8."""

    preset: str
    width: float
    parameters: int
    flash_bytes: int
    arena_bytes: int | None
    latency_ms: float | None
    fits: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        text = f"{self.preset} width {self.width:g}: {self.parameters} parameters, {self.flash_bytes / 1024:.1f} KB flash"
        if self.arena_bytes is not None:
            text += f", {self.arena_bytes / 1024:.1f} KB arena"
        if self.latency_ms is not None:
            text += f", {self.latency_ms:.3f} ms"
        return text


@dataclasses.dataclass(frozen=True)
class BudgetChoice:
    """The chosen width and every measurement made on the way."""

    preset: str
    width: float
    budget: Budget
    measurements: tuple[StudentMeasurement, ...]

    @property
    def chosen(self) -> StudentMeasurement:
        return next(m for m in self.measurements if m.width == self.width)

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "width": self.width,
            "budget": dataclasses.asdict(self.budget),
            "chosen": self.chosen.to_dict(),
            "measurements": [m.to_dict() for m in self.measurements],
        }


def measure_student(
    preset: str,
    input_shape: Sequence[int],
    num_classes: int,
    width: float,
    *,
    budget: Budget | None = None,
    seed: int = 0,
) -> StudentMeasurement:
    """Build an untrained ``preset`` at ``width``, convert it to int8 and measure it against ``budget``."""
    from edgedistill.convert import convert_keras_model
    from edgedistill.micro import measure_arena
    from edgedistill.micro.compact import compact_model
    from edgedistill.models import build_model

    budget = budget or Budget()
    model = build_model(preset, input_shape, num_classes, width=width, name=f"{preset}_{width:g}")
    calibration = np.random.default_rng(seed).uniform(0.0, 1.0, size=(32, *input_shape)).astype(np.float32)
    content = convert_keras_model(model, quantization="int8", representative_data=calibration, num_calibration_samples=32)
    flash_bytes = len(compact_model(content, source=model.name).model_bytes)  # what the micro export stores
    fits = budget.max_flash_kb is None or flash_bytes <= budget.max_flash_kb * 1024
    arena = None
    if budget.max_arena_kb is not None or budget.max_flash_kb is None:
        arena = int(measure_arena(content)["arena_bytes"])
        fits = fits and (budget.max_arena_kb is None or arena <= budget.max_arena_kb * 1024)
    latency = None
    if budget.max_latency_ms is not None and fits:
        latency = _latency_ms(content, budget.target)
        fits = latency <= budget.max_latency_ms
    return StudentMeasurement(preset, float(width), int(model.count_params()), flash_bytes, arena, latency, bool(fits))


def _latency_ms(content: bytes, target: str) -> float:
    from edgedistill.bench import run_benchmark

    with tempfile.TemporaryDirectory(prefix="edgedistill-budget-") as folder:
        path = Path(folder) / "student_int8.tflite"
        path.write_bytes(content)
        measurement = run_benchmark(path, target=target, num_runs=30, warmup_runs=3)
    mean = measurement.latency_ms["mean"]
    assert mean is not None  # run_benchmark raises unless the 30 runs were measured
    return float(mean)


def select_student_width(
    preset: str,
    input_shape: Sequence[int],
    num_classes: int,
    budget: Budget,
    *,
    widths: Sequence[float] = DEFAULT_WIDTHS,
) -> BudgetChoice:
    """The largest width of ``preset`` (from ``widths``) whose untrained int8 model meets ``budget``.

    Raises :class:`InputError` when even the smallest width does not fit, with its figures.

    Example::

        choice = select_student_width("dscnn", (28, 28, 1), 10, Budget(max_flash_kb=64, max_arena_kb=32))
        student = build_model("dscnn", (28, 28, 1), 10, width=choice.width)
    """
    from edgedistill.models import PRESETS

    PRESETS.get(preset)  # unknown names list the valid ones
    if not budget.is_set:
        raise InputError("No budget given: set max_flash_kb, max_arena_kb or max_latency_ms.")
    ladder = sorted({float(w) for w in widths})
    if not ladder or ladder[0] <= 0:
        raise InputError(f"`widths` must be positive numbers. Received: {list(widths)}.")
    measured: dict[float, StudentMeasurement] = {}

    def measure(index: int) -> StudentMeasurement:
        width = ladder[index]
        if width not in measured:
            measured[width] = measure_student(preset, input_shape, num_classes, width, budget=budget)
            logger.info("   budget: %s -> %s", measured[width].describe(), "fits" if measured[width].fits else "too large")
        return measured[width]

    if not measure(0).fits:
        smallest = measured[ladder[0]]
        raise InputError(
            f"No width of preset {preset!r} meets the budget ({budget.describe()}): the smallest tried, {smallest.describe()}. "
            "Raise the budget, try another --student-preset (e.g. dscnn), or smaller inputs."
        )
    low, high = 0, len(ladder) - 1  # ladder[low] fits; find the largest index that fits
    if measure(high).fits:
        low = high
    while high - low > 1:
        middle = (low + high) // 2
        if measure(middle).fits:
            low = middle
        else:
            high = middle
    measurements = tuple(measured[w] for w in sorted(measured))
    return BudgetChoice(preset=preset, width=ladder[low], budget=budget, measurements=measurements)


__all__ = ["Budget", "BudgetChoice", "StudentMeasurement", "DEFAULT_WIDTHS", "measure_student", "select_student_width"]
