"""`edgedistill search`: grid / random / Optuna search over temperature, alpha and student width.

No TensorFlow at import: `edgedistill search --help` stays fast.
"""

from __future__ import annotations

import click


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, e.g. 2,4,8; received {text!r}") from None


@click.command()
@click.option(
    "--data", default="digits", show_default=True, help="Data set: digits, fashion_mnist[:DIR], npz:PATH or images:DIR."
)
@click.option("--max-train-samples", type=int, default=None, help="Use at most this many training samples (quick searches).")
@click.option(
    "--teacher", type=click.Path(), default=None, help="Teacher model file; trained once from --teacher-preset when absent."
)
@click.option("--teacher-preset", default="cnn", show_default=True)
@click.option("--teacher-width", default=1.0, show_default=True, type=float)
@click.option("--teacher-epochs", default=30, show_default=True, type=int)
@click.option("--student-preset", default="dscnn", show_default=True, help="Student architecture searched over --widths.")
@click.option(
    "--distillation-loss",
    default="logits",
    show_default=True,
    help="Loss, as in `run` (NAME or NAME:KEY=VALUE,...); T applies to logits.",
)
@click.option(
    "--temperatures", default="2,4,8", show_default=True, help="Temperatures (comma-separated; optuna searches their range)."
)
@click.option(
    "--student-loss-weights",
    "alphas",
    default="0.1,0.5,0.9",
    show_default=True,
    help="Values of alpha = student_loss_weight (optuna: their range).",
)
@click.option("--widths", default="0.25,0.5", show_default=True, help="Student preset widths (categorical for every method).")
@click.option("--method", type=click.Choice(["grid", "random", "optuna"]), default="grid", show_default=True)
@click.option(
    "--num-trials", default=10, show_default=True, type=int, help="Trials for random and optuna (grid runs every combination)."
)
@click.option("--epochs", default=20, show_default=True, type=int, help="Distillation epochs per trial.")
@click.option("--qat-epochs", default=0, show_default=True, type=int, help="QAT epochs per trial (0: post-training int8).")
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--learning-rate", default=3e-3, show_default=True, type=float)
@click.option("--patience", default=5, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--measure-arena/--no-measure-arena", default=True, show_default=True, help="Measure each trial's TFLM arena.")
@click.option(
    "--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="Run trials here or on Ray Tune."
)
@click.option("--ray-address", default=None, help="Ray cluster address (default: start a local Ray runtime).")
@click.option(
    "--strategy",
    type=click.Choice(["none", "mirrored", "multi_worker"]),
    default="none",
    show_default=True,
    help="tf.distribute strategy for each trial's training.",
)
@click.option(
    "-o",
    "--output-dir",
    default="search",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for search.json, search.md, pareto.png.",
)
@click.option("--verbose", default=0, show_default=True, type=int, help="Keras verbosity of each trial.")
def search(
    data,
    max_train_samples,
    teacher,
    teacher_preset,
    teacher_width,
    teacher_epochs,
    student_preset,
    distillation_loss,
    temperatures,
    alphas,
    widths,
    method,
    num_trials,
    epochs,
    qat_epochs,
    batch_size,
    learning_rate,
    patience,
    seed,
    measure_arena,
    backend,
    ray_address,
    strategy,
    output_dir,
    verbose,
) -> None:
    """Search temperature, alpha and student width; report the accuracy-vs-bytes Pareto front.

    Each trial distills a fresh student (optionally with QAT), converts it to int8 and
    scores it on the validation split (int8 accuracy on LiteRT, bytes, TFLM arena).
    """
    from edgedistill.search import SearchSettings, SearchSpace, run_search

    space = SearchSpace(temperatures=_floats(temperatures), student_loss_weights=_floats(alphas), student_widths=_floats(widths))
    settings = SearchSettings(
        data=data,
        max_train_samples=max_train_samples,
        teacher=teacher,
        teacher_preset=teacher_preset,
        teacher_width=teacher_width,
        teacher_epochs=teacher_epochs,
        student_preset=student_preset,
        distillation_loss=distillation_loss,
        epochs=epochs,
        qat_epochs=qat_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        patience=patience,
        seed=seed,
        measure_arena=measure_arena,
        strategy=strategy,
        verbose=verbose,
    )
    result = run_search(
        settings,
        space,
        method=method,
        num_trials=num_trials,
        backend=backend,
        ray_address=ray_address,
        output_dir=output_dir,
        log=lambda line: click.echo(line, err=True),
    )
    click.echo(f"{result['num_trials']} trials -> {output_dir}/search.md")
    for index in result["pareto_front"]:
        trial = result["trials"][index]
        params = trial["params"]
        click.echo(
            f"  front: T={params['temperature']:.3g} alpha={params['student_loss_weight']:.3g} width={params['student_width']:.3g}: "
            f"int8 val {trial['int8_val_accuracy']:.2f}%, {trial['int8_bytes']} bytes"
        )


__all__ = ["search"]
