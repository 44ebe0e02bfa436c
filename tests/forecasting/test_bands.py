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


def last_close_model(bands: pd.DataFrame, width: pd.Series | None = None, noise: float = 0.0, seed: int = 5):
    """Prediction rows of a "model" around the last close (optionally noisy) with a fixed per-step band."""
    model = bands[["as_of_window", "horizon_step", "target_window", "last_close"]].assign(symbol="TEST")
    shock = np.random.default_rng(seed).standard_normal(len(model)) * noise
    model["predicted_close"] = model["last_close"] * np.exp(shock)
    if width is not None:
        half = width.reindex(model["horizon_step"]).to_numpy()
        for level, factor in (("80", 1.0), ("95", 1.5)):
            model[f"lower_{level}"] = model["predicted_close"] * np.exp(-factor * half)
            model[f"upper_{level}"] = model["predicted_close"] * np.exp(factor * half)
    return model


def test_default_adaptation_restores_both_levels_after_volatility_doubles():
    sessions = 160
    half = sessions * SLOTS_PER_SESSION // 2
    sigma = np.where(np.arange(sessions * SLOTS_PER_SESSION) < half, 0.002, 0.004)
    bars = synthetic_bars("2024-01-02", sessions, sigma=sigma, seed=4)
    origins = walk_forward_origins(bars)
    bands = with_actual(baseline_bands(bars, origins, 26, kind="naive"), bars)
    first = bands[bands["as_of_window"] < origins[half - 26]].dropna(subset=["actual"])
    fixed = np.log(first["actual"] / first["last_close"]).abs().groupby(first["horizon_step"]).quantile(0.8)
    model = last_close_model(bands, fixed)
    adapted = with_actual(adapt_intervals(model, bars), bars)  # the defaults the assets and the backtest use
    later = adapted["as_of_window"] >= origins[half]
    for step, tolerance in ((1, 0.03), (4, 0.03), (26, 0.06)):
        rows = adapted[later & (adapted["horizon_step"] == step)].dropna(subset=["actual"])
        stale = model.loc[rows.index].assign(actual=rows["actual"])
        assert coverage(stale) < 0.65, (step, coverage(stale))
        assert abs(coverage(rows) - 0.8) < tolerance, (step, coverage(rows))
        assert abs(coverage(rows, "95") - 0.95) < tolerance, (step, coverage(rows, "95"))


def test_adaptation_covers_the_open_and_midday_alike_under_a_strong_time_of_day_profile():
    slot_scale = np.full(SLOTS_PER_SESSION, 0.6)
    slot_scale[0], slot_scale[1], slot_scale[-1] = 4.0, 2.0, 2.5
    bars = synthetic_bars("2024-01-02", 220, slot_scale=slot_scale, seed=6)
    origins = walk_forward_origins(bars)
    bands = with_actual(baseline_bands(bars, origins, 4, kind="naive"), bars)
    realized = bands.dropna(subset=["actual"])
    constant = np.log(realized["actual"] / realized["last_close"]).abs().groupby(realized["horizon_step"]).quantile(0.8)
    model = last_close_model(bands, constant)
    adapted = with_actual(adapt_intervals(model, bars), bars)
    target_slot = (adapted["target_window"].dt.hour * 60 + adapted["target_window"].dt.minute - 570) // 15
    warm = adapted["as_of_window"] >= origins[20 * SLOTS_PER_SESSION]
    step1 = warm & (adapted["horizon_step"] == 1) & adapted["actual"].notna()
    at_open, midday = step1 & (target_slot == 0), step1 & target_slot.between(6, 20)
    stale = model.assign(actual=adapted["actual"])
    # The constant band misses the open far too often and is far too wide midday ...
    assert coverage(stale[at_open]) < 0.5 and coverage(stale[midday]) > 0.85
    # ... the adapted band covers both as nominal, and scores better than the constant one.
    assert abs(coverage(adapted[at_open]) - 0.8) < 0.08, coverage(adapted[at_open])
    assert abs(coverage(adapted[midday]) - 0.8) < 0.03, coverage(adapted[midday])
    score = winkler_score(adapted["lower_80"], adapted["upper_80"], adapted["actual"], 0.2)[step1].mean()
    stale_score = winkler_score(stale["lower_80"], stale["upper_80"], stale["actual"], 0.2)[step1].mean()
    assert score < 0.8 * stale_score


def test_the_adaptive_multiplier_brings_a_too_narrow_band_to_nominal_coverage():
    from lstm_pipeline.forecasting.bands import _adaptive_multipliers

    rng = np.random.default_rng(7)
    origins, steps = 6000, 3
    errors = np.abs(rng.standard_normal((origins, steps))) * np.where(np.arange(origins) < 3000, 1.0, 1.6)[:, None]
    deviation = np.log(errors / 1.2816)  # a base quantile right for the first half only
    valid = np.ones_like(deviation, dtype=bool)
    gamma = np.full(steps, 0.01)
    theta = _adaptive_multipliers(deviation, valid, np.ones(origins, dtype=bool), np.array([0.2]), gamma)
    missed = deviation > theta
    assert (deviation[3000:] > 0).mean() > 0.35  # the base band alone covers about 62% in the second half
    np.testing.assert_allclose(missed[3000:].mean(axis=0), 0.2, atol=0.03)
    # The identity behind the guarantee: miss rate = alpha + (theta_end - theta_start) / (gamma n), exactly, where
    # the last realized update of step j is that of origin n - j - 1.
    for j in range(steps):
        realized = origins - j - 1
        end = theta[-1, j]
        assert missed[:realized, j].mean() == pytest.approx(0.2 + end / (0.01 * realized), abs=1e-9)
    # A miss is only known once its target has closed: theta at origin p ignores errors realized after p.
    shaken = deviation.copy()
    shaken[4000:] += 5.0
    later = _adaptive_multipliers(shaken, valid, np.ones(origins, dtype=bool), np.array([0.2]), gamma)
    np.testing.assert_array_equal(theta[: 4000 + 1], later[: 4000 + 1])


