"""`edgedistill run`: every stage in order, into one run folder.

Run folder (default ``runs/<timestamp>/``)::

    config.yaml                 the resolved configuration
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

The report is written even when a stage fails or the parity gate fails (marked
``"status": "failed"``); the command then exits non-zero.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from edgedistill.config import RunConfig, save_config
from edgedistill.errors import EdgeDistillError, GateFailed, InputError
from edgedistill.fileio import write_bytes_atomic
from edgedistill.report import write_report

Logger = Callable[[str], None]


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


class _Stages:
    """Times stages and remembers which one was running when something failed."""

    def __init__(self, log: Logger) -> None:
        self.seconds: dict[str, float] = {}
        self.current: str | None = None
        self.log = log

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.current = name
        self.log(f"== {name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.log(f"   {name} done in {self.seconds[name]:.1f} s")
        self.current = None


def run_pipeline(config: RunConfig, *, run_dir: str | Path | None = None, log: Logger = print) -> dict[str, Any]:
    """Run every stage; return the report (also written to ``run_dir/report.json``).

    Raises :class:`GateFailed` (after writing the report) when the int8 model loses more
    than ``config.max_int8_drop`` points against the QAT student, and re-raises any stage
    error after recording it in the report.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(config.output_dir, config.run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    stages = _Stages(log)
    report: dict[str, Any] = {"run_dir": str(run_dir), "config": config.to_dict(), "stages": {}}
    try:
        _run_stages(config, run_dir, stages, report, log)
        report["status"] = "ok"
    except BaseException as error:  # user errors, the gate, bugs and interrupts all leave an honest report
        message = str(error) if isinstance(error, EdgeDistillError) else f"{type(error).__name__}: {error}"
        stage = "verify" if isinstance(error, GateFailed) else stages.current
        report["status"] = "failed"
        report["error"] = {"stage": stage, "message": message}
        raise
    finally:
        report["stages"] = {name: {"seconds": seconds} for name, seconds in stages.seconds.items()}
        report["total_seconds"] = round(time.perf_counter() - started, 3)
        write_report(run_dir, report)
        log(f"Report: {run_dir / 'report.md'} ({report.get('status')})")
    return report


def _run_stages(config: RunConfig, run_dir: Path, stages: _Stages, report: dict[str, Any], log: Logger) -> None:
    # TensorFlow is imported here, not at module import, so `--help` stays fast.
    from edgedistill import models as models_mod
    from edgedistill._keras import keras
    from edgedistill.convert import convert_keras_model
    from edgedistill.data import load_dataset
    from edgedistill.distill import pipeline_hooks as methods
    from edgedistill.micro import export_micro, measure_arena
    from edgedistill.tflite_model import read_model_info, runtime_versions
    from edgedistill.training import TrainConfig, strategy_scope, train_classifier
    from edgedistill.verify import raise_if_failed, verify_models

    report["versions"] = runtime_versions()
    logs = run_dir / "logs"
    check_names(config)

    with stages.stage("data"):
        data = load_dataset(
            config.data,
            validation_fraction=config.validation_fraction,
            seed=config.seed,
            max_train_samples=config.max_train_samples,
        )
        report["data"] = data.summary()
        log(f"   {data.name}: {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test, input {data.input_shape}, {data.num_classes} classes")

    # Every training stage runs under the configured tf.distribute strategy (none by default).
    with strategy_scope(config.strategy):
        with stages.stage("teacher"):
            if config.teacher:
                teacher = models_mod.load_model_file(config.teacher)
                source = config.teacher
            else:
                teacher = models_mod.build_model(config.teacher_preset, data.input_shape, data.num_classes, width=config.teacher_width, name="teacher")
                teacher_config = TrainConfig(
                    epochs=config.teacher_epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                    patience=config.patience, seed=config.seed, verbose=config.verbose,
                )
                train_classifier(teacher, data, config=teacher_config, stage="teacher", log_dir=logs)
                source = f"preset {config.teacher_preset} (width {config.teacher_width})"
            check_classes(teacher, data.num_classes, "teacher")
            teacher_outputs = {
                "train": models_mod.predict_logits(teacher, data.x_train),
                "val": models_mod.predict_logits(teacher, data.x_val),
            }
            check_classes(teacher_outputs["train"], data.num_classes, "teacher")  # also for Keras 3 / SavedModel teachers
            if isinstance(teacher, keras.Model):
                teacher.save(run_dir / "teacher.keras")
            report["teacher"] = {"source": source, "parameters": models_mod.count_parameters(teacher)}
            teacher_outputs, calibration = methods.calibrate(config, teacher_outputs, data)
            if calibration:
                report["teacher"]["calibration"] = calibration

        distill_config = TrainConfig(
            epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
            patience=config.patience, seed=config.seed, verbose=config.verbose,
        )
        loss = methods.resolve_loss(config)
        with stages.stage("distill"):
            student_width = config.student_width
            if config.student:
                student = models_mod.load_model_file(config.student)
                if not isinstance(student, keras.Model):
                    raise InputError(f"The student {config.student} must be a tf_keras model (it is trained and quantized here).")
            else:
                student_width, budget = methods.choose_student_width(config, data, log)
                if budget:
                    report["budget"] = budget
                student = models_mod.build_model(config.student_preset, data.input_shape, data.num_classes, width=student_width, name="student")
            check_classes(student, data.num_classes, "student")
            student, history, method_report = methods.distill_student(
                config, teacher, student, data, loss=loss, train_config=distill_config, teacher_outputs=teacher_outputs, log_dir=logs,
            )
            student.save(run_dir / "student_float.keras")
            # A data-free student never sees the training data: QAT and int8 calibration use the
            # synthetic inputs (and the teacher's outputs on them) it was distilled on.
            quant_data, quant_teacher_outputs = data, teacher_outputs
            if "synthetic_data" in history:
                quant_data = history.pop("synthetic_data")
                quant_teacher_outputs = history.pop("synthetic_teacher_outputs")
            report["student"] = {
                "source": config.student or f"preset {config.student_preset} (width {student_width})",
                "parameters": models_mod.count_parameters(student),
                "distill_epochs": len(history.get("loss", [])),
                "best_val_accuracy": max(history.get("val_accuracy", [0.0])) * 100.0,
                **method_report,
            }

        qat_student = None
        with stages.stage("qat"):
            if config.qat_epochs > 0:
                qat_config = TrainConfig(
                    epochs=config.qat_epochs, batch_size=config.batch_size, learning_rate=config.qat_learning_rate,
                    patience=config.patience, seed=config.seed, verbose=config.verbose,
                )
                qat_student, qat_history, qat_report = methods.quantize_student(
                    config, teacher, student, quant_data, loss=loss, train_config=qat_config,
                    teacher_outputs=quant_teacher_outputs, log_dir=logs,
                )
                qat_student.save(run_dir / "student_qat.h5")
                report["qat"] = {"epochs": len(qat_history.get("loss", [])), "data": quant_data.name, **qat_report}
            else:
                report["qat"] = {"epochs": 0, "skipped": "qat_epochs=0: post-training quantization of the float student"}

    with stages.stage("convert"):
        int8_source = qat_student if qat_student is not None else student
        int8_bytes = convert_keras_model(
            int8_source, quantization="int8", io_type=config.io_type,
            representative_data=quant_data.x_train, num_calibration_samples=config.num_calibration_samples,
        )
        files = {"student_int8.tflite": int8_bytes, "student_float32.tflite": convert_keras_model(student, quantization="float32")}
        if isinstance(teacher, keras.Model):
            files["teacher_float32.tflite"] = convert_keras_model(teacher, quantization="float32")
        for name, content in files.items():
            write_bytes_atomic(run_dir / name, content)
        info = read_model_info(int8_bytes)
        report["tflite"] = {name: {"size_bytes": len(content)} for name, content in files.items()}
        report["tflite"]["student_int8.tflite"].update(
            {"ops": info.ops, "io_type": config.io_type, "calibration_data": quant_data.name}
        )

    with stages.stage("micro"):
        arena = measure_arena(int8_bytes)
        export = export_micro(
            int8_bytes, run_dir / "micro",
            test_inputs=data.x_test, test_labels=data.y_test, num_test_samples=config.num_test_vectors,
            margin_fraction=config.arena_margin, model_name="student_int8.tflite", arena=arena,
        )
        report["micro"] = export.to_dict() | {"arena_probes": arena["num_probes"]}

    with stages.stage("verify"):
        keras_models = {"teacher": teacher, "float_student": student, "qat_student": qat_student}
        reference = "qat_student" if qat_student is not None else "float_student"
        result = verify_models(
            data.x_test, data.y_test, keras_models=keras_models, int8_tflite=int8_bytes,
            tflm_arena_size=export.tensor_arena_size, max_int8_drop=config.max_int8_drop, reference=reference,
        )
        report["verify"] = result.to_dict() | {"reference": reference}
        accuracy_line = ", ".join(f"{name} {value:.2f}%" for name, value in result.accuracy.items())
        log(f"   test accuracy: {accuracy_line}")

    if config.bench:
        with stages.stage("bench"):
            from edgedistill.bench import run_benchmark

            report["bench"] = {}
            for name in ("student_int8.tflite", "student_float32.tflite"):
                measurement = run_benchmark(
                    run_dir / name, target="local", num_runs=config.num_runs, warmup_runs=config.warmup_runs,
                    num_threads=config.num_threads, results_path=run_dir / "bench.jsonl",
                )
                summary = measurement.to_dict()
                summary.pop("samples_ms", None)  # every raw sample stays in bench.jsonl
                report["bench"][name] = summary

    raise_if_failed(result, reference=reference)


def check_names(config: RunConfig) -> None:
    """Unknown data set, preset or loss names fail before any training, listing valid names."""
    from edgedistill.data import LOADERS
    from edgedistill.models import PRESETS

    LOADERS.get(config.data.partition(":")[0])
    if not config.teacher:
        PRESETS.get(config.teacher_preset)
    if not config.student:
        PRESETS.get(config.student_preset)
    from edgedistill.distill.pipeline_hooks import check_method_names

    check_method_names(config)  # loss (with NAME:ARGS), scheme, pruning


def check_classes(model_or_outputs, num_classes: int, role: str) -> None:
    """The model (or an array of its outputs) must give one value per class of the data."""
    from edgedistill.models import model_output_classes

    shape = getattr(model_or_outputs, "shape", None)
    if shape is not None and not callable(model_or_outputs):
        classes = int(shape[-1])
    else:
        classes = model_output_classes(model_or_outputs)
    if classes is not None and classes != num_classes:
        raise InputError(
            f"The {role} outputs {classes} classes but the data has {num_classes}; they must match. "
            f"Use a {role} trained on this data set, or the data it was trained on."
        )


__all__ = ["run_pipeline", "new_run_dir", "check_classes"]
