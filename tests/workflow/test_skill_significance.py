"""The skill gate's evidence: ``accuracy_metrics.skill_p_value``, a Diebold-Mariano test on |model| - |naive|
errors whose variance accounts for overlapping horizons. A model no better than naive opens the gate about as often
as the significance level says, however correlated its errors; a clearly better one opens it; a span too short
for the horizon gives no p-value at all."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lstm_pipeline.evaluation.accuracy import accuracy_metrics
from lstm_pipeline.market.calendar import session_windows

# Seven weeks with no holiday (35 sessions, 910 windows): a month span (546 windows) of targets ends at W[-1].
W = session_windows("2025-07-07", "2025-08-23")
STEP = 26  # the 1_day bucket: forecasts from neighbouring origins share 25 windows of path


def overlapping(rng: np.random.Generator, n: int, horizon: int) -> np.ndarray:
    """A loss differential with the autocorrelation of ``horizon``-step errors: a moving sum of ``horizon``
    independent shocks per target (unit variance)."""
    shocks = rng.standard_normal(n + horizon - 1)
    return np.convolve(shocks, np.ones(horizon), "valid") / np.sqrt(horizon)


def validations(differential: np.ndarray, step: int = STEP) -> pd.DataFrame:
    """Validations at ``step`` whose model error is 1 + differential and naive error 1 (actual 100, last 101), the
    last target at W[-1]."""
    targets = np.arange(len(W) - len(differential), len(W))
    model_error = np.clip(1.0 + differential, 0.0, None)
    return pd.DataFrame({
        "symbol": "AAPL",
        "as_of_window": W[targets - step],
        "target_window": W[targets],
        "horizon_step": step,
        "model_version": "v1",
        "predicted_close": 100.0 + model_error,
        "actual_close": 100.0,
        "last_close": 101.0,
        "naive_abs_error_pct": 1.0,
        "status": "valid",
    })


def p_value(rows: pd.DataFrame, span: str = "month", bucket: str = "1_day") -> float:
    metrics = accuracy_metrics(rows, pd.DataFrame({"symbol": ["AAPL"], "window_start": [W[-1]]})).rows
    picked = metrics[(metrics["span"] == span) & (metrics["horizon_bucket"] == bucket)]
    assert len(picked) == 1
    return float(picked["skill_p_value"].iloc[0])


def test_a_model_no_better_than_naive_opens_the_gate_about_as_often_as_the_level_says():
    rng = np.random.default_rng(7)
    found = np.array([p_value(validations(0.3 * overlapping(rng, 546, STEP))) for _ in range(150)])
    assert np.isfinite(found).all()
    assert 0.0 < np.mean(found < 0.05) <= 0.10  # nominal 5%; a plain t-test on these rejects about half the time
    assert 0.3 < np.median(found) < 0.7


def test_one_lucky_stretch_of_overlapping_errors_is_not_evidence():
    # A month of day-ahead errors of a model no better than naive, which a test ignoring the overlap calls
    # significant (this realization's iid t-test p-value is tiny: 21 independent errors look like 546).
    rng = np.random.default_rng(1)
    differential = 0.3 * overlapping(rng, 546, STEP)
    assert stats.ttest_1samp(differential, 0.0, alternative="less").pvalue < 1e-5
    assert p_value(validations(differential)) > 0.2


def test_a_clearly_better_model_gets_a_small_p_value_and_a_worse_one_a_large_one():
    rng = np.random.default_rng(11)
    noise = 0.3 * overlapping(rng, 546, STEP)
    assert p_value(validations(noise - 0.5)) < 0.001
    assert p_value(validations(noise + 0.5)) > 0.999
    assert p_value(validations(np.full(546, -0.2))) == 0.0  # never worse than naive: certain
    assert p_value(validations(np.zeros(546))) != p_value(validations(np.zeros(546)))  # never different: unknown


def test_a_span_too_short_for_the_horizon_has_no_p_value():
    rng = np.random.default_rng(5)
    week_ahead = validations(0.3 * overlapping(rng, 546, 130) - 0.5, step=130)
    assert np.isnan(p_value(week_ahead, span="week", bucket="1_week"))  # one week of week-ahead errors
    assert p_value(week_ahead, span="month", bucket="1_week") < 0.05


@pytest.mark.parametrize("step", [1, 4])
def test_short_horizons_need_fewer_windows(step):
    rng = np.random.default_rng(step)
    rows = validations(0.3 * overlapping(rng, 130, step) - 0.2, step=step)
    bucket = {1: "1_step", 4: "1_hour"}[step]
    assert p_value(rows, span="week", bucket=bucket) < 0.05