def test_a_forecast_without_skill_is_centred_on_the_last_close_and_one_with_skill_keeps_its_move():
    bars = synthetic_bars("2024-01-02", 60, seed=8)
    origins = walk_forward_origins(bars)
    bands = with_actual(baseline_bands(bars, origins, 4, kind="naive"), bars)
    noisy = last_close_model(bands, noise=0.004)  # moves unrelated to what happens
    centre = np.sqrt(adapt_intervals(noisy, bars)[["lower_80", "upper_80"]].prod(axis=1))
    late = (noisy["as_of_window"] >= origins[40 * SLOTS_PER_SESSION]).to_numpy()
    pulled = np.abs(np.log(centre / noisy["last_close"]))[late]
    assert pulled.median() < 0.25 * np.abs(np.log(noisy["predicted_close"] / noisy["last_close"]))[late].median()

    skilled = noisy.copy()
    skilled["predicted_close"] = bands["actual"].fillna(bands["last_close"])  # knows the future: full skill
    centre = np.sqrt(adapt_intervals(skilled, bars)[["lower_80", "upper_80"]].prod(axis=1))
    kept = (np.log(centre / skilled["predicted_close"]).abs() < 1e-9)[late & skilled["predicted_close"].ne(
        skilled["last_close"]).to_numpy()]
    assert kept.mean() > 0.99


def test_histogram_quantiles_track_the_exact_expanding_quantile():
    from lstm_pipeline.forecasting.bands import _walk_forward_quantiles

    rng = np.random.default_rng(11)
    errors = np.abs(rng.standard_t(4, size=(3000, 5)))
    errors[rng.random(errors.shape) < 0.1] = np.nan
    fast = _walk_forward_quantiles(errors, [0.8, 0.95], 50, checkpoint=1)
    for level, table in zip([0.8, 0.95], fast, strict=True):
        for origin in (400, 1500, 2999):
            for j in range(5):
                realized = errors[: origin - j, j]
                exact = np.nanquantile(realized, level)
                assert table[origin, j] == pytest.approx(exact, rel=0.04)  # a bin is 6.4% wide
    # Refreshed every 26 windows, an origin reads only what was realized by the refresh before it.
    coarse = _walk_forward_quantiles(errors, [0.8], 50)[0]
    shaken = errors.copy()
    shaken[1000:] *= 10
    np.testing.assert_array_equal(coarse[:1001], _walk_forward_quantiles(shaken, [0.8], 50)[0][:1001])


def test_live_adaptation_of_new_forecasts_equals_the_backtests():
    from lstm_pipeline.forecasting.bands import adapt_new_forecasts

    bars = synthetic_bars("2024-01-02", 40, seed=12)
    origins = walk_forward_origins(bars)
    bands = with_actual(baseline_bands(bars, origins, 26, kind="naive"), bars)
    model = last_close_model(bands, noise=0.001).drop(columns="actual", errors="ignore")
    model = model.assign(lower_80=model["predicted_close"] * 0.99, upper_80=model["predicted_close"] * 1.01,
                         lower_95=model["predicted_close"] * 0.98, upper_95=model["predicted_close"] * 1.02)
    backtest = adapt_intervals(model, bars)  # every origin at once, as the backtest runs it

    cut, last = origins[900], origins[903]
    earlier = model[model["as_of_window"] < cut].copy()
    earlier[["lower_80", "upper_80"]] = 0.0  # stored bounds do not matter: only forecasts and actuals do
    # A stale stored forecast of a window the run forecasts again is replaced by the new one.
    stale = model[model["as_of_window"] == cut].assign(predicted_close=1.0)
    new = model[(model["as_of_window"] >= cut) & (model["as_of_window"] <= last)]
    live = adapt_new_forecasts(new, pd.concat([earlier, stale]), bars[bars["window_start"] <= last])

    expected = backtest.loc[new.index]
    assert np.isfinite(live[["lower_80", "upper_95"]].to_numpy()).all()
    np.testing.assert_allclose(live[["lower_80", "upper_80", "lower_95", "upper_95"]].to_numpy(),
                               expected[["lower_80", "upper_80", "lower_95", "upper_95"]].to_numpy(), rtol=1e-12)
    pd.testing.assert_frame_equal(live.drop(columns=["lower_80", "upper_80", "lower_95", "upper_95"]),
                                  new.drop(columns=["lower_80", "upper_80", "lower_95", "upper_95"]))
    assert not np.allclose(live["lower_80"], new["lower_80"])  # the model's own bounds were replaced
