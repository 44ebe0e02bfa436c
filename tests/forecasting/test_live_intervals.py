"""The live ``predictions`` publish the backtest's adapted intervals: calibrated on the stored forecasts' realized
errors and the bars (``forecasting.bands.adapt_new_forecasts``), the model's own bounds only while warming up."""

import numpy as np
import pandas as pd
from dagster import materialize

from lstm_pipeline.assets.predictions import predictions
from lstm_pipeline.forecasting.bands import adapt_history_start, adapt_new_forecasts
from lstm_pipeline.forecasting.batch import forecast_windows
from lstm_pipeline.market.calendar import parse_window_key, session_windows
from lstm_pipeline.resources.model_store import LocalModelStore
from tests.forecasting.conftest import saved_model, sim_bars, tiny_config
from tests.helpers import range_tags, register_windows

SYMBOL = "AAPL"
BOUNDS = ["lower_80", "upper_80", "lower_95", "upper_95"]


def earlier_forecasts(bars: pd.DataFrame, first: str, last: str) -> pd.DataFrame:
    """Stored week-ahead forecasts (last close + 0.05%, a fixed +-0.1% band) as of every window in [first, last)."""
    windows = session_windows(first, last)
    grid = pd.DatetimeIndex(bars["window_start"])
    close = bars["close"].to_numpy()
    frames = []
    for as_of in windows:
        position = grid.get_loc(as_of)
        targets = grid[position + 1 : position + 131]
        predicted = close[position] * 1.0005
        frames.append(pd.DataFrame({
            "symbol": SYMBOL, "as_of_window": as_of, "horizon_step": np.arange(1, len(targets) + 1),
            "target_window": targets, "predicted_close": predicted, "lower_80": predicted * 0.999,
            "upper_80": predicted * 1.001, "lower_95": predicted * 0.998, "upper_95": predicted * 1.002,
            "last_close": close[position], "forecast_mode": "recursive", "model_version": "old",
        }))
    return pd.concat(frames, ignore_index=True)


def test_live_forecasts_carry_the_adapted_intervals(instance, store, tmp_path):
    models_dir = tmp_path / "models"
    saved_model(models_dir, SYMBOL, tiny_config(SYMBOL, "recursive"), seed=1,
                bars=sim_bars(SYMBOL, "2025-04-01", "2025-04-20"))
    bars = sim_bars(SYMBOL, "2025-05-01", "2025-07-09", seed=7)
    store.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
    earlier = earlier_forecasts(bars, "2025-05-05", "2025-06-30")
    store.replace_forecasts(earlier, pd.DataFrame(), earlier[["symbol", "as_of_window"]].drop_duplicates()
                            .itertuples(index=False))
    keys = register_windows(instance, "2025-07-07", "2025-07-08")[:3]

    result = materialize(
        [predictions], instance=instance, tags=range_tags([SYMBOL], keys),
        resources={"store": store, "model_store": LocalModelStore(models_dir=str(models_dir))},
    )
    assert result.success
    windows = [parse_window_key(key) for key in keys]
    stored = store.read_predictions(SYMBOL)
    stored = stored[stored["as_of_window"].isin(windows)].sort_values(["as_of_window", "horizon_step"])

    # What the asset must have published: the model's raw forecast, adapted on the same history.
    model, _ = LocalModelStore(models_dir=str(models_dir)).load_available([SYMBOL])
    history = store.read_bars(SYMBOL, start=adapt_history_start(windows[0]), end=windows[-1] + pd.Timedelta("15min"))
    raw = forecast_windows({SYMBOL: windows}, model, {SYMBOL: history}).rows
    previous = store.read_rows("predictions", ["as_of_window < ?"], [windows[0]])
    expected = adapt_new_forecasts(raw, previous, history).sort_values(["as_of_window", "horizon_step"])

    assert len(stored) == len(expected) > 0
    np.testing.assert_allclose(stored[BOUNDS].to_numpy(dtype=float), expected[BOUNDS].to_numpy(dtype=float),
                               rtol=1e-9)
    # The stored forecasts' errors calibrated them: they are not the model's own conformal bounds.
    assert not np.allclose(stored[BOUNDS].to_numpy(dtype=float), raw.sort_values(["as_of_window", "horizon_step"])
                           [BOUNDS].to_numpy(dtype=float))
    assert (stored["lower_95"] < stored["lower_80"]).all() and (stored["upper_80"] < stored["upper_95"]).all()
    metadata = result.asset_materializations_for_node("predictions")[0].metadata
    assert metadata["interval_adaptation_seconds"].value >= 0.0
