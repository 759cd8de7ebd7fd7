"""The user's teacher before anything is trained: its input shape, its preprocessing, the gate.

- :func:`check_input_shape`: a teacher that expects another shape than the data's stops with
  one line naming both shapes and the option that fixes it (``--image-size``, ``--color-mode``).
- :func:`resolve_preprocessing`: ``--teacher-preprocessing`` as declared, or detected: the teacher
  is evaluated on (part of) the validation split under each named convention
  (:data:`edgedistill.preprocessing.NAMED_CONVENTIONS`) and the best is kept and reported.
- :func:`teacher_gate`: the teacher's validation accuracy is measured and printed; near chance
  (or below ``--min-teacher-accuracy``) the run stops with exit 2 naming the likely causes, and a
  teacher whose predictions are a consistent permutation of the labels is reported as a class-order
  mismatch with the mapping (and the ``--class-names`` that fixes it).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edgedistill.errors import InputError
from edgedistill.preprocessing import NAMED_CONVENTIONS, Preprocessing, channel_statistics, parse_preprocessing
from edgedistill.verify import CHANCE_MARGIN_POINTS, chance_accuracy

logger = logging.getLogger(__name__)

# Detection evaluates each convention on at most this many validation images.
DETECTION_SAMPLES = 2000
# A class permutation is reported when it beats the teacher's accuracy as given by this many points.
PERMUTATION_GAIN_POINTS = 10.0


def teacher_input_shape(path: str) -> tuple[int | None, ...] | None:
    """The input shape (without the batch) a tf_keras / Keras 3 model file declares, read from its
    configuration without deserializing anything; ``None`` when it cannot be read."""
    from edgedistill.models import _model_configs

    try:
        from pathlib import Path

        configs = _model_configs(Path(path).expanduser())
    except Exception:  # noqa: BLE001 - the teacher stage reports unreadable files
        return None
    for config in configs:
        shape = _find_input_shape(config)
        if shape is not None:
            return shape
    return None


def _find_input_shape(config: Any) -> tuple[int | None, ...] | None:
    if isinstance(config, dict):
        if config.get("class_name") == "InputLayer":
            inner = config.get("config") or {}
            shape = inner.get("batch_input_shape") or inner.get("batch_shape")
            return tuple(shape[1:]) if shape else None
        for value in config.values():
            found = _find_input_shape(value)
            if found is not None:
                return found
    elif isinstance(config, list):
        for value in config:
            found = _find_input_shape(value)
            if found is not None:
                return found
    return None


def _shape_text(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def check_input_shape(expected: tuple | None, data, *, role: str = "teacher") -> None:
    """Refuse a model whose input shape differs from the data's, naming both and the option that fixes it."""
    if expected is None:
        return
    actual = tuple(data.input_shape)
    if len(expected) == len(actual) and all(e is None or e == a for e, a in zip(expected, actual)):
        return
    fixes = []
    if str(data.name).startswith("images:") and len(expected) == 3:
        if tuple(expected[:2]) != actual[:2] and None not in expected[:2]:
            fixes.append(f"--image-size {expected[0]}x{expected[1]}")
        if expected[2] != actual[2] and expected[2] in (1, 3):
            fixes.append(f"--color-mode {'rgb' if expected[2] == 3 else 'grayscale'}")
    how = (
        f"Pass {' '.join(fixes)}"
        if fixes
        else "Resize or convert the data to the model's input (an images:DIR folder takes --image-size HxW and --color-mode)"
    )
    raise InputError(
        f"The {role} expects inputs of shape {_shape_text(expected)} but the data {data.name} has {_shape_text(actual)}. "
        f"{how}, or use a {role} made for {_shape_text(actual)} inputs."
    )


def model_input_shape(model) -> tuple | None:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and shape and not isinstance(shape[0], tuple):
        return tuple(shape[1:])
    return None


def _accuracy(model, x: np.ndarray, y: np.ndarray, preprocessing: Preprocessing) -> float:
    from edgedistill.models import predict_logits

    try:
        predictions = predict_logits(model, preprocessing.apply(x)).argmax(axis=1)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - a teacher that cannot take these inputs at all
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise InputError(
            f"The teacher cannot run on the data's inputs of shape {_shape_text(x.shape[1:])} ({first}). "
            "Check it was made for this data (shape, channels)."
        ) from None
    return float(np.mean(predictions == y) * 100.0)


def _candidates(data) -> list[Preprocessing]:
    value_range = data.value_range or (0.0, 255.0)
    found: list[Preprocessing] = []
    for name in NAMED_CONVENTIONS:
        candidate = parse_preprocessing(
            name, value_range=value_range, statistics=lambda: channel_statistics(data.x_train), how="detected"
        )
        if not any(c.scale == candidate.scale and c.offset == candidate.offset for c in found):
            found.append(candidate)
    return found


def resolve_preprocessing(model, data, declared: str | None) -> tuple[Preprocessing, dict[str, Any]]:
    """The teacher's preprocessing, declared or detected, and its report section."""
    value_range = data.value_range or (0.0, 255.0)
    if declared:
        preprocessing = parse_preprocessing(
            declared, value_range=value_range, statistics=lambda: channel_statistics(data.x_train)
        )
        logger.info("   teacher preprocessing: %s (declared)", preprocessing.describe())
        return preprocessing, preprocessing.to_dict()
    x, y = data.x_val[:DETECTION_SAMPLES], data.y_val[:DETECTION_SAMPLES]
    scores = {candidate: _accuracy(model, x, y, candidate) for candidate in _candidates(data)}
    best = max(scores, key=lambda c: scores[c])  # ties keep the first: unit, raw, symmetric, standardize
    others = ", ".join(f"{c.name} {scores[c]:.1f}%" for c in scores if c is not best)
    logger.info(
        "   teacher preprocessing: detected %s: validation accuracy %.1f%% (%s) on %d samples; "
        "declare it with --teacher-preprocessing %s to skip this check",
        best.describe(),
        scores[best],
        others or "no other candidate",
        len(y),
        best.name,
    )
    report = best.to_dict() | {"detection": {c.name: round(scores[c], 2) for c in scores}, "detection_samples": int(len(y))}
    return best, report


