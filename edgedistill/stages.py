"""The stages of the flow, one function each: ``(stage config, typed inputs) -> (typed outputs, report section)``.

``edgedistill run`` chains them (:mod:`edgedistill.pipeline`), each stage command calls one of
them, and ``search`` calls the training ones per trial. Inputs and outputs are plain types: a
:class:`~edgedistill.data.Dataset`, Keras models, ``.tflite`` ``bytes``, a
:class:`~edgedistill.micro.MicroExport`, a :class:`~edgedistill.verify.VerifyResult`. The report
section is a dict of plain JSON values for ``report.json``. TensorFlow is imported inside the
functions so that importing this module (and ``--help``) stays fast.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from edgedistill.config import (
    BenchStageConfig,
    ConvertConfig,
    DataConfig,
    DistillConfig,
    MicroConfig,
    QatConfig,
    StudentConfig,
    TeacherConfig,
    TrainingConfig,
    VerifyConfig,
)
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)
Report = dict[str, Any]


@dataclasses.dataclass
class Teacher:
    """A loaded or trained teacher and its cached logits per split (``train``, ``val``)."""

    model: Any
    outputs: dict[str, Any]
    source: str
    preprocessing: dict[str, Any] | None = None  # what the teacher file expects of the raw values (report form)


def train_config(training: TrainingConfig, *, epochs: int, seed: int, learning_rate: float | None = None):
    """The :class:`~edgedistill.training.TrainConfig` of one training stage."""
    from edgedistill.training import TrainConfig

    return TrainConfig(
        epochs=epochs, batch_size=training.batch_size, learning_rate=learning_rate or training.learning_rate,
        patience=training.patience, seed=seed, verbose=training.verbose,
    )


# ---------------------------------------------------------------------------------------
# data


def load_data(config: DataConfig, *, teacher_file: str | None = None):
    """The data set of a run, split into train / validation / test.

    An image folder without ``--image-size`` takes the input size of ``teacher_file`` when it declares one.
    """
    from edgedistill.data import load_dataset

    if config.data.startswith("images:") and config.image_size is None and teacher_file:
        from edgedistill.teachers import teacher_input_shape

        shape = teacher_input_shape(teacher_file)
        if shape is not None and len(shape) == 3 and None not in shape[:2]:
            logger.info("   images: brought to the teacher's input size %dx%d", shape[0], shape[1])
            config = dataclasses.replace(config, image_size=f"{shape[0]}x{shape[1]}")
    data = load_dataset(
        config.data, validation_fraction=config.validation_fraction, seed=config.seed,
        max_train_samples=config.max_train_samples, options=config,
    )
    logger.info(
        "   %s: %d train / %d val / %d test, input %s, %d classes, %s",
        data.name, len(data.x_train), len(data.x_val), len(data.x_test), data.input_shape, data.num_classes,
        data.values["description"],
    )
    summary = data.summary()
    if data.audio is not None:  # audio:DIR: the front end the features came from
        summary["audio"] = data.audio.summary()
    return data, summary


# ---------------------------------------------------------------------------------------
# teacher


def student_preprocessing_of(data):
    """The project's preprocessing of the student (``x / 255`` for pixels; none for float data)."""
    from edgedistill.preprocessing import student_preprocessing

    return student_preprocessing(data.value_range or (0.0, 255.0), raw_bytes=data.raw_bytes)


def augmentation_of(training: TrainingConfig, data):
    """The augmentation ``--augment`` means for this data (``None`` when off or when it makes no sense)."""
    if not training.augment:
        return None
    from edgedistill.augment import augmentation_for

    augmentation = augmentation_for(data)
    if augmentation is None:
        logger.warning("--augment: nothing to augment in %s (feature vectors or audio); training without it", data.name)
    return augmentation


def _teacher_from_file(config: TeacherConfig, data):
    """The user's teacher taking raw values: input shape checked, preprocessing declared or detected."""
    from edgedistill.models import load_model_file
    from edgedistill.teachers import (
        apply_preprocessing, check_input_shape, model_input_shape, resolve_preprocessing, teacher_input_shape,
    )  # fmt: skip

    model = load_model_file(config.teacher)
    check_input_shape(model_input_shape(model) or teacher_input_shape(config.teacher), data)
    preprocessing, report = resolve_preprocessing(model, data, config.teacher_preprocessing)
    return apply_preprocessing(model, preprocessing), preprocessing, report


