"""The 32-bit truth for ``kTensorArenaSize``.

The spine measures the arena with the host TFLM Python interpreter: a 64-bit build, and with
TFLM's *recording* allocator. The arena on a Cortex-M is smaller: every struct TFLM keeps in
the arena's persistent tail (``TfLiteEvalTensor``, ``TfLiteTensor``, ``NodeAndRegistration``,
``TfLiteAffineQuantization``, the kernels' op data, the allocator and planner objects) holds
pointers and ``size_t`` fields that are 8 bytes on the host and 4 on the target. The tensor
buffers themselves (the head) are the same on both.

:func:`host_allocation_breakdown` reads the host interpreter's own accounting
(``print_allocations``, through :mod:`edgedistill.tflm`); :func:`estimate_target_arena` corrects its tail for 32-bit
pointers; :func:`arena_truth` puts the host figure, the estimate and the figure the firmware
printed on the target (``arena_used_bytes()``) side by side, with the estimate's error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from edgedistill.micro import ARENA_ALIGNMENT, MicroExport, arena_with_margin
from edgedistill.tflm import AllocationBreakdown, allocation_breakdown, parse_allocations


def host_allocation_breakdown(model_path: Path, *, arena_size: int, python: str = sys.executable) -> AllocationBreakdown:
    """The host (64-bit) TFLM interpreter's allocation accounting for ``model_path`` (in a subprocess)."""
    return allocation_breakdown(Path(model_path).read_bytes(), arena_bytes=arena_size, python=python, source=str(model_path))


# The data models (ABIs) that matter here. arm-none-eabi GCC uses short enums (AAPCS
# bare-metal): TFLM's small enums (TfLiteType, TfLiteAllocationType, TfLiteQuantizationType) are
# 1 byte there, 4 bytes on x86-64 / aarch64 Linux.
HOST_ABI: dict[str, int] = {"p": 8, "i": 4, "e": 4, "b": 1}
CORTEX_M_ABI: dict[str, int] = {"p": 4, "i": 4, "e": 1, "b": 1}

# Struct layouts (TFLM with TF_LITE_STATIC_MEMORY, tensorflow/lite/core/c/common.h and
# micro/micro_allocator.h), field kinds in declaration order: 'p' pointer or size_t, 'i' 4-byte
# int or float, 'e' enum, 'b' bool. Keyed by the RecordingMicroAllocator category they fill.
STRUCT_FIELDS: dict[str, str] = {
    # TfLiteEvalTensor {data, dims, type}
    "TfLiteEvalTensor data": "ppe",
    # TfLiteTensor {quantization {type, params}, params {scale, zero_point}, data, dims, bytes, type, allocation_type,
    # is_variable}
    "Persistent TfLiteTensor data": "ep" + "ii" + "ppp" + "eeb",
    # NodeAndRegistration {TfLiteNode {inputs, outputs, intermediates, user_data, builtin_data, custom_initial_data,
    # custom_initial_data_size}, registration}
    "NodeAndRegistration struct": "pppppp" + "i" + "p",
}
# 'Persistent TfLiteTensor quantization data' holds, per quantized tensor, one
# TfLiteAffineQuantization {scale, zero_point, quantized_dimension} and one zero-point
# TfLiteIntArray (ints only: the same size on both).
AFFINE_QUANTIZATION_FIELDS = "ppi"
QUANTIZATION_CATEGORY = "Persistent TfLiteTensor quantization data"
# Kernel op data and the interpreter's tensor pointer arrays: mostly int32 arrays (per-channel
# multipliers and shifts), a few pointers. Kept at the host size: the estimate errs high.
OP_DATA_CATEGORY = "Persistent buffer data"
# The host figure comes from TFLM's RecordingMicroAllocator; the firmware uses the plain
# MicroAllocator. The recording classes, also placed in the arena's tail, add pointer-sized
# members (recording_micro_allocator.h, recording_single_arena_buffer_allocator.h): one
# pointer and 7 RecordedAllocation {requested_bytes, used_bytes, count} (size_t each) in
# RecordingMicroAllocator, and 4 size_t counters in RecordingSingleArenaBufferAllocator.
RECORDING_ALLOCATOR_EXTRA_WORDS = 1 + 7 * 3 + 4


