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
from typing import TYPE_CHECKING, Any, Callable

from edgedistill.config import (
    AUTO_LOSS,
    AUTO_PROBE_EPOCHS,
    COSINE_FINAL_FRACTION,
    LOSS_CANDIDATES,
    QAT_LEARNING_RATE,
    BenchStageConfig,
    ConvertConfig,
    DataConfig,
    DistillConfig,
    MicroConfig,
    QatConfig,
    RunConfig,
    StudentConfig,
    TeacherConfig,
    TrainingConfig,
    VerifyConfig,
)
from edgedistill.errors import InputError, StageError

if TYPE_CHECKING:  # the types of the stages' inputs and outputs; their modules import TensorFlow, so not at run time
    import numpy as np

    from edgedistill.augment import Augmentation
    from edgedistill.budget import Budget
    from edgedistill.data import Dataset
    from edgedistill.distill import SchemeResult, TrainingArguments
    from edgedistill.distill.losses import DistillationLoss
    from edgedistill.distill.schemes import Scheme
    from edgedistill.micro import MicroExport
    from edgedistill.micro.frontend import FrontEndExport
    from edgedistill.models import ExternalTeacher, KerasModel
    from edgedistill.preprocessing import Preprocessing
    from edgedistill.training import TrainConfig
    from edgedistill.verify import VerifyResult

logger = logging.getLogger(__name__)
Report = dict[str, Any]


@dataclasses.dataclass
class Teacher:
    """A loaded or trained teacher and its cached logits per split (``train``, ``val``)."""

    model: KerasModel | ExternalTeacher  # ExternalTeacher: a SavedModel or Keras 3 file that only gives outputs
    outputs: dict[str, np.ndarray]  # logits per split (memory-mapped when large)
    source: str
    preprocessing: dict[str, Any] | None = None  # what the teacher file expects of the raw values (report form)


def train_config(
    training: TrainingConfig,
    *,
    epochs: int,
    seed: int,
    learning_rate: float | None = None,
    schedule_epochs: int | None = None,
) -> TrainConfig:
    """The :class:`~edgedistill.training.TrainConfig` of one training stage: the run's ``--learning-rate`` and
    ``--lr-schedule``, or a constant ``learning_rate`` (QAT's). ``schedule_epochs``: the epochs a cosine spans when
    the stage trains only its first ``epochs`` (a loss probe)."""
    from edgedistill.training import TrainConfig

    return TrainConfig(
        epochs=epochs,
        batch_size=training.batch_size,
        learning_rate=learning_rate or training.learning_rate,
        patience=training.patience,
        seed=seed,
        verbose=training.verbose,
        lr_schedule="constant" if learning_rate else training.lr_schedule,
        schedule_epochs=schedule_epochs,
    )


def qat_learning_rate(config: QatConfig, training: TrainingConfig) -> float:
    """QAT's constant rate: ``--qat-learning-rate``; after a cosine decay, where the decay ended unless that option
    was set (to any value, its default's included). Measured (kd_defaults.py, CIFAR-10): QAT restarting above the
    rate the float stage ended at undid part of distillation's gain (+0.95 points over scratch against +4.76 and
    +1.04 with QAT at the final rate)."""
    if config.qat_learning_rate is not None:
        return config.qat_learning_rate
    if training.lr_schedule == "cosine":
        return training.learning_rate * COSINE_FINAL_FRACTION
    return QAT_LEARNING_RATE


# ---------------------------------------------------------------------------------------
# data


def load_data(config: DataConfig, *, teacher_file: str | None = None) -> tuple[Dataset, Report]:
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
        config.data,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
        max_train_samples=config.max_train_samples,
        options=config,
    )
    logger.info(
        "   %s: %d train / %d val / %d test, input %s, %d classes, %s",
        data.name,
        len(data.x_train),
        len(data.x_val),
        len(data.x_test),
        data.input_shape,
        data.num_classes,
        data.values["description"],
    )
    summary = data.summary()
    if data.audio is not None:  # audio:DIR: the front end the features came from
        summary["audio"] = data.audio.summary()
    return data, summary


# ---------------------------------------------------------------------------------------
# teacher


def student_preprocessing_of(data: Dataset) -> Preprocessing | None:
    """The project's preprocessing of the student (``x / 255`` for pixels; none for float data)."""
    from edgedistill.preprocessing import student_preprocessing

    return student_preprocessing(data.value_range or (0.0, 255.0), raw_bytes=data.raw_bytes)


def augmentation_of(training: TrainingConfig, data: Dataset) -> Augmentation | None:
    """The augmentation ``--augment`` means for this data (``None`` when off or when it makes no sense)."""
    if not training.augment:
        return None
    from edgedistill.augment import augmentation_for

    augmentation = augmentation_for(data)
    if augmentation is None:
        logger.warning("--augment: nothing to augment in %s (feature vectors or audio); training without it", data.name)
    return augmentation


def _teacher_from_file(config: TeacherConfig, data: Dataset) -> tuple[KerasModel | ExternalTeacher, Preprocessing, Report]:
    """The user's teacher taking raw values: input shape checked, preprocessing declared or detected."""
    from edgedistill.models import load_model_file
    from edgedistill.teachers import (
        apply_preprocessing,
        check_input_shape,
        model_input_shape,
        resolve_preprocessing,
        teacher_input_shape,
    )

    from edgedistill.keras3.loading import register_layers_for

    path = config.teacher
    assert path  # prepare_teacher comes here for a --teacher file only
    register_layers_for(path)  # a saved Keras 3 QAT student may be a teacher
    model = load_model_file(path)
    check_input_shape(model_input_shape(model) or teacher_input_shape(path), data)
    preprocessing, report = resolve_preprocessing(model, data, config.teacher_preprocessing)
    return apply_preprocessing(model, preprocessing), preprocessing, report