def prepare_teacher(config: TeacherConfig, training: TrainingConfig, data, *, seed: int = 0, log_dir: Path | None = None,
                    chance_gate: bool = True):
    """The user's teacher file, or a preset trained on hard labels; its logits cached per split.

    Every teacher takes the data's raw values. Before any student is trained, the teacher's
    validation accuracy is measured: near chance, below ``min_teacher_accuracy`` or in another class
    order, the run stops here (:func:`edgedistill.teachers.teacher_gate`); ``chance_gate=False``
    (``--no-chance-gate``, plumbing runs on too little data) skips the near-chance check only.
    """
    from edgedistill.models import build_model, check_classes, count_parameters, predict_logits
    from edgedistill.preprocessing import with_preprocessing
    from edgedistill.teachers import teacher_gate

    if config.teacher:
        model, preprocessing, preprocessing_report = _teacher_from_file(config, data)
        source = config.teacher
    else:
        from edgedistill.training import train_classifier

        if config.teacher_preprocessing:
            logger.warning("--teacher-preprocessing describes a --teacher file; the teacher trained here uses the student's")
        preprocessing = student_preprocessing_of(data)
        preprocessing_report = preprocessing.to_dict() if preprocessing is not None else None
        model = build_model(config.teacher_preset, data.input_shape, data.num_classes, width=config.teacher_width, name="teacher")
        model = with_preprocessing(model, preprocessing)
        logger.info("   training teacher preset %s (width %g)", config.teacher_preset, config.teacher_width)
        stage_config = train_config(training, epochs=config.teacher_epochs, seed=seed)
        train_classifier(model, data, config=stage_config, stage="teacher", log_dir=log_dir, augmentation=augmentation_of(training, data))
        source = f"preset {config.teacher_preset} (width {config.teacher_width})"
    check_classes(model, data.num_classes, "teacher")
    val_outputs = predict_logits(model, data.x_val)
    check_classes(val_outputs, data.num_classes, "teacher")  # also Keras 3 / SavedModel teachers
    gate = teacher_gate(
        val_outputs, data.y_val, data.class_names, min_accuracy=config.min_teacher_accuracy, preprocessing=preprocessing,
        source=source, trained_here=not config.teacher, near_chance_stops=chance_gate,
    )
    from edgedistill.augment import cached_outputs

    outputs = {"train": cached_outputs(model, data.x_train), "val": val_outputs}  # memory-mapped on disk when large
    report: Report = {"source": source, "parameters": count_parameters(model), "preprocessing": preprocessing_report, **gate}
    if config.calibrate_teacher:
        from edgedistill.distill.calibration import calibrate_logits

        calibration = calibrate_logits(outputs["val"], data.y_val)
        outputs = {split: calibration.apply(logits) for split, logits in outputs.items()}
        report["calibration"] = calibration.to_dict()
    return Teacher(model=model, outputs=outputs, source=source, preprocessing=preprocessing_report), report


# ---------------------------------------------------------------------------------------
# student


def budget_of(config: StudentConfig):
    from edgedistill.budget import Budget

    return Budget(max_flash_kb=config.max_flash_kb, max_arena_kb=config.max_arena_kb, max_latency_ms=config.max_latency_ms)


