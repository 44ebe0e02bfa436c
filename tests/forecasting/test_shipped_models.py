"""The models the project ships in ``models/`` serve out of the box: they load through the store's health check,
say they were trained on the simulated market, carry honest test metrics, and forecast one week of session windows."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lstm_pipeline.forecasting.forecaster import forecast_prices
from lstm_pipeline.forecasting.store import CONFIG_FILE, ModelLoadError, model_version
from lstm_pipeline.market.calendar import session_windows
from lstm_pipeline.resources.model_store import LocalModelStore
from lstm_pipeline.settings import load_settings
from tests.forecasting.conftest import sim_bars

SHIPPED = Path(__file__).resolve().parents[2] / "models"
DEFAULT_SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]


def test_a_model_ships_for_every_default_symbol():
    assert list(load_settings(environ={}).symbols) == DEFAULT_SYMBOLS
    assert sorted(path.name for path in SHIPPED.iterdir() if path.is_dir()) == sorted(DEFAULT_SYMBOLS)


@pytest.mark.parametrize("symbol", DEFAULT_SYMBOLS)
def test_shipped_model_is_labelled_and_its_files_match_its_version(symbol):
    record = json.loads((SHIPPED / symbol / CONFIG_FILE).read_text())
    assert record["symbol"] == symbol
    assert record["trained_on"].startswith("simulated market (seed ")
    selection = record["mode_selection"]
    scores = {mode: selection["validation_log_price_rmse"][mode] for mode in ("recursive", "direct")}
    assert record["forecast_mode"] == selection["chosen"] == min(scores, key=scores.get)
    assert record["version"] == model_version(SHIPPED / symbol, symbol)
    week = record["metrics"]["horizons"]["1_week"]
    assert week["steps"] == 130 and np.isfinite(week["mase"]) and week["mase"] > 0


def test_shipped_models_load_and_forecast_one_week_in_one_batch():
    store = LocalModelStore(models_dir=str(SHIPPED))
    models, failed = store.load_available(DEFAULT_SYMBOLS)
    assert failed == {} and sorted(models) == sorted(DEFAULT_SYMBOLS)
    windows = session_windows("2025-06-02", "2025-06-21")
    bars = {symbol: sim_bars(symbol, "2025-06-02", "2025-06-21", seed=3) for symbol in DEFAULT_SYMBOLS}
    forecasts = forecast_prices(list(models.values()), bars)
    assert sorted(forecasts) == sorted(DEFAULT_SYMBOLS)
    for symbol, forecast in forecasts.items():
        frame = forecast.to_frame()
        # The last bar is the 2025-06-20 close; one week ahead is the 5 sessions 06-23..06-27 (no holiday).
        assert forecast.as_of_window == windows[-1]
        assert len(frame) == 130 and frame["target_window"].iloc[0].strftime("%Y-%m-%d %H:%M") == "2025-06-23 09:30"
        assert (frame["model_version"] == models[symbol].version).all()
        assert np.isfinite(frame["predicted_close"]).all() and (frame["predicted_close"] > 0).all()
        assert (frame["lower_95"] <= frame["lower_80"]).all() and (frame["lower_80"] <= frame["predicted_close"]).all()
        assert (frame["predicted_close"] <= frame["upper_80"]).all() and (frame["upper_80"] <= frame["upper_95"]).all()
        # A week-ahead forecast of a 15-minute model stays within a plausible band of the last close.
        assert abs(np.log(frame["predicted_close"].iloc[-1] / forecast.last_close)) < 0.5


def test_a_shipped_model_whose_config_lost_its_version_is_refused(tmp_path):
    shutil.copytree(SHIPPED / "MSFT", tmp_path / "MSFT")
    path = tmp_path / "MSFT" / CONFIG_FILE
    document = json.loads(path.read_text())
    del document["version"]
    path.write_text(json.dumps(document, indent=2))
    with pytest.raises(ModelLoadError) as refused:
        LocalModelStore(models_dir=str(tmp_path)).load("MSFT")
    message = str(refused.value)
    assert message.startswith(f"Model for MSFT: {path} records no \"version\"")
    assert "retrain it (materialize lstm_model for partition MSFT)" in message
    assert f'set its "version" to "{json.loads((SHIPPED / "MSFT" / CONFIG_FILE).read_text())["version"]}"' in message
