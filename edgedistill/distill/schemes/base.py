"""The scheme registry: one entry per scheme, its options dataclass, and :func:`run_scheme`.

A scheme is registered with :func:`register_scheme` under the name users type (``--scheme``,
YAML ``scheme:``), together with a frozen dataclass of its options (a :class:`SchemeOptions`)
and what it can do (the capability fields of :class:`Scheme`). Every option field is made by
:func:`option`, the config's own helper: its default, its help text and its check in one place,
checked when the dataclass is built (the library functions take their defaults from these fields).
The user's ``--scheme-options "key=value,..."`` text (or a dict, or an instance) becomes that
dataclass through :func:`parse_scheme_options`. :func:`run_scheme` looks the entry up and calls
it; no code compares scheme names: the pipeline asks the entry's capability fields.

Tuple fields are written ``a|b|c`` on the command line (``teachers=a.keras|b.keras``).
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from typing import Any, Callable, Mapping

from edgedistill.config import Section, option
from edgedistill.distill.arguments import SchemeResult, TrainingArguments
from edgedistill.errors import InputError
from edgedistill.registry import Registry

logger = logging.getLogger(__name__)

#: ``run(teacher, student, data, options, training) -> SchemeResult``
SchemeFunction = Callable[[Any, Any, Any, Any, TrainingArguments], SchemeResult]


@dataclasses.dataclass(frozen=True)
class Scheme:
    """A registry entry: the scheme's name, its options dataclass and the function that runs it."""

    name: str
    options: type
    run: SchemeFunction
    # False for a scheme whose student never trains on the data set (data-free: synthetic inputs only). A scratch
    # baseline on the real data would then cost far more than the distillation and answer another question; and
    # `run --resume` distills again, because the synthetic inputs QAT and calibration use are not saved.
    trains_on_data: bool = True
    # True for a scheme whose teacher is the one model the student is distilled from, so one augmented batch reaches
    # both and `--augment` applies (the others train on the plain data).
    augments: bool = False
    # True for a scheme built on the standard Distiller step alone: the only ones pruning (tfmot) and the Keras 3
    # Distiller support.
    standard_step: bool = False

    @property
    def takes_options(self) -> bool:
        """Whether ``--scheme-options`` can change anything (the options dataclass has fields)."""
        return bool(dataclasses.fields(self.options))

    @property
    def summary(self) -> str:
        """The first line of the run function's docstring."""
        return (self.run.__doc__ or "").strip().splitlines()[0] if self.run.__doc__ else ""

    def option_help(self) -> dict[str, str]:
        """``{option name: help text}`` of the scheme's options, from the fields' metadata."""
        return {field.name: field.metadata.get("help", "") for field in dataclasses.fields(self.options)}

    def parse(self, options: "str | Mapping[str, Any] | Any | None") -> Any:
        return parse_scheme_options(self, options)


SCHEMES: Registry[Scheme] = Registry("distillation scheme")


class SchemeOptions(Section):
    """Base of every scheme's options dataclass: each field (made by :func:`option`) is checked when it is built.

    A check across fields goes in the subclass's ``__post_init__``, after ``super().__post_init__()``.
    """


def register_scheme(
    name: str, options: type, *, trains_on_data: bool = True, augments: bool = False, standard_step: bool = False
) -> Callable[[SchemeFunction], SchemeFunction]:
    """Decorator: register ``run(teacher, student, data, options, training)`` as scheme ``name``, with its capabilities."""
    # typeshed's DataclassInstance omits __dataclass_params__, which every dataclass has
    if not (dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"the options of scheme {name!r} must be a frozen dataclass")

    def decorator(run: SchemeFunction) -> SchemeFunction:
        entry = Scheme(
            name=name, options=options, run=run, trains_on_data=trains_on_data, augments=augments, standard_step=standard_step
        )
        SCHEMES.add(name, entry)
        return run

    return decorator


def _valid_keys(scheme: Scheme) -> str:
    names = [field.name for field in dataclasses.fields(scheme.options)]
    return f"Valid keys: {', '.join(names)}" if names else f"Scheme {scheme.name!r} takes no options"


def _split_text(scheme: Scheme, text: str) -> dict[str, str]:
    """``"a=1,b=x|y"`` -> ``{"a": "1", "b": "x|y"}`` (raw text; types come from the dataclass)."""
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise InputError(
                f"Bad options for scheme {scheme.name!r}: {item!r} is not key=value. {_valid_keys(scheme)}. "
                f"Received: --scheme-options {text!r}."
            )
        values[key.strip()] = value.strip()
    return values


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))