def build_student(config: StudentConfig, data):
    """The user's student file, or a preset at ``student_width`` (or the widest that fits a budget)."""
    from edgedistill._keras import keras
    from edgedistill.models import build_model, check_classes, load_model_file

    budget, report = budget_of(config), {}
    if config.student:
        if budget.is_set:
            raise InputError(
                "--max-flash-kb / --max-arena-kb / --max-latency-ms choose a preset width; they cannot size a --student file."
            )
        student = load_model_file(config.student)
        if not isinstance(student, keras.Model):
            raise InputError(f"The student {config.student} must be a tf_keras model (it is trained and quantized here).")
        from edgedistill.teachers import check_input_shape, model_input_shape

        check_input_shape(model_input_shape(student), data, role="student")
        source = config.student
    else:
        width = config.student_width
        if budget.is_set:
            from edgedistill.budget import select_student_width

            choice = select_student_width(config.student_preset, data.input_shape, data.num_classes, budget)
            logger.info("   budget (%s): %s", budget.describe(), choice.chosen.describe())
            width, report = choice.width, choice.to_dict()
        student = build_model(config.student_preset, data.input_shape, data.num_classes, width=width, name="student")
        source = f"preset {config.student_preset} (width {width})"
    check_classes(student, data.num_classes, "student")
    # The student takes raw values too: its preprocessing is its first layer (the int8 model then takes bytes).
    from edgedistill.preprocessing import find_preprocessing_layer, with_preprocessing

    if find_preprocessing_layer(student) is None:
        student = with_preprocessing(student, student_preprocessing_of(data))
    return student, source, report


# ---------------------------------------------------------------------------------------
# distill and QAT


def resolve_loss(config: DistillConfig):
    """The distillation loss: the logit losses (``logits``, ``dkd``, ``dist``, ...) get ``temperature``
    (and ``final_temperature``) unless given; ``name:key=value,...`` gives any registered loss its arguments."""
    from edgedistill.distill.losses import get_loss, loss_parameters, parse_arguments

    name, _, text = config.distillation_loss.partition(":")
    arguments = parse_arguments(text, what=f"the arguments of loss {name!r}") if text else {}
    parameters = loss_parameters(name.strip())
    if "temperature" in parameters:
        arguments.setdefault("temperature", config.temperature)
        if config.final_temperature is not None and "final_temperature" in parameters:
            arguments.setdefault("final_temperature", config.final_temperature)
    return get_loss({"kind": name.strip(), **arguments})


def check_names(config) -> None:
    """Unknown data set, preset, loss or scheme names fail before any training, listing valid names."""
    from edgedistill.data import LOADERS
    from edgedistill.distill import SCHEMES
    from edgedistill.distill.losses import LOSSES
    from edgedistill.models import PRESETS

    LOADERS.get(config.data.data.partition(":")[0])
    if not config.teacher.teacher:
        PRESETS.get(config.teacher.teacher_preset)
    if not config.student.student:
        PRESETS.get(config.student.student_preset)
    LOSSES.get(config.distill.distillation_loss.partition(":")[0].strip())
    SCHEMES.get(config.distill.scheme)
    if config.distill.prune_sparsity and config.distill.scheme != "standard":
        raise InputError(
            f"--prune-sparsity works with the standard scheme only. Received: scheme={config.distill.scheme!r}, "
            f"prune_sparsity={config.distill.prune_sparsity}. Prune in a second run from the distilled student."
        )


def training_arguments(config: DistillConfig, training: TrainingConfig, teacher: Teacher | None, *, epochs: int,
                       seed: int, learning_rate: float | None = None, log_dir: Path | None = None, augmentation=None):
    """What every distillation entry point takes: the loss, its weight, the schedule, cached teacher outputs
    (and the augmentation, with how the teacher sees it)."""
    from edgedistill.distill import TrainingArguments

    return TrainingArguments(
        distillation_losses=[resolve_loss(config)],
        student_loss_weight=config.student_loss_weight,
        config=train_config(training, epochs=epochs, seed=seed, learning_rate=learning_rate),
        teacher_outputs=teacher.outputs if teacher is not None else None,
        log_dir=log_dir,
        augmentation=augmentation,
        augment_views=training.augment_views,
    )


# Schemes whose teacher is the one model distilled from: augmentation keeps teacher and student consistent.
AUGMENTED_SCHEMES = ("standard", "teacher_assistant")


def _augmentation_report(config: DistillConfig, training: TrainingConfig, augmentation) -> dict:
    if augmentation is None:
        return {}
    if config.scheme not in AUGMENTED_SCHEMES and not config.prune_sparsity:
        logger.warning("--augment: scheme %s trains without augmentation (it applies to %s, pruning and QAT)",
                       config.scheme, ", ".join(AUGMENTED_SCHEMES))
        return {"augmentation": None}
    teacher = f"cached outputs on {training.augment_views} augmented views" if training.augment_views else "run on every augmented batch"
    return {"augmentation": augmentation.to_dict() | {"teacher": teacher}}


