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
from typing import TYPE_CHECKING, Any

from edgedistill._version import __version__

if TYPE_CHECKING:  # what editors and type checkers see: the same names from the same modules as _EXPORTS
    from edgedistill.bench import run_benchmark as run_benchmark
    from edgedistill.config import RunConfig as RunConfig
    from edgedistill.convert import convert_keras_model as convert_keras_model
    from edgedistill.data import Dataset as Dataset
    from edgedistill.data import load_dataset as load_dataset
    from edgedistill.distill import SCHEMES as SCHEMES
    from edgedistill.distill import AttentionTransfer as AttentionTransfer
    from edgedistill.distill import DistillationLoss as DistillationLoss
    from edgedistill.distill import Distiller as Distiller
    from edgedistill.distill import FeatureDistillation as FeatureDistillation
    from edgedistill.distill import LogitsDistillation as LogitsDistillation
    from edgedistill.distill import RelationalDistillation as RelationalDistillation
    from edgedistill.distill import SchemeResult as SchemeResult
    from edgedistill.distill import TrainingArguments as TrainingArguments
    from edgedistill.distill import distill as distill
    from edgedistill.distill import quantize_distill as quantize_distill
    from edgedistill.distill import run_scheme as run_scheme
    from edgedistill.micro import MicroExport as MicroExport
    from edgedistill.micro import export_micro as export_micro
    from edgedistill.micro import measure_arena as measure_arena
    from edgedistill.models import build_model as build_model
    from edgedistill.models import load_model_file as load_model_file
    from edgedistill.pipeline import run_pipeline as run_pipeline
    from edgedistill.quantize import quantize_model as quantize_model
    from edgedistill.search import SearchSpace as SearchSpace
    from edgedistill.search import run_search as run_search
    from edgedistill.targets import Measurement as Measurement
    from edgedistill.verify import verify_models as verify_models

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
