"""The teacher before any training: preprocessing declared or detected, the gate, class order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import invoke


def _copy(model):
    from edgedistill._keras import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _in_front(model, scale: float, offset: float = 0.0):
    """``model`` fed ``x * scale + offset``: a teacher expecting other inputs than ``model``'s."""
    from edgedistill._keras import keras

    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, _copy(model)(keras.layers.Rescaling(scale, offset=offset)(inputs)), name="teacher")


@pytest.fixture(scope="module")
def teachers(tiny_teacher, tmp_path_factory):
    """tiny_teacher was trained on the raw digits (0..16); variants expecting x/16, x/8-1, a class
    permutation, and one that always answers class 0."""
    folder = tmp_path_factory.mktemp("teachers")
    paths = {"raw": folder / "raw.keras"}
    tiny_teacher.save(paths["raw"])
    for name, (scale, offset) in {"unit": (16.0, 0.0), "symmetric": (8.0, 8.0)}.items():
        paths[name] = folder / f"{name}.keras"
        _in_front(tiny_teacher, scale, offset).save(paths[name])
    permuted = _copy(tiny_teacher)
    kernel, bias = permuted.layers[-1].get_weights()
    order = np.array([3, 0, 1, 2, 4, 5, 6, 7, 8, 9])  # output k holds what class order[k] held
    permuted.layers[-1].set_weights([kernel[:, order], bias[order]])
    paths["permuted"] = folder / "permuted.keras"
    permuted.save(paths["permuted"])
    constant = _copy(tiny_teacher)
    kernel, bias = constant.layers[-1].get_weights()
    constant.layers[-1].set_weights([np.zeros_like(kernel), np.eye(len(bias))[0].astype(np.float32)])
    paths["chance"] = folder / "chance.keras"
    constant.save(paths["chance"])
    return paths


@pytest.mark.parametrize("expected", ["raw", "unit", "symmetric"])
def test_teacher_preprocessing_is_detected(teachers, digits, expected):
    from edgedistill.models import load_model_file
    from edgedistill.teachers import resolve_preprocessing

    preprocessing, report = resolve_preprocessing(load_model_file(teachers[expected]), digits, None)
    assert preprocessing.name == expected and preprocessing.how == "detected"
    assert report["detection"][expected] == max(report["detection"].values())


def test_declared_preprocessing_is_used_as_given(teachers, digits):
    from edgedistill.models import load_model_file
    from edgedistill.teachers import resolve_preprocessing

    preprocessing, report = resolve_preprocessing(load_model_file(teachers["unit"]), digits, "0.0625,0")
    assert preprocessing.name == "affine" and report["how"] == "declared" and "detection" not in report


def _assert_stopped_before_training(result, run_dir, fragment: str) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "failed" and report["error"]["stage"] == "teacher"
    assert not (run_dir / "student_float.keras").exists() and "distill" not in report.get("stages", {})
    return errors[0]


def test_a_teacher_at_chance_stops_the_run_before_training(teachers, tmp_path):
    result = invoke("run", "--teacher", teachers["chance"], "--output-dir", tmp_path, "--run-name", "chance", "--verbose", "0")
    error = _assert_stopped_before_training(result, tmp_path / "chance", "near chance")
    assert "predicted '0'" in error and "--teacher-preprocessing" in error and "--class-names" in error


def test_min_teacher_accuracy_stops_a_weak_teacher(teachers, tmp_path):
    result = invoke(
        "run",
        "--teacher",
        teachers["raw"],
        "--min-teacher-accuracy",
        "99.9",
        "--output-dir",
        tmp_path,
        "--run-name",
        "weak",
        "--verbose",
        "0",
    )
    _assert_stopped_before_training(result, tmp_path / "weak", "below --min-teacher-accuracy 99.9")


def test_a_permuted_teacher_is_reported_as_a_class_order_mismatch(teachers, tmp_path):
    result = invoke("run", "--teacher", teachers["permuted"], "--output-dir", tmp_path, "--run-name", "perm", "--verbose", "0")
    error = _assert_stopped_before_training(result, tmp_path / "perm", "another order than the data's")
    # data class 3 comes out as output 0, 0 as 1, 1 as 2, 2 as 3; the fix lists the teacher's order
    assert "'0' (0) as output 1" in error and "'3' (3) as output 0" in error
    assert "--class-names 3,0,1,2,4,5,6,7,8,9" in error


def test_unknown_preprocessing_name_lists_the_valid_ones(teachers, tmp_path):
    result = invoke("run", "--teacher", teachers["raw"], "--teacher-preprocessing", "unti", "--output-dir", tmp_path)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Unknown preprocessing 'unti'. Expected one of: unit, raw, symmetric, standardize" in errors[0]


def test_class_order_mapping():
    from edgedistill.teachers import class_order_mapping

    labels = np.repeat(np.arange(4), 25)
    assert class_order_mapping(labels, labels, 4) is None  # identity
    swapped = np.array([1, 0, 2, 3])[labels]
    assert class_order_mapping(swapped, labels, 4) == {0: 1, 1: 0, 2: 2, 3: 3}
    assert class_order_mapping(np.zeros_like(labels), labels, 4) is None  # not a permutation