def apply_preprocessing(model, preprocessing: Preprocessing | None):
    """The teacher taking raw values: tf_keras models get a ``preprocess`` first layer; others are wrapped."""
    from edgedistill._keras import keras
    from edgedistill.models import ExternalTeacher
    from edgedistill.preprocessing import with_preprocessing

    if preprocessing is None or preprocessing.is_identity:
        return model
    if isinstance(model, keras.Model):
        return with_preprocessing(model, preprocessing)
    return ExternalTeacher(
        lambda x: model(preprocessing.apply(x)),
        description=f"{getattr(model, 'description', 'teacher')} after {preprocessing.formula()}",
        num_params=model.count_params() if hasattr(model, "count_params") else 0,
    )


def class_order_mapping(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[int, int] | None:
    """``{data class: teacher output}`` when the predictions follow the labels through one consistent,
    non-identity permutation (each class mostly mapped to one output, no two to the same); else ``None``."""
    present = np.unique(labels)
    mapping: dict[int, int] = {}
    for label in present:
        counts = np.bincount(predictions[labels == label], minlength=num_classes)
        target = int(counts.argmax())
        if counts[target] < 0.5 * counts.sum():
            return None
        mapping[int(label)] = target
    if len(set(mapping.values())) != len(mapping) or all(k == v for k, v in mapping.items()):
        return None
    return mapping


def _class_order_error(mapping: dict[int, int], accuracy: float, remapped: float, names: tuple[str, ...]) -> InputError:
    moved = [(label, output) for label, output in mapping.items() if label != output]
    shown = ", ".join(f"'{names[label]}' ({label}) as output {output}" for label, output in moved[:10])
    teacher_order = list(names)
    for label, output in mapping.items():
        teacher_order[output] = names[label]
    return InputError(
        f"The teacher's classes are in another order than the data's: data class {shown}"
        f"{' ...' if len(moved) > 10 else ''} (validation accuracy {accuracy:.1f}% as given, {remapped:.1f}% with this "
        f"mapping). Pass --class-names {','.join(teacher_order)} (images:DIR), or relabel the data in the teacher's order. "
        "Nothing was trained."
    )


def teacher_gate(
    outputs_val: np.ndarray,
    y_val: np.ndarray,
    class_names: tuple[str, ...],
    *,
    min_accuracy: float | None,
    preprocessing: Preprocessing | None,
    source: str,
    trained_here: bool = False,
    near_chance_stops: bool = True,
) -> dict[str, Any]:
    """Measure and print the teacher's validation accuracy; stop (InputError, exit 2) when it is unusable."""
    predictions = np.asarray(outputs_val).argmax(axis=1)
    labels = np.asarray(y_val)
    accuracy = float(np.mean(predictions == labels) * 100.0)
    chance = chance_accuracy(labels)
    top = int(np.bincount(predictions).argmax())
    top_share = float(np.mean(predictions == top) * 100.0)
    logger.info("   teacher: validation accuracy %.2f%% on %d samples (chance %.2f%%)", accuracy, len(labels), chance)
    report = {
        "val_accuracy": accuracy,
        "chance_accuracy": chance,
        "num_val": int(len(labels)),
        "most_predicted_class": class_names[top] if top < len(class_names) else str(top),
        "most_predicted_share": top_share,
    }
    mapping = (
        None if trained_here else class_order_mapping(predictions, labels, max(len(class_names), int(predictions.max()) + 1))
    )
    if mapping is not None:
        remapped = float(np.mean(predictions == np.vectorize(mapping.get)(labels)) * 100.0)
        if remapped >= accuracy + PERMUTATION_GAIN_POINTS:
            raise _class_order_error(mapping, accuracy, remapped, class_names)
    near_chance = near_chance_stops and accuracy <= chance + CHANCE_MARGIN_POINTS
    if near_chance or (min_accuracy is not None and accuracy < min_accuracy):
        limit = f"near chance ({chance:.1f}%)" if near_chance else f"below --min-teacher-accuracy {min_accuracy:g}"
        used = preprocessing.describe() if preprocessing is not None else "none"
        if trained_here:
            raise InputError(
                f"The teacher trained here ({source}) scores {accuracy:.1f}% on the validation split, {limit}; it "
                f"predicted '{report['most_predicted_class']}' for {top_share:.0f}% of the inputs. Likely causes: the "
                "--learning-rate, too few --teacher-epochs, or labels that do not belong to the inputs. No student was trained."
            )
        raise InputError(
            f"The teacher {source} scores {accuracy:.1f}% on the validation split, {limit}; it predicted "
            f"'{report['most_predicted_class']}' for {top_share:.0f}% of the inputs. Likely causes: its preprocessing "
            f"(used: {used}; declare it with --teacher-preprocessing unit|raw|symmetric|standardize|SCALE,OFFSET), its "
            "class order (--class-names), or a teacher trained on another data set. Nothing was trained."
        )
    return report


__all__ = [
    "teacher_input_shape",
    "check_input_shape",
    "model_input_shape",
    "resolve_preprocessing",
    "apply_preprocessing",
    "class_order_mapping",
    "teacher_gate",
    "DETECTION_SAMPLES",
]
