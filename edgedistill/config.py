"""The configuration of a run: one frozen dataclass, read from options or YAML, saved with results.

Precedence (click's ``default_map``): command line > ``--config`` YAML > defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgedistill.errors import InputError

# tf.distribute strategies training accepts: none (the default device), mirrored (every local
# GPU, or the CPU), multi_worker (the workers in TF_CONFIG; one worker without it).
STRATEGIES: tuple[str, ...] = ("none", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything `edgedistill run` needs. Field names are the YAML keys and the CLI options."""

    # data
    data: str = "digits"
    validation_fraction: float = 0.1
    max_train_samples: int | None = None
    seed: int = 0
    # models
    teacher: str | None = None  # a model file; trained from teacher_preset when absent
    teacher_preset: str = "cnn"
    teacher_width: float = 1.0
    teacher_epochs: int = 30
    student: str | None = None  # a tf_keras model file; built from student_preset when absent
    student_preset: str = "dscnn"
    student_width: float = 0.5
    # distillation
    distillation_loss: str = "logits"
    temperature: float = 4.0
    student_loss_weight: float = 0.5
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 3e-3
    patience: int = 8
    strategy: str = "none"  # tf.distribute strategy of every training stage (STRATEGIES)
    # distillation methods (issue 5); the defaults keep plain logit distillation
    final_temperature: float | None = None  # logits: anneal temperature -> final_temperature
    scheme: str = "standard"
    scheme_options: str = ""
    calibrate_teacher: bool = False
    prune_sparsity: float = 0.0
    max_flash_kb: float | None = None
    max_arena_kb: float | None = None
    max_latency_ms: float | None = None
    # quantization-aware distillation
    qat_epochs: int = 10
    qat_learning_rate: float = 5e-4
    # conversion and gates
    io_type: str = "int8"
    num_calibration_samples: int = 200
    max_int8_drop: float = 1.0
    # micro export
    arena_margin: float = 0.10
    num_test_vectors: int = 5
    # local benchmark
    bench: bool = True
    num_runs: int = 100
    warmup_runs: int = 10
    num_threads: int = 1
    # output
    output_dir: str = "runs"
    run_name: str | None = None
    verbose: int = 2

    def __post_init__(self) -> None:
        checks = [
            ("validation_fraction", 0 < self.validation_fraction < 1, "in (0, 1)"),
            ("teacher_epochs", self.teacher_epochs >= 1, ">= 1"),
            ("epochs", self.epochs >= 1, ">= 1"),
            ("qat_epochs", self.qat_epochs >= 0, ">= 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("qat_learning_rate", self.qat_learning_rate > 0, "> 0"),
            ("temperature", self.temperature > 0, "> 0"),
            ("student_loss_weight", 0 <= self.student_loss_weight <= 1, "in [0, 1]"),
            ("teacher_width", self.teacher_width > 0, "> 0"),
            ("student_width", self.student_width > 0, "> 0"),
            ("max_int8_drop", self.max_int8_drop >= 0, ">= 0"),
            ("arena_margin", self.arena_margin >= 0, ">= 0"),
            ("num_runs", self.num_runs >= 1, ">= 1"),
            ("warmup_runs", self.warmup_runs >= 0, ">= 0"),
            ("num_threads", self.num_threads >= 1, ">= 1"),
            ("io_type", self.io_type in ("int8", "float32"), "one of: int8, float32"),
            ("strategy", self.strategy in STRATEGIES, "one of: " + ", ".join(STRATEGIES)),
            ("final_temperature", self.final_temperature is None or self.final_temperature > 0, "> 0 (or unset)"),
            ("prune_sparsity", 0 <= self.prune_sparsity < 1, "in [0, 1) (0 disables pruning)"),
            ("max_flash_kb", self.max_flash_kb is None or self.max_flash_kb > 0, "> 0 (or unset)"),
            ("max_arena_kb", self.max_arena_kb is None or self.max_arena_kb > 0, "> 0 (or unset)"),
            ("max_latency_ms", self.max_latency_ms is None or self.max_latency_ms > 0, "> 0 (or unset)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InputError(f"`{name}` must be {expected}. Received: {name}={getattr(self, name)!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML run configuration; keys may use ``-`` or ``_``. Unknown keys are errors."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"Config file not found: {path}. Expected a YAML file of run options.")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(content, dict):
        raise InputError(f"{path} must hold a mapping of option: value; received a {type(content).__name__}.")
    values = {str(key).replace("-", "_"): value for key, value in content.items()}
    unknown = sorted(set(values) - set(RunConfig.field_names()))
    if unknown:
        raise InputError(
            f"{path}: unknown option(s) {', '.join(unknown)}. Expected some of: {', '.join(RunConfig.field_names())}."
        )
    return values


def save_config(config: RunConfig, path: str | Path) -> None:
    import yaml

    from edgedistill.fileio import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


__all__ = ["RunConfig", "STRATEGIES", "read_config_file", "save_config"]
