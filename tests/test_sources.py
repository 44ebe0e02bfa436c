"""The simulated market and the file replay deliver session bars only, deterministically, never invented."""

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.market.bars import BAR_COLUMNS, MarketDataError
from lstm_pipeline.market.calendar import NEW_YORK, session_windows
from lstm_pipeline.market.simulated import simulate_bars
from lstm_pipeline.resources.market_data import FileMarketData, SimulatedMarketData

NY = NEW_YORK


def test_simulated_bars_are_deterministic_and_range_independent():
    windows = session_windows("2025-06-02", "2025-06-14")
    full = simulate_bars("AAPL", windows, seed=3)
    part = simulate_bars("AAPL", windows[40:60], seed=3)
    pd.testing.assert_frame_equal(part.reset_index(drop=True), full.iloc[40:60].reset_index(drop=True))
    assert not simulate_bars("AAPL", windows, seed=4)["close"].equals(full["close"])
    assert list(full.columns) == list(BAR_COLUMNS)
    assert (full["high"] >= full[["open", "close"]].max(axis=1)).all()
    assert (full["low"] <= full[["open", "close"]].min(axis=1)).all()


def test_simulated_market_is_realistic_enough_to_learn_from():
    windows = session_windows("2023-01-01", "2025-01-01")
    bars = simulate_bars("MSFT", windows, seed=0)
    returns = np.diff(np.log(bars["close"].to_numpy()))
    # volatility clustering: absolute returns are autocorrelated; fat tails: kurtosis well above normal
    assert np.corrcoef(np.abs(returns[1:]), np.abs(returns[:-1]))[0, 1] > 0.1
    assert ((returns - returns.mean()) ** 4).mean() / returns.var() ** 2 > 4
    # intraday U-shape: the first and last windows trade more than midday
    by_slot = bars.groupby(bars["window_start"].dt.strftime("%H:%M"))["volume"].mean()
    assert by_slot["09:30"] > by_slot["12:30"] and by_slot["15:45"] > by_slot["12:30"]
    # distinct symbols behave differently
    tsla = np.diff(np.log(simulate_bars("TSLA", windows, seed=0)["close"].to_numpy()))
    assert tsla.std() > 1.5 * returns.std()


def test_simulated_resource_never_serves_windows_still_delayed():
    source = SimulatedMarketData(seed=1)
    now = pd.Timestamp("2025-07-07 10:31", tz=NY)
    bars = source.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY), now=now)
    assert bars["window_start"].dt.strftime("%H:%M").tolist() == ["09:30", "09:45", "10:00"]


def test_file_replay_drops_out_of_session_rows_and_maps_columns(tmp_path):
    stamps = pd.date_range("2025-07-07 12:00", periods=40, freq="15min", tz="UTC")  # 08:00-17:45 New York
    frame = pd.DataFrame(
        {"ts": stamps.strftime("%Y-%m-%d %H:%M:%S+00:00"), "o": 10.0, "h": 11.0, "l": 9.0, "c": 10.5, "vol": 100}
    )
    frame.to_csv(tmp_path / "AAPL_15m.csv", index=False)
    source = FileMarketData(path=str(tmp_path), column_map={"ts": "window_start", "o": "open", "h": "high",
                                                            "l": "low", "c": "close", "vol": "volume"})
    bars = source.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    assert len(bars) == 26
    assert bars["window_start"].iloc[0] == pd.Timestamp("2025-07-07 09:30", tz=NY)
    assert bars["source"].iloc[0].startswith("file:")


def test_file_replay_errors_name_the_path_and_fix(tmp_path):
    with pytest.raises(MarketDataError, match="does not exist; set market_data.file_path"):
        FileMarketData(path=str(tmp_path / "missing")).fetch_bars(
            "AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY)
        )
    pd.DataFrame({"when": ["x"], "open": [1]}).to_csv(tmp_path / "AAPL.csv", index=False)
    with pytest.raises(MarketDataError, match="no timestamp column"):
        FileMarketData(path=str(tmp_path)).fetch_bars(
            "AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY)
        )
