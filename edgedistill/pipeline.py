"""`edgedistill run`: a list of stages walked in order, into one run folder.

Run folder (default ``runs/<timestamp>/``)::

    config.yaml                 the resolved configuration (reusable with --config)
    teacher.keras               the teacher (trained here, or a copy of the user's when it is tf_keras)
    student_float.keras         the distilled float student
    student_qat.h5              the quantization-aware (fake-quant) student (HDF5: tf_keras'
                                .keras files do not restore tfmot's quantizer variables);
                                student_qat.keras for a Keras 3 student (--keras 3)
    student_int8.tflite         full-integer int8 model
    baseline_int8.tflite        the same student trained from scratch (--baseline scratch), int8
    student_float32.tflite      float student, for comparison
    teacher_float32.tflite      float teacher, for comparison (tf_keras teachers)
    micro/                      TFLite Micro sources (see edgedistill.micro)
    bench.jsonl                 raw benchmark results (every timed run)
    logs/                       TensorBoard logs per stage
    checkpoints/<stage>/        while a stage trains: its last epoch (model, optimizer, early stopping), so
                                run --resume continues an interrupted stage from there; removed when it completes
    progress.json               the stages completed so far and their report sections (for run --resume)
    report.json / report.md     every figure; status "ok", "failed" or "interrupted"

Each :class:`Stage` reads what earlier stages left in :class:`Artifacts`, calls one function of
:mod:`edgedistill.stages`, saves its files and returns its report sections. ``run_pipeline``
times each stage, records the one that failed (or was interrupted) and always writes the report;
``edgedistill run --resume RUN_DIR`` restores the completed stages from their files and goes on. A stage is added or
replaced by editing ``STAGES`` (or passing ``stages=``), without touching the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from edgedistill import stages as stage_functions
from edgedistill.config import DistillConfig, RunConfig, save_config
from edgedistill.errors import EdgeDistillError, GateFailed, InputError
from edgedistill.fileio import ensure_writable_dir, save_model_atomic, write_bytes_atomic, write_json_atomic
from edgedistill.preprocessing import BYTE_RANGE
from edgedistill.report import BASELINE_INT8_FILE, write_report

if TYPE_CHECKING:  # modules that import TensorFlow: for the type checker only
    from edgedistill.data import Dataset
    from edgedistill.distill import SchemeResult
    from edgedistill.micro import MicroExport
    from edgedistill.models import KerasModel
    from edgedistill.verify import VerifyResult

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Artifacts:
    """What the stages of one run hand each other (each field is set by one stage)."""

    run_dir: Path
    data: Dataset | None = None
    teacher: stage_functions.Teacher | None = None
    distilled: SchemeResult | None = None  # the float student and its history
    qat_student: KerasModel | None = None
    tflite: dict[str, bytes] = dataclasses.field(default_factory=dict)
    micro: MicroExport | None = None
    verify: VerifyResult | None = None
    reference: str = "float_student"
    loss_probe: dict[str, Any] | None = None  # --distillation-loss auto: what its probe measured and chose

    def distill_options(self, config: RunConfig) -> DistillConfig:
        """The run's distillation options, with the loss ``--distillation-loss auto`` chose."""
        return stage_functions.chosen_options(config.distill, self.loss_probe)

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"


_T = TypeVar("_T")


def _output_of(stage: str, value: _T | None) -> _T:
    """What an earlier stage left in :class:`Artifacts`; a stage list without that stage (``run_pipeline(stages=...)``)
    is refused by name, not with an AttributeError on None."""
    if value is None:
        raise InputError(f"This stage needs the output of the `{stage}` stage, which did not run. Add that stage to `stages`.")
    return value


