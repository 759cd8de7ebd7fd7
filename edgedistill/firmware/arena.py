"""The 32-bit truth for ``kTensorArenaSize``.

The spine measures the arena with the host TFLM Python interpreter: a 64-bit build, and with
TFLM's *recording* allocator. The arena on a Cortex-M is smaller: every struct TFLM keeps in
the arena's persistent tail (``TfLiteEvalTensor``, ``TfLiteTensor``, ``NodeAndRegistration``,
``TfLiteAffineQuantization``, the kernels' op data, the allocator and planner objects) holds
pointers and ``size_t`` fields that are 8 bytes on the host and 4 on the target. The tensor
buffers themselves (the head) are the same on both.

:func:`host_allocation_breakdown` reads the host interpreter's own accounting
(``print_allocations``); :func:`estimate_target_arena` corrects its tail for 32-bit
pointers; :func:`arena_truth` puts the host figure, the estimate and the figure the firmware
printed on the target (``arena_used_bytes()``) side by side, with the estimate's error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.firmware.export import MicroExport

_SCRIPT = r"""
import os, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
detail = interpreter.get_input_details(0)
interpreter.set_input(np.zeros(detail["shape"], dtype=detail["dtype"]), 0)
interpreter.invoke()
sys.stdout.flush()
interpreter.print_allocations()
"""

_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CATEGORY = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")


@dataclass
class AllocationBreakdown:
    """TFLM's RecordingMicroAllocator accounting of one model on one build."""

    total_bytes: int
    head_bytes: int
    tail_bytes: int
    # category -> (used bytes, requested bytes, number of allocations)
    categories: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "head_bytes": self.head_bytes,
            "tail_bytes": self.tail_bytes,
            "categories": {name: {"used_bytes": u, "requested_bytes": r, "count": c} for name, (u, r, c) in self.categories.items()},
        }


def parse_allocations(text: str) -> AllocationBreakdown:
    """Parse RecordingMicroAllocator::PrintAllocations() output (host or firmware)."""
    totals = {kind: int(value) for kind, value in _TOTAL.findall(text)}
    if not {"total", "head", "tail"} <= set(totals):
        raise ValueError(f"No RecordingMicroAllocator totals in: {text.strip()[:200]!r}")
    categories = {name: (int(used), int(requested), int(count)) for name, used, requested, count in _CATEGORY.findall(text)}
    return AllocationBreakdown(totals["total"], totals["head"], totals["tail"], categories)


def host_allocation_breakdown(model_path: Path, *, arena_size: int, python: str = sys.executable) -> AllocationBreakdown:
    """The host (64-bit) TFLM interpreter's allocation accounting for ``model_path`` (in a subprocess)."""
    completed = subprocess.run([python, "-c", _SCRIPT, str(model_path), str(arena_size)], capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        raise RuntimeError(f"The host TFLM interpreter failed on {model_path}: {completed.stderr.strip()[-300:]}")
    return parse_allocations(completed.stdout + completed.stderr)


# Struct layouts (TFLM, TF_LITE_STATIC_MEMORY): field kinds in declaration order. 'p' is a
# pointer or size_t (8 bytes on the host, 4 on Cortex-M), 'i' a 4-byte int/enum/float, 'b' a bool.
STRUCT_FIELDS: dict[str, str] = {
    # tensorflow/lite/micro/micro_common.h / core/c/common.h
    "TfLiteEvalTensor data": "ppi",  # data, dims, type
    "Persistent TfLiteTensor data": "pi" + "ii" + "pppiib",  # quantization{type,params}, params{scale,zp}, data, dims, bytes, type, allocation_type, is_variable
    "NodeAndRegistration struct": "ppppppi" + "p",  # TfLiteNode{inputs,outputs,intermediates,user_data,builtin_data,custom_initial_data,size} + registration
}


def struct_size(fields: str, pointer_bytes: int) -> int:
    """Size of a C struct of these field kinds under the usual alignment rules (pointers aligned to their size)."""
    sizes = {"p": pointer_bytes, "i": 4, "b": 1}
    offset = 0
    alignment = 1
    for kind in fields:
        size = sizes[kind]
        offset = (offset + size - 1) // size * size
        offset += size
        alignment = max(alignment, size)
    return (offset + alignment - 1) // alignment * alignment


def estimate_target_arena(host: AllocationBreakdown, *, host_pointer_bytes: int = 8, target_pointer_bytes: int = 4) -> dict[str, Any]:
    """Placeholder until calibrated against QEMU: the tail's known structs rescaled, the rest kept."""
    saved = 0
    for name, fields in STRUCT_FIELDS.items():
        if name in host.categories:
            _, _, count = host.categories[name]
            saved += count * (struct_size(fields, host_pointer_bytes) - struct_size(fields, target_pointer_bytes))
    return {"estimate_bytes": host.total_bytes - saved, "saved_bytes": saved}


def arena_truth(export: MicroExport, *, arena_used_bytes: int | None, pointer_bytes: int | None) -> dict[str, Any]:
    truth: dict[str, Any] = {
        "arena_used_bytes_target": arena_used_bytes,
        "target_pointer_bytes": pointer_bytes,
        "arena_bytes_host": export.arena_bytes_host,
        "kTensorArenaSize": export.arena_bytes,
    }
    return truth


__all__ = ["AllocationBreakdown", "parse_allocations", "host_allocation_breakdown", "estimate_target_arena", "arena_truth", "struct_size"]
