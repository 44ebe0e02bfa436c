"""Walk-forward bands: coverage restored after a volatility change, the time-of-day band sharper, no look-ahead."""

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.forecasting.bands import (
    adapt_intervals,
    baseline_bands,
    walk_forward_origins,
    winkler_score,
)
from lstm_pipeline.market.bars import conform_bars
from lstm_pipeline.market.calendar import SLOTS_PER_SESSION, session_windows


def synthetic_bars(start: str, sessions: int, sigma: np.ndarray | None = None, slot_scale=None, seed: int = 0):
    """Random-walk bars over ``sessions`` sessions from ``start``; per-window volatility ``sigma`` (default 0.002)
    times ``slot_scale[slot]`` (position in the session)."""
    windows = session_windows(start, pd.Timestamp(start) + pd.Timedelta(days=sessions * 1.6))
    days = windows.tz_localize(None).normalize()
    first_days = days.unique()[:sessions]
    windows = windows[days.isin(first_days)]
    n = len(windows)
    vol = np.full(n, 0.002) if sigma is None else sigma[:n]
    if slot_scale is not None:
        day_codes = pd.factorize(windows.tz_localize(None).normalize())[0]
        slot = np.arange(n) - np.searchsorted(day_codes, day_codes)
        vol = vol * np.asarray(slot_scale)[np.minimum(slot, SLOTS_PER_SESSION - 1)]
    returns = np.random.default_rng(seed).standard_normal(n) * vol
    close = 100.0 * np.exp(np.cumsum(returns))
    frame = pd.DataFrame(
        {"symbol": "TEST", "window_start": windows, "open": close, "high": close, "low": close, "close": close,
         "volume": 1000}
    )
    return conform_bars(frame, source="test")


