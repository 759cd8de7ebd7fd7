"""Budget-driven student selection (pruning is in test_pruning.py)."""

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
