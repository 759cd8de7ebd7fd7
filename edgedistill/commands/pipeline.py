"""Commands of the pipeline: `run` and one command per stage.

Their options are generated from the config sections (:mod:`edgedistill.commands.options`), so
``--temperature`` has one help text and one default in ``run``, ``distill``, ``quantize`` and
``search``. Each command parses options, calls the stage functions of :mod:`edgedistill.stages`
and formats the result. Nothing here imports TensorFlow at module level, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from edgedistill.commands.options import all_run_options, config_file_option, config_options
from edgedistill.config import (
    ConvertConfig,
    DataConfig,
    DistillConfig,
    MicroConfig,
    QatConfig,
    RunConfig,
    StudentConfig,
    TeacherConfig,
    TrainingConfig,
    TrustConfig,
    VerifyConfig,
)

logger = logging.getLogger(__name__)
# The options of audio:DIR data sets, for the commands that otherwise take only --data.
AUDIO_OPTIONS: tuple[str, ...] = tuple(name for name in DataConfig.option_names() if name.startswith("audio_"))
# ... and of images:DIR folders (size, colour, class order).
IMAGE_OPTIONS: tuple[str, ...] = ("image_size", "color_mode", "class_names")
output_option = click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write.")


# Output suffixes that name another kind of file than the command writes (a Keras model saved as `t.tflite`
# becomes a SavedModel folder of that name; a flatbuffer written to `m.keras` is read back as a corrupt model).
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
NOT_KERAS_OUTPUT = (".tflite", ".json", ".jsonl", ".yaml", ".yml", ".npz", ".npy", ".png")


def _check_output_kind(path: str, refused: tuple[str, ...], expected: str) -> None:
    from edgedistill.errors import InputError

    if Path(path).suffix.lower() in refused:
        raise InputError(
            f"-o/--output {path!r}: this command writes {expected}, not a {Path(path).suffix} file. "
            "Pass a name with a suffix that says what it holds."
        )


def _writable_output(
    path: str,
    options: dict | None = None,
    *,
    model: str | None = None,
    config_file: str | None = None,
    what: str = "the folder of -o/--output",
) -> None:
    """Checked before any work (a conversion or a training is not wasted on an unwritable output): the
    folder can be written, the name fits, the output is no regular-file-in-name-only (a device) and
    none of the command's inputs (model, teacher, student, data, config file) is replaced by it."""
    from edgedistill.fileio import check_output_name, ensure_writable_dir, refuse_output_over_input, refuse_special_output

    check_output_name(path, what="-o/--output")
    ensure_writable_dir(Path(path).expanduser().absolute().parent, what=what)
    refuse_special_output(Path(path).expanduser())
    options = options or {}
    data = str(options.get("data") or "")
    inputs = {
        "model": model,
        "--teacher file": options.get("teacher"),
        "--student file": options.get("student"),
        "--config file": config_file,
        "--data file": data.partition(":")[2] if ":" in data else None,
    }
    refuse_output_over_input(path, inputs)


@click.command()
@all_run_options
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Continue the run in this folder (e.g. after Ctrl-C) from its last completed stage, with its saved "
    "config.yaml; give no other option.",
)
@click.pass_context
def run(ctx: click.Context, config_file: str | None, resume_dir: str | None, **options) -> None:
    """All stages: teacher -> distill -> QAT -> int8 -> micro -> verify -> bench.

    With no options it distills a student on the embedded digits data set and writes
    runs/<timestamp>/ with the models, student_int8.tflite, micro/ sources, report.json
    and report.md. Exit code 3 when the parity gate fails (the report is still written),
    130 when interrupted (continue with --resume RUN_DIR).
    """
    from edgedistill.pipeline import run_pipeline

    if resume_dir is None:
        config = RunConfig.from_options(options)
        from edgedistill.stages import check_run_options

        check_run_options(config)
        report = run_pipeline(config)
    else:
        config, rerun_from = _resume_config(ctx, resume_dir, options)
        report = run_pipeline(config, run_dir=resume_dir, resume=True, rerun_from=rerun_from)
    click.echo(f"run folder: {report['run_dir']}")
    for name, value in report.get("verify", {}).get("accuracy", {}).items():
        click.echo(f"  {name:<14} {value:6.2f}%")
    baseline = report.get("baseline") or {}
    if baseline.get("accuracy"):
        form = baseline["int8_form"]
        click.echo(
            f"  scratch {form:<6} {baseline['accuracy'][form]:6.2f}%  (distilled - scratch: "
            f"{baseline['gain_points'].get(form, float('nan')):+.2f} points)"
        )


