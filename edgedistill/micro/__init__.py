"""TensorFlow Lite Micro artefacts: C array, op resolver, measured arena, test vectors.

- :func:`export_micro` writes a micro export folder; :func:`load_micro_export` reads one back;
  both give the one :class:`MicroExport` (the folder as data; the firmware commands consume it);
- :mod:`edgedistill.micro.resolver`: the ops TFLM has and their resolver methods (TFLM's naming rule);
- :mod:`edgedistill.micro.arena`: the arena measurement and the margin rule of ``kTensorArenaSize``;
- :mod:`edgedistill.micro.sources`: the C/C++ text.

Running TFLM itself is :mod:`edgedistill.tflm` (the host interpreter, used here to measure the arena
and check every transformed model); the C++ checkout and its compiled library are
:mod:`edgedistill.firmware.tflm_checkout`. Nothing here knows about the firmware.
"""

from __future__ import annotations

from edgedistill.micro.arena import ARENA_ALIGNMENT, arena_with_margin, measure_arena
from edgedistill.micro.export import (
    MICRO_DIR,
    REQUIRED_FILES,
    SCHEMA_VERSION,
    MicroExport,
    export_micro,
    find_micro_dir,
    load_micro_export,
    parse_c_array_rows,
)
from edgedistill.micro.resolver import (
    METHOD_EXCEPTIONS,
    TFLM_BUILTIN_OPS,
    TFLM_RESOLVER_METHODS,
    check_micro_compatible,
    resolver_method,
    tflm_rule_method,
)
from edgedistill.micro.sources import (
    c_array_lines,
    render_model_data,
    render_op_resolver,
    render_settings,
    render_test_data,
)

__all__ = [
    "ARENA_ALIGNMENT",
    "MICRO_DIR",
    "METHOD_EXCEPTIONS",
    "REQUIRED_FILES",
    "SCHEMA_VERSION",
    "TFLM_BUILTIN_OPS",
    "TFLM_RESOLVER_METHODS",
    "MicroExport",
    "arena_with_margin",
    "c_array_lines",
    "check_micro_compatible",
    "export_micro",
    "find_micro_dir",
    "load_micro_export",
    "measure_arena",
    "parse_c_array_rows",
    "render_model_data",
    "render_op_resolver",
    "render_settings",
    "render_test_data",
    "resolver_method",
    "tflm_rule_method",
]
