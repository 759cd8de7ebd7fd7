"""Commands of the pipeline: `run` and one command per stage.

Nothing here imports TensorFlow at module level: each command imports the library function
it calls, so `edgedistill COMMAND --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import click

from edgedistill.config import STRATEGIES, RunConfig, read_config_file

HELP = {
    "data": "Data set: digits (embedded default), fashion_mnist[:DIR], npz:PATH or images:DIR.",
    "validation_fraction": "Fraction of the training split held out for validation.",
    "max_train_samples": "Use at most this many training samples (quick runs).",
    "seed": "Random seed (data split, initialisation, shuffling).",
    "teacher": "Teacher model file (.keras, .h5, SavedModel; Keras 2 or 3). Trained from --teacher-preset when absent.",
    "teacher_preset": "Teacher architecture when no --teacher is given: cnn, dscnn or mlp.",
    "teacher_width": "Width multiplier of the teacher preset.",
    "teacher_epochs": "Epochs to train the teacher (early stopping may end sooner).",
    "student": "Student model file (tf_keras). Built from --student-preset when absent.",
    "student_preset": "Student architecture: cnn, dscnn or mlp.",
    "student_width": "Width multiplier of the student preset.",
    "distillation_loss": "Distillation loss: logits, feature, attention or rkd, with arguments as NAME:KEY=VALUE,... (e.g. attention:teacher_layer_name=block2_relu,student_layer_name=block2_pw_relu).",
    "temperature": "Softmax temperature T of logit distillation (the loss is scaled by T^2).",
    "student_loss_weight": "Weight of the hard-label loss; the distillation loss gets 1 - this.",
    "final_temperature": "Anneal the logits temperature linearly from --temperature to this over the epochs (unset: constant).",
    "scheme": "Distillation scheme: standard, multi_teacher, self, mutual, teacher_assistant, patient or data_free.",
    "scheme_options": "Options of the scheme as KEY=VALUE,... (e.g. assistant_widths=0.5 ; teachers=a.keras|b.keras ; mode=ema ; mixup_alpha=1).",
    "calibrate_teacher": "Temperature-scale the teacher on the validation split before distilling (ECE before/after in the report).",
    "prune_sparsity": "Prune the student's kernels to this sparsity while distilling (tfmot, gradual), kept through QAT; 0 disables.",
    "max_flash_kb": "Budget: pick the largest --student-preset width whose untrained int8 model is at most this many KB.",
    "max_arena_kb": "Budget: ... whose TFLM tensor arena (measured) is at most this many KB.",
    "max_latency_ms": "Budget: ... whose mean latency on the host LiteRT interpreter is at most this many ms.",
    "epochs": "Distillation epochs (early stopping on validation accuracy may end sooner).",
    "batch_size": "Batch size of every training stage.",
    "learning_rate": "Adam learning rate of teacher training and distillation.",
    "patience": "Early-stopping patience in epochs (0 disables).",
    "strategy": "tf.distribute strategy of the training stages: none, mirrored (all local GPUs, or the CPU) or multi_worker (the workers in TF_CONFIG).",
    "qat_epochs": "Quantization-aware distillation epochs (0: post-training quantization only).",
    "qat_learning_rate": "Adam learning rate of quantization-aware distillation.",
    "io_type": "Input/output type of the int8 model: int8 or float32.",
    "num_calibration_samples": "Training samples used to calibrate int8 ranges.",
    "max_int8_drop": "Fail when int8 accuracy is more than this many points below the QAT student.",
    "arena_margin": "Fraction added to the measured TFLM arena for kTensorArenaSize (at least 1 KiB).",
    "num_test_vectors": "Test samples embedded in the micro export for on-device checks.",
    "bench": "Benchmark the int8 and float models on the host LiteRT interpreter.",
    "num_runs": "Timed invokes per benchmark.",
    "warmup_runs": "Untimed invokes before timing.",
    "num_threads": "Interpreter threads for the benchmark.",
    "output_dir": "Folder that holds run folders.",
    "run_name": "Name of the run folder (default: UTC timestamp).",
    "verbose": "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.",
}


def _load_config_file(ctx: click.Context, param: click.Parameter, value: str | None):
    if value:
        ctx.default_map = {**(ctx.default_map or {}), **read_config_file(value)}
    return value


def config_options(function):
    """Add one click option per RunConfig field (plus --config), so YAML keys == options."""
    hints = typing.get_type_hints(RunConfig)
    for field in reversed(dataclasses.fields(RunConfig)):
        hint = hints[field.name]
        option = "--" + field.name.replace("_", "-")
        if hint is bool:
            decorator = click.option(f"{option}/--no-{field.name.replace('_', '-')}", default=field.default, show_default=True, help=HELP[field.name])
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            if field.name in ("teacher_preset", "student_preset", "io_type", "distillation_loss"):
                base = str  # validated by the registries, whose errors list the valid names
            decorator = click.option(option, field.name, type=base, default=field.default, show_default=True, help=HELP[field.name])
        function = decorator(function)
    return click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), is_eager=True, expose_value=True,
        callback=_load_config_file, help="YAML file of options (keys as the options, - or _); the command line wins.",
    )(function)


@click.command()
@config_options
def run(config_file: str | None, **options) -> None:
    """All stages: teacher -> distill -> QAT -> int8 -> micro -> verify -> bench.

    With no options it distills a student on the embedded digits data set and writes
    runs/<timestamp>/ with the models, student_int8.tflite, micro/ sources, report.json
    and report.md. Exit code 3 when the parity gate fails (the report is still written).
    """
    from edgedistill.pipeline import run_pipeline

    config = RunConfig(**options)
    report = run_pipeline(config, log=lambda line: click.echo(line, err=True))
    _echo_summary(report)


def _echo_summary(report: dict) -> None:
    accuracy = report.get("verify", {}).get("accuracy", {})
    click.echo(f"run folder: {report['run_dir']}")
    for name, value in accuracy.items():
        click.echo(f"  {name:<14} {value:6.2f}%")


# --- stage commands -------------------------------------------------------------------

data_option = click.option("--data", default="digits", show_default=True, help=HELP["data"])
seed_option = click.option("--seed", default=0, show_default=True, type=int, help=HELP["seed"])
strategy_option = click.option(
    "--strategy", type=click.Choice(STRATEGIES), default="none", show_default=True, help=HELP["strategy"]
)
output_option = click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write.")


def _train_config(epochs: int, learning_rate: float, batch_size: int, patience: int, seed: int):
    from edgedistill.training import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience, seed=seed)


def _save_keras_atomic(model, output: str) -> None:
    """Save to a temporary name in the same folder, then rename: no half-written model file."""
    import os
    import tempfile

    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        temporary = Path(folder) / path.name
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


@click.command()
@data_option
@click.option("--preset", default="cnn", show_default=True, help=HELP["teacher_preset"])
@click.option("--width", default=1.0, show_default=True, type=float, help=HELP["teacher_width"])
@click.option("--epochs", default=30, show_default=True, type=int)
@click.option("--learning-rate", default=3e-3, show_default=True, type=float)
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--patience", default=8, show_default=True, type=int)
@seed_option
@strategy_option
@output_option
def teacher(data, preset, width, epochs, learning_rate, batch_size, patience, seed, strategy, output) -> None:
    """Train a teacher from a preset on hard labels and save it (.keras)."""
    from edgedistill.data import load_dataset
    from edgedistill.models import build_model
    from edgedistill.training import accuracy, strategy_scope, train_classifier

    dataset = load_dataset(data, seed=seed)
    with strategy_scope(strategy):
        model = build_model(preset, dataset.input_shape, dataset.num_classes, width=width, name="teacher")
        train_classifier(model, dataset, config=_train_config(epochs, learning_rate, batch_size, patience, seed))
    _save_keras_atomic(model, output)
    click.echo(f"teacher: {model.count_params()} parameters, test accuracy {accuracy(model, dataset.x_test, dataset.y_test):.2f}% -> {output}")


def _distill_options(function):
    for decorator in reversed([
        data_option,
        click.option("--teacher", "teacher_path", required=True, type=click.Path(), help=HELP["teacher"]),
        click.option("--temperature", default=4.0, show_default=True, type=float, help=HELP["temperature"]),
        click.option("--student-loss-weight", default=0.5, show_default=True, type=float, help=HELP["student_loss_weight"]),
        click.option("--batch-size", default=64, show_default=True, type=int),
        click.option("--patience", default=8, show_default=True, type=int),
        seed_option,
        strategy_option,
        output_option,
    ]):
        function = decorator(function)
    return function


def _load_teacher(path: str, dataset):
    from edgedistill.models import load_model_file, predict_logits
    from edgedistill.pipeline import check_classes

    model = load_model_file(path)
    outputs = {"train": predict_logits(model, dataset.x_train), "val": predict_logits(model, dataset.x_val)}
    check_classes(outputs["train"], dataset.num_classes, "teacher")
    return model, outputs


@click.command()
@_distill_options
@click.option("--student", "student_path", type=click.Path(), help=HELP["student"])
@click.option("--student-preset", default="dscnn", show_default=True, help=HELP["student_preset"])
@click.option("--student-width", default=0.5, show_default=True, type=float, help=HELP["student_width"])
@click.option("--epochs", default=40, show_default=True, type=int)
@click.option("--learning-rate", default=3e-3, show_default=True, type=float)
def distill(data, teacher_path, temperature, student_loss_weight, batch_size, patience, seed, strategy, output,
            student_path, student_preset, student_width, epochs, learning_rate) -> None:
    """Distill a float student from a teacher (logit distillation) and save it (.keras)."""
    from edgedistill.data import load_dataset
    from edgedistill.distill import LogitsDistillation
    from edgedistill.distill import distill as distill_student
    from edgedistill.models import build_model, load_model_file
    from edgedistill.pipeline import check_classes
    from edgedistill.training import accuracy, strategy_scope

    loss = LogitsDistillation(temperature)
    dataset = load_dataset(data, seed=seed)
    teacher_model, outputs = _load_teacher(teacher_path, dataset)
    with strategy_scope(strategy):
        student = load_model_file(student_path) if student_path else build_model(student_preset, dataset.input_shape, dataset.num_classes, width=student_width, name="student")
        check_classes(student, dataset.num_classes, "student")
        student, _ = distill_student(
            teacher_model, student, dataset, distillation_losses=[loss], student_loss_weight=student_loss_weight,
            config=_train_config(epochs, learning_rate, batch_size, patience, seed), teacher_outputs=outputs,
        )
    _save_keras_atomic(student, output)
    click.echo(f"student: {student.count_params()} parameters, test accuracy {accuracy(student, dataset.x_test, dataset.y_test):.2f}% -> {output}")


@click.command()
@_distill_options
@click.option("--student", "student_path", required=True, type=click.Path(), help="Float student to make quantization-aware (.keras).")
@click.option("--epochs", default=10, show_default=True, type=int)
@click.option("--learning-rate", default=5e-4, show_default=True, type=float)
def quantize(data, teacher_path, temperature, student_loss_weight, batch_size, patience, seed, strategy, output, student_path, epochs, learning_rate) -> None:
    """Quantization-aware distillation (tfmot QAT) of a float student; saves the fake-quant model."""
    from edgedistill.data import load_dataset
    from edgedistill.distill import LogitsDistillation
    from edgedistill.models import load_model_file
    from edgedistill.quantize import quantize_distill
    from edgedistill.training import accuracy, strategy_scope

    loss = LogitsDistillation(temperature)
    dataset = load_dataset(data, seed=seed)
    teacher_model, outputs = _load_teacher(teacher_path, dataset)
    with strategy_scope(strategy):
        student = load_model_file(student_path)
        qat, _ = quantize_distill(
            teacher_model, student, dataset, config=_train_config(epochs, learning_rate, batch_size, patience, seed),
            teacher_outputs=outputs, distillation_losses=[loss], student_loss_weight=student_loss_weight,
        )
    _save_keras_atomic(qat, output)
    click.echo(f"QAT student: test accuracy {accuracy(qat, dataset.x_test, dataset.y_test):.2f}% -> {output}")


@click.command()
@click.argument("model", type=click.Path())
@output_option
@click.option("--quantization", default="int8", show_default=True, type=click.Choice(["int8", "float32"]))
@click.option("--io-type", default="int8", show_default=True, type=click.Choice(["int8", "float32"]), help=HELP["io_type"])
@click.option("--data", default="digits", show_default=True, help="Data set whose training images calibrate int8 ranges.")
@click.option("--num-calibration-samples", default=200, show_default=True, type=int)
def convert(model, output, quantization, io_type, data, num_calibration_samples) -> None:
    """Convert a Keras model (float or QAT) to a .tflite file."""
    from edgedistill.convert import convert_keras_model
    from edgedistill.data import load_dataset
    from edgedistill.fileio import write_bytes_atomic
    from edgedistill.models import load_model_file

    keras_model = load_model_file(model)  # float or QAT (fake-quant) tf_keras models
    representative = load_dataset(data).x_train if quantization == "int8" else None
    content = convert_keras_model(keras_model, quantization=quantization, io_type=io_type, representative_data=representative, num_calibration_samples=num_calibration_samples)
    write_bytes_atomic(output, content)
    click.echo(f"{quantization} model: {len(content)} bytes -> {output}")


@click.command()
@click.argument("model", type=click.Path())
@click.option("--data", default="digits", show_default=True, help=HELP["data"])
@click.option("--reference", type=click.Path(), help="Keras model (e.g. the QAT student) the int8 accuracy is compared with.")
@click.option("--max-int8-drop", default=1.0, show_default=True, type=float, help=HELP["max_int8_drop"])
@click.option("--max-samples", type=int, help="Evaluate at most this many test samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(model, data, reference, max_int8_drop, max_samples, as_json) -> None:
    """Accuracy of an int8 .tflite on LiteRT and on the TFLM interpreter (and a Keras reference)."""
    from edgedistill.data import load_dataset
    from edgedistill.micro import arena_with_margin, measure_arena
    from edgedistill.tflite_model import read_model_bytes
    from edgedistill.verify import raise_if_failed, verify_models

    content = read_model_bytes(model)
    dataset = load_dataset(data)
    keras_models = {}
    if reference:
        from edgedistill.models import load_model_file

        keras_models["reference"] = load_model_file(reference)
    arena, _ = arena_with_margin(measure_arena(content)["arena_bytes"])
    result = verify_models(
        dataset.x_test, dataset.y_test, keras_models=keras_models, int8_tflite=content, tflm_arena_size=arena,
        max_int8_drop=max_int8_drop, reference="reference", max_samples=max_samples,
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
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False), help="Folder for the sources.")
@click.option("--data", default=None, help="Data set whose test samples become embedded test vectors (default: random inputs).")
@click.option("--num-test-vectors", default=5, show_default=True, type=int)
@click.option("--arena-margin", default=0.10, show_default=True, type=float, help=HELP["arena_margin"])
def micro(model, output_dir, data, num_test_vectors, arena_margin) -> None:
    """TFLite Micro sources of an int8 .tflite: C array, op resolver, measured arena, test vectors."""
    from edgedistill.micro import export_micro
    from edgedistill.tflite_model import read_model_bytes

    content = read_model_bytes(model)
    test_inputs = test_labels = None
    if data:
        from edgedistill.data import load_dataset

        dataset = load_dataset(data)
        test_inputs, test_labels = dataset.x_test, dataset.y_test
    export = export_micro(
        content, output_dir, test_inputs=test_inputs, test_labels=test_labels,
        num_test_samples=num_test_vectors, margin_fraction=arena_margin, model_name=Path(model).name,
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