# What `run --resume` lets the command line change: the trust (never saved) and the gates, whose
# change makes verify run again. Any other option that differs from the saved config is refused: the
# completed stages were made with the saved value, and mixing two configurations in one report would lie.
GATE_OPTIONS = ("chance_gate", "max_int8_drop")


def _resume_config(ctx: click.Context, resume_dir: str, options: dict) -> tuple[RunConfig, str | None]:
    """The saved config of ``resume_dir`` with the options given now (command line or --config) that may change."""
    from edgedistill.errors import InputError
    from edgedistill.pipeline import RESUMABLE_CHANGES as RESUME_OPTIONS, load_run_config  # one definition, with its reason

    sources = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.DEFAULT_MAP)
    given = {name: value for name, value in options.items() if ctx.get_parameter_source(name) in sources}
    try:
        saved = load_run_config(resume_dir)
    except InputError as error:
        if not given:
            raise
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise InputError(f"{error} (Options given with --resume, compared with the saved configuration: {names}.)") from None
    wanted = saved.replace(**given)
    old, new = saved.to_options(), wanted.to_options()
    changed = [name for name in new if old[name] != new[name]]
    refused = [name for name in changed if name not in RESUME_OPTIONS]
    if refused:
        differences = "; ".join(f"--{name.replace('_', '-')}: saved {old[name]!r}, given {new[name]!r}" for name in refused)
        raise InputError(
            f"--resume continues {resume_dir} with the configuration saved in its config.yaml, and these options differ "
            f"from it: {differences}. Drop them (the saved values are used), or start a new run with them. On --resume "
            f"only {', '.join('--' + name.replace('_', '-') for name in RESUME_OPTIONS)} may change."
        )
    gates = [name for name in changed if name in GATE_OPTIONS]
    if gates:
        logger.warning(
            "--resume: %s changed from the saved config; the verify stage runs again with the new value(s).",
            ", ".join(f"{name} {old[name]!r} -> {new[name]!r}" for name in gates),
        )
    return wanted, "verify" if gates else None


def _accuracy(model, data) -> float:
    from edgedistill.training import accuracy

    return accuracy(model, data.x_test, data.y_test)


@click.command()
@config_file_option
@config_options([DataConfig])
@config_options(
    [TeacherConfig],
    only=("teacher_preset", "teacher_width", "teacher_epochs"),
    aliases={"teacher_preset": ("--preset",), "teacher_width": ("--width",), "teacher_epochs": ("--epochs",)},
)
@config_options([TrainingConfig])
@config_options([VerifyConfig], only=("chance_gate",))
@output_option
def teacher(config_file: str | None, output: str, **options) -> None:
    """Train a teacher from a preset on hard labels and save it (.keras)."""
    _writable_output(output, options, config_file=config_file)
    _check_output_kind(output, NOT_KERAS_OUTPUT, "a Keras model (.keras, .h5, or a SavedModel folder)")
    from edgedistill import stages
    from edgedistill.fileio import save_model_atomic
    from edgedistill.training import strategy_scope

    config = RunConfig.from_options(options)
    stages.check_run_options(config)
    data, _ = stages.load_data(config.data)
    with strategy_scope(config.training.strategy):
        trained, _ = stages.prepare_teacher(
            config.teacher, config.training, data, seed=config.data.seed, chance_gate=config.verify.chance_gate
        )
    save_model_atomic(trained.model, output)
    click.echo(
        f"teacher: {trained.model.count_params()} parameters, test accuracy {_accuracy(trained.model, data):.2f}% -> {output}"
    )