def distill_student(config: DistillConfig, training: TrainingConfig, teacher: Teacher, student, data, *,
                    seed: int = 0, log_dir: Path | None = None):
    """The configured scheme (or pruning during standard distillation); returns a ``SchemeResult``."""
    from edgedistill.distill import prune_distill, run_scheme

    augmentation = augmentation_of(training, data)
    arguments = training_arguments(
        config, training, teacher, epochs=config.epochs, seed=seed, log_dir=log_dir, augmentation=augmentation
    )
    if config.prune_sparsity:
        result = prune_distill(teacher.model, student, data, sparsity=config.prune_sparsity, training=arguments)
    else:
        result = run_scheme(config.scheme, teacher.model, student, data, options=config.scheme_options, training=arguments)
    history = result.history
    report = {
        "distill_epochs": len(history.get("loss", [])),
        "best_val_accuracy": max(history.get("val_accuracy", [0.0])) * 100.0,
        "scheme": config.scheme,
        **_augmentation_report(config, training, augmentation),
        **result.report,
    }
    return result, report


def quantize_student(config: QatConfig, distill_config: DistillConfig, training: TrainingConfig, teacher: Teacher,
                     distilled, data, *, seed: int = 0, log_dir: Path | None = None):
    """Quantization-aware distillation with the same loss; ``None`` when ``qat_epochs`` is 0.

    A data-free student never saw the training data: QAT uses the synthetic inputs (and the
    teacher's outputs on them) it was distilled on.
    """
    if config.qat_epochs == 0:
        return None, {"epochs": 0, "skipped": "qat_epochs=0: post-training quantization of the float student"}
    from edgedistill.distill import quantize_distill, quantize_distill_pruned

    quantization_data = distilled.quantization_data or data
    outputs = distilled.quantization_teacher_outputs or teacher.outputs
    arguments = training_arguments(
        distill_config, training, teacher, epochs=config.qat_epochs, seed=seed,
        learning_rate=config.qat_learning_rate, log_dir=log_dir,
        augmentation=augmentation_of(training, data) if distilled.quantization_data is None else None,
    )
    arguments = dataclasses.replace(arguments, teacher_outputs=outputs)
    quantize = quantize_distill_pruned if distill_config.prune_sparsity else quantize_distill  # a pruned student keeps its zeros
    result = quantize(teacher.model, distilled.student, quantization_data, training=arguments)
    return result.student, {"epochs": len(result.history.get("loss", [])), "data": quantization_data.name, **result.report}


# ---------------------------------------------------------------------------------------
# convert, micro, verify, bench


def convert_models(config: ConvertConfig, *, student, qat_student, teacher_model, calibration_inputs,
                   input_range: tuple[float, float] | None = None) -> tuple[dict[str, bytes], Report]:
    """``student_int8.tflite`` (from the QAT student when there is one) and float32 copies for comparison.

    ``input_range`` (0..255 for byte data) is the raw range the int8 input covers one to one.
    """
    from edgedistill._keras import keras
    from edgedistill.convert import convert_keras_model
    from edgedistill.tflite_model import read_model_info

    logger.info("   converting to int8 and float32 TFLite (about 10 s a model)")
    int8 = convert_keras_model(
        qat_student if qat_student is not None else student, quantization="int8", io_type=config.io_type,
        representative_data=calibration_inputs, num_calibration_samples=config.num_calibration_samples,
        input_range=input_range,
    )
    files = {"student_int8.tflite": int8, "student_float32.tflite": convert_keras_model(student, quantization="float32")}
    if isinstance(teacher_model, keras.Model):
        files["teacher_float32.tflite"] = convert_keras_model(teacher_model, quantization="float32")
    report: Report = {name: {"size_bytes": len(content)} for name, content in files.items()}
    info = read_model_info(int8)
    report["student_int8.tflite"].update({"ops": info.ops, "io_type": config.io_type, "input_quantization": info.inputs[0].quantization})
    return files, report


