"""forecast_windows: a run's (symbol, as-of window) pairs in one compiled call per architecture, equal to forecasting
each window alone; a pair that cannot be forecast is skipped with its kind and reason while the others are forecast;
a forecast outside the sane band is refused, never published."""

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.forecasting import forecaster
from lstm_pipeline.forecasting.batch import (
    PREDICTION_COLUMNS,
    alert_rows,
    forecast_windows,
    sane_band,
    skip_summary,
)
from lstm_pipeline.market.calendar import NEW_YORK, session_windows, week_ahead_windows
from tests.forecasting.conftest import saved_model, sim_bars, tiny_config

LOOKBACK = 8  # tiny_config's


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=NEW_YORK)


@pytest.fixture(scope="module")
def two_symbols(tmp_path_factory):
    """AAPL and MSFT: recursive models of one architecture, bars to 2025-06-30 (the week after crosses July 4th)."""
    folder = tmp_path_factory.mktemp("models")
    bars = {symbol: sim_bars(symbol, "2025-06-02", "2025-07-01", seed=2) for symbol in ("AAPL", "MSFT")}
    models = {
        symbol: saved_model(folder, symbol, tiny_config(symbol, "recursive"), seed=index, bars=bars[symbol],
                            head_gain=2.0)
        for index, symbol in enumerate(bars)
    }
    return models, bars


def test_all_windows_of_a_run_go_through_one_compiled_call_and_equal_one_window_at_a_time(two_symbols):
    models, bars = two_symbols
    # 06-26 afternoon to 06-30: the weeks ahead reach 07-03 (early close) and 07-04 (shut), so lengths differ.
    windows = list(session_windows("2025-06-26 14:00", "2025-06-30 10:00"))
    wanted = {"AAPL": windows, "MSFT": windows[:-3]}
    together = forecast_windows(wanted, models, bars)
    assert together.compiled_calls == 1 and together.skipped == {}
    lengths = together.rows.groupby(["symbol", "as_of_window"])["horizon_step"].max()
    assert len(lengths) == 2 * len(windows) - 3 and lengths.nunique() > 1  # mixed horizons in one call
    assert list(together.rows.columns) == list(PREDICTION_COLUMNS)

    alone = [forecast_windows({symbol: [window]}, models, bars) for symbol in wanted for window in wanted[symbol]]
    assert all(result.compiled_calls == 1 for result in alone)
    expected = pd.concat([result.rows for result in alone], ignore_index=True)
    pd.testing.assert_frame_equal(
        together.rows.drop(columns=["predicted_close", "lower_80", "upper_80", "lower_95", "upper_95"]),
        expected.drop(columns=["predicted_close", "lower_80", "upper_80", "lower_95", "upper_95"]),
    )
    assert np.abs(together.rows["predicted_close"] - expected["predicted_close"]).max() <= 1e-6

    # Rows: as-of window W, its week ahead as targets, horizon steps 1..N, the close of W's bar.
    as_of = ny("2025-06-27 10:00")
    rows = together.rows[(together.rows["symbol"] == "AAPL") & (together.rows["as_of_window"] == as_of)]
    assert pd.DatetimeIndex(rows["target_window"]).equals(week_ahead_windows(as_of))
    assert list(rows["horizon_step"]) == list(range(1, len(rows) + 1))
    aapl = bars["AAPL"].set_index("window_start")
    assert (rows["last_close"] == aapl.loc[as_of, "close"]).all()
    assert (rows["model_version"] == models["AAPL"].version).all()


def test_the_run_is_split_only_when_one_call_would_hold_too_many_chains(two_symbols):
    models, bars = two_symbols
    windows = list(session_windows("2025-06-27 09:30", "2025-06-27 12:00"))  # 10 windows
    split = forecast_windows({"AAPL": windows}, models, bars, max_chains_per_call=4 * LOOKBACK)
    assert split.compiled_calls == 3  # 4 + 4 + 2 windows
    whole = forecast_windows({"AAPL": windows}, models, bars)
    assert np.abs(split.rows["predicted_close"] - whole.rows["predicted_close"]).max() <= 1e-6