@click.command()
@config_file_option
@config_options([DataConfig])
@config_options(
    [TeacherConfig], only=("teacher", "calibrate_teacher", "teacher_preprocessing", "min_teacher_accuracy"), required=("teacher",)
)
@config_options([StudentConfig, DistillConfig, TrainingConfig, TrustConfig])
@config_options([VerifyConfig], only=("chance_gate",))
@output_option
def distill(config_file: str | None, output: str, **options) -> None:
    """Distill a float student from a teacher (any loss and scheme) and save it (.keras)."""
    _writable_output(output, options, config_file=config_file)
    _check_output_kind(output, NOT_KERAS_OUTPUT, "a Keras model (.keras, .h5, or a SavedModel folder)")
    from edgedistill import stages
    from edgedistill.fileio import save_model_atomic
    from edgedistill.models import trust_model_code
    from edgedistill.training import strategy_scope

    config = RunConfig.from_options(options)
    stages.check_run_options(config, quantization=False)  # no int8 here: a Keras 3 student's QAT coverage is `quantize`'s
    data, _ = stages.load_data(config.data, teacher_file=config.teacher.teacher)
    with strategy_scope(config.training.strategy), trust_model_code(config.trust.trust_model_code):
        teacher_result, _ = stages.prepare_teacher(config.teacher, config.training, data, chance_gate=config.verify.chance_gate)
        student, _, _ = stages.build_student(config.student, data)
        distill_config, chosen = config.distill, ""
        if stages.is_auto_loss(config.distill):
            distill_config, probe = stages.choose_loss(
                config.distill, config.training, teacher_result, student, data, seed=config.data.seed
            )
            chosen = f", loss {probe['chosen']} (chosen by a {probe['epochs']}-epoch probe, {probe['seconds']:.0f} s)"
        result, _ = stages.distill_student(distill_config, config.training, teacher_result, student, data, seed=config.data.seed)
    save_model_atomic(result.student, output)
    click.echo(
        f"student: {result.student.count_params()} parameters, test accuracy {_accuracy(result.student, data):.2f}%"
        f"{chosen} -> {output}"
    )


@click.command()
@config_file_option
@config_options([DataConfig])
@config_options([TeacherConfig], only=("teacher", "teacher_preprocessing"), required=("teacher",))
@config_options(
    [StudentConfig],
    only=("student", "keras"),
    required=("student",),
    overrides={"student": {"help": "Float student to make quantization-aware (.keras)."}},
)
@config_options([DistillConfig], only=("distillation_loss", "temperature", "final_temperature", "student_loss_weight"))
@config_options([QatConfig], aliases={"qat_epochs": ("--epochs",), "qat_learning_rate": ("--learning-rate",)})
@config_options([TrainingConfig], exclude=("learning_rate",))
@config_options([TrustConfig])
@output_option
def quantize(config_file: str | None, output: str, **options) -> None:
    """Quantization-aware distillation of a float student (tfmot QAT; Keras 3 QAT for a Keras 3 student); saves the
    fake-quant model."""
    _writable_output(output, options, config_file=config_file)
    _check_output_kind(output, NOT_KERAS_OUTPUT, "a Keras model (.keras, .h5, or a SavedModel folder)")
    from edgedistill import stages
    from edgedistill.distill import SchemeResult
    from edgedistill.fileio import save_model_atomic
    from edgedistill.keras3.loading import load_keras3_student
    from edgedistill.models import load_model_file, trust_model_code
    from edgedistill.training import strategy_scope

    config = RunConfig.from_options(options)
    if config.qat.qat_epochs == 0:
        raise click.BadParameter("must be >= 1 for `quantize`", param_hint="--epochs")
    stages.check_run_options(config)
    if stages.is_auto_loss(config.distill):
        from edgedistill.errors import InputError

        raise InputError(
            f"--distillation-loss {config.distill.distillation_loss}: auto chooses a loss while distilling; `quantize` "
            "continues a distilled student. Pass the loss its distillation used (e.g. --distillation-loss logits "
            "--temperature 20 --student-loss-weight 0.1; `run` reports it under student.loss_probe)."
        )
    keras3 = stages.student_keras(config.student) == "3"
    if keras3 and Path(output).suffix.lower() != ".keras":
        from edgedistill.errors import InputError

        raise InputError(
            f"-o/--output {output!r}: a Keras 3 QAT student is saved as a .keras file (its fake-quant layers are "
            "Keras 3 layers). Pass a name ending in .keras."
        )
    data, _ = stages.load_data(config.data, teacher_file=config.teacher.teacher)
    with strategy_scope(config.training.strategy), trust_model_code(config.trust.trust_model_code):
        teacher_result, _ = stages.prepare_teacher(config.teacher, config.training, data)
        student_file = config.student.student
        assert student_file is not None  # --student is a required option here
        student = load_keras3_student(student_file) if keras3 else load_model_file(student_file)
        float_student = SchemeResult(student=student, history={}, report={})
        qat, _ = stages.quantize_student(
            config.qat, config.distill, config.training, teacher_result, float_student, data, seed=config.data.seed
        )
    if qat is None:
        raise click.BadParameter("must be >= 1 for `quantize`", param_hint="--epochs")
    save_model_atomic(qat, output)
    click.echo(f"QAT student: test accuracy {_accuracy(qat, data):.2f}% -> {output}")


