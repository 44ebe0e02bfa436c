"""Confidence: each of the ten factors moves the way it should on hand-made inputs, the spec's level boundaries hold
exactly, and the configured weights combine them."""

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.evaluation.confidence import (
    SCORE_COLUMNS,
    confidence_level,
    confidence_scores,
    factor_weights,
    forecast_summaries,
    model_test_mase,
)
from lstm_pipeline.market.calendar import session_windows, week_ahead_windows
from lstm_pipeline.settings import ConfidenceFactorWeights
from lstm_pipeline.storage.tables import CONFIDENCE_FACTORS

WEIGHTS = ConfidenceFactorWeights()
WINDOWS = session_windows("2025-06-02", "2025-06-14")  # two weeks (10 sessions)
AS_OF = WINDOWS[-10]  # 2025-06-13 13:15, mid-session


def make_bars(returns: np.ndarray | None = None, volume: np.ndarray | None = None, windows=WINDOWS) -> pd.DataFrame:
    """Bars of ``TEST`` on ``windows`` with the given log returns (seeded noise of sd 0.1% by default)."""
    if returns is None:
        returns = np.random.default_rng(0).normal(0.0, 0.001, len(windows))
    close = 100.0 * np.exp(np.cumsum(returns))
    return pd.DataFrame(
        {
            "symbol": "TEST",
            "window_start": windows,
            "close": close,
            "volume": np.full(len(windows), 1000.0) if volume is None else volume,
        }
    )


def noise(sd: float = 0.001, seed: int = 0, n: int = len(WINDOWS)) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, n)


def forecast(change: float = 0.01, test_mase: float = 0.95, lookback: int = 20, as_of=AS_OF, version="v1"):
    return pd.DataFrame(
        {
            "symbol": ["TEST"],
            "as_of_window": [as_of],
            "model_version": [version],
            "last_close": [100.0],
            "predicted_change": [change],
            "test_mase": [test_mase],
            "lookback_steps": [lookback],
        }
    )


def score(forecasts=None, bars=None, validations=None, predictions=None, weights=WEIGHTS) -> pd.Series:
    frame = confidence_scores(
        forecast() if forecasts is None else forecasts,
        make_bars() if bars is None else bars,
        validations,
        predictions,
        weights,
    )
    assert len(frame) == 1
    return frame.iloc[0]


def factor(name: str, **inputs) -> float:
    return float(score(**inputs)[f"factor_{name}"])


def validations(n: int, model_error: float, naive_error: float, status: str = "valid", inside: bool = True,
                version: str = "v1", end=AS_OF) -> pd.DataFrame:
    targets = session_windows(end - pd.Timedelta(days=3), end)[-n:]  # the windows before ``end``
    return pd.DataFrame(
        {
            "symbol": "TEST",
            "target_window": targets,
            "as_of_window": targets - pd.Timedelta(minutes=15),
            "model_version": version,
            "abs_error_pct": model_error,
            "naive_abs_error_pct": naive_error,
            "status": status,
            "inside_80": inside,
        }
    )


# ------------------------------------------------------------------------------------------------ output


def test_one_row_per_forecast_with_every_factor_in_the_unit_interval():
    frames = pd.concat([forecast(as_of=AS_OF), forecast(as_of=WINDOWS[-1], change=-0.01)], ignore_index=True)
    scores = confidence_scores(frames, make_bars(), None, None, WEIGHTS)
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert list(scores["as_of_window"]) == [AS_OF, WINDOWS[-1]]
    values = scores[[f"factor_{name}" for name in CONFIDENCE_FACTORS]].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()


def test_forecast_summaries_lean_the_way_the_mean_path_does_and_carry_the_models_record():
    targets = week_ahead_windows(AS_OF)
    rows = pd.DataFrame(
        {
            "symbol": "TEST",
            "as_of_window": AS_OF,
            "target_window": targets,
            "predicted_close": np.linspace(99.0, 97.0, len(targets)),
            "last_close": 100.0,
            "model_version": "v1",
        }
    )
    record = {"metrics": {"horizons": {"1_step": {"mase": 0.9}, "1_day": {"mase": 1.1}}}}
    (summary,) = forecast_summaries(rows, {"TEST": model_test_mase(record)}, {"TEST": 48}).itertuples()
    assert summary.predicted_change == pytest.approx(-0.02)
    assert summary.test_mase == pytest.approx(1.0) and summary.lookback_steps == 48
    assert np.isnan(model_test_mase({}))


# ------------------------------------------------------------------------------------------------ factors


def test_model_performance_falls_as_mase_rises_and_a_model_no_better_than_naive_scores_low():
    assert factor("model_performance", forecasts=forecast(test_mase=0.85)) == 1.0
    assert factor("model_performance", forecasts=forecast(test_mase=1.0)) < 0.4
    assert factor("model_performance", forecasts=forecast(test_mase=1.3)) == 0.0
    assert factor("model_performance", forecasts=forecast(test_mase=np.nan)) == 0.5