def with_actual(bands: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    return bands.assign(actual=bars.set_index("window_start")["close"].reindex(bands["target_window"]).to_numpy())


def coverage(rows: pd.DataFrame, level: str = "80") -> float:
    inside = (rows["actual"] >= rows[f"lower_{level}"]) & (rows["actual"] <= rows[f"upper_{level}"])
    return float(inside.mean())


def test_winkler_score_is_width_plus_penalty_outside():
    score = winkler_score(np.array([9.0, 9.0, 9.0]), np.array([11.0, 11.0, 11.0]), np.array([10.0, 8.0, 12.5]), 0.2)
    np.testing.assert_allclose(score, [2.0, 2.0 + 10.0 * 1.0, 2.0 + 10.0 * 1.5])
    with pytest.raises(ValueError, match="alpha"):
        winkler_score(np.array([1.0]), np.array([2.0]), np.array([1.5]), 1.5)


def test_coverage_is_restored_after_volatility_doubles():
    sessions = 160
    half = sessions * SLOTS_PER_SESSION // 2
    sigma = np.where(np.arange(sessions * SLOTS_PER_SESSION) < half, 0.002, 0.004)
    bars = synthetic_bars("2024-01-02", sessions, sigma=sigma)
    origins = walk_forward_origins(bars)
    bands = with_actual(baseline_bands(bars, origins, 26, kind="naive"), bars)
    second = bands[bands["as_of_window"] >= origins[half]].dropna()

    # A fixed band fitted on the first half: per step, the 80% quantile of |log(actual / last)|.
    first = bands[bands["as_of_window"] < origins[half - 26]].dropna(subset=["actual"])
    fixed = np.log(first["actual"] / first["last_close"]).abs().groupby(first["horizon_step"]).quantile(0.8)
    # The "model": a slightly noisy, biased point forecast whose own intervals are that fixed band.
    rng = np.random.default_rng(3)
    model = bands[["as_of_window", "horizon_step", "target_window", "last_close"]].assign(symbol="TEST")
    model["predicted_close"] = model["last_close"] * np.exp(0.0005 + 0.0005 * rng.standard_normal(len(model)))
    width = fixed.reindex(model["horizon_step"]).to_numpy()
    model["lower_80"] = model["predicted_close"] * np.exp(-width)
    model["upper_80"] = model["predicted_close"] * np.exp(width)
    adapted = with_actual(adapt_intervals(model, bars, kind="naive", coverages=(0.8,), warmup="nan"), bars)
    adapted_second = adapted[adapted["as_of_window"] >= origins[half]].dropna()

    for step, tolerance in ((1, 0.03), (4, 0.03), (26, 0.06)):
        fixed_cover = coverage(model.assign(actual=adapted["actual"]).loc[second.index][second["horizon_step"] == step])
        assert fixed_cover < 0.65, (step, fixed_cover)
        assert abs(coverage(second[second["horizon_step"] == step]) - 0.8) < tolerance
        assert abs(coverage(second[second["horizon_step"] == step], "95") - 0.95) < tolerance
        assert abs(coverage(adapted_second[adapted_second["horizon_step"] == step]) - 0.8) < tolerance


def test_time_of_day_band_is_sharper_where_the_open_and_close_move_more():
    slot_scale = np.full(SLOTS_PER_SESSION, 0.6)
    slot_scale[0], slot_scale[1], slot_scale[-1] = 4.0, 2.0, 2.5
    # Spans the early close of 2024-07-03 (a 14-window session).
    bars = synthetic_bars("2024-05-01", 120, slot_scale=slot_scale, seed=1)
    origins = walk_forward_origins(bars)
    naive = with_actual(baseline_bands(bars, origins, 4, kind="naive"), bars)
    tod = with_actual(baseline_bands(bars, origins, 4, kind="tod"), bars)
    both = naive["lower_80"].notna() & tod["lower_80"].notna() & naive["actual"].notna()
    step1 = both & (naive["horizon_step"] == 1)
    naive_score = winkler_score(naive["lower_80"], naive["upper_80"], naive["actual"], 0.2)[step1].mean()
    tod_score = winkler_score(tod["lower_80"], tod["upper_80"], tod["actual"], 0.2)[step1].mean()
    assert tod_score < 0.85 * naive_score
    assert abs(coverage(tod[step1]) - 0.8) < 0.03
    assert abs(coverage(naive[step1]) - 0.8) < 0.03
    early_close = tod[tod["as_of_window"].dt.strftime("%Y-%m-%d") == "2024-07-03"]
    assert len(early_close) and np.isfinite(early_close[["lower_80", "upper_95"]].to_numpy()).all()


def test_warm_up_gives_nan_bounds_then_finite_ones():
    bars = synthetic_bars("2024-01-02", 20)
    origins = walk_forward_origins(bars)
    bands = baseline_bands(bars, origins, 4, kind="tod")
    assert bands[bands["as_of_window"] == origins[0]][["lower_80", "upper_95"]].isna().all().all()
    assert np.isfinite(bands[bands["as_of_window"] == origins[-1]][["lower_80", "upper_95"]].to_numpy()).all()


@pytest.mark.parametrize("kind", ["naive", "tod"])
def test_bars_after_an_origin_do_not_change_its_band(kind):
    bars = synthetic_bars("2024-01-02", 40, seed=2)
    origins = walk_forward_origins(bars)
    origin = origins[700]
    shaken = bars.copy()
    later = shaken["window_start"] > origin
    shaken.loc[later, "close"] *= np.exp(np.random.default_rng(9).normal(0, 0.05, int(later.sum())))
    before = baseline_bands(bars, origins, 26, kind=kind, min_errors=20)
    after = baseline_bands(shaken, origins, 26, kind=kind, min_errors=20)
    mine = before["as_of_window"] == origin
    assert np.isfinite(before.loc[mine, "lower_95"]).all()
    pd.testing.assert_frame_equal(before[mine], after[mine])

    model = before[["as_of_window", "horizon_step", "target_window", "last_close"]].assign(
        symbol="TEST", predicted_close=before["last_close"] * 1.001
    )
    shaken_model = model.copy()
    shaken_model.loc[model["as_of_window"] > origin, "predicted_close"] *= 1.2
    adapted = adapt_intervals(model, bars, kind=kind, min_errors=20, warmup="nan")
    adapted_shaken = adapt_intervals(shaken_model, shaken, kind=kind, min_errors=20, warmup="nan")
    assert np.isfinite(adapted.loc[mine, "lower_80"]).all()
    pd.testing.assert_frame_equal(adapted[mine], adapted_shaken[mine])


def test_origin_outside_the_session_is_refused_in_one_sentence():
    bars = synthetic_bars("2024-01-02", 5)
    with pytest.raises(ValueError, match="not the start of a session window"):
        baseline_bands(bars, pd.DatetimeIndex([pd.Timestamp("2024-01-02 20:00", tz="America/New_York")]), 4)
