"""A run folder's micro export (``<run_dir>/micro/``) written by ``edgedistill micro``.

The export folder as data is the one :class:`edgedistill.micro.MicroExport`; this module keeps
the names the firmware commands import (firmware sits above micro and reads what it wrote).
"""

from __future__ import annotations

from edgedistill.micro.export import (
    MICRO_DIR,
    REQUIRED_FILES,
    SUPPORTED_SCHEMA_VERSIONS,
    MicroExport,
    find_micro_dir,
    load_micro_export,
    parse_c_array_rows,
)

__all__ = [
    "MICRO_DIR",
    "REQUIRED_FILES",
    "SUPPORTED_SCHEMA_VERSIONS",
    "MicroExport",
    "load_micro_export",
    "find_micro_dir",
    "parse_c_array_rows",
]
