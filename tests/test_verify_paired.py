"""McNemar's exact test behind "did distillation help" (issue 21): checked against SciPy's binomial test."""

import numpy as np
import pytest
from scipy.stats import binomtest

from edgedistill.verify import mcnemar_exact_p, paired_comparison


@pytest.mark.parametrize("only_first, only_second", [(0, 0), (0, 5), (1, 9), (9, 1), (40, 60), (7, 7), (0, 1), (500, 430)])
def test_the_p_value_is_scipys_two_sided_binomial_test_on_the_discordant_samples(only_first, only_second):
    expected = 1.0 if only_first + only_second == 0 else binomtest(only_first, only_first + only_second, 0.5).pvalue
    assert mcnemar_exact_p(only_first, only_second) == pytest.approx(expected, rel=1e-9)


def test_a_difference_the_split_cannot_resolve_is_called_so():
    labels = np.zeros(1000, dtype=int)
    first, second = labels.copy(), labels.copy()
    first[:6] = 1  # the first alone wrong on 6, the second alone wrong on 3: 3 against 6 discordant samples
    second[6:9] = 1
    result = paired_comparison(labels, first, second)
    assert (result["only_first_right"], result["only_second_right"]) == (3, 6)
    assert result["verdict"] == "not resolved" and result["p_value"] > 0.05


def test_a_resolved_difference_names_the_better_model():
    labels = np.arange(200) % 10
    better, worse = labels.copy(), labels.copy()
    worse[:30] = (labels[:30] + 1) % 10  # 30 samples only the first gets right, 2 only the second
    better[100:102] = (labels[100:102] + 1) % 10
    assert paired_comparison(labels, better, worse)["verdict"] == "better"
    assert paired_comparison(labels, worse, better)["verdict"] == "worse"
    assert paired_comparison(labels, better, better) == {
        "samples": 200,
        "only_first_right": 0,
        "only_second_right": 0,
        "p_value": 1.0,
        "verdict": "not resolved",
    }


def _report_with_paired_test(verdict: str) -> dict:
    paired = {"samples": 1000, "only_distilled_right": 3, "only_scratch_right": 40, "p_value": 1e-8, "verdict": verdict}
    return {
        "verify": {"accuracy": {"int8_tflm": 90.0}},
        "baseline": {
            "method": "scratch",
            "accuracy": {"int8_tflm": 93.7},
            "int8_form": "int8_tflm",
            "gain_points": {"int8_tflm": -3.7},
            "distillation_helped": False,
            "paired_test": paired,
        },
    }


def test_a_report_where_distillation_hurt_names_the_scratch_model_and_another_loss():
    from edgedistill.report import BASELINE_INT8_FILE, render_markdown

    hurt = render_markdown(_report_with_paired_test("hurt"))
    assert "distillation **hurt**" in hurt and BASELINE_INT8_FILE in hurt and "--distillation-loss auto" in hurt
    unresolved = render_markdown(_report_with_paired_test("not resolved"))
    assert "**not resolved**" in unresolved and BASELINE_INT8_FILE not in unresolved


def test_a_hurt_report_after_the_loss_probe_names_its_choice_instead_of_suggesting_auto_again():
    from edgedistill.report import BASELINE_INT8_FILE, render_markdown

    report = _report_with_paired_test("hurt")
    report["student"] = {"loss_probe": {"chosen": "logits_t20", "candidates": {}, "epochs": 2, "seconds": 3.0}}
    hurt = render_markdown(report)
    assert BASELINE_INT8_FILE in hurt and "chose logits_t20 on the validation split already" in hurt
    assert "lets the validation split choose" not in hurt
