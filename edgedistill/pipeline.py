"""`edgedistill run`: a list of stages walked in order, into one run folder.

Run folder (default ``runs/<timestamp>/``)::

    config.yaml                 the resolved configuration (reusable with --config)
    teacher.keras               the teacher (trained here, or a copy of the user's when it is tf_keras)
    student_float.keras         the distilled float student
    student_qat.h5              the quantization-aware (fake-quant) student (HDF5: tf_keras'
                                .keras files do not restore tfmot's quantizer variables)
    student_int8.tflite         full-integer int8 model
    student_float32.tflite      float student, for comparison
    teacher_float32.tflite      float teacher, for comparison (tf_keras teachers)
    micro/                      TFLite Micro sources (see edgedistill.micro)
    bench.jsonl                 raw benchmark results (every timed run)
    logs/                       TensorBoard logs per stage
    report.json / report.md     every figure; status "ok" or "failed"

Each :class:`Stage` reads what earlier stages left in :class:`Artifacts`, calls one function of
:mod:`edgedistill.stages`, saves its files and returns its report sections. ``run_pipeline``
times each stage, records the one that failed and always writes the report. A stage is added or
replaced by editing ``STAGES`` (or passing ``stages=``), without touching the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edgedistill import stages as stage_functions
from edgedistill.config import RunConfig, save_config
from edgedistill.errors import EdgeDistillError, GateFailed, InputError
from edgedistill.fileio import save_model_atomic, write_bytes_atomic
from edgedistill.report import write_report

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Artifacts:
    """What the stages of one run hand each other (each field is set by one stage)."""

    run_dir: Path
    data: Any = None  # Dataset
    teacher: stage_functions.Teacher | None = None
    distilled: Any = None  # SchemeResult: the float student and its history
    qat_student: Any = None
    tflite: dict[str, bytes] = dataclasses.field(default_factory=dict)
    micro: Any = None  # MicroExport
    verify: Any = None  # VerifyResult
    reference: str = "float_student"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"


StageFunction = Callable[[RunConfig, Artifacts], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a run: ``run(config, artifacts)`` returns ``{report section: value}``."""

    name: str
    run: StageFunction
    enabled: Callable[[RunConfig], bool] = lambda config: True


