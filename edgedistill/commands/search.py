"""`edgedistill search`: grid / random / Optuna search over temperature, alpha and student width.

No TensorFlow at import: `edgedistill search --help` stays fast.
"""

from __future__ import annotations

import click

from edgedistill.commands.options import config_file_option, config_options
from edgedistill.config import (
    DataConfig,
    DistillConfig,
    QatConfig,
    RunConfig,
    StudentConfig,
    TeacherConfig,
    TrainingConfig,
    VerifyConfig,
)


def _floats(text: str) -> tuple[float, ...]:
    import math

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = (math.nan,)
    if not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"expected comma-separated numbers, finite (no nan or inf), e.g. 2,4,8; received {text!r}")
    return values


def _search_defaults() -> dict[str, dict]:
    from edgedistill.search import SEARCH_DEFAULTS

    return {name: {"default": value} for name, value in SEARCH_DEFAULTS.items()}


@click.command()
@config_file_option
@config_options([DataConfig])
@config_options([TeacherConfig], only=("teacher", "teacher_preset", "teacher_width", "teacher_epochs"))
@config_options([StudentConfig], only=("student_preset",))
@config_options([DistillConfig], only=("distillation_loss", "epochs", "scheme", "scheme_options"), overrides=_search_defaults())
@config_options([QatConfig], overrides=_search_defaults())
@config_options([TrainingConfig], overrides=_search_defaults())
@config_options([VerifyConfig], only=("chance_gate",))
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
    "--num-trials",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Trials for random and optuna (grid runs every combination).",
)
@click.option("--measure-arena/--no-measure-arena", default=True, show_default=True, help="Measure each trial's TFLM arena.")
@click.option(
    "--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="Run trials here or on Ray Tune."
)
@click.option("--ray-address", default=None, help="Ray cluster address (default: start a local Ray runtime).")
@click.option(
    "-o",
    "--output-dir",
    default="search",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for search.json, search.md, pareto.png.",
)
def search(
    config_file, temperatures, alphas, widths, method, num_trials, measure_arena, backend, ray_address, output_dir, **options
) -> None:
    """Search temperature, alpha and student width; report the accuracy-vs-bytes Pareto front.

    Each trial distills a fresh student (optionally with QAT), converts it to int8 and
    scores it on the validation split (int8 accuracy on LiteRT, bytes, TFLM arena).
    """
    from edgedistill.fileio import ensure_writable_dir
    from edgedistill.search import SearchSpace, run_search

    ensure_writable_dir(output_dir, what="the search output folder (-o)")  # before any trial trains
    space = SearchSpace(temperatures=_floats(temperatures), student_loss_weights=_floats(alphas), student_widths=_floats(widths))
    result = run_search(
        RunConfig.from_options(options),
        space,
        method=method,
        num_trials=num_trials,
        backend=backend,
        ray_address=ray_address,
        output_dir=output_dir,
        measure_arena=measure_arena,
    )
    click.echo(f"{result['num_trials']} trials -> {output_dir}/search.md")
    for index in result["pareto_front"]:
        trial = result["trials"][index]
        params = trial["params"]
        click.echo(
            f"  front: T={params['temperature']:.3g} alpha={params['student_loss_weight']:.3g} "
            f"width={params['student_width']:.3g}: "
            f"int8 val {trial['int8_val_accuracy']:.2f}%, {trial['int8_bytes']} bytes"
        )


__all__ = ["search"]
