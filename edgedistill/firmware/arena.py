"""The 32-bit truth for ``kTensorArenaSize`` (placeholder: filled in after measuring)."""

from __future__ import annotations

from typing import Any

from edgedistill.firmware.export import MicroExport


def arena_truth(export: MicroExport, *, arena_used_bytes: int | None, pointer_bytes: int | None) -> dict[str, Any]:
    return {
        "arena_used_bytes_target": arena_used_bytes,
        "target_pointer_bytes": pointer_bytes,
        "arena_bytes_host": export.arena_bytes_host,
        "kTensorArenaSize": export.arena_bytes,
    }
