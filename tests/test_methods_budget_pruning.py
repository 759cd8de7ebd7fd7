"""Budget-driven student selection and pruning through distillation, QAT and int8 export."""

from __future__ import annotations

import pytest

from edgedistill.errors import InputError


def test_budget_bisects_to_the_largest_width_that_fits(monkeypatch):
    """The bisection over the width ladder, with measurements faked as 10 KB per unit of width."""
    from edgedistill import budget as budget_mod

    measured = []

    def fake_measure(preset, input_shape, num_classes, width, *, budget, seed=0):
        measured.append(width)
        flash = int(width * 10 * 1024)
        return budget_mod.StudentMeasurement(
            preset, width, int(width * 1000), flash, None, None, flash <= budget.max_flash_kb * 1024
        )

    monkeypatch.setattr(budget_mod, "measure_student", fake_measure)
    choice = budget_mod.select_student_width("dscnn", (8, 8, 1), 10, budget_mod.Budget(max_flash_kb=6.0))
    assert choice.width == 0.5  # 0.5 -> 5 KB fits, 0.75 -> 7.5 KB does not
    assert choice.chosen.fits and not any(m.fits for m in choice.measurements if m.width > 0.5)
    assert len(measured) <= 5 < len(budget_mod.DEFAULT_WIDTHS)  # bisection, not a sweep
    assert choice.to_dict()["chosen"]["width"] == 0.5
    measured.clear()
    assert budget_mod.select_student_width("dscnn", (8, 8, 1), 10, budget_mod.Budget(max_flash_kb=100.0)).width == 2.0
    assert len(measured) == 2  # smallest and largest both fit


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_budget_arena_is_measured_with_tflm():
    from edgedistill.budget import Budget, measure_student

    tight = measure_student("dscnn", (8, 8, 1), 10, 0.125, budget=Budget(max_arena_kb=1.0))
    assert tight.arena_bytes > 1024 and not tight.fits
    assert tight.flash_bytes > 0 and tight.parameters > 0
    bigger = measure_student("dscnn", (8, 8, 1), 10, 0.5, budget=Budget(max_arena_kb=1000.0))
    assert bigger.fits and bigger.flash_bytes > tight.flash_bytes and bigger.arena_bytes >= tight.arena_bytes


def test_budget_no_preset_can_meet():
    from edgedistill.budget import Budget, select_student_width

    with pytest.raises(
        InputError, match=r"No width of preset 'dscnn' meets the budget \(flash <= 0.5 KB, arena <= 0.5 KB\).*KB flash"
    ):
        select_student_width("dscnn", (8, 8, 1), 10, Budget(max_flash_kb=0.5, max_arena_kb=0.5), widths=(0.125, 0.25))
    with pytest.raises(InputError, match="Unknown model preset"):
        select_student_width("resnet", (8, 8, 1), 10, Budget(max_flash_kb=10))
    with pytest.raises(InputError, match="max_arena_kb"):
        Budget(max_arena_kb=0)


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
    pruned, history = prune_distill(teacher, student, data, sparsity=0.5, config=config)
    assert history["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert not any(type(layer).__name__ == "PruneLowMagnitude" for layer in pruned.layers)  # stripped
    qat, _ = quantize_distill_pruned(teacher, pruned, data, config=TrainConfig(epochs=1, patience=0, verbose=0))
    assert model_sparsity(qat) == pytest.approx(0.5, abs=0.01)
    content = convert_keras_model(qat, representative_data=data.x_train)
    assert tflite_weight_sparsity(content) >= 0.49  # int8 rounding can only add zeros
    assert accuracy(qat, data.x_val, data.y_val) > 30.0  # chance is 10
    with pytest.raises(InputError, match="prune_sparsity"):
        prune_distill(teacher, student, data, sparsity=1.5, config=config)
