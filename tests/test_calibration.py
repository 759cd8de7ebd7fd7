"""Teacher calibration: temperature scaling and the expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest


def test_temperature_scaling_and_ece():
    from edgedistill.distill.calibration import calibrate_logits, expected_calibration_error, fit_temperature

    rng = np.random.default_rng(0)
    rng.integers(0, 5, size=4000)  # (kept: the draws below are the ones the thresholds were set on)
    # calibrated logits: sample labels from softmax(z), then make the model 3x over-confident
    logits = rng.normal(size=(4000, 5)) * 2.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in probabilities])
    overconfident = logits * 3.0
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.15)
    calibration = calibrate_logits(overconfident, labels)
    assert calibration.ece_after < calibration.ece_before / 2
    assert calibration.nll_after < calibration.nll_before
    # predictions unchanged
    assert (calibration.apply(overconfident).argmax(1) == overconfident.argmax(1)).all()
    assert expected_calibration_error(logits, labels) < 3.0  # the true model is calibrated (percent)
