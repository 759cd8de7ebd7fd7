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


def _writable_output(path: str, what: str = "the folder of -o/--output") -> None:
    """Checked before any work (a conversion or a training is not wasted on an unwritable output)."""
    from edgedistill.fileio import ensure_writable_dir

    ensure_writable_dir(Path(path).expanduser().absolute().parent, what=what)


@click.command()
@all_run_options
@click.option(
    "--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
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
    from edgedistill.pipeline import load_run_config, run_pipeline

    if resume_dir is None:
        report = run_pipeline(RunConfig.from_options(options))
    else:
        given = [name for name in ("config_file", *options)
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            from edgedistill.errors import InputError

            raise InputError(
                f"--resume continues a run with the configuration saved in {resume_dir}/config.yaml; other options "
                f"were given too ({', '.join('--' + name.replace('_', '-') for name in given)}). Drop them, or start "
                "a new run."
            )
        report = run_pipeline(load_run_config(resume_dir), run_dir=resume_dir, resume=True)
    click.echo(f"run folder: {report['run_dir']}")
    for name, value in report.get("verify", {}).get("accuracy", {}).items():
        click.echo(f"  {name:<14} {value:6.2f}%")


def _accuracy(model, data) -> float:
    from edgedistill.training import accuracy

    return accuracy(model, data.x_test, data.y_test)


@click.command()
@config_file_option
@config_options([DataConfig])
@config_options(
    [TeacherConfig], only=("teacher_preset", "teacher_width", "teacher_epochs"),
    aliases={"teacher_preset": ("--preset",), "teacher_width": ("--width",), "teacher_epochs": ("--epochs",)},
)
@config_options([TrainingConfig])
@output_option
def teacher(config_file: str | None, output: str, **options) -> None:
    """Train a teacher from a preset on hard labels and save it (.keras)."""
    _writable_output(output)
    from edgedistill import stages
    from edgedistill.fileio import save_model_atomic
    from edgedistill.training import strategy_scope

    config = RunConfig.from_options(options)
    data, _ = stages.load_data(config.data)
    with strategy_scope(config.training.strategy):
        trained, _ = stages.prepare_teacher(config.teacher, config.training, data, seed=config.data.seed)
    save_model_atomic(trained.model, output)
    click.echo(f"teacher: {trained.model.count_params()} parameters, test accuracy {_accuracy(trained.model, data):.2f}% -> {output}")


@click.command()
@config_file_option
@config_options([DataConfig])
@config_options(
    [TeacherConfig], only=("teacher", "calibrate_teacher", "teacher_preprocessing", "min_teacher_accuracy"), required=("teacher",)
)
@config_options([StudentConfig, DistillConfig, TrainingConfig, TrustConfig])
@output_option
def distill(config_file: str | None, output: str, **options) -> None:
    """Distill a float student from a teacher (any loss and scheme) and save it (.keras)."""
    _writable_output(output)
    from edgedistill import stages
    from edgedistill.fileio import save_model_atomic
    from edgedistill.models import trust_model_code
    from edgedistill.training import strategy_scope

    config = RunConfig.from_options(options)
    stages.check_names(config)
    data, _ = stages.load_data(config.data, teacher_file=config.teacher.teacher)
    with strategy_scope(config.training.strategy), trust_model_code(config.trust.trust_model_code):
        teacher_result, _ = stages.prepare_teacher(config.teacher, config.training, data)
        student, _, _ = stages.build_student(config.student, data)
        result, _ = stages.distill_student(config.distill, config.training, teacher_result, student, data, seed=config.data.seed)
    save_model_atomic(result.student, output)
    click.echo(f"student: {result.student.count_params()} parameters, test accuracy {_accuracy(result.student, data):.2f}% -> {output}")


@click.command()
@config_file_option
@config_options([DataConfig])
@config_options([TeacherConfig], only=("teacher", "teacher_preprocessing"), required=("teacher",))
@config_options(
    [StudentConfig], only=("student",), required=("student",),
    overrides={"student": {"help": "Float student to make quantization-aware (.keras)."}},
)
@config_options([DistillConfig], only=("distillation_loss", "temperature", "final_temperature", "student_loss_weight"))
@config_options([QatConfig], aliases={"qat_epochs": ("--epochs",), "qat_learning_rate": ("--learning-rate",)})
@config_options([TrainingConfig], exclude=("learning_rate",))
@config_options([TrustConfig])
@output_option
def quantize(config_file: str | None, output: str, **options) -> None:
    """Quantization-aware distillation (tfmot QAT) of a float student; saves the fake-quant model."""
    _writable_output(output)
    from edgedistill import stages
    from edgedistill.distill import SchemeResult
    from edgedistill.fileio import save_model_atomic
    from edgedistill.models import load_model_file, trust_model_code
    from edgedistill.training import strategy_scope

    config = RunConfig.from_options(options)
    data, _ = stages.load_data(config.data, teacher_file=config.teacher.teacher)
    with strategy_scope(config.training.strategy), trust_model_code(config.trust.trust_model_code):
        teacher_result, _ = stages.prepare_teacher(config.teacher, config.training, data)
        float_student = SchemeResult(student=load_model_file(config.student.student), history={}, report={})
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
@config_options([DataConfig], only=("data", *AUDIO_OPTIONS, *IMAGE_OPTIONS), overrides={"data": {"help": "Data set whose training images calibrate int8 ranges."}})
@config_options([TrustConfig])
def convert(model, output, quantization, **options) -> None:
    """Convert a Keras model (float or QAT) to a .tflite file."""
    _writable_output(output)  # before loading and converting (tens of seconds)
    from edgedistill.convert import convert_keras_model
    from edgedistill.data import load_dataset
    from edgedistill.fileio import write_bytes_atomic
    from edgedistill.models import load_model_file, trust_model_code

    config = RunConfig.from_options(options)
    with trust_model_code(config.trust.trust_model_code):
        keras_model = load_model_file(model)  # float or QAT (fake-quant) tf_keras models
    from edgedistill.preprocessing import BYTE_RANGE

    data = load_dataset(config.data.data, options=config.data) if quantization == "int8" else None
    content = convert_keras_model(
        keras_model, quantization=quantization, io_type=config.convert.io_type,
        representative_data=data.x_train if data is not None else None,
        num_calibration_samples=config.convert.num_calibration_samples,
        input_range=BYTE_RANGE if data is not None and data.raw_bytes else None,  # byte data: int8 input = byte - 128
    )
    write_bytes_atomic(output, content)
    click.echo(f"{quantization} model: {len(content)} bytes -> {output}")


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
    with trust_model_code(config.trust.trust_model_code):
        keras_models = {"reference": load_model_file(reference)} if reference else {}
    arena, _ = arena_with_margin(measure_arena(content)["arena_bytes"])
    result, _ = stages.verify_student(
        config.verify, data, keras_models=keras_models, int8=content, arena_bytes=arena, reference="reference",
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
    [DataConfig], only=("data", *AUDIO_OPTIONS, *IMAGE_OPTIONS),
    overrides={"data": {"default": None, "show_default": False,
                        "help": "Data set whose test samples become embedded test vectors (default: random inputs)."}},
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
        f"kTensorArenaSize {export.tensor_arena_size} (margin {export.arena_margin_bytes})\nwrote: {', '.join(export.files)} -> {output_dir}"
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
    click.echo(f"{model}: {details['size_bytes']} bytes, {'int8' if details['is_int8'] else 'not full-integer int8'}, {details['num_tensors']} tensors, {details['num_subgraphs']} subgraph(s)")
    click.echo("ops:")
    for op in details["ops"]:
        click.echo(f"  {op['name']:<24} v{op['version']}  x{op['count']}")
    for role in ("inputs", "outputs"):
        click.echo(f"{role}:")
        for tensor in details[role]:
            click.echo(f"  {tensor['name']}: {tensor['dtype']} {tensor['shape']} quantization={tensor['quantization']}")


__all__ = ["run", "teacher", "distill", "quantize", "convert", "verify", "micro", "info"]
