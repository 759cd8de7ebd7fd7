"""Pruning during distillation, kept through QAT with the teacher (distill/pruning.py, distill/qat.py)."""

from __future__ import annotations

import dataclasses

import pytest

from edgedistill.distill import SchemeResult, TrainingArguments
from edgedistill.errors import InputError


def test_prune_then_quantize_with_the_same_training_arguments(digits, tiny_teacher):
    """One quick epoch: both stages take TrainingArguments and return a SchemeResult with the measured sparsity."""
    from edgedistill.distill import prune_distill, quantize_distill_pruned
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig

    data = dataclasses.replace(digits, x_train=digits.x_train[:320], y_train=digits.y_train[:320])
    training = TrainingArguments(config=TrainConfig(epochs=1, patience=0, verbose=0))
    student = build_model("cnn", data.input_shape, 10, width=0.125, name="student")
    pruned = prune_distill(tiny_teacher, student, data, sparsity=0.5, training=training)
    assert isinstance(pruned, SchemeResult) and "sparsity" not in pruned.history
    assert pruned.report["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert not any(type(layer).__name__ == "PruneLowMagnitude" for layer in pruned.student.layers)  # stripped
    qat = quantize_distill_pruned(tiny_teacher, pruned.student, data, training=training)
    assert qat.report["sparsity"] == pytest.approx(pruned.report["sparsity"], abs=0.01)
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in qat.student.layers)
    with pytest.raises(InputError, match="prune_sparsity"):
        prune_distill(tiny_teacher, student, data, sparsity=1.5, training=training)


def test_quantize_distill_lives_in_distill_and_quantize_knows_nothing_of_it():
    import edgedistill.quantize as quantize
    from edgedistill.distill import quantize_distill
    from edgedistill.distill.qat import quantize_distill as same

    import ast

    assert quantize_distill is same
    assert not hasattr(quantize, "quantize_distill")
    tree = ast.parse(open(quantize.__file__).read())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name and name.startswith("edgedistill.distill")]


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_prune_distill_qat_int8_keeps_sparsity():
    from edgedistill.convert import convert_keras_model
    from edgedistill.data import load_dataset
    from edgedistill.distill.pruning import model_sparsity, prune_distill, quantize_distill_pruned, tflite_weight_sparsity
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig, accuracy, train_classifier

    data = load_dataset("digits")
    config = TrainConfig(epochs=3, patience=0, verbose=0)
    teacher = build_model("cnn", data.input_shape, 10, width=0.25, name="teacher")
    train_classifier(teacher, data, config=config)
    student = build_model("cnn", data.input_shape, 10, width=0.25, name="student")
    pruned = prune_distill(teacher, student, data, sparsity=0.5, training=TrainingArguments(config=config))
    assert pruned.report["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert not any(type(layer).__name__ == "PruneLowMagnitude" for layer in pruned.student.layers)  # stripped
    qat = quantize_distill_pruned(
        teacher, pruned.student, data, training=TrainingArguments(config=TrainConfig(epochs=1, patience=0, verbose=0))
    ).student
    assert model_sparsity(qat) == pytest.approx(0.5, abs=0.01)
    content = convert_keras_model(qat, representative_data=data.x_train)
    assert tflite_weight_sparsity(content) >= 0.49  # int8 rounding can only add zeros
    assert accuracy(qat, data.x_val, data.y_val) > 30.0  # chance is 10