def test_recent_mase_from_validations_of_the_same_model_moves_model_performance():
    good = factor("model_performance", validations=validations(40, 0.8, 1.0))  # recent MASE 0.8 -> 1
    bad = factor("model_performance", validations=validations(40, 1.2, 1.0))  # recent MASE 1.2 -> 0
    test_only = factor("model_performance")  # test MASE 0.95 -> 0.67
    assert good > test_only > bad
    assert good == pytest.approx((1.0 + test_only) / 2) and bad == pytest.approx(test_only / 2)
    # Another model version's record, too few validations, or validations after the as-of window do not count.
    assert factor("model_performance", validations=validations(40, 1.2, 1.0, version="old")) == test_only
    assert factor("model_performance", validations=validations(10, 1.2, 1.0)) == test_only
    later = validations(40, 1.2, 1.0, end=AS_OF + pd.Timedelta(days=2))
    later = later[later["target_window"] > AS_OF]
    assert factor("model_performance", validations=later) == test_only


def test_data_quality_is_the_share_of_the_lookback_with_a_usable_bar():
    assert factor("data_quality") == 1.0
    bars = make_bars()
    position = WINDOWS.get_loc(AS_OF)
    dropped = bars.drop(index=range(position - 9, position - 4))  # 5 of the 20 lookback windows
    assert factor("data_quality", bars=dropped) == pytest.approx(0.75)
    before = bars.drop(index=range(position - 40, position - 25))  # outside the lookback: no effect
    assert factor("data_quality", bars=before) == 1.0


def test_market_volatility_is_high_when_calm_and_low_when_the_last_session_is_turbulent():
    position = WINDOWS.get_loc(AS_OF)
    calm, turbulent = noise(), noise()
    calm[position - 25 : position + 1] *= 0.3
    turbulent[position - 25 : position + 1] *= 3.0
    assert factor("market_volatility", bars=make_bars(calm)) == 1.0
    assert factor("market_volatility", bars=make_bars(turbulent)) == 0.0
    assert 0.2 < factor("market_volatility") < 0.8  # the same volatility throughout: about 0.5


def test_trend_consistency_rewards_a_forecast_with_the_recent_trend():
    rising = noise() + 0.0008
    up = factor("trend_consistency", bars=make_bars(rising), forecasts=forecast(change=0.01))
    down = factor("trend_consistency", bars=make_bars(rising), forecasts=forecast(change=-0.01))
    flat = factor("trend_consistency", bars=make_bars(rising), forecasts=forecast(change=0.0))
    assert up > 0.9 and down < 0.1 and flat == 0.5


def test_volume_analysis_scores_usual_volume_high_and_thin_or_spiking_volume_low():
    position = WINDOWS.get_loc(AS_OF)
    usual = np.full(len(WINDOWS), 1000.0)
    assert factor("volume_analysis", bars=make_bars(volume=usual)) == 1.0
    half, spike = usual.copy(), usual.copy()
    half[position - 3 : position + 1] = 500.0
    spike[position - 3 : position + 1] = 4000.0
    assert factor("volume_analysis", bars=make_bars(volume=half)) == pytest.approx(0.5)
    assert factor("volume_analysis", bars=make_bars(volume=spike)) == 0.0


def test_volume_is_compared_with_the_same_session_slots_so_the_open_spike_is_usual():
    slots = pd.Series(WINDOWS.date).groupby(WINDOWS.date).cumcount().to_numpy()
    u_shape = np.where(slots < 2, 5000.0, 1000.0)  # every session opens heavy
    opening = WINDOWS[WINDOWS.date == AS_OF.date()][1]  # 09:45: the last 4 windows include the open
    assert factor("volume_analysis", bars=make_bars(volume=u_shape), forecasts=forecast(as_of=opening)) == 1.0


def test_technical_indicators_agree_with_a_forecast_along_the_moving_averages_and_rsi():
    rising = noise(sd=0.0005) + 0.001
    up = factor("technical_indicators", bars=make_bars(rising), forecasts=forecast(change=0.01))
    down = factor("technical_indicators", bars=make_bars(rising), forecasts=forecast(change=-0.01))
    assert up > 0.9 and down < 0.1
    assert factor("technical_indicators", bars=make_bars(-rising), forecasts=forecast(change=-0.01)) > 0.9


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        ("2025-06-13 09:30", 0.5),
        ("2025-06-13 09:45", 0.75),
        ("2025-06-13 12:00", 1.0),
        ("2025-06-13 15:30", 0.75),
        ("2025-06-13 15:45", 0.5),
        ("2025-07-03 12:45", 0.5),  # the early close's last window
    ],
)
def test_time_of_day_marks_the_open_and_close_windows_as_noisier(as_of, expected):
    stamp = pd.Timestamp(as_of, tz="America/New_York")
    windows = session_windows("2025-06-02", stamp + pd.Timedelta(minutes=15))
    assert factor("time_of_day", bars=make_bars(noise(n=len(windows)), windows=windows),
                  forecasts=forecast(as_of=stamp)) == expected