@click.command()
@click.argument("model", type=click.Path())
@output_option
@click.option("--quantization", default="int8", show_default=True, type=click.Choice(["int8", "float32"]))
@config_options([ConvertConfig])
@config_options(
    [DataConfig],
    only=("data", *AUDIO_OPTIONS, *IMAGE_OPTIONS),
    overrides={"data": {"help": "Data set whose training images calibrate int8 ranges."}},
)
@config_options([StudentConfig], only=("keras",), overrides={"keras": {"help": "Keras of MODEL: 3 or 2 (default: the file's)."}})
@config_options([TrustConfig])
def convert(model, output, quantization, **options) -> None:
    """Convert a Keras model (float or QAT) to a .tflite file."""
    _writable_output(output, options, model=model)  # before loading and converting (tens of seconds)
    _check_output_kind(output, KERAS_SUFFIXES, "a .tflite flatbuffer")
    from edgedistill.convert import convert_keras_model
    from edgedistill.data import load_dataset
    from edgedistill.fileio import write_bytes_atomic
    from edgedistill.models import load_model_file, trust_model_code

    config = RunConfig.from_options(options)
    if stages_keras(model, config) == "3":
        content = _convert_keras3(model, quantization, config)
        write_bytes_atomic(output, content)
        click.echo(f"{quantization} model (Keras 3): {len(content)} bytes -> {output}")
        return
    with trust_model_code(config.trust.trust_model_code):
        keras_model = load_model_file(model)  # float or QAT (fake-quant) tf_keras models
    from edgedistill.preprocessing import BYTE_RANGE

    data = load_dataset(config.data.data, options=config.data) if quantization == "int8" else None
    content = convert_keras_model(
        keras_model,
        quantization=quantization,
        io_type=config.convert.io_type,
        representative_data=data.x_train if data is not None else None,
        num_calibration_samples=config.convert.num_calibration_samples,
        input_range=BYTE_RANGE if data is not None and data.raw_bytes else None,  # byte data: int8 input = byte - 128
    )
    write_bytes_atomic(output, content)
    click.echo(f"{quantization} model: {len(content)} bytes -> {output}")


def stages_keras(model: str, config: RunConfig) -> str:
    """The Keras of a model file given to `convert`: --keras, else the file's."""
    from edgedistill import stages

    return stages.student_keras(StudentConfig(student=model, keras=config.student.keras))


def _convert_keras3(model: str, quantization: str, config: RunConfig) -> bytes:
    """A Keras 3 model file: a QAT model (from `quantize --keras 3`) to int8 from its trained ranges; a float one to
    float32, or to int8 by post-training quantization calibrated on --data."""
    from edgedistill.data import load_dataset
    from edgedistill.errors import InputError
    from edgedistill.keras3.convert import convert_float_model, convert_qat_model
    from edgedistill.keras3.loading import load_keras3_student
    from edgedistill.models import trust_model_code
    from edgedistill.preprocessing import BYTE_RANGE

    with trust_model_code(config.trust.trust_model_code):
        keras_model = load_keras3_student(model)
    is_qat = any(type(layer).__name__ == "ActivationQuantizer" for layer in keras_model.layers)
    if is_qat and (quantization != "int8" or config.convert.io_type != "int8"):
        raise InputError(
            f"{model} is a Keras 3 QAT model: it converts to int8 with int8 input and output only. "
            "Pass --quantization int8 --io-type int8, or convert the float student instead."
        )
    if is_qat:
        return convert_qat_model(keras_model)
    data = load_dataset(config.data.data, options=config.data) if quantization == "int8" else None
    return convert_float_model(
        keras_model,
        quantization=quantization,
        io_type=config.convert.io_type,
        representative_data=data.x_train if data is not None else None,
        num_calibration_samples=config.convert.num_calibration_samples,
        input_range=BYTE_RANGE if data is not None and data.raw_bytes else None,
    )


