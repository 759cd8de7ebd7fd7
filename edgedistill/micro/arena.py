"""The tensor arena of a micro export: measured on the host TFLM interpreter, plus a stated margin.

The measurement itself (bisection, each probe in a subprocess) is :func:`edgedistill.tflm.smallest_arena`.
"""

from __future__ import annotations

import math

from edgedistill.tflm import ARENA_ALIGNMENT, DEFAULT_MAX_ARENA_BYTES, smallest_arena


def arena_with_margin(arena_bytes: int, *, margin_fraction: float = 0.10, margin_min_bytes: int = 1024) -> tuple[int, int]:
    """``kTensorArenaSize`` = measured + max(10 %, 1 KiB), rounded up to 16 bytes; returns (size, margin).

    One rule for both measurements: the host export (``edgedistill micro``) and the arena
    measured on the target by the ``firmware build`` command.
    """
    margin = max(math.ceil(arena_bytes * margin_fraction), margin_min_bytes)
    size = -(-(arena_bytes + margin) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    return size, size - arena_bytes


def measure_arena(tflite_bytes: bytes, *, max_bytes: int = DEFAULT_MAX_ARENA_BYTES, source: str = "model") -> dict[str, int]:
    """Smallest tensor arena (bytes, multiple of 16) with which the real TFLM interpreter
    allocates and invokes the model: ``{"arena_bytes", "num_probes", "num_crashes"}``."""
    return smallest_arena(tflite_bytes, max_bytes=max_bytes, source=source).to_dict()


__all__ = ["ARENA_ALIGNMENT", "arena_with_margin", "measure_arena"]