def test_market_regime_is_stable_when_the_session_continues_the_week_and_not_when_it_turns():
    position = WINDOWS.get_loc(AS_OF)
    steady = noise() + 0.0005
    turning = steady.copy()
    turning[position - 25 : position + 1] -= 0.001  # the last session falls while the week rose
    assert factor("market_regime", bars=make_bars(steady)) > 0.8
    assert factor("market_regime", bars=make_bars(turning)) < 0.6
    jumpy = steady.copy()
    jumpy[position - 25 : position + 1] *= 4.0  # volatility quadruples: a new regime
    assert factor("market_regime", bars=make_bars(jumpy)) < factor("market_regime", bars=make_bars(steady))


def path(as_of, price: float, halfwidth: float = 1.0) -> pd.DataFrame:
    targets = week_ahead_windows(as_of)
    return pd.DataFrame(
        {
            "symbol": "TEST",
            "as_of_window": as_of,
            "target_window": targets,
            "predicted_close": price,
            "lower_80": price - halfwidth,
            "upper_80": price + halfwidth,
        }
    )


def test_prediction_stability_compares_the_last_forecasts_for_the_same_targets():
    position = WINDOWS.get_loc(AS_OF)
    earlier = WINDOWS[position - 4 : position]

    def stability(earlier_price: float, count: int = 4) -> float:
        rows = pd.concat([*(path(window, earlier_price) for window in earlier[-count:]), path(AS_OF, 100.0)])
        return factor("prediction_stability", predictions=rows)

    assert stability(100.0) == 1.0
    assert stability(100.5) == pytest.approx(0.5)  # half the 80% half-width
    assert stability(101.0) == 0.0
    assert factor("prediction_stability", predictions=path(AS_OF, 100.0)) == 0.5  # no earlier forecast
    assert factor("prediction_stability") == 0.5
    # Only the last four earlier forecasts count: a wild one before them does not.
    old = WINDOWS[position - 5]
    rows = pd.concat([path(old, 150.0), *(path(window, 100.0) for window in earlier), path(AS_OF, 100.0)])
    assert factor("prediction_stability", predictions=rows) == 1.0


def test_historical_accuracy_is_the_recent_share_valid_and_inside_the_80_interval():
    assert factor("historical_accuracy") == 0.5
    assert factor("historical_accuracy", validations=validations(40, 1.0, 1.0)) == 1.0
    missed = validations(40, 1.0, 1.0, status="needs_reprediction", inside=False)
    assert factor("historical_accuracy", validations=missed) == 0.0
    mixed = pd.concat([validations(40, 1.0, 1.0), missed.assign(target_window=missed["target_window"] - pd.Timedelta(
        days=1))])
    assert factor("historical_accuracy", validations=mixed) == pytest.approx(0.5)
    # The as-of window's own validations are made after its forecast (same run): a replay does not count them.
    own = validations(40, 1.0, 1.0, status="needs_reprediction", inside=False, end=AS_OF + pd.Timedelta(minutes=15))
    assert own["target_window"].max() == AS_OF
    assert factor("historical_accuracy", validations=pd.concat([validations(40, 1.0, 1.0), own.tail(1)])) == 1.0
    # An invalid validation is a bad bar, not a bad forecast: not counted.
    bad_bars = validations(40, np.nan, np.nan, status="invalid", inside=False)
    assert factor("historical_accuracy", validations=pd.concat([validations(40, 1.0, 1.0), bad_bars])) == 1.0


# --------------------------------------------------------------------------------------- levels and weights


def test_levels_follow_the_spec_boundaries_exactly():
    values = [0.0, 0.2999, 0.3, 0.4999, 0.5, 0.6999, 0.7, 0.8499, 0.85, 1.0]
    assert list(confidence_level(values)) == [
        "Very Low", "Very Low", "Low", "Low", "Medium", "Medium", "High", "High", "Very High", "Very High",
    ]


def test_confidence_is_the_weighted_sum_of_the_factors_with_its_level():
    row = score(forecasts=forecast(test_mase=0.95))
    factors = np.array([row[f"factor_{name}"] for name in CONFIDENCE_FACTORS])
    weights = np.array([getattr(WEIGHTS, name) for name in CONFIDENCE_FACTORS])
    assert row["confidence"] == pytest.approx(float(factors @ weights))
    assert row["confidence_level"] == confidence_level(row["confidence"])[0]

    only_time = {name: 0.0 for name in CONFIDENCE_FACTORS} | {"time_of_day": 1.0}
    assert score(weights=only_time)["confidence"] == pytest.approx(row["factor_time_of_day"])
    only_model = {name: 0.0 for name in CONFIDENCE_FACTORS} | {"model_performance": 1.0}
    assert score(forecasts=forecast(test_mase=1.3), weights=only_model)["confidence_level"] == "Very Low"


def test_weights_that_do_not_name_the_ten_factors_or_sum_to_one_are_refused():
    with pytest.raises(ValueError, match="must name exactly the ten factors"):
        factor_weights({"model_performance": 1.0})
    with pytest.raises(ValueError, match="sum to 2"):
        factor_weights({name: 0.2 for name in CONFIDENCE_FACTORS})
