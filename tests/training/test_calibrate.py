"""Calibration: monotone, inside [0, 1], and it fixes a miscalibrated score."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.calibrate import Calibrator, sigmoid
from training.evaluate import calibration_table, expected_calibration_error


def simulated(n: int = 20_000, seed: int = 0):
    """True probability sigmoid(z); the 'model' reports 2.5 z + 1 — overconfident, shifted."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 1.0, n)
    y = (rng.random(n) < sigmoid(z)).astype(int)
    return 2.5 * z + 1.0, y


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_fixes_a_miscalibrated_score(method: str) -> None:
    raw, y = simulated()
    before = expected_calibration_error(calibration_table(y, sigmoid(raw)))
    cal = Calibrator.fit(raw[:10_000], y[:10_000], method=method)
    after = expected_calibration_error(calibration_table(y[10_000:], cal(raw[10_000:])))
    assert before > 0.1
    assert after < 0.03


def test_platt_recovers_the_true_link() -> None:
    raw, y = simulated(n=100_000)
    cal = Calibrator.fit(raw, y)
    assert cal.slope == pytest.approx(1 / 2.5, rel=0.05)
    assert cal.intercept == pytest.approx(-1 / 2.5, abs=0.05)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-30, 30, allow_nan=False), min_size=2, max_size=200),
    st.sampled_from(["platt", "isotonic"]),
)
def test_calibrated_probabilities_are_monotone_and_in_unit_interval(points, method) -> None:
    raw, y = simulated(n=2_000, seed=3)
    cal = Calibrator.fit(raw, y, method=method)
    x = np.sort(np.asarray(points))
    p = cal(x)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) >= 0)


def test_weights_change_the_fit() -> None:
    raw, y = simulated(n=5_000)
    w = np.where(y == 1, 3.0, 1.0)
    assert Calibrator.fit(raw, y, w).intercept > Calibrator.fit(raw, y).intercept + 0.5


def test_a_backwards_model_and_a_single_outcome_are_refused() -> None:
    raw, y = simulated(n=5_000)
    with pytest.raises(ValueError, match="backwards"):
        Calibrator.fit(-raw, y)
    with pytest.raises(ValueError, match="both outcomes"):
        Calibrator.fit(raw, np.zeros_like(y))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_round_trip_through_plain_numbers(method: str) -> None:
    raw, y = simulated(n=5_000)
    cal = Calibrator.fit(raw, y, method=method)
    again = Calibrator.from_dict(cal.to_dict())
    assert np.array_equal(again(raw), cal(raw))