def struct_size(fields: str, abi: dict[str, int]) -> int:
    """Size of a C struct of these field kinds under ``abi`` (natural alignment, tail padding)."""
    offset = 0
    alignment = 1
    for kind in fields:
        size = abi[kind]
        offset = (offset + size - 1) // size * size + size
        alignment = max(alignment, size)
    return (offset + alignment - 1) // alignment * alignment


def estimate_target_arena(
    host: AllocationBreakdown,
    *,
    host_abi: dict[str, int] = HOST_ABI,
    target_abi: dict[str, int] = CORTEX_M_ABI,
    recorded: bool = True,
) -> dict[str, Any]:
    """Estimate ``arena_used_bytes()`` on a 32-bit Cortex-M from the host (64-bit) accounting.

    - head (tensor buffers, scratch): the same on both;
    - the structs TFLM counts (eval tensors, persistent tensors, node+registration,
      affine quantization): count x their size under the target ABI;
    - kernel op data: kept (mostly int32 arrays);
    - the rest of the tail (allocator, memory planner, subgraph and interpreter objects,
      made of pointers): scaled by target/host pointer size, after removing what only the
      recording allocator adds (``recorded=True``: the host figure comes from it; the
      firmware uses the plain allocator).
    """
    parts: dict[str, int] = {"head": host.head_bytes}
    accounted = 0
    for name, (used, _requested, count) in host.categories.items():
        accounted += used
        if name in STRUCT_FIELDS:
            parts[name] = count * struct_size(STRUCT_FIELDS[name], target_abi)
        elif name == QUANTIZATION_CATEGORY:
            structs = count // 2
            saved = structs * (
                struct_size(AFFINE_QUANTIZATION_FIELDS, host_abi) - struct_size(AFFINE_QUANTIZATION_FIELDS, target_abi)
            )
            parts[name] = used - saved
        else:
            parts[name] = used
    other = max(host.tail_bytes - accounted - (RECORDING_ALLOCATOR_EXTRA_WORDS * host_abi["p"] if recorded else 0), 0)
    parts["other tail (allocator, planner, interpreter objects)"] = -(-other * target_abi["p"] // host_abi["p"])
    estimate = sum(parts.values())
    return {"estimate_bytes": estimate, "host_bytes": host.total_bytes, "parts": parts}


def arena_truth(
    export: MicroExport,
    *,
    arena_used_bytes: int | None,
    pointer_bytes: int | None,
    compiled_arena_bytes: int | None = None,
) -> dict[str, Any]:
    """Host 64-bit arena, the 32-bit estimate and the target's own figure, side by side.

    ``compiled_arena_bytes``: the arena the firmware reserved (default: the export's ``kTensorArenaSize``).
    """
    compiled = export.tensor_arena_size if compiled_arena_bytes is None else int(compiled_arena_bytes)
    truth: dict[str, Any] = {
        "arena_used_bytes_target": arena_used_bytes,
        "target_pointer_bytes": pointer_bytes,
        "arena_bytes_host": export.arena_bytes_host,
        "kTensorArenaSize": compiled,
        "export_kTensorArenaSize": export.tensor_arena_size,
    }
    if arena_used_bytes is not None:
        truth["headroom_bytes"] = compiled - arena_used_bytes
    model = export.model_path
    if not model.is_file():
        truth["estimate_error"] = f"model file {model} not found"
        return truth
    try:
        host = host_allocation_breakdown(model, arena_size=max(export.tensor_arena_size, export.arena_bytes_host) * 2)
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as error:
        truth["estimate_error"] = str(error)[:300]
        return truth
    estimate = estimate_target_arena(host)
    truth["arena_used_bytes_host"] = host.total_bytes
    truth["arena_estimate_bytes_32bit"] = estimate["estimate_bytes"]
    truth["arena_estimate_parts"] = estimate["parts"]
    if arena_used_bytes:
        difference = estimate["estimate_bytes"] - arena_used_bytes
        truth["estimate_minus_target_bytes"] = difference
        truth["estimate_error_percent"] = round(100.0 * difference / arena_used_bytes, 2)
    return truth


__all__ = [
    "ARENA_ALIGNMENT",
    "arena_with_margin",
    "AllocationBreakdown",
    "parse_allocations",
    "host_allocation_breakdown",
    "estimate_target_arena",
    "arena_truth",
    "struct_size",
]