@click.command()
@click.argument("model", type=click.Path())
@config_options([DataConfig], only=("data", *AUDIO_OPTIONS, *IMAGE_OPTIONS))
@click.option("--reference", type=click.Path(), help="Keras model (e.g. the QAT student) the int8 accuracy is compared with.")
@config_options([VerifyConfig, TrustConfig])
@click.option("--max-samples", type=click.IntRange(min=1), help="Evaluate at most this many test samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(model, reference, max_samples, as_json, **options) -> None:
    """Accuracy of an int8 .tflite on LiteRT and on the TFLM interpreter (and a Keras reference)."""
    from edgedistill import stages
    from edgedistill.micro import arena_with_margin, measure_arena
    from edgedistill.models import load_model_file, trust_model_code
    from edgedistill.tflite_model import read_model_bytes
    from edgedistill.verify import raise_if_failed

    config = RunConfig.from_options(options)
    content = read_model_bytes(model)
    data, _ = stages.load_data(config.data)
    from edgedistill.keras3.loading import register_layers_for

    register_layers_for(reference)  # e.g. student_qat.keras of a Keras 3 run
    with trust_model_code(config.trust.trust_model_code):
        keras_models = {"reference": load_model_file(reference)} if reference else {}
    arena, _ = arena_with_margin(measure_arena(content)["arena_bytes"])
    result, _ = stages.verify_student(
        config.verify,
        data,
        keras_models=keras_models,
        int8=content,
        arena_bytes=arena,
        reference="reference",
        max_samples=max_samples,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for name, value in result.accuracy.items():
            click.echo(f"{name:<12} {value:6.2f}%")
        for pair, value in result.agreement.items():
            click.echo(f"agreement {pair}: {value:.2f}%")
        click.echo(f"max LiteRT-TFLM int8 output difference: {result.max_int8_output_difference_steps} steps")
    raise_if_failed(result, reference="reference")


@click.command()
@click.argument("model", type=click.Path())
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(), help="Folder for the sources.")
@config_options(
    [DataConfig],
    only=("data", *AUDIO_OPTIONS, *IMAGE_OPTIONS),
    overrides={
        "data": {
            "default": None,
            "show_default": False,
            "help": "Data set whose test samples become embedded test vectors (default: random inputs).",
        }
    },
)
@config_options([MicroConfig])
def micro(model, output_dir, **options) -> None:
    """TFLite Micro sources of an int8 .tflite: C array, op resolver, measured arena, test vectors
    (and an audio front end: the one of --data audio:DIR, or --front-end)."""
    from edgedistill import stages
    from edgedistill.fileio import ensure_writable_dir
    from edgedistill.tflite_model import read_model_bytes

    content = read_model_bytes(model)
    ensure_writable_dir(output_dir, what="the output folder (-o)")  # before the arena is measured
    data_options = {name: options.pop(name) for name in ("data", *AUDIO_OPTIONS, *IMAGE_OPTIONS) if name in options}
    data = None
    if data_options.get("data"):
        data, _ = stages.load_data(DataConfig(**data_options))
    config = RunConfig.from_options(options)
    convention = stages.input_convention_of(data, content) if data is not None and data.audio is None else None
    export, _ = stages.export_micro_sources(
        config.micro, content, data, Path(output_dir), model_name=Path(model).name, input_convention=convention
    )
    click.echo(
        f"ops: {', '.join(export.ops)}\narena: {export.arena_bytes_host} bytes measured on the host TFLM interpreter, "
        f"kTensorArenaSize {export.tensor_arena_size} (margin {export.arena_margin_bytes})\nwrote: {', '.join(export.files)} -> "
        f"{output_dir}"
    )


@click.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(model, as_json) -> None:
    """Ops (with versions), inputs, outputs, quantization and size of a .tflite model."""
    from edgedistill.tflite_model import read_model_bytes, read_model_info

    details = read_model_info(read_model_bytes(model)).to_dict()
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    click.echo(
        f"{model}: {details['size_bytes']} bytes, {'int8' if details['is_int8'] else 'not full-integer int8'}, "
        f"{details['num_tensors']} tensors, {details['num_subgraphs']} subgraph(s)"
    )
    click.echo("ops:")
    for op in details["ops"]:
        click.echo(f"  {op['name']:<24} v{op['version']}  x{op['count']}")
    for role in ("inputs", "outputs"):
        click.echo(f"{role}:")
        for tensor in details[role]:
            click.echo(f"  {tensor['name']}: {tensor['dtype']} {tensor['shape']} quantization={tensor['quantization']}")


__all__ = ["run", "teacher", "distill", "quantize", "convert", "verify", "micro", "info"]