def _data(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    stage_functions.check_names(config)
    artifacts.data, summary = stage_functions.load_data(config.data)
    return {"data": summary}


def _teacher(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    from edgedistill._keras import keras

    artifacts.teacher, report = stage_functions.prepare_teacher(
        config.teacher, config.training, artifacts.data, seed=config.data.seed, log_dir=artifacts.log_dir
    )
    if isinstance(artifacts.teacher.model, keras.Model):
        save_model_atomic(artifacts.teacher.model, artifacts.run_dir / "teacher.keras")
    return {"teacher": report}


def _distill(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    from edgedistill.models import count_parameters

    student, source, budget = stage_functions.build_student(config.student, artifacts.data)
    artifacts.distilled, report = stage_functions.distill_student(
        config.distill, config.training, artifacts.teacher, student, artifacts.data,
        seed=config.data.seed, log_dir=artifacts.log_dir,
    )
    save_model_atomic(artifacts.distilled.student, artifacts.run_dir / "student_float.keras")
    student_report = {"source": source, "parameters": count_parameters(artifacts.distilled.student), **report}
    return {"student": student_report, **({"budget": budget} if budget else {})}


def _qat(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    artifacts.qat_student, report = stage_functions.quantize_student(
        config.qat, config.distill, config.training, artifacts.teacher, artifacts.distilled, artifacts.data,
        seed=config.data.seed, log_dir=artifacts.log_dir,
    )
    if artifacts.qat_student is not None:
        save_model_atomic(artifacts.qat_student, artifacts.run_dir / "student_qat.h5")
        artifacts.reference = "qat_student"
    return {"qat": report}


def _calibration_data(artifacts: Artifacts):
    # A data-free student is calibrated on the synthetic inputs it was distilled on.
    return artifacts.distilled.quantization_data or artifacts.data


def _convert(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    calibration = _calibration_data(artifacts)
    artifacts.tflite, report = stage_functions.convert_models(
        config.convert, student=artifacts.distilled.student, qat_student=artifacts.qat_student,
        teacher_model=artifacts.teacher.model, calibration_inputs=calibration.x_train,
    )
    for name, content in artifacts.tflite.items():
        write_bytes_atomic(artifacts.run_dir / name, content)
    report["student_int8.tflite"]["calibration_data"] = calibration.name
    return {"tflite": report}


def _micro(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    artifacts.micro, report = stage_functions.export_micro_sources(
        config.micro, artifacts.tflite["student_int8.tflite"], artifacts.data, artifacts.run_dir / "micro",
        model_name="student_int8.tflite",
    )
    return {"micro": report}


def _verify(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    keras_models = {
        "teacher": artifacts.teacher.model, "float_student": artifacts.distilled.student, "qat_student": artifacts.qat_student,
    }
    artifacts.verify, report = stage_functions.verify_student(
        config.verify, artifacts.data, keras_models=keras_models, int8=artifacts.tflite["student_int8.tflite"],
        arena_bytes=artifacts.micro.tensor_arena_size, reference=artifacts.reference,
    )
    return {"verify": report}


def _bench(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    paths = [artifacts.run_dir / name for name in ("student_int8.tflite", "student_float32.tflite")]
    return {"bench": stage_functions.bench_models(config.bench, paths, results_path=artifacts.run_dir / "bench.jsonl")}


STAGES: tuple[Stage, ...] = (
    Stage("data", _data),
    Stage("teacher", _teacher),
    Stage("distill", _distill),
    Stage("qat", _qat),
    Stage("convert", _convert),
    Stage("micro", _micro),
    Stage("verify", _verify),
    Stage("bench", _bench, enabled=lambda config: config.bench.bench),
)


def new_run_dir(output_dir: str | Path, run_name: str | None = None) -> Path:
    """A fresh run folder ``output_dir/<run_name or UTC timestamp>``; never reuses one."""
    name = run_name or _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(output_dir)
    path = base / name
    suffix = 1
    while path.exists():
        if run_name:
            raise InputError(f"Run folder {path} exists already; choose another --run-name or remove it.")
        suffix += 1
        path = base / f"{name}-{suffix}"
    path.mkdir(parents=True)
    return path


class _Timer:
    """Times stages and remembers which one was running when something failed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.current: str | None = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.current = name
        logger.info("== %s", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        logger.info("   %s done in %.1f s", name, self.seconds[name])
        self.current = None


def _walk(config: RunConfig, stages: Sequence[Stage], artifacts: Artifacts, timer: _Timer, report: dict[str, Any]) -> None:
    from edgedistill.models import trust_model_code
    from edgedistill.training import strategy_scope

    # Every training stage runs under the configured tf.distribute strategy (none by default);
    # model files load with code only when the user said so.
    with strategy_scope(config.training.strategy), trust_model_code(config.trust.trust_model_code):
        for stage in stages:
            if stage.enabled(config):
                with timer.stage(stage.name):
                    report.update(stage.run(config, artifacts))


def run_pipeline(config: RunConfig, *, run_dir: str | Path | None = None, stages: Sequence[Stage] = STAGES) -> dict[str, Any]:
    """Run every stage; return the report (also written to ``run_dir/report.json``).

    Raises :class:`GateFailed` (after writing the report) when the int8 model loses more
    than ``max_int8_drop`` points against the QAT student, and re-raises any stage error
    after recording it in the report.
    """
    from edgedistill.tflite_model import runtime_versions

    started = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(config.output.output_dir, config.output.run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    timer, artifacts = _Timer(), Artifacts(run_dir=run_dir)
    report: dict[str, Any] = {"run_dir": str(run_dir), "config": config.to_options(), "versions": runtime_versions()}
    try:
        _walk(config, stages, artifacts, timer, report)
        _raise_if_gate_failed(artifacts)
        report["status"] = "ok"
    except BaseException as error:  # user errors, the gate, bugs and interrupts all leave an honest report
        message = str(error) if isinstance(error, EdgeDistillError) else f"{type(error).__name__}: {error}"
        stage = "verify" if isinstance(error, GateFailed) else timer.current
        report["status"] = "failed"
        report["error"] = {"stage": stage, "message": message}
        raise
    finally:
        report["stages"] = {name: {"seconds": seconds} for name, seconds in timer.seconds.items()}
        report["total_seconds"] = round(time.perf_counter() - started, 3)
        write_report(run_dir, report)
        logger.info("Report: %s (%s)", run_dir / "report.md", report.get("status"))
    return report


def _raise_if_gate_failed(artifacts: Artifacts) -> None:
    if artifacts.verify is not None:
        from edgedistill.verify import raise_if_failed

        raise_if_failed(artifacts.verify, reference=artifacts.reference)


__all__ = ["run_pipeline", "new_run_dir", "Stage", "STAGES", "Artifacts"]