def _convert(hint: Any, value: Any) -> Any:
    """``value`` (text from the command line, or a YAML/Python value) as type ``hint``; ValueError if it is not."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in arguments if a is not type(None))
        return None if _is_none(value) else _convert(inner, value)
    if origin is tuple:
        items = value.split("|") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
        return tuple(_convert(arguments[0], item) for item in items if not (isinstance(item, str) and not item.strip()))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise ValueError
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        number = hint(value.strip()) if isinstance(value, str) else value
        if hint is int and number != int(number):
            raise ValueError
        return hint(number)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError
        return str(value)
    return value


def _type_name(hint: Any) -> str:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return f"{_type_name(next(a for a in arguments if a is not type(None)))} (or none)"
    if origin is tuple:
        return f"{_type_name(arguments[0])}s separated by |"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(hint, str(hint))


def parse_scheme_options(scheme: "Scheme | str", options: "str | Mapping[str, Any] | Any | None") -> Any:
    """The options dataclass of ``scheme`` from ``"key=value,..."``, a dict, an instance or ``None`` (defaults).

    Unknown keys and values of the wrong type raise :class:`InputError` listing the scheme's
    valid keys and the received text; the dataclass checks its own values.

    Example::

        parse_scheme_options("self", "mode=born_again,generations=3")   # SelfOptions(mode='born_again', ...)
    """
    scheme = SCHEMES.get(scheme) if isinstance(scheme, str) else scheme
    if isinstance(options, scheme.options):
        return options
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        raise InputError(f"Scheme {scheme.name!r} takes {scheme.options.__name__}; received {type(options).__name__}.")
    mapping = typing.cast(Mapping[str, Any], options or {})  # when not text: a mapping or None by now
    received = options if isinstance(options, str) else dict(mapping)
    values = _split_text(scheme, options) if isinstance(options, str) else dict(mapping)
    hints = typing.get_type_hints(scheme.options)
    fields = {field.name for field in dataclasses.fields(scheme.options)}
    arguments = {}
    for key, value in values.items():
        if key not in fields:
            raise InputError(
                f"Bad options for scheme {scheme.name!r}: unknown key {key!r}. {_valid_keys(scheme)}. Received: {received!r}."
            )
        try:
            arguments[key] = _convert(hints[key], value)
        except (ValueError, TypeError):
            raise InputError(
                f"Bad options for scheme {scheme.name!r}: `{key}` must be {_type_name(hints[key])}. "
                f"Received: {key}={value!r} in {received!r}."
            ) from None
    return scheme.options(**arguments)


def run_scheme(
    name: str,
    teacher,
    student,
    data,
    *,
    options: "str | Mapping[str, Any] | Any | None" = None,
    training: TrainingArguments | None = None,
) -> SchemeResult:
    """Run the registered scheme ``name`` with its options (see :func:`parse_scheme_options`).

    Example::

        result = run_scheme("teacher_assistant", teacher, student, data, options="assistant_widths=0.5",
                            training=TrainingArguments(distillation_losses=[LogitsDistillation(4.0)]))
        result.student, result.history, result.report["chain"]
    """
    scheme = SCHEMES.get(name)
    parsed = scheme.parse(options)
    training = training or TrainingArguments()
    logger.info("distill: scheme %s with %s", name, parsed)
    result = scheme.run(teacher, student, data, parsed, training)
    best = max(result.history.get("val_accuracy", [float("nan")]))
    logger.info("distill: scheme %s done, best validation accuracy %.2f %%", name, best * 100.0)
    return result


def compile_learner(model, training: TrainingArguments):
    """Compile a Distiller-like model with Adam at the training's learning rate, its student loss and accuracy."""
    from edgedistill._keras import keras

    model.compile(
        optimizer=keras.optimizers.Adam(training.config.learning_rate),
        loss=training.student_loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def build_like_student(student, preset: str, data, *, width: float, name: str):
    """A ``preset`` model (an assistant, a peer) that takes the same inputs as ``student``.

    The data keep their raw values and the student carries its preprocessing as its first layer
    (``x / 255`` for pixels): the model gets the same layer, so it sees what the student sees.
    """
    import numpy as np

    from edgedistill.models import build_model
    from edgedistill.preprocessing import Preprocessing, find_preprocessing_layer, with_preprocessing

    model = build_model(preset, data.input_shape, data.num_classes, width=width, name=name)
    layer = find_preprocessing_layer(student)
    if layer is None:
        return model
    config = getattr(layer, "layer", layer).get_config()  # a QAT student wraps its Rescaling layer

    def values(value) -> tuple[float, ...]:
        return tuple(float(v) for v in np.ravel(value))

    return with_preprocessing(model, Preprocessing("student", values(config["scale"]), values(config["offset"]), how="student"))


__all__ = [
    "build_like_student",
    "SCHEMES",
    "Scheme",
    "SchemeOptions",
    "register_scheme",
    "option",
    "parse_scheme_options",
    "run_scheme",
    "compile_learner",
]