def _trained_teacher(
    config: TeacherConfig, training: TrainingConfig, data: Dataset, *, seed: int, log_dir: Path | None
) -> tuple[KerasModel, Preprocessing | None]:
    """The teacher preset trained here on hard labels, taking the data's raw values with the student's preprocessing;
    and that preprocessing."""
    from edgedistill.models import build_model
    from edgedistill.preprocessing import with_preprocessing
    from edgedistill.training import train_classifier

    if config.teacher_preprocessing:
        logger.warning("--teacher-preprocessing describes a --teacher file; the teacher trained here uses the student's")
    preprocessing = student_preprocessing_of(data)
    model = build_model(config.teacher_preset, data.input_shape, data.num_classes, width=config.teacher_width, name="teacher")
    model = with_preprocessing(model, preprocessing)
    logger.info("   training teacher preset %s (width %g)", config.teacher_preset, config.teacher_width)
    stage_config = train_config(training, epochs=config.teacher_epochs, seed=seed)
    train_classifier(
        model, data, config=stage_config, stage="teacher", log_dir=log_dir, augmentation=augmentation_of(training, data)
    )
    return model, preprocessing


def prepare_teacher(
    config: TeacherConfig,
    training: TrainingConfig,
    data: Dataset,
    *,
    seed: int = 0,
    log_dir: Path | None = None,
    chance_gate: bool = True,
) -> tuple[Teacher, Report]:
    """The user's teacher file, or a preset trained on hard labels; its logits cached per split.

    Every teacher takes the data's raw values. Before any student is trained, the teacher's
    validation accuracy is measured: near chance, below ``min_teacher_accuracy`` or in another class
    order, the run stops here (:func:`edgedistill.teachers.teacher_gate`); ``chance_gate=False``
    (``--no-chance-gate``, plumbing runs on too little data) skips the near-chance check only.
    """
    from edgedistill.models import check_classes, count_parameters, predict_logits
    from edgedistill.teachers import teacher_gate

    preprocessing: Preprocessing | None
    preprocessing_report: Report | None
    if config.teacher:
        model, preprocessing, preprocessing_report = _teacher_from_file(config, data)
        source = config.teacher
    else:
        model, preprocessing = _trained_teacher(config, training, data, seed=seed, log_dir=log_dir)
        preprocessing_report = preprocessing.to_dict() if preprocessing is not None else None
        source = f"preset {config.teacher_preset} (width {config.teacher_width})"
    check_classes(model, data.num_classes, "teacher")
    val_outputs = predict_logits(model, data.x_val)
    check_classes(val_outputs, data.num_classes, "teacher")  # also Keras 3 / SavedModel teachers
    gate = teacher_gate(
        val_outputs,
        data.y_val,
        data.class_names,
        min_accuracy=config.min_teacher_accuracy,
        preprocessing=preprocessing,
        source=source,
        trained_here=not config.teacher,
        near_chance_stops=chance_gate,
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


def budget_of(config: StudentConfig) -> Budget:
    from edgedistill.budget import Budget

    return Budget(max_flash_kb=config.max_flash_kb, max_arena_kb=config.max_arena_kb, max_latency_ms=config.max_latency_ms)


def build_student(config: StudentConfig, data: Dataset) -> tuple[KerasModel, str, Report]:
    """The user's student file, or a preset at ``student_width`` (or the widest that fits a budget).

    With ``--keras 3`` (or a Keras 3 student file) the student is a Keras 3 model (:func:`build_keras3_student`).
    """
    if student_keras(config) == "3":
        return build_keras3_student(config, data)
    from edgedistill._keras import keras
    from edgedistill.models import build_model, check_classes, load_model_file

    budget = budget_of(config)
    report: Report = {}
    if config.student:
        if budget.is_set:
            raise InputError(
                "--max-flash-kb / --max-arena-kb / --max-latency-ms choose a preset width; they cannot size a --student file."
            )
        student = load_model_file(config.student)
        if not isinstance(student, keras.Model):
            raise InputError(
                f"The student {config.student} must be a tf_keras model with --keras 2 (it is trained and "
                "quantized with tfmot). For a Keras 3 .keras file pass --keras 3 (or leave --keras out)."
            )
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
# Keras 3 students (--keras 3): edgedistill.keras3's Distiller, QAT and converter


def student_keras(config: StudentConfig) -> str:
    """``"3"`` or ``"2"``: ``--keras`` when given, else the student file's Keras, else 2 (tf_keras presets)."""
    if config.keras is not None:
        return str(config.keras)
    if config.student:
        from edgedistill.models import is_keras3_file

        return "3" if is_keras3_file(config.student) else "2"
    return "2"


def keras_report(student: KerasModel) -> Report:
    """The Keras the student was trained with, for ``report.json``."""
    from edgedistill.keras3.backend import is_keras3_model

    if is_keras3_model(student):
        import keras

        return {"keras": "3", "keras_version": str(keras.__version__)}
    from edgedistill._keras import keras as tf_keras

    return {"keras": "2", "keras_version": f"tf_keras {getattr(tf_keras, '__version__', '?')}"}


def _keras3_unsupported(config: RunConfig) -> list[tuple[str, str]]:
    """``(option, why)`` of each option set that the Keras 3 path does not support."""
    distill, training = config.distill, config.training
    found = []
    if not scheme_of(distill).standard_step:
        found.append((f"--scheme {distill.scheme}", f"Keras 3 students are distilled with {_standard_step_schemes()} only"))
    if distill.prune_sparsity:
        found.append((f"--prune-sparsity {distill.prune_sparsity}", "pruning is tfmot's (Keras 2)"))
    if not is_auto_loss(distill) and not resolve_loss(distill).uses_final_outputs:  # auto's candidates are logit losses
        found.append(
            (
                f"--distillation-loss {distill.distillation_loss}",
                "the Keras 3 Distiller takes losses on the logits (logits, logit_standardization, dkd, dist)",
            )
        )
    if training.augment:
        found.append(("--augment", "augmentation runs in the tf_keras training step"))
    if training.strategy != "none":
        found.append((f"--strategy {training.strategy}", "tf.distribute strategies wrap the tf_keras training"))
    if budget_of(config.student).is_set:
        found.append(("--max-flash-kb / --max-arena-kb / --max-latency-ms", "the budget search sizes tf_keras presets"))
    if config.qat.qat_epochs and config.convert.io_type != "int8":
        found.append((f"--io-type {config.convert.io_type}", "the Keras 3 QAT export has int8 input and output"))
    return found


def check_keras3_options(config: RunConfig, *, quantization: bool = True) -> None:
    """Before the first stage: the student file matches ``--keras``, the options are ones the Keras 3 path
    supports, and a student file quantizes: every layer covered by Keras 3 QAT, or (``--qat-epochs 0``) no op the
    post-training conversion would leave in float. One :class:`InputError`."""
    student = config.student
    if student.student and student.keras is not None:
        from edgedistill.models import is_keras3_file

        if str(student.keras) == "2" and is_keras3_file(student.student):
            raise InputError(
                f"--keras 2, but the --student file {student.student} is a Keras 3 model. "
                "Pass --keras 3 (or leave --keras out: the file decides)."
            )
    if student_keras(student) != "3":
        return
    unsupported = _keras3_unsupported(config)
    if unsupported:
        listing = "; ".join(f"{option} ({why})" for option, why in unsupported)
        raise InputError(
            f"A Keras 3 student (--keras 3) does not support: {listing}. Drop these options, or use a tf_keras "
            "student (--keras 2)."
        )
    if student.student:
        from edgedistill.keras3.loading import load_keras3_student

        model = load_keras3_student(student.student)  # a tf_keras file with --keras 3 is refused here
    else:
        from edgedistill.keras3.models import PRESET_NAMES

        if student.student_preset not in PRESET_NAMES:
            raise InputError(
                f"--student-preset {student.student_preset} has no Keras 3 version; with --keras 3 use one of: "
                f"{', '.join(PRESET_NAMES)}, or use --keras 2."
            )
        return  # every Keras 3 preset is covered by Keras 3 QAT
    if not quantization:
        return
    if config.qat.qat_epochs:
        from edgedistill.keras3.qat import check_covered

        check_covered(model)  # before the teacher trains: a layer QAT cannot quantize is named now
    else:
        _check_keras3_ptq(model, io_type=config.convert.io_type)


def _check_keras3_ptq(model: KerasModel, *, io_type: str) -> None:
    """PTQ of the untrained student, on random inputs (which ops stay float depends on the graph, not on the
    values): a float op the converter would leave in the int8 model is named before the teacher trains."""
    import numpy as np

    from edgedistill.errors import StageError
    from edgedistill.keras3.convert import convert_float_model

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    samples = np.random.default_rng(0).uniform(0.0, 1.0, size=(8, *shape)).astype(np.float32)
    try:
        convert_float_model(model, quantization="int8", io_type=io_type, representative_data=samples, num_calibration_samples=8)
    except StageError as error:
        raise InputError(f"--qat-epochs 0 (post-training quantization): {error}") from None


def build_keras3_student(config: StudentConfig, data: Dataset) -> tuple[KerasModel, str, Report]:
    """The Keras 3 student: the ``--student`` file as it is, or a Keras 3 preset with the data's preprocessing."""
    from edgedistill.keras3.loading import load_keras3_student
    from edgedistill.models import check_classes
    from edgedistill.preprocessing import find_preprocessing_layer

    if config.student:
        from edgedistill.teachers import check_input_shape, model_input_shape

        student = load_keras3_student(config.student)
        check_input_shape(model_input_shape(student), data, role="student")
        if find_preprocessing_layer(student) is None and student_preprocessing_of(data) is not None:
            logger.warning(
                "   the Keras 3 student %s has no `preprocess` layer: it is trained on the data's raw values "
                "(add keras.layers.Rescaling(..., name='preprocess') as its first layer to scale them)",
                config.student,
            )
        source = config.student
    else:
        from edgedistill.keras3.models import build_model

        student = build_model(
            config.student_preset,
            data.input_shape,
            data.num_classes,
            width=config.student_width,
            name="student",
            preprocessing=student_preprocessing_of(data),
        )
        source = f"preset {config.student_preset} (width {config.student_width}, Keras 3)"
    check_classes(student, data.num_classes, "student")
    return student, source, {}


def _distill_keras3(
    config: DistillConfig,
    training: TrainingConfig,
    teacher: Teacher,
    student: KerasModel,
    data: Dataset,
    *,
    seed: int,
    epochs: int,
    learning_rate: float,
    teacher_outputs: dict[str, np.ndarray] | None = None,
    lr_schedule: str = "constant",
    schedule_epochs: int | None = None,
) -> tuple[KerasModel, dict[str, list[float]]]:
    """One Keras 3 distillation (float or QAT) with the run's loss; ``lr_schedule``: the float stage's
    ``--lr-schedule`` (QAT trains at a constant rate, as on the tf_keras path); ``(student, history)``."""
    from edgedistill.keras3.distiller import distill

    return distill(
        teacher.model,
        student,
        data,
        epochs=epochs,
        batch_size=training.batch_size,
        learning_rate=learning_rate,
        patience=training.patience,
        seed=seed,
        distillation_losses=[resolve_loss(config)],
        student_loss_weight=config.student_loss_weight,
        teacher_outputs=teacher_outputs or teacher.outputs,
        verbose=training.verbose,
        lr_schedule=lr_schedule,
        schedule_epochs=schedule_epochs,
    )


def distill_keras3_student(
    config: DistillConfig,
    training: TrainingConfig,
    teacher: Teacher,
    student: KerasModel,
    data: Dataset,
    *,
    seed: int = 0,
    schedule_epochs: int | None = None,
) -> tuple[SchemeResult, Report]:
    """Standard distillation of a Keras 3 student (the other options were refused before the first stage);
    ``schedule_epochs`` as in :func:`distill_student`."""
    from edgedistill.distill import SchemeResult

    student, history = _distill_keras3(
        config,
        training,
        teacher,
        student,
        data,
        seed=seed,
        epochs=config.epochs,
        learning_rate=training.learning_rate,
        lr_schedule=training.lr_schedule,
        schedule_epochs=schedule_epochs,
    )
    report = {
        "distill_epochs": len(history.get("loss", [])),
        "best_val_accuracy": max(history.get("val_accuracy", [0.0])) * 100.0,
        "scheme": config.scheme,
    }
    return SchemeResult(student=student, history=history, report={}), report


def quantize_keras3_student(
    config: QatConfig,
    distill_config: DistillConfig,
    training: TrainingConfig,
    teacher: Teacher,
    student: KerasModel,
    data: Dataset,
    *,
    seed: int = 0,
) -> tuple[KerasModel, Report]:
    """Keras 3 QAT (:func:`edgedistill.keras3.qat.quantize_model`) distilled with the same loss; ``(qat model, report)``."""
    from edgedistill.keras3.qat import activation_quantizers, quantize_model
    from edgedistill.preprocessing import BYTE_RANGE

    qat_student = quantize_model(student, input_range=BYTE_RANGE if data.raw_bytes else None)
    learning_rate = qat_learning_rate(config, training)
    qat_student, history = _distill_keras3(
        distill_config, training, teacher, qat_student, data, seed=seed, epochs=config.qat_epochs, learning_rate=learning_rate
    )
    report = {
        "epochs": len(history.get("loss", [])),
        "learning_rate": learning_rate,  # as the tf_keras path's QAT report
        "data": data.name,
        "method": "edgedistill.keras3 QAT",
        "activation_quantizers": len(activation_quantizers(qat_student)),
        **keras_report(qat_student),
    }
    return qat_student, report


def convert_keras3_models(
    config: ConvertConfig,
    *,
    student: KerasModel,
    qat_student: KerasModel | None,
    calibration_inputs: np.ndarray,
    input_range: tuple[float, float] | None = None,
) -> dict[str, bytes]:
    """``student_int8.tflite`` of a Keras 3 student (from its QAT model's trained ranges, or PTQ without QAT) and
    ``student_float32.tflite``."""
    from edgedistill.keras3.convert import convert_float_model, convert_qat_model

    if qat_student is not None:
        int8 = convert_qat_model(qat_student)
    else:
        int8 = convert_float_model(
            student,
            quantization="int8",
            io_type=config.io_type,
            representative_data=calibration_inputs,
            num_calibration_samples=config.num_calibration_samples,
            input_range=input_range,
        )
    return {"student_int8.tflite": int8, "student_float32.tflite": convert_float_model(student, quantization="float32")}


# ---------------------------------------------------------------------------------------
# distill and QAT


def resolve_loss(config: DistillConfig) -> DistillationLoss:
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


def is_auto_loss(config: DistillConfig) -> bool:
    """``--distillation-loss auto[:epochs=N]``: the loss is chosen by a probe (:func:`choose_loss`)."""
    return config.distillation_loss.partition(":")[0].strip() == AUTO_LOSS


def auto_probe_epochs(config: DistillConfig) -> int:
    """How many epochs each candidate of ``--distillation-loss auto`` distills: ``auto:epochs=N``, else
    :data:`~edgedistill.config.AUTO_PROBE_EPOCHS` or a quarter of ``--epochs`` when that is fewer."""
    from edgedistill.distill.losses import parse_arguments

    text = config.distillation_loss.partition(":")[2]
    arguments = parse_arguments(text, what="the arguments of --distillation-loss auto") if text.strip() else {}
    unknown = sorted(set(arguments) - {"epochs"})
    if unknown:
        raise InputError(
            f"--distillation-loss {config.distillation_loss}: auto takes `epochs=N` only. Received: {', '.join(unknown)}. "
            "Example: --distillation-loss auto:epochs=3."
        )
    epochs = arguments.get("epochs", min(AUTO_PROBE_EPOCHS, max(1, config.epochs // 4)))
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs < config.epochs:
        raise InputError(
            f"--distillation-loss {config.distillation_loss}: the probe's epochs must be a whole number >= 1 and below "
            f"--epochs ({config.epochs}). Received: {epochs!r}. Example: --distillation-loss auto:epochs=3."
        )
    return epochs


def choose_loss(
    config: DistillConfig,
    training: TrainingConfig,
    teacher: Teacher,
    student: KerasModel,
    data: Dataset,
    *,
    seed: int = 0,
) -> tuple[DistillConfig, Report]:
    """``--distillation-loss auto``: each of :data:`~edgedistill.config.LOSS_CANDIDATES` distills ``student`` for a
    few epochs from the same initial weights; the candidate with the best validation accuracy after them (the first,
    the default, on a tie) is returned as the run's distillation options. ``student`` is left with its initial
    weights, so the full run that follows is the one ``--distillation-loss <winner>`` would give.
    The test split is never looked at; the probe's cost is in the report (``seconds``, ``epochs``)."""
    import time

    epochs = auto_probe_epochs(config)
    initial = student.get_weights()
    started = time.perf_counter()
    scores: dict[str, dict[str, Any]] = {}
    for name, options in LOSS_CANDIDATES.items():
        candidate = dataclasses.replace(config, final_temperature=None, **options)
        probe_started = time.perf_counter()
        result, _ = distill_student(
            dataclasses.replace(candidate, epochs=epochs),
            training,
            teacher,
            student,
            data,
            seed=seed,
            schedule_epochs=config.epochs,
        )  # the first epochs of the full run's schedule
        accuracies = result.history.get("val_accuracy") or [float("nan")]
        scores[name] = {
            **options,
            "val_accuracy": round(float(accuracies[-1]) * 100.0, 2),
            "seconds": round(time.perf_counter() - probe_started, 1),
        }
        student.set_weights(initial)
        logger.info("   loss probe: %s, validation accuracy %.2f%% after %d epochs", name, scores[name]["val_accuracy"], epochs)
    chosen = max(scores, key=lambda name: scores[name]["val_accuracy"])  # max keeps the first of equals
    logger.info("   loss probe: distilling with %s (%s)", chosen, LOSS_CANDIDATES[chosen])
    report = {
        "epochs": epochs,
        "candidates": scores,
        "chosen": chosen,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return dataclasses.replace(config, final_temperature=None, **LOSS_CANDIDATES[chosen]), report


def chosen_options(config: DistillConfig, probe: Report | None) -> DistillConfig:
    """The run's distillation options once its loss probe (a ``loss_probe`` report section) has chosen; ``config``
    itself when the loss was given."""
    if not is_auto_loss(config):
        return config
    if not probe or probe.get("chosen") not in LOSS_CANDIDATES:
        raise StageError(
            "The distillation options chosen by --distillation-loss auto are not in this run's report: distill again "
            "(a new run, or `run --resume` after deleting student_float.keras)."
        )
    return dataclasses.replace(config, final_temperature=None, **LOSS_CANDIDATES[probe["chosen"]])


def scheme_of(config: DistillConfig) -> Scheme:
    """The registry entry of the configured scheme: what it can do is asked of its fields, never of its name."""
    from edgedistill.distill.schemes import SCHEMES

    return SCHEMES.get(config.scheme)


def _standard_step_schemes() -> str:
    from edgedistill.distill.schemes import SCHEMES

    names = [name for name in SCHEMES if SCHEMES.get(name).standard_step]
    return f"the {' or '.join(names)} scheme{'s' if len(names) > 1 else ''}"


def check_names(config: RunConfig) -> None:
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
    scheme = SCHEMES.get(config.distill.scheme)
    if is_auto_loss(config.distill):
        auto_probe_epochs(config.distill)
        if config.distill.scheme != "standard" or config.distill.prune_sparsity:
            raise InputError(
                "--distillation-loss auto probes losses of the standard scheme without pruning. Received: "
                f"scheme={config.distill.scheme!r}, prune_sparsity={config.distill.prune_sparsity}. Name the loss "
                "(e.g. --distillation-loss dist:beta=2,gamma=2) or drop --scheme / --prune-sparsity."
            )
    elif config.distill.distillation_loss.partition(":")[0].strip() not in LOSSES:
        raise InputError(
            f"Unknown distillation loss {config.distill.distillation_loss.partition(':')[0].strip()!r}. Expected one of: "
            f"{', '.join(LOSSES.names())}, or {AUTO_LOSS} (a short probe chooses between dist and logits)."
        )
    if config.distill.prune_sparsity and not scheme.standard_step:
        raise InputError(
            f"--prune-sparsity works with {_standard_step_schemes()} only. Received: scheme={config.distill.scheme!r}, "
            f"prune_sparsity={config.distill.prune_sparsity}. Prune in a second run from the distilled student."
        )


def _is_default(config: RunConfig, section: str, name: str) -> bool:
    field = next(f for f in dataclasses.fields(getattr(config, section)) if f.name == name)
    return getattr(getattr(config, section), name) == field.default


# (section, option, when it does nothing, why): options a user sets that the run would ignore.
INEFFECTIVE_OPTIONS: tuple[tuple[str, str, Callable[[RunConfig], bool], str], ...] = (
    *(
        (("data", name, lambda c: not c.data.data.startswith("images:"), "applies to --data images:DIR only"))
        for name in ("image_size", "color_mode", "class_names")
    ),
    *(
        (("data", name, lambda c: not c.data.data.startswith("audio:"), "applies to --data audio:DIR only"))
        for name in (
            "audio_label_pattern",
            "audio_test_split",
            "audio_augment_copies",
            "audio_noise_dir",
            "audio_silence_fraction",
            "audio_unknown_dir",
            "audio_trim",
            "audio_clip_ms",
            "audio_sample_rate",
        )
    ),
    ("training", "augment_views", lambda c: not c.training.augment, "works with --augment only"),
    *(
        (("teacher", name, lambda c: bool(c.teacher.teacher), "describes the preset teacher; --teacher is a file"))
        for name in ("teacher_preset", "teacher_width", "teacher_epochs")
    ),
    ("teacher", "teacher_preprocessing", lambda c: not c.teacher.teacher, "describes a --teacher file; none was given"),
    *(
        (("student", name, lambda c: bool(c.student.student), "describes the preset student; --student is a file"))
        for name in ("student_preset", "student_width", "max_flash_kb", "max_arena_kb", "max_latency_ms")
    ),
    ("qat", "qat_learning_rate", lambda c: c.qat.qat_epochs == 0, "has no effect with --qat-epochs 0"),
    *(
        (("bench", name, lambda c: not c.bench.bench, "has no effect with --no-bench"))
        for name in ("num_runs", "warmup_runs", "num_threads")
    ),
    ("distill", "scheme_options", lambda c: not scheme_of(c.distill).takes_options, "has no effect: the scheme takes no options"),
    *(
        (("distill", name, lambda c: is_auto_loss(c.distill), "is set by the loss --distillation-loss auto chooses"))
        for name in ("temperature", "final_temperature", "student_loss_weight")
    ),
)


def warn_ineffective_options(config: RunConfig) -> list[str]:
    """One warning line per option set to a non-default value that this run would ignore; returns their names."""
    found = []
    for section, name, ineffective, why in INEFFECTIVE_OPTIONS:
        if not _is_default(config, section, name) and ineffective(config):
            logger.warning("--%s %s: ignored (it %s).", name.replace("_", "-"), getattr(getattr(config, section), name), why)
            found.append(name)
    return found


def check_run_options(config: RunConfig, *, quantization: bool = True) -> None:
    """Everything that can be checked before the first stage runs: names, model files, ignored options
    (``quantization=False``: a command that trains no int8 model, e.g. ``distill``, skips the int8 checks)."""
    from edgedistill.models import _check_model_path

    check_names(config)
    for path in (config.teacher.teacher, config.student.student):
        if path:
            _check_model_path(path)  # exists, a regular file or a folder (not /dev/zero, not a FIFO)
    if config.teacher.teacher_preprocessing:  # its syntax, before the data is loaded (the channels are checked later)
        from edgedistill.preprocessing import parse_preprocessing

        parse_preprocessing(config.teacher.teacher_preprocessing, value_range=(0.0, 255.0), statistics=lambda: ([0.0], [1.0]))
    if config.bench.bench:  # the benchmark target's spec (and whether it can profile), before anything trains
        from edgedistill.bench import require_profiling
        from edgedistill.targets import make_target
        from edgedistill.targets.base import BenchConfig

        try:
            target = make_target(config.bench.bench_target)
        except InputError as error:
            raise InputError(f"--bench-target {config.bench.bench_target!r}: {error}") from None
        require_profiling([target], BenchConfig(profile=config.bench.bench_profile))
    if config.training.strategy == "multi_worker":  # a malformed TF_CONFIG, before the data is loaded
        import os

        from edgedistill.strategy import parse_tf_config

        parse_tf_config(os.environ.get("TF_CONFIG", ""))
    check_keras3_options(config, quantization=quantization)
    warn_ineffective_options(config)


def training_arguments(
    config: DistillConfig,
    training: TrainingConfig,
    teacher: Teacher | None,
    *,
    epochs: int,
    seed: int,
    learning_rate: float | None = None,
    schedule_epochs: int | None = None,
    log_dir: Path | None = None,
    augmentation: Augmentation | None = None,
) -> TrainingArguments:
    """What every distillation entry point takes: the loss, its weight, the schedule (see :func:`train_config`),
    cached teacher outputs (and the augmentation, with how the teacher sees it)."""
    from edgedistill.distill import TrainingArguments

    return TrainingArguments(
        distillation_losses=[resolve_loss(config)],
        student_loss_weight=config.student_loss_weight,
        config=train_config(training, epochs=epochs, seed=seed, learning_rate=learning_rate, schedule_epochs=schedule_epochs),
        teacher_outputs=teacher.outputs if teacher is not None else None,
        log_dir=log_dir,
        augmentation=augmentation,
        augment_views=training.augment_views,
    )


def _augmentation_report(config: DistillConfig, training: TrainingConfig, augmentation: Augmentation | None) -> Report:
    if augmentation is None:
        return {}
    if not scheme_of(config).augments and not config.prune_sparsity:
        from edgedistill.distill.schemes import SCHEMES

        augmented = [name for name in SCHEMES if SCHEMES.get(name).augments]  # the entries' `augments` field
        logger.warning(
            "--augment: scheme %s trains without augmentation (it applies to %s, pruning and QAT)",
            config.scheme,
            ", ".join(augmented),
        )
        return {"augmentation": None}
    teacher = (
        f"cached outputs on {training.augment_views} augmented views"
        if training.augment_views
        else "run on every augmented batch"
    )
    return {"augmentation": augmentation.to_dict() | {"teacher": teacher}}


def distill_student(
    config: DistillConfig,
    training: TrainingConfig,
    teacher: Teacher,
    student: KerasModel,
    data: Dataset,
    *,
    seed: int = 0,
    log_dir: Path | None = None,
    schedule_epochs: int | None = None,
) -> tuple[SchemeResult, Report]:
    """The configured scheme (or pruning during standard distillation); returns a ``SchemeResult``.
    ``schedule_epochs``: the epochs a cosine schedule spans when only the first ``config.epochs`` train (a probe)."""
    from edgedistill.keras3.backend import is_keras3_model

    if is_keras3_model(student):
        return distill_keras3_student(config, training, teacher, student, data, seed=seed, schedule_epochs=schedule_epochs)
    from edgedistill.distill import prune_distill, run_scheme

    augmentation = augmentation_of(training, data)
    arguments = training_arguments(
        config,
        training,
        teacher,
        epochs=config.epochs,
        seed=seed,
        schedule_epochs=schedule_epochs,
        log_dir=log_dir,
        augmentation=augmentation,
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


def quantize_student(
    config: QatConfig,
    distill_config: DistillConfig,
    training: TrainingConfig,
    teacher: Teacher,
    distilled: SchemeResult,
    data: Dataset,
    *,
    seed: int = 0,
    log_dir: Path | None = None,
) -> tuple[KerasModel | None, Report]:
    """Quantization-aware distillation with the same loss; ``None`` when ``qat_epochs`` is 0.

    A data-free student never saw the training data: QAT uses the synthetic inputs (and the
    teacher's outputs on them) it was distilled on. A multi-teacher student: the ensemble's cached
    targets, on the plain training data (as its distillation).
    """
    if config.qat_epochs == 0:
        return None, {"epochs": 0, "skipped": "qat_epochs=0: post-training quantization of the float student"}
    from edgedistill.keras3.backend import is_keras3_model

    if is_keras3_model(distilled.student):
        return quantize_keras3_student(config, distill_config, training, teacher, distilled.student, data, seed=seed)
    from edgedistill.distill import quantize_distill, quantize_distill_pruned

    quantization_data = distilled.quantization_data or data
    outputs = distilled.quantization_teacher_outputs or teacher.outputs
    if training.augment and distilled.quantization_teacher_outputs is not None and distilled.quantization_data is None:
        logger.warning("--augment: QAT trains on the scheme's cached targets (an ensemble's), without augmentation")
    arguments = training_arguments(
        distill_config,
        training,
        teacher,
        epochs=config.qat_epochs,
        seed=seed,
        learning_rate=qat_learning_rate(config, training),
        log_dir=log_dir,
        # Cached targets that are not the main teacher's (data-free, an ensemble) cannot follow an augmented batch.
        augmentation=augmentation_of(training, data) if distilled.quantization_teacher_outputs is None else None,
    )
    arguments = dataclasses.replace(arguments, teacher_outputs=outputs)
    quantize = quantize_distill_pruned if distill_config.prune_sparsity else quantize_distill  # a pruned student keeps its zeros
    result = quantize(teacher.model, distilled.student, quantization_data, training=arguments)
    return result.student, {
        "epochs": len(result.history.get("loss", [])),
        "learning_rate": arguments.config.learning_rate,
        "data": quantization_data.name,
        **result.report,
    }


# ---------------------------------------------------------------------------------------
# convert, micro, verify, bench


def convert_models(
    config: ConvertConfig,
    *,
    student: KerasModel,
    qat_student: KerasModel | None,
    teacher_model: KerasModel | ExternalTeacher,
    calibration_inputs: np.ndarray,
    input_range: tuple[float, float] | None = None,
) -> tuple[dict[str, bytes], Report]:
    """``student_int8.tflite`` (from the QAT student when there is one) and float32 copies for comparison.

    ``input_range`` (0..255 for byte data) is the raw range the int8 input covers one to one.
    """
    from edgedistill._keras import keras
    from edgedistill.convert import convert_keras_model
    from edgedistill.tflite_model import read_model_info

    from edgedistill.keras3.backend import is_keras3_model

    logger.info("   converting to int8 and float32 TFLite (about 10 s a model)")
    if is_keras3_model(student):
        files = convert_keras3_models(
            config, student=student, qat_student=qat_student, calibration_inputs=calibration_inputs, input_range=input_range
        )
    else:
        files = {
            "student_int8.tflite": convert_keras_model(
                qat_student if qat_student is not None else student,
                quantization="int8",
                io_type=config.io_type,
                representative_data=calibration_inputs,
                num_calibration_samples=config.num_calibration_samples,
                input_range=input_range,
            ),
            "student_float32.tflite": convert_keras_model(student, quantization="float32"),
        }
    int8 = files["student_int8.tflite"]
    if isinstance(teacher_model, keras.Model):
        files["teacher_float32.tflite"] = convert_keras_model(teacher_model, quantization="float32")
    report: Report = {name: {"size_bytes": len(content)} for name, content in files.items()}
    info = read_model_info(int8)
    report["student_int8.tflite"].update(
        {"ops": info.ops, "io_type": config.io_type, "input_quantization": info.inputs[0].quantization}
    )
    return files, report


def input_convention_of(data: Dataset, int8: bytes, *, teacher_preprocessing: dict | None = None) -> Report:
    """What the deployed int8 model takes (``report.json``, ``micro_export.json``, ``test_data.h``)."""
    from edgedistill.preprocessing import input_convention
    from edgedistill.tflite_model import read_model_info

    return input_convention(
        data.values,
        raw_bytes=data.raw_bytes,
        student=student_preprocessing_of(data),
        input_quantization=read_model_info(int8).inputs[0].quantization,
        teacher=teacher_preprocessing,
    )


def export_micro_sources(
    config: MicroConfig,
    int8: bytes,
    data: Dataset | None,
    output_dir: Path,
    *,
    model_name: str = "model.tflite",
    input_convention: dict | None = None,
) -> tuple[MicroExport, Report]:
    """TFLite Micro sources of the int8 model, with the arena measured on the real TFLM interpreter
    (and the audio front end with its own arena, for audio data or ``config.front_end``)."""
    from edgedistill.micro import export_micro

    export = export_micro(
        int8,
        output_dir,
        test_inputs=data.x_test if data is not None else None,
        test_labels=data.y_test if data is not None else None,
        num_test_samples=config.num_test_vectors,
        margin_fraction=config.arena_margin,
        model_name=model_name,
        front_end=_front_end_export(config, data),
        memory_plan=config.memory_plan,
        compact=config.compact,
        input_convention=input_convention,
    )
    return export, export.to_dict() | {key: export.metadata.get(key) for key in ("memory_plan", "compaction")}


def _front_end_export(config: MicroConfig, data: Dataset | None) -> FrontEndExport | None:
    """The audio front end to export with the model: the data set's, or the ``front_end`` file."""
    audio = getattr(data, "audio", None)
    if audio is None and not config.front_end:
        return None
    from edgedistill.micro.frontend import FrontEndExport
    from edgedistill.tflite_model import read_model_bytes

    if config.front_end:
        content = read_model_bytes(config.front_end)
    else:
        assert audio is not None  # returned above when there is neither
        content = audio.frontend_model
    if audio is not None and content != audio.frontend_model:
        raise InputError(
            f"--front-end {config.front_end} is not the front end the audio data's features came from. "
            "Leave --front-end out (the data brings its own), or give the data's --audio-* options."
        )
    return FrontEndExport(
        content,
        test_clips=audio.test_clips if audio is not None else None,
        num_test_samples=config.num_test_vectors,
        source=str(config.front_end or "front_end.tflite"),
        compact=config.compact,
    )


def verify_student(
    config: VerifyConfig,
    data: Dataset,
    *,
    keras_models: dict[str, Any],
    int8: bytes,
    arena_bytes: int | None,
    reference: str,
    max_samples: int | None = None,
) -> tuple[VerifyResult, Report]:
    """Accuracy of every form on the test split and their agreement; the gate is decided here, raised by the caller."""
    from edgedistill.verify import verify_models

    result = verify_models(
        data.x_test,
        data.y_test,
        keras_models=keras_models,
        int8_tflite=int8,
        tflm_arena_size=arena_bytes,
        max_int8_drop=config.max_int8_drop,
        reference=reference,
        max_samples=max_samples,
        chance_gate=config.chance_gate,
    )
    logger.info("   test accuracy: %s", ", ".join(f"{name} {value:.2f}%" for name, value in result.accuracy.items()))
    return result, result.to_dict() | {"reference": reference}


# ---------------------------------------------------------------------------------------
# baseline: did distillation help?


def baseline_skip_reason(distill_config: DistillConfig, student: KerasModel) -> str | None:
    """Why a scratch baseline would not answer "did distillation help" here (None: it would)."""
    from edgedistill._keras import keras

    if not scheme_of(distill_config).trains_on_data:
        return (
            f"scheme {distill_config.scheme} never trains its student on the data; a scratch student on the data "
            "would cost far more than the distillation and answer another question"
        )
    if distill_config.prune_sparsity:
        return "a pruned student: a scratch student without pruning would not be the same student"
    if not isinstance(student, keras.Model):
        return "the student is not a tf_keras model (the scratch baseline trains tf_keras students)"
    return None


def fresh_student(config: StudentConfig, distilled_student: KerasModel, data: Dataset) -> KerasModel:
    """The same student before any training: the user's file loaded again, or the preset's architecture
    (the width a budget chose included) with new initial weights."""
    from edgedistill._keras import keras

    if config.student:
        return build_student(config, data)[0]
    return keras.models.clone_model(distilled_student)  # same layers and configs, freshly initialized weights


def train_scratch_baseline(
    student: KerasModel,
    data: Dataset,
    *,
    qat: QatConfig,
    distill_config: DistillConfig,
    training: TrainingConfig,
    convert: ConvertConfig,
    seed: int = 0,
    log_dir: Path | None = None,
) -> tuple[KerasModel, KerasModel | None, bytes]:
    """Hard labels only, with the distilled student's schedule: its epochs, augmentation, QAT epochs and int8
    conversion. Returns (float student, QAT student or None, int8 flatbuffer)."""
    from edgedistill.convert import convert_keras_model
    from edgedistill.preprocessing import BYTE_RANGE
    from edgedistill.quantize import quantize_model
    from edgedistill.training import train_classifier

    augmentation = augmentation_of(training, data)
    input_range = BYTE_RANGE if data.raw_bytes else None
    train_classifier(
        student,
        data,
        config=train_config(training, epochs=distill_config.epochs, seed=seed),
        stage="baseline",
        log_dir=log_dir,
        augmentation=augmentation,
    )
    qat_student = None
    if qat.qat_epochs:
        qat_student = quantize_model(student, input_range=input_range)
        qat_training = train_config(training, epochs=qat.qat_epochs, seed=seed, learning_rate=qat_learning_rate(qat, training))
        train_classifier(qat_student, data, config=qat_training, stage="baseline_qat", log_dir=log_dir, augmentation=augmentation)
    int8 = convert_keras_model(
        qat_student if qat_student is not None else student,
        quantization="int8",
        io_type=convert.io_type,
        representative_data=data.x_train,
        num_calibration_samples=convert.num_calibration_samples,
        input_range=input_range,
    )
    return student, qat_student, int8


def compare_with_baseline(
    data: Dataset,
    *,
    student: KerasModel,
    qat_student: KerasModel | None,
    int8: bytes,
    arena_bytes: int | None,
    distilled_accuracy: dict[str, float],
    distilled_int8: bytes,
) -> Report:
    """The scratch student's accuracy in every form, the distilled student's gain over it (points), and whether the
    test split can tell the two int8 models apart (:func:`paired_int8_test`)."""
    from edgedistill.verify import verify_models

    keras_models = {"float_student": student, **({"qat_student": qat_student} if qat_student is not None else {})}
    result = verify_models(
        data.x_test,
        data.y_test,
        keras_models=keras_models,
        int8_tflite=int8,
        tflm_arena_size=arena_bytes,
        reference="qat_student" if qat_student is not None else "float_student",
        chance_gate=False,
        max_int8_drop=100.0,
    )
    int8_form = "int8_tflm" if "int8_tflm" in result.accuracy else "int8_litert"
    gains = {
        form: round(distilled_accuracy[form] - result.accuracy[form], 2)
        for form in ("float_student", int8_form)
        if form in distilled_accuracy and form in result.accuracy
    }
    paired = paired_int8_test(data, distilled_int8=distilled_int8, scratch_int8=int8)
    report: Report = {
        "method": "scratch",
        "accuracy": result.accuracy,
        "int8_form": int8_form,
        "gain_points": gains,
        "distillation_helped": gains.get(int8_form, 0.0) > 0,
        "paired_test": paired,
    }
    logger.info(
        "   scratch baseline: %s; distilled - scratch: %s; paired test: %s",
        ", ".join(f"{k} {v:.2f}%" for k, v in result.accuracy.items()),
        ", ".join(f"{k} {v:+.2f}" for k, v in gains.items()),
        paired["verdict"],
    )
    return report


# The paired test's verdicts, named for the distilled student.
_PAIRED_VERDICTS = {"better": "helped", "worse": "hurt", "not resolved": "not resolved"}


def paired_int8_test(data: Dataset, *, distilled_int8: bytes, scratch_int8: bytes) -> Report:
    """Both int8 models on LiteRT over the same test samples, McNemar's exact test: one run's accuracy difference
    of a few tenths is often what another seed would reverse, and this says whether this test split resolves it."""
    import numpy as np

    from edgedistill.tflite_model import LiteRTModel
    from edgedistill.verify import paired_comparison

    distilled, scratch = (LiteRTModel(model).raw_outputs(data.x_test).argmax(axis=-1) for model in (distilled_int8, scratch_int8))
    result = paired_comparison(np.asarray(data.y_test), distilled, scratch)
    return {
        "form": "int8_litert",
        "samples": result["samples"],
        "only_distilled_right": result["only_first_right"],
        "only_scratch_right": result["only_second_right"],
        "p_value": result["p_value"],
        "verdict": _PAIRED_VERDICTS[result["verdict"]],
    }


def bench_models(config: BenchStageConfig, paths: list[Path], *, results_path: Path) -> Report:
    """Each model on the host LiteRT interpreter; every raw sample goes to ``results_path``."""
    from edgedistill.bench import run_benchmark

    from edgedistill.targets import TargetOptions

    report: Report = {}
    options = TargetOptions(ssh_config=config.bench_ssh_config)
    for path in paths:
        logger.info("   benchmarking %s on %s (%d runs)", path.name, config.bench_target, config.num_runs)
        measurement = run_benchmark(
            path,
            target=config.bench_target,
            num_runs=config.num_runs,
            warmup_runs=config.warmup_runs,
            num_threads=config.num_threads,
            results_path=results_path,
            target_options=options,
            profile=config.bench_profile and "int8" in path.name,
        )
        summary = measurement.to_dict()
        summary.pop("samples_ms", None)  # every raw sample stays in the results file
        report[path.name] = summary
    return report


__all__ = [
    "Teacher",
    "train_config",
    "qat_learning_rate",
    "load_data",
    "prepare_teacher",
    "build_student",
    "student_keras",
    "check_keras3_options",
    "build_keras3_student",
    "keras_report",
    "budget_of",
    "resolve_loss",
    "is_auto_loss",
    "auto_probe_epochs",
    "choose_loss",
    "chosen_options",
    "scheme_of",
    "check_names",
    "training_arguments",
    "distill_student",
    "quantize_student",
    "convert_models",
    "export_micro_sources",
    "verify_student",
    "bench_models",
    "baseline_skip_reason",
    "fresh_student",
    "train_scratch_baseline",
    "compare_with_baseline",
    "student_preprocessing_of",
    "augmentation_of",
    "input_convention_of",
]
