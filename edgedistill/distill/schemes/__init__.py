"""Distillation *schemes*: who teaches whom, on what data, in which order.

A loss (``losses.py``) says how a student is pulled towards a teacher; a scheme arranges the
training around it. Each scheme is one entry of ``SCHEMES`` (name, options dataclass, run
function), registered under the name used by ``--scheme`` / YAML ``scheme:``; its options
come from ``--scheme-options "key=value,..."``:

=====================  ======================================================================
``standard``           one frozen teacher, cached outputs (:func:`edgedistill.distill.distill`)
``multi_teacher``      several teachers, soft targets averaged (``teachers``, ``teacher_weights``)
``self``               self-distillation: an EMA copy of the student (``mode=ema``) or its
                       previous generation (``mode=born_again``) is the teacher
``mutual``             deep mutual learning: two students teach each other, no teacher
``teacher_assistant``  teacher -> assistant(s) -> student (``assistant_widths``, ``assistant_preset``)
``patient``            "patient and consistent": teacher and student see the same mixup/
                       augmented batch every step, pure function matching, long schedules
``data_free``          DeepInversion-style synthetic inputs from the teacher, then distillation
=====================  ======================================================================

Every scheme returns a :class:`SchemeResult` and trains a tf_keras student, so each composes
with QAT (:func:`edgedistill.distill.quantize_distill` with the same losses) and pruning.

A new scheme is a module with a frozen options dataclass and a function registered with
:func:`register_scheme`; :func:`run_scheme` finds it by name.
"""

from __future__ import annotations

from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.distill.schemes.base import SCHEMES, Scheme, option, parse_scheme_options, register_scheme, run_scheme

# Importing the scheme modules registers them (in the table's order above).
from edgedistill.distill.schemes.standard import StandardOptions, run_standard  # noqa: E402  isort: skip
from edgedistill.distill.schemes.multi_teacher import (  # noqa: E402
    EnsembleTeacher,
    MultiTeacherOptions,
    check_same_classes,
    distill_multi_teacher,
    ensemble_logits,
)
from edgedistill.distill.schemes.self_distillation import EMADistiller, SelfOptions, self_distill  # noqa: E402
from edgedistill.distill.schemes.mutual import MutualLearner, MutualOptions, mutual_distill  # noqa: E402
from edgedistill.distill.schemes.teacher_assistant import TeacherAssistantOptions, teacher_assistant_distill  # noqa: E402
from edgedistill.distill.schemes.patient import ConsistentDistiller, PatientOptions, patient_distill  # noqa: E402
from edgedistill.distill.schemes.data_free import DataFreeOptions, data_free_distill, synthesize_inputs  # noqa: E402

__all__ = [
    "SCHEMES",
    "Scheme",
    "SchemeResult",
    "TrainingArguments",
    "option",
    "parse_scheme_options",
    "register_scheme",
    "run_scheme",
    "StandardOptions",
    "run_standard",
    "MultiTeacherOptions",
    "EnsembleTeacher",
    "ensemble_logits",
    "distill_multi_teacher",
    "check_same_classes",
    "SelfOptions",
    "EMADistiller",
    "self_distill",
    "MutualOptions",
    "MutualLearner",
    "mutual_distill",
    "TeacherAssistantOptions",
    "teacher_assistant_distill",
    "PatientOptions",
    "ConsistentDistiller",
    "patient_distill",
    "DataFreeOptions",
    "data_free_distill",
    "synthesize_inputs",
]