StageFunction = Callable[[RunConfig, Artifacts], dict[str, Any]]
# (config, artifacts, the stage's report sections from progress.json) -> restored? (False: run it again)
RestoreFunction = Callable[[RunConfig, Artifacts, dict[str, Any]], bool]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a run: ``run(config, artifacts)`` returns ``{report section: value}``.

    ``restore`` serves ``run --resume``: for a stage that completed before the interruption, it
    reloads the stage's outputs from the run folder into ``artifacts`` (its report sections are
    kept from ``progress.json``). A stage without one (or whose restore returns False) runs again,
    and so do all the stages after it.
    """

    name: str
    run: StageFunction
    enabled: Callable[[RunConfig], bool] = lambda config: True
    restore: RestoreFunction | None = None


def _data(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    stage_functions.check_names(config)
    artifacts.data, summary = stage_functions.load_data(config.data, teacher_file=config.teacher.teacher)
    return {"data": summary}


def _teacher(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    from edgedistill._keras import keras

    artifacts.teacher, report = stage_functions.prepare_teacher(
        config.teacher,
        config.training,
        _output_of("data", artifacts.data),
        seed=config.data.seed,
        log_dir=artifacts.log_dir,
        chance_gate=config.verify.chance_gate,
    )
    if isinstance(artifacts.teacher.model, keras.Model):
        save_model_atomic(artifacts.teacher.model, artifacts.run_dir / "teacher.keras")
    return {"teacher": report}


def _distill(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    from edgedistill.models import count_parameters

    data, teacher = _output_of("data", artifacts.data), _output_of("teacher", artifacts.teacher)
    student, source, budget = stage_functions.build_student(config.student, data)
    if stage_functions.is_auto_loss(config.distill):
        _, artifacts.loss_probe = stage_functions.choose_loss(
            config.distill, config.training, teacher, student, data, seed=config.data.seed
        )
    artifacts.distilled, report = stage_functions.distill_student(
        artifacts.distill_options(config),
        config.training,
        teacher,
        student,
        data,
        seed=config.data.seed,
        log_dir=artifacts.log_dir,
    )
    save_model_atomic(artifacts.distilled.student, artifacts.run_dir / "student_float.keras")
    student_report = {
        "source": source,
        "parameters": count_parameters(artifacts.distilled.student),
        **({"loss_probe": artifacts.loss_probe} if artifacts.loss_probe else {}),
        **report,
        **stage_functions.keras_report(artifacts.distilled.student),
    }
    return {"student": student_report, **({"budget": budget} if budget else {})}


def _qat(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    artifacts.qat_student, report = stage_functions.quantize_student(
        config.qat,
        artifacts.distill_options(config),
        config.training,
        _output_of("teacher", artifacts.teacher),
        _output_of("distill", artifacts.distilled),
        _output_of("data", artifacts.data),
        seed=config.data.seed,
        log_dir=artifacts.log_dir,
    )
    if artifacts.qat_student is not None:
        save_model_atomic(artifacts.qat_student, artifacts.run_dir / _qat_file_name(artifacts.qat_student))
        artifacts.reference = "qat_student"
    return {"qat": report}


# A Keras 3 QAT student is saved as Keras 3 .keras (its fake-quant layers are registered Keras 3 layers).
KERAS3_QAT_FILE = "student_qat.keras"


def _qat_file_name(qat_student: Any) -> str:
    from edgedistill.keras3.backend import is_keras3_model

    return KERAS3_QAT_FILE if is_keras3_model(qat_student) else "student_qat.h5"


def _calibration_data(artifacts: Artifacts) -> Dataset:
    # A data-free student is calibrated on the synthetic inputs it was distilled on.
    return _output_of("distill", artifacts.distilled).quantization_data or _output_of("data", artifacts.data)


def _convert(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    calibration = _calibration_data(artifacts)
    artifacts.tflite, report = stage_functions.convert_models(
        config.convert,
        student=_output_of("distill", artifacts.distilled).student,
        qat_student=artifacts.qat_student,
        teacher_model=_output_of("teacher", artifacts.teacher).model,
        calibration_inputs=calibration.x_train,
        input_range=BYTE_RANGE if _output_of("data", artifacts.data).raw_bytes else None,
    )
    for name, content in artifacts.tflite.items():
        write_bytes_atomic(artifacts.run_dir / name, content)
    report["student_int8.tflite"]["calibration_data"] = calibration.name
    return {"tflite": report, "input_convention": _input_convention(artifacts)}


def _input_convention(artifacts: Artifacts) -> dict[str, Any]:
    """What the deployed int8 model takes (also in micro_export.json and test_data.h)."""
    return stage_functions.input_convention_of(
        _output_of("data", artifacts.data),
        artifacts.tflite["student_int8.tflite"],
        teacher_preprocessing=_output_of("teacher", artifacts.teacher).preprocessing,
    )


def _micro(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    artifacts.micro, report = stage_functions.export_micro_sources(
        config.micro,
        artifacts.tflite["student_int8.tflite"],
        _output_of("data", artifacts.data),
        artifacts.run_dir / "micro",
        model_name="student_int8.tflite",
        input_convention=_input_convention(artifacts),
    )
    return {"micro": report}


def _verify(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    keras_models = {
        "teacher": _output_of("teacher", artifacts.teacher).model,
        "float_student": _output_of("distill", artifacts.distilled).student,
        "qat_student": artifacts.qat_student,
    }
    artifacts.verify, report = stage_functions.verify_student(
        config.verify,
        _output_of("data", artifacts.data),
        keras_models=keras_models,
        int8=artifacts.tflite["student_int8.tflite"],
        arena_bytes=_output_of("micro", artifacts.micro).tensor_arena_size,
        reference=artifacts.reference,
    )
    return {"verify": report}


def _baseline(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    """The same student trained without the teacher: "did distillation help" as a measured line of the report."""
    data, distilled = _output_of("data", artifacts.data), _output_of("distill", artifacts.distilled)
    why_not = stage_functions.baseline_skip_reason(artifacts.distill_options(config), distilled.student)
    if why_not is not None:
        logger.info("   scratch baseline skipped: %s", why_not)
        return {"baseline": {"method": "scratch", "skipped": why_not}}
    student = stage_functions.fresh_student(config.student, distilled.student, data)
    student, qat_student, int8 = stage_functions.train_scratch_baseline(
        student,
        data,
        qat=config.qat,
        distill_config=artifacts.distill_options(config),
        training=config.training,
        convert=config.convert,
        seed=config.data.seed,
        log_dir=artifacts.log_dir,
    )
    write_bytes_atomic(artifacts.run_dir / BASELINE_INT8_FILE, int8)
    report = stage_functions.compare_with_baseline(
        data,
        student=student,
        qat_student=qat_student,
        int8=int8,
        arena_bytes=artifacts.micro.tensor_arena_size if artifacts.micro is not None else None,
        distilled_accuracy=_output_of("verify", artifacts.verify).accuracy,
        distilled_int8=artifacts.tflite["student_int8.tflite"],
    )
    return {"baseline": report}


def _bench(config: RunConfig, artifacts: Artifacts) -> dict[str, Any]:
    paths = [artifacts.run_dir / name for name in ("student_int8.tflite", "student_float32.tflite")]
    return {"bench": stage_functions.bench_models(config.bench, paths, results_path=artifacts.run_dir / "bench.jsonl")}


# -- restoring completed stages (run --resume) -------------------------------------------


def _restore_data(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    _data(config, artifacts)  # nothing saved: loading it again (same seed) gives the same split
    return True


def _restore_teacher(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    saved = artifacts.run_dir / "teacher.keras"
    if not saved.exists() and not config.teacher.teacher:
        return False
    # The saved copy (or the user's own file, for teachers that are not tf_keras): loaded, not trained.
    # The saved copy takes raw values already (its preprocessing is its first layer): "raw", not detected again.
    teacher_config = (
        dataclasses.replace(config.teacher, teacher=str(saved), teacher_preprocessing="raw") if saved.exists() else config.teacher
    )
    artifacts.teacher, _ = stage_functions.prepare_teacher(
        teacher_config,
        config.training,
        _output_of("data", artifacts.data),
        seed=config.data.seed,
        chance_gate=config.verify.chance_gate,
    )
    artifacts.teacher.preprocessing = sections.get("teacher", {}).get("preprocessing", artifacts.teacher.preprocessing)
    return True


def _restore_distill(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    from edgedistill.distill import SchemeResult
    from edgedistill.keras3.loading import load_keras3_student
    from edgedistill.models import is_keras3_file, load_model_file

    saved = artifacts.run_dir / "student_float.keras"
    if not saved.exists() or not stage_functions.scheme_of(config.distill).trains_on_data:
        return False  # a data-free student's synthetic inputs (used by QAT and calibration) are not saved
    student = load_keras3_student(saved) if is_keras3_file(saved) else load_model_file(saved)  # the model, not a teacher wrapper
    artifacts.distilled = SchemeResult(student=student, history={}, report={})
    artifacts.loss_probe = (sections.get("student") or {}).get("loss_probe")
    return True


def _restore_qat(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    from edgedistill.models import load_model_file

    if config.qat.qat_epochs == 0:
        return True
    from edgedistill.keras3.backend import is_keras3_model

    if is_keras3_model(_output_of("distill", artifacts.distilled).student):
        return _restore_keras3_qat(artifacts)
    saved = artifacts.run_dir / "student_qat.h5"
    if not saved.exists():
        return False
    artifacts.qat_student, artifacts.reference = load_model_file(saved), "qat_student"
    return True


def _restore_keras3_qat(artifacts: Artifacts) -> bool:
    from edgedistill.keras3.loading import load_keras3_student

    saved = artifacts.run_dir / KERAS3_QAT_FILE
    if not saved.exists():
        return False
    model = load_keras3_student(saved)
    if any(type(layer).__name__ == "Concatenate" for layer in model.layers):
        return False  # the shared range of a Concatenate's inputs is a link between layers, not saved: QAT runs again
    artifacts.qat_student, artifacts.reference = model, "qat_student"
    return True


def _restore_convert(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    paths = [artifacts.run_dir / name for name in sections.get("tflite", {})]
    if not paths or not all(path.is_file() for path in paths):
        return False
    artifacts.tflite = {path.name: path.read_bytes() for path in paths}
    return True


def _restore_micro(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    from edgedistill.micro import load_micro_export

    try:
        artifacts.micro = load_micro_export(artifacts.run_dir / "micro")
    except InputError:
        return False
    return True


def _restore_verify(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    from edgedistill.verify import VerifyResult

    fields = dataclasses.fields(VerifyResult)
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    saved = sections.get("verify", {})
    if not required <= set(saved):
        return False
    artifacts.verify = VerifyResult(**{f.name: saved[f.name] for f in fields if f.name in saved})
    artifacts.reference = saved.get("reference", artifacts.reference)
    return True


def _restore_baseline(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    return True  # nothing later reads its models: its figures are its report section in progress.json


def _restore_bench(config: RunConfig, artifacts: Artifacts, sections: dict[str, Any]) -> bool:
    return True  # its results are in bench.jsonl and its report section in progress.json


STAGES: tuple[Stage, ...] = (
    Stage("data", _data, restore=_restore_data),
    Stage("teacher", _teacher, restore=_restore_teacher),
    Stage("distill", _distill, restore=_restore_distill),
    Stage("qat", _qat, restore=_restore_qat),
    Stage("convert", _convert, restore=_restore_convert),
    Stage("micro", _micro, restore=_restore_micro),
    Stage("verify", _verify, restore=_restore_verify),
    # After verify: the distilled model is complete (and gated) before the baseline's extra training starts.
    Stage("baseline", _baseline, enabled=lambda config: config.baseline.baseline == "scratch", restore=_restore_baseline),
    Stage("bench", _bench, enabled=lambda config: config.bench.bench, restore=_restore_bench),
)
PROGRESS_FILE = "progress.json"


def new_run_dir(output_dir: str | Path, run_name: str | None = None) -> Path:
    """A fresh run folder ``output_dir/<run_name or UTC timestamp>``; never reuses one."""
    name = run_name or _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(output_dir)
    ensure_writable_dir(base, what="--output-dir")  # before any work, not after the teacher's training
    path = base / name
    suffix = 1
    while path.exists():
        if run_name:
            raise InputError(
                f"Run folder {path} exists already; choose another --run-name, remove it, or continue it with "
                f"`edgedistill run --resume {path}`."
            )
        suffix += 1
        path = base / f"{name}-{suffix}"
    try:
        path.mkdir(parents=True)
    except OSError as error:
        raise InputError(
            f"Cannot create the run folder {str(path)!r}: {error.strerror}. Pass a folder you can write to with --output-dir."
        ) from None
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


def _walk(
    config: RunConfig,
    stages: Sequence[Stage],
    artifacts: Artifacts,
    timer: _Timer,
    report: dict[str, Any],
    completed: dict[str, Any],
    rerun_from: str | None = None,
) -> list[str]:
    """Run the stages in order; with ``completed`` (``run --resume``), restore those that completed
    before instead, up to the first that must run. Returns the names of the restored stages."""
    from edgedistill.models import trust_model_code
    from edgedistill.training import strategy_scope

    progress: dict[str, Any] = {}
    restored: list[str] = []
    running = False  # once a stage runs, every later one runs too (its inputs may have changed)
    # Every training stage runs under the configured tf.distribute strategy (none by default);
    # model files load with code only when the user said so.
    with strategy_scope(config.training.strategy), trust_model_code(config.trust.trust_model_code):
        for stage in stages:
            if not stage.enabled(config):
                continue
            before = completed.get(stage.name)
            running = running or stage.name == rerun_from  # e.g. verify, after a gate option changed
            if not running and before is not None and stage.restore is not None:
                logger.info("== %s: completed before, restoring its outputs from %s", stage.name, artifacts.run_dir)
                timer.current = stage.name
                if stage.restore(config, artifacts, before["sections"]):
                    report.update(before["sections"])
                    timer.seconds[stage.name] = before["seconds"]
                    progress[stage.name] = before
                    restored.append(stage.name)
                    timer.current = None
                    continue
            running = True
            with timer.stage(stage.name):
                sections = stage.run(config, artifacts)
            report.update(sections)
            progress[stage.name] = {"seconds": timer.seconds[stage.name], "sections": sections}
            write_json_atomic(artifacts.run_dir / PROGRESS_FILE, {"schema_version": 1, "stages": progress})
    return restored


def read_progress(run_dir: str | Path) -> dict[str, Any]:
    """The completed stages of a run folder (``progress.json``): name -> {seconds, sections}."""
    import json

    path = Path(run_dir) / PROGRESS_FILE
    if not path.is_file():
        logger.info("%s: no stage had completed; running them all", run_dir)
        return {}
    try:
        stages = json.loads(path.read_text())["stages"]
        if not isinstance(stages, dict) or not all(isinstance(v, dict) and "sections" in v for v in stages.values()):
            raise ValueError("stages is not a mapping of completed stages")
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{str(path)!r} is not a valid progress file ({error}). Start a new run.") from None
    return stages


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration a run folder was made with (its ``config.yaml``)."""
    from edgedistill.config import read_config_file

    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"Run folder not found: {str(path)!r}. Pass a folder written by `edgedistill run`.")
    if not (path / "config.yaml").exists():
        raise InputError(
            f"{str(path)!r} is not a run folder (it has no config.yaml). Pass a folder written by "
            "`edgedistill run`, e.g. runs/<timestamp>."
        )
    config = RunConfig.from_options(read_config_file(path / "config.yaml"))
    _refuse_edited_config(path, config)
    return config


