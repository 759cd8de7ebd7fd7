"""What `edgedistill run` calls for the distillation methods, kept out of ``pipeline.py``.

Each function takes the :class:`~edgedistill.config.RunConfig` and returns plain values plus
a dict for ``report.json``; with the default configuration every one of them does exactly
what the pipeline did before (logit distillation, no calibration, no pruning, no budget).
"""

from __future__ import annotations

from typing import Any, Callable

from edgedistill.errors import InputError

Logger = Callable[[str], None]


def check_method_names(config) -> None:
    """Unknown loss or scheme names fail before any training, listing the valid ones."""
    from edgedistill.distill.losses import LOSSES
    from edgedistill.distill.schemes import SCHEMES

    LOSSES.get(config.distillation_loss.partition(":")[0].strip())
    SCHEMES.get(config.scheme)
    if config.prune_sparsity and config.scheme != "standard":
        raise InputError(
            f"--prune-sparsity works with the standard scheme only. Received: scheme={config.scheme!r}, "
            f"prune_sparsity={config.prune_sparsity}. Prune in a second run from the distilled student."
        )


def resolve_loss(config):
    """The distillation loss of a run: ``logits`` gets ``temperature`` (and ``final_temperature``);
    ``name:key=value,...`` gives any registered loss its arguments."""
    from edgedistill.distill.losses import get_loss, parse_arguments

    name, _, text = config.distillation_loss.partition(":")
    arguments = parse_arguments(text, what=f"the arguments of loss {name!r}") if text else {}
    if name.strip() == "logits":
        arguments.setdefault("temperature", config.temperature)
        if config.final_temperature is not None:
            arguments.setdefault("final_temperature", config.final_temperature)
    return get_loss({"kind": name.strip(), **arguments})


def budget_of(config):
    from edgedistill.budget import Budget

    return Budget(max_flash_kb=config.max_flash_kb, max_arena_kb=config.max_arena_kb, max_latency_ms=config.max_latency_ms)


def choose_student_width(config, data, log: Logger) -> tuple[float, dict[str, Any] | None]:
    """``config.student_width``, or with a budget the largest width of the preset that fits it."""
    budget = budget_of(config)
    if not budget.is_set:
        return config.student_width, None
    if config.student:
        raise InputError(
            "--max-flash-kb / --max-arena-kb / --max-latency-ms choose a preset width; they cannot size a --student file."
        )
    from edgedistill.budget import select_student_width

    choice = select_student_width(config.student_preset, data.input_shape, data.num_classes, budget, log=log)
    log(f"   budget ({budget.describe()}): {choice.chosen.describe()}")
    return choice.width, choice.to_dict()


def calibrate(config, teacher_outputs: dict, data) -> tuple[dict, dict[str, Any] | None]:
    """Temperature-scale the teacher's cached logits on the validation split (``calibrate_teacher``)."""
    if not config.calibrate_teacher:
        return teacher_outputs, None
    from edgedistill.distill.calibration import calibrate_logits

    calibration = calibrate_logits(teacher_outputs["val"], data.y_val)
    return {split: calibration.apply(logits) for split, logits in teacher_outputs.items()}, calibration.to_dict()


def _training_arguments(config, loss, train_config, teacher_outputs, log_dir) -> dict[str, Any]:
    """What every distill and QAT entry point takes from a run: the loss, its weight, the schedule."""
    return dict(
        distillation_losses=[loss],
        student_loss_weight=config.student_loss_weight,
        config=train_config,
        teacher_outputs=teacher_outputs,
        log_dir=log_dir,
    )


def distill_student(config, teacher, student, data, *, loss, train_config, teacher_outputs, log_dir):
    """The distill stage: the configured scheme, or pruning during standard distillation."""
    from edgedistill.distill.schemes import run_scheme

    common = _training_arguments(config, loss, train_config, teacher_outputs, log_dir)
    if config.prune_sparsity:
        from edgedistill.distill.pruning import prune_distill

        student, history = prune_distill(teacher, student, data, sparsity=config.prune_sparsity, **common)
        return student, history, {"sparsity": history["sparsity"]}
    student, history = run_scheme(config.scheme, teacher, student, data, options=config.scheme_options, **common)
    extra = {"scheme": config.scheme}
    for key in ("synthesis", "chain"):
        if key in history:
            extra[key] = history[key]
    return student, history, extra


def quantize_student(config, teacher, student, data, *, loss, train_config, teacher_outputs, log_dir):
    """The QAT stage with the same loss; a pruned student keeps its zeros."""
    common = _training_arguments(config, loss, train_config, teacher_outputs, log_dir)
    if config.prune_sparsity:
        from edgedistill.distill.pruning import model_sparsity, quantize_distill_pruned

        qat_student, history = quantize_distill_pruned(teacher, student, data, **common)
        return qat_student, history, {"sparsity": model_sparsity(qat_student)}
    from edgedistill.quantize import quantize_distill

    qat_student, history = quantize_distill(teacher, student, data, **common)
    return qat_student, history, {}


__all__ = [
    "check_method_names",
    "resolve_loss",
    "choose_student_width",
    "calibrate",
    "distill_student",
    "quantize_student",
    "budget_of",
]
