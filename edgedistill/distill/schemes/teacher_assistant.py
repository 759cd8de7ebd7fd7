"""The ``teacher_assistant`` scheme: teacher -> assistant(s) -> student."""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

from edgedistill.config import positive
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.schemes.base import SchemeOptions, build_like_student, option, register_scheme
from edgedistill.distill.schemes.multi_teacher import check_same_classes
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)


def teacher_assistant_distill(
    teacher,
    student,
    data,
    *,
    assistants: Sequence = (),
    training: TrainingArguments | None = None,
    stage: str = "distill",
) -> SchemeResult:
    """Progressive distillation through teacher assistants (Mirzadeh et al. 2020, "Improved
    Knowledge Distillation via Teacher Assistant").

    ``teacher -> assistants[0] -> ... -> student``: each model is distilled (same losses) from
    the previous one, which bridges a capacity gap too wide for one step. The sizes are the
    user's (order them from large to small). ``history`` is the last step's; each step's model,
    parameters and best validation accuracy are in ``report["chain"]``. The training's cached
    ``teacher_outputs`` serve the first step only.
    """
    from edgedistill.distill.distiller import distill

    if not assistants:
        raise InputError("The teacher-assistant scheme needs at least one assistant model (e.g. assistant_widths=0.5).")
    training = training or TrainingArguments()
    current_teacher, outputs = teacher, training.teacher_outputs
    chain = []
    for index, model in enumerate([*assistants, student]):
        check_same_classes([teacher, model], role="model")
        logger.info("%s: teacher-assistant step %d of %d: %s", stage, index + 1, len(assistants) + 1, model.name)
        options = {**training.distill_options(), **training.augment_options(), "teacher_outputs": outputs}
        trained, history = distill(current_teacher, model, data, stage=f"{stage}_step{index + 1}", **options)
        chain.append(
            {
                "model": trained.name,
                "parameters": int(trained.count_params()),
                "best_val_accuracy": max(history.get("val_accuracy", [0.0])) * 100.0,
            }
        )
        current_teacher, outputs = trained, None
    return SchemeResult(student=current_teacher, history=history, report={"chain": chain})


@dataclasses.dataclass(frozen=True)
class TeacherAssistantOptions(SchemeOptions):
    assistant_widths: tuple[float, ...] = option(
        (),
        "Widths of the assistants built from `assistant_preset`, large to small, separated by |.",
        check=lambda widths: all(positive(width) for width in widths),
        expected="all > 0",
    )
    assistant_preset: str = option("cnn", "Model preset of the assistants (cnn, dscnn, mlp).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.assistant_widths:
            raise InputError(
                "The teacher_assistant scheme needs assistant sizes: --scheme-options 'assistant_widths=0.5' "
                "(widths of the preset, large to small)."
            )


@register_scheme("teacher_assistant", TeacherAssistantOptions, augments=True)
def run_teacher_assistant(teacher, student, data, options: TeacherAssistantOptions, training: TrainingArguments) -> SchemeResult:
    """Teacher -> assistants built from ``assistant_preset`` at ``assistant_widths`` -> student."""
    assistants = [
        build_like_student(student, options.assistant_preset, data, width=width, name=f"assistant{index + 1}")
        for index, width in enumerate(options.assistant_widths)
    ]
    return teacher_assistant_distill(teacher, student, data, assistants=assistants, training=training)


__all__ = ["teacher_assistant_distill", "TeacherAssistantOptions", "run_teacher_assistant"]