# Options whose change does not make completed stages wrong (run --resume may change them; see commands/pipeline.py).
RESUMABLE_CHANGES = ("trust_model_code", "chance_gate", "max_int8_drop", "verbose")


def _refuse_edited_config(run_dir: Path, config: RunConfig) -> None:
    """config.yaml edited after the run (it differs from the configuration report.json records): the completed
    stages were made with the recorded values, so resuming would mix two configurations. Refused, naming them."""
    import json

    try:
        recorded = json.loads((run_dir / "report.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no report yet (a crash before the first write): nothing to compare with
    if not isinstance(recorded, dict):
        return
    current = config.to_options()
    changed = [name for name in current if name in recorded and name not in RESUMABLE_CHANGES and recorded[name] != current[name]]
    if changed:
        differences = "; ".join(
            f"{name}: run made with {recorded[name]!r}, config.yaml now says {current[name]!r}" for name in changed
        )
        raise InputError(
            f"{run_dir / 'config.yaml'} was edited after the run ({differences}). Its completed stages "
            "were made with the recorded values. Restore them, or start a new run with "
            f"--config {run_dir / 'config.yaml'}."
        )


def run_pipeline(
    config: RunConfig,
    *,
    run_dir: str | Path | None = None,
    stages: Sequence[Stage] = STAGES,
    resume: bool = False,
    rerun_from: str | None = None,
) -> dict[str, Any]:
    """Run every stage; return the report (also written to ``run_dir/report.json``).

    Raises :class:`GateFailed` (after writing the report) when the int8 model loses more
    than ``max_int8_drop`` points against the QAT student, and re-raises any stage error
    after recording it in the report. Ctrl-C (``KeyboardInterrupt``) is re-raised too, with the
    report marked ``interrupted``. With ``resume=True`` (``run_dir`` required), the stages that
    completed in ``run_dir`` before are restored from its files instead of run again, up to ``rerun_from``
    (a stage name: it and every later stage run again).
    """
    from edgedistill.tflite_model import runtime_versions

    started = time.perf_counter()
    if resume and run_dir is None:
        raise InputError("resume needs the run folder to continue (run_dir).")
    completed = read_progress(run_dir) if resume and run_dir is not None else {}  # resume without one: refused above
    if run_dir is not None:
        ensure_writable_dir(run_dir, what="the run folder")
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(config.output.output_dir, config.output.run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    timer, artifacts = _Timer(), Artifacts(run_dir=run_dir)
    report: dict[str, Any] = {"run_dir": str(run_dir), "config": config.to_options(), "versions": runtime_versions()}
    try:
        restored = _walk(config, stages, artifacts, timer, report, completed, rerun_from)
        if resume:
            report["resumed"] = {"restored_stages": restored}
        _raise_if_gate_failed(artifacts)
        report["status"] = "ok"
    except BaseException as error:  # user errors, the gate, bugs and interrupts all leave an honest report
        _record_failure(report, error, timer, run_dir)
        raise
    finally:
        report["stages"] = {name: {"seconds": seconds} for name, seconds in timer.seconds.items()}
        report["total_seconds"] = round(time.perf_counter() - started, 3)
        write_report(run_dir, report)
        logger.info("Report: %s (%s)", run_dir / "report.md", report.get("status"))
    return report


def _record_failure(report: dict[str, Any], error: BaseException, timer: _Timer, run_dir: Path) -> None:
    stage = "verify" if isinstance(error, GateFailed) else timer.current
    if isinstance(error, KeyboardInterrupt):
        report["status"] = "interrupted"
        report["error"] = {"stage": stage, "message": "interrupted (Ctrl-C)"}
        logger.warning(
            "Interrupted during stage %s. Continue from the last completed stage with: edgedistill run --resume %s",
            stage,
            run_dir,
        )
        return
    message = str(error) if isinstance(error, EdgeDistillError) else f"{type(error).__name__}: {error}"
    report["status"] = "failed"
    report["error"] = {"stage": stage, "message": message}


def _raise_if_gate_failed(artifacts: Artifacts) -> None:
    if artifacts.verify is not None:
        from edgedistill.verify import raise_if_failed

        raise_if_failed(artifacts.verify, reference=artifacts.reference)


__all__ = ["run_pipeline", "new_run_dir", "load_run_config", "read_progress", "Stage", "STAGES", "Artifacts"]
