"""edgedistill: distill a Keras model into a small int8 model and prove it runs on the edge.

The documented API, importable from the package root::

    from edgedistill import load_dataset, build_model, distill, LogitsDistillation, quantize_distill
    from edgedistill import convert_keras_model, export_micro, verify_models, run_benchmark
    from edgedistill import RunConfig, run_pipeline

Names are resolved lazily (PEP 562), so ``import edgedistill`` stays fast and does not import
TensorFlow; the first use of a name imports the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgedistill._version import __version__

# public name -> the module that defines it (its one home)
_EXPORTS: dict[str, str] = {
    # data and models
    "Dataset": "edgedistill.data",
    "load_dataset": "edgedistill.data",
    "build_model": "edgedistill.models",
    "load_model_file": "edgedistill.models",
    # distillation
    "Distiller": "edgedistill.distill",
    "DistillationLoss": "edgedistill.distill",
    "LogitsDistillation": "edgedistill.distill",
    "FeatureDistillation": "edgedistill.distill",
    "AttentionTransfer": "edgedistill.distill",
    "RelationalDistillation": "edgedistill.distill",
    "distill": "edgedistill.distill",
    "quantize_distill": "edgedistill.distill",
    "run_scheme": "edgedistill.distill",
    "SCHEMES": "edgedistill.distill",
    "TrainingArguments": "edgedistill.distill",
    "SchemeResult": "edgedistill.distill",
    # quantization, conversion, deployment
    "quantize_model": "edgedistill.quantize",
    "convert_keras_model": "edgedistill.convert",
    "export_micro": "edgedistill.micro",
    "measure_arena": "edgedistill.micro",
    "MicroExport": "edgedistill.micro",
    "verify_models": "edgedistill.verify",
    "run_benchmark": "edgedistill.bench",
    "Measurement": "edgedistill.targets",
    # the whole flow
    "RunConfig": "edgedistill.config",
    "run_pipeline": "edgedistill.pipeline",
    "run_search": "edgedistill.search",
    "SearchSpace": "edgedistill.search",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgedistill' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
