"""Features come from returns on the session calendar; future windows follow the exchange calendar."""

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.forecasting.features import (
    DEFAULT_FEATURES,
    FeatureError,
    bar_features,
    calendar_features,
    future_windows,
)
from lstm_pipeline.market.calendar import NEW_YORK, session_windows
from tests.forecasting.conftest import sim_bars


def test_features_are_returns_range_volume_and_time_of_day():
    bars = sim_bars("MSFT", "2025-07-07", "2025-07-09")
    features = bar_features(bars)
    assert list(features.columns[: len(DEFAULT_FEATURES)]) == list(DEFAULT_FEATURES)
    assert len(features) == len(bars) - 1  # the first bar has no previous close
    close = bars["close"].to_numpy()
    np.testing.assert_allclose(features["log_return"].to_numpy(), np.diff(np.log(close)))
    np.testing.assert_allclose(
        features["log_range"].to_numpy(), np.log(bars["high"].to_numpy() / bars["low"].to_numpy())[1:]
    )
    np.testing.assert_allclose(features["log_volume"].to_numpy(), np.log1p(bars["volume"].to_numpy())[1:])
    # Doubling every price leaves every feature unchanged: the model never sees price levels.
    doubled = bars.assign(**{column: bars[column] * 2 for column in ("open", "high", "low", "close")})
    pd.testing.assert_frame_equal(
        bar_features(doubled)[list(DEFAULT_FEATURES)], features[list(DEFAULT_FEATURES)], check_exact=False
    )


def test_time_of_day_wraps_the_session_onto_a_circle():
    windows = pd.DatetimeIndex(
        [pd.Timestamp("2025-07-07 09:30", tz=NEW_YORK), pd.Timestamp("2025-07-07 12:45", tz=NEW_YORK)]
    )
    encoded = calendar_features(windows)
    np.testing.assert_allclose(encoded.iloc[0].to_numpy(), [0.0, 1.0], atol=1e-12)  # slot 0
    np.testing.assert_allclose(encoded.iloc[1].to_numpy(), [0.0, -1.0], atol=1e-12)  # slot 13 of 26: half-way


def test_missing_windows_are_filled_flat_and_out_of_session_rows_dropped():
    bars = sim_bars("AAPL", "2025-07-07", "2025-07-08")
    premarket = bars.iloc[:1].assign(window_start=pd.Timestamp("2025-07-07 08:00", tz=NEW_YORK))
    gappy = pd.concat([premarket, bars.drop(index=[5, 6])], ignore_index=True)
    features = bar_features(gappy)
    assert len(features) == 25  # 26 session windows, the first has no return; the pre-market row is dropped
    assert features["filled"].sum() == 2
    filled = features[features["filled"]]
    assert (filled["log_return"] == 0).all() and (filled["log_range"] == 0).all()


def test_bad_prices_name_the_symbol_and_the_window():
    bars = sim_bars("TSLA", "2025-07-07", "2025-07-08")
    bars.loc[3, "close"] = -1.0
    with pytest.raises(FeatureError, match=r"TSLA.*non-positive prices.*2025-07-07 10:15"):
        bar_features(bars)


def test_one_week_ahead_is_the_session_windows_of_the_next_seven_days():
    last = pd.Timestamp("2025-07-09 11:00", tz=NEW_YORK)  # a Wednesday
    week = future_windows(last)
    assert len(week) == 130  # 07-09 11:15 .. 07-16 11:00 inclusive: 19 + 4 x 26 + 7, five sessions' worth
    assert week[0] == pd.Timestamp("2025-07-09 11:15", tz=NEW_YORK)
    assert week[-1] == pd.Timestamp("2025-07-16 11:00", tz=NEW_YORK)
    holiday_week = future_windows(pd.Timestamp("2025-06-30 15:45", tz=NEW_YORK))
    assert len(holiday_week) == len(session_windows("2025-07-01", "2025-07-08"))  # 07-03 early close, 07-04 shut
    assert len(holiday_week) < 130
    long = future_windows(last, 672)
    assert len(long) == 672
    assert long.equals(session_windows(week[0], long[-1] + pd.Timedelta(minutes=15)))


@pytest.mark.parametrize("as_of", ["2026-03-05 15:00", "2026-10-29 15:00"])  # the weeks of the DST changes
def test_one_week_ahead_across_a_dst_change_is_130_windows(as_of):
    week = future_windows(pd.Timestamp(as_of, tz=NEW_YORK))
    assert len(week) == 130
    assert week[-1].strftime("%H:%M") == "15:00"  # the same New York wall-clock time a week later