def test_one_symbols_problems_skip_only_its_windows(two_symbols, tmp_path):
    models, bars = two_symbols
    as_of = [ny("2025-06-27 10:00"), ny("2025-06-27 10:15")]
    broken = dict(bars)
    broken["MSFT"] = bars["MSFT"].copy()
    broken["MSFT"].loc[len(broken["MSFT"]) - 200, "close"] = -1.0  # a bar no model can read
    gappy = bars["AAPL"][bars["AAPL"]["window_start"] != as_of[1]]  # AAPL has no bar for its second window
    broken["AAPL"] = gappy
    direct = saved_model(tmp_path, "TSLA", tiny_config("TSLA", "direct", horizon_steps=26), seed=0,
                         bars=sim_bars("TSLA", "2025-06-02", "2025-07-01"))
    broken["TSLA"] = sim_bars("TSLA", "2025-06-02", "2025-07-01")
    broken["GOOGL"] = sim_bars("GOOGL", "2025-06-27", "2025-07-01")  # starts on the as-of day: too little history
    wanted = {symbol: as_of for symbol in ("AAPL", "MSFT", "TSLA", "GOOGL", "AMZN")}
    result = forecast_windows(
        wanted,
        {**models, "TSLA": direct, "GOOGL": models["AAPL"]},
        broken,
        unavailable={"AMZN": "Model for AMZN: models/AMZN/model.keras is missing; retrain it."},
    )
    kinds = {pair: kind for pair, (kind, _) in result.skipped.items()}
    assert kinds == {
        ("AAPL", as_of[1]): "missing_as_of_bar",
        ("MSFT", as_of[0]): "bad_bars",
        ("MSFT", as_of[1]): "bad_bars",
        ("TSLA", as_of[0]): "horizon_too_long",
        ("TSLA", as_of[1]): "horizon_too_long",
        ("GOOGL", as_of[0]): "insufficient_bars",
        ("GOOGL", as_of[1]): "insufficient_bars",
        ("AMZN", as_of[0]): "model_unavailable",
        ("AMZN", as_of[1]): "model_unavailable",
    }
    assert result.predicted == {("AAPL", as_of[0])}
    reasons = {pair: reason for pair, (_, reason) in result.skipped.items()}
    assert "AAPL has no usable stored bar for 2025-06-27 10:15" in reasons[("AAPL", as_of[1])]
    assert "non-positive prices" in reasons[("MSFT", as_of[0])] and "re-fetch market_bars for MSFT" in reasons[
        ("MSFT", as_of[0])]
    assert "direct with a 26-step horizon and cannot forecast the 115 steps" in reasons[("TSLA", as_of[0])]
    assert "GOOGL has 2 session windows of returns up to 2025-06-27 10:00" in reasons[("GOOGL", as_of[0])]
    assert reasons[("AMZN", as_of[0])].startswith("Model for AMZN: ")

    alerts = alert_rows(result.skipped, "predictions", "run-1")
    assert len(alerts) == 9 and set(alerts.loc[alerts["symbol"] == "AMZN", "severity"]) == {"error"}
    assert set(alerts.loc[alerts["symbol"] == "GOOGL", "severity"]) == {"warning"}
    assert skip_summary(result.skipped)[("MSFT", "bad_bars")][0] == 2


def test_the_week_ahead_across_a_dst_change_fits_a_direct_model_trained_for_130_steps(tmp_path):
    bars = sim_bars("AAPL", "2026-02-02", "2026-03-06")
    model = saved_model(tmp_path, "AAPL", tiny_config("AAPL", "direct", horizon_steps=130), seed=0, bars=bars)
    spring = ny("2026-03-05 15:00")  # clocks go forward on 2026-03-08
    result = forecast_windows({"AAPL": [spring]}, {"AAPL": model}, {"AAPL": bars})
    assert result.skipped == {}
    assert len(result.rows) == 130 and result.rows["target_window"].iloc[-1] == ny("2026-03-12 15:00")


def test_an_exploding_model_is_refused_with_an_alert_not_published(tmp_path):
    bars = sim_bars("AAPL", "2025-06-02", "2025-06-21")
    exploding = saved_model(tmp_path, "AAPL", tiny_config("AAPL", "direct", horizon_steps=130), seed=0, bars=bars,
                            head_gain=1e4)
    as_of = ny("2025-06-20 15:45")
    result = forecast_windows({"AAPL": [as_of]}, {"AAPL": exploding}, {"AAPL": bars})
    assert result.rows.empty and result.predicted == set()
    ((kind, reason),) = result.skipped.values()
    assert kind == "forecast_out_of_bounds"
    assert reason.startswith("The forecast for AAPL as of 2025-06-20 15:45 reaches ")
    assert "outside the sane band of +-50%, so it was not published" in reason


def test_non_finite_outputs_are_refused_per_window(two_symbols, monkeypatch):
    models, bars = two_symbols
    windows = [ny("2025-06-27 10:00"), ny("2025-06-27 10:15")]
    real = forecaster.compiled_outputs

    def nan_in_the_second_window(config, weights, history, exogenous):
        outputs = real(config, weights, history, exogenous)
        outputs[:, 1, 5] = np.nan
        return outputs

    monkeypatch.setattr(forecaster, "compiled_outputs", nan_in_the_second_window)
    result = forecast_windows({"AAPL": windows}, models, bars)
    assert result.predicted == {("AAPL", windows[0])}
    kind, reason = result.skipped[("AAPL", windows[1])]
    assert kind == "forecast_out_of_bounds" and "is not finite (NaN or inf)" in reason


def test_the_sane_band_is_50_percent_within_a_week_and_widens_as_the_square_root_of_weeks():
    assert sane_band(1) == sane_band(130) == pytest.approx(0.5)
    assert sane_band(4 * 130) == pytest.approx(1.0)
