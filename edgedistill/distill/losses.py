"""Distillation losses: how a student is pulled towards its teacher.

Each loss is a :class:`DistillationLoss` registered under the name users type in the CLI
and YAML (``kind: logits``). The names and signatures follow ``keras.distillation`` so
Keras users find what they know, on tf_keras (Keras 2) because tfmot needs it.
"""

from __future__ import annotations

from typing import Any

from edgedistill.errors import InputError
from edgedistill.registry import Registry

LOSSES: Registry[type["DistillationLoss"]] = Registry("distillation loss")


class DistillationLoss:
    """Base class of distillation losses.

    Subclasses implement :meth:`compute_loss` on teacher and student outputs and return a
    scalar tensor. A loss that matches intermediate layers sets ``teacher_layer_name`` /
    ``student_layer_name``; a loss on final outputs leaves them ``None``, which lets the
    :class:`~edgedistill.distill.distiller.Distiller` cache the teacher's outputs.
    """

    name = "base"
    teacher_layer_name: str | None = None
    student_layer_name: str | None = None

    @property
    def uses_final_outputs(self) -> bool:
        return self.teacher_layer_name is None and self.student_layer_name is None

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        raise NotImplementedError

    def validate_outputs(self, teacher_outputs, student_outputs) -> None:
        teacher_dim, student_dim = teacher_outputs.shape[-1], student_outputs.shape[-1]
        if teacher_dim is not None and student_dim is not None and teacher_dim != student_dim:
            raise InputError(
                f"{type(self).__name__}: the teacher outputs {teacher_dim} values per sample and the student "
                f"{student_dim}; they must match (same number of classes)."
            )

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "DistillationLoss":
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def register_loss(name: str):
    """Class decorator: register a :class:`DistillationLoss` under ``name``."""

    def decorator(cls):
        cls.name = name
        LOSSES.add(name, cls)
        return cls

    return decorator


@register_loss("logits")
class LogitsDistillation(DistillationLoss):
    """Soft-target distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    ``loss = T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, averaged over the batch.
    The ``T^2`` factor keeps the gradient scale of the soft targets independent of the
    temperature, so the weight against the hard-label loss keeps its meaning as T changes.

    Example::

        loss = LogitsDistillation(temperature=4.0)
    """

    def __init__(self, temperature: float = 3.0) -> None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise InputError(f"`temperature` must be a number. Received: temperature={temperature!r}.")
        if not temperature > 0:
            raise InputError(f"`temperature` must be > 0. Received: temperature={temperature}. Typical values are 1 to 8.")
        self.temperature = float(temperature)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        from edgedistill._keras import tf

        temperature = tf.cast(self.temperature, student_outputs.dtype)
        teacher_log_probs = tf.nn.log_softmax(tf.cast(teacher_outputs, student_outputs.dtype) / temperature, axis=-1)
        student_log_probs = tf.nn.log_softmax(student_outputs / temperature, axis=-1)
        # KL(p_t || p_s) = sum p_t (log p_t - log p_s); log-space for numerical stability.
        kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
        return tf.reduce_mean(kl) * temperature**2

    def get_config(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


def get_loss(spec: "str | dict[str, Any] | DistillationLoss") -> DistillationLoss:
    """A loss from its name (``"logits"``), a dict (``{"kind": "logits", "temperature": 4}``) or an instance."""
    if isinstance(spec, DistillationLoss):
        return spec
    if isinstance(spec, str):
        return LOSSES.get(spec)()
    if isinstance(spec, dict):
        arguments = dict(spec)
        kind = arguments.pop("kind", None)
        if kind is None:
            raise InputError(f"A distillation loss needs a `kind`. Received: {spec}. Expected one of: {', '.join(LOSSES.names())}.")
        cls = LOSSES.get(kind)
        try:
            return cls(**arguments)
        except TypeError as error:
            raise InputError(f"Bad arguments for distillation loss {kind!r}: {error}.") from None
    raise InputError(f"Cannot make a distillation loss from {spec!r}; expected a name, a dict with `kind`, or a DistillationLoss.")


__all__ = ["DistillationLoss", "LogitsDistillation", "LOSSES", "register_loss", "get_loss"]