def input_convention_of(data, int8: bytes, *, teacher_preprocessing: dict | None = None) -> Report:
    """What the deployed int8 model takes (``report.json``, ``micro_export.json``, ``test_data.h``)."""
    from edgedistill.preprocessing import input_convention
    from edgedistill.tflite_model import read_model_info

    return input_convention(
        data.values, raw_bytes=data.raw_bytes, student=student_preprocessing_of(data),
        input_quantization=read_model_info(int8).inputs[0].quantization, teacher=teacher_preprocessing,
    )


def export_micro_sources(config: MicroConfig, int8: bytes, data, output_dir: Path, *, model_name: str = "model.tflite",
                         input_convention: dict | None = None):
    """TFLite Micro sources of the int8 model, with the arena measured on the real TFLM interpreter
    (and the audio front end with its own arena, for audio data or ``config.front_end``)."""
    from edgedistill.micro import export_micro

    export = export_micro(
        int8, output_dir, test_inputs=data.x_test if data is not None else None,
        test_labels=data.y_test if data is not None else None, num_test_samples=config.num_test_vectors,
        margin_fraction=config.arena_margin, model_name=model_name, front_end=_front_end_export(config, data),
        memory_plan=config.memory_plan, compact=config.compact, input_convention=input_convention,
    )
    return export, export.to_dict() | {key: export.metadata.get(key) for key in ("memory_plan", "compaction")}


def _front_end_export(config: MicroConfig, data):
    """The audio front end to export with the model: the data set's, or the ``front_end`` file."""
    audio = getattr(data, "audio", None)
    if audio is None and not config.front_end:
        return None
    from edgedistill.micro.frontend import FrontEndExport
    from edgedistill.tflite_model import read_model_bytes

    content = read_model_bytes(config.front_end) if config.front_end else audio.frontend_model
    if audio is not None and content != audio.frontend_model:
        raise InputError(
            f"--front-end {config.front_end} is not the front end the audio data's features came from. "
            "Leave --front-end out (the data brings its own), or give the data's --audio-* options."
        )
    return FrontEndExport(
        content, test_clips=audio.test_clips if audio is not None else None, num_test_samples=config.num_test_vectors,
        source=str(config.front_end or "front_end.tflite"), compact=config.compact,
    )


def verify_student(config: VerifyConfig, data, *, keras_models: dict[str, Any], int8: bytes, arena_bytes: int | None,
                   reference: str, max_samples: int | None = None):
    """Accuracy of every form on the test split and their agreement; the gate is decided here, raised by the caller."""
    from edgedistill.verify import verify_models

    result = verify_models(
        data.x_test, data.y_test, keras_models=keras_models, int8_tflite=int8, tflm_arena_size=arena_bytes,
        max_int8_drop=config.max_int8_drop, reference=reference, max_samples=max_samples, chance_gate=config.chance_gate,
    )
    logger.info("   test accuracy: %s", ", ".join(f"{name} {value:.2f}%" for name, value in result.accuracy.items()))
    return result, result.to_dict() | {"reference": reference}


def bench_models(config: BenchStageConfig, paths: list[Path], *, results_path: Path) -> Report:
    """Each model on the host LiteRT interpreter; every raw sample goes to ``results_path``."""
    from edgedistill.bench import run_benchmark

    report: Report = {}
    for path in paths:
        logger.info("   benchmarking %s (%d runs)", path.name, config.num_runs)
        measurement = run_benchmark(
            path, target="local", num_runs=config.num_runs, warmup_runs=config.warmup_runs,
            num_threads=config.num_threads, results_path=results_path,
        )
        summary = measurement.to_dict()
        summary.pop("samples_ms", None)  # every raw sample stays in the results file
        report[path.name] = summary
    return report


__all__ = [
    "Teacher",
    "train_config",
    "load_data",
    "prepare_teacher",
    "build_student",
    "budget_of",
    "resolve_loss",
    "check_names",
    "training_arguments",
    "distill_student",
    "quantize_student",
    "convert_models",
    "export_micro_sources",
    "verify_student",
    "bench_models",
    "student_preprocessing_of",
    "augmentation_of",
    "input_convention_of",
]
