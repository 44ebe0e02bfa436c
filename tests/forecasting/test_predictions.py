"""predictions: one forecast per symbol-window in the run, batched; broken models skipped with alerts, never
invented; re-runs replace rows and alerts exactly."""

from pathlib import Path

import numpy as np
import pandas as pd
from dagster import AssetCheckSeverity, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.predictions import predictions
from lstm_pipeline.forecasting.forecaster import forecast_prices
from lstm_pipeline.forecasting.store import WEIGHTS_FILE
from lstm_pipeline.market.calendar import parse_window_key
from lstm_pipeline.partitions import market_bars_key
from lstm_pipeline.resources.model_store import LocalModelStore
from lstm_pipeline.resources.storage import ForecastStore
from tests.conftest import register_windows
from tests.forecasting.conftest import saved_model, sim_bars, tiny_config

LOOKBACK = 8  # tiny_config's


def save_tiny(models_dir: Path, symbol: str):
    training_bars = sim_bars(symbol, "2025-06-02", "2025-06-20")
    return saved_model(models_dir, symbol, tiny_config(symbol, "recursive"), seed=1, bars=training_bars)


def test_predictions_skip_broken_models_with_alerts_and_rerun_exactly(
    instance, bars_store, simulated, db_path, tmp_path
):
    keys = register_windows(instance, "2025-07-07", "2025-07-10")  # three full sessions, no holiday in the week after
    models_dir = tmp_path / "models"
    aapl = save_tiny(models_dir, "AAPL")
    save_tiny(models_dir, "MSFT")
    weights = models_dir / "MSFT" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:500])  # a bad copy
    forecast_store = ForecastStore.for_path(db_path)
    model_store = LocalModelStore(models_dir=str(models_dir))
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: str(market_bars_key("AAPL", keys[0])),
        ASSET_PARTITION_RANGE_END_TAG: str(market_bars_key("MSFT", keys[-1])),
    }

    def run():
        resources = {
            "market_data": simulated,
            "bars_store": bars_store,
            "model_store": model_store,
            "forecast_store": forecast_store,
        }
        return materialize([market_bars, predictions], instance=instance, tags=tags, resources=resources)

    first = run()
    assert first.success
    rows = forecast_store.read_predictions()
    alerts = forecast_store.read_alerts()

    # AAPL: every window from the one with LOOKBACK returns stored on, a week of session windows each.
    assert set(rows["symbol"]) == {"AAPL"}
    as_of = sorted(rows["as_of_window"].unique())
    assert [pd.Timestamp(stamp) for stamp in as_of] == [parse_window_key(key) for key in keys[LOOKBACK:]]
    assert (rows.groupby("as_of_window")["horizon_step"].agg(["count", "max"]) == 130).all().all()
    assert (rows["origin_window"] == rows["as_of_window"]).all()
    assert (rows["model_version"] == aapl.version).all()
    assert (rows["window_start"] > rows["as_of_window"]).all()
    assert not rows.duplicated(["symbol", "as_of_window", "horizon_step"]).any()

    # The batched run equals a direct forecast from the same bars.
    last = parse_window_key(keys[-1])
    direct = forecast_prices([aapl], {"AAPL": bars_store.read_bars("AAPL", end=last + pd.Timedelta(minutes=15))})
    stored = rows[rows["as_of_window"] == last].sort_values("horizon_step")
    np.testing.assert_allclose(stored["predicted_close"], direct["AAPL"].predicted_close, rtol=1e-9)

    # MSFT: skipped with the store's sentence, one alert per window; AAPL's first windows lack a full lookback.
    msft = alerts[alerts["symbol"] == "MSFT"]
    assert len(msft) == len(keys) and set(msft["kind"]) == {"model_unavailable"}
    assert (
        msft["message"].iloc[0].startswith("Model for MSFT: ")
        and "model.keras is truncated or corrupt" in (msft["message"].iloc[0])
    )
    short = alerts[alerts["symbol"] == "AAPL"]
    assert len(short) == LOOKBACK and set(short["kind"]) == {"insufficient_bars"}
    assert set(msft["severity"]) == {"error"} and set(short["severity"]) == {"warning"}
    (check,) = first.get_asset_check_evaluations()
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert "Model for MSFT" in check.description and "AAPL has" in check.description
    metadata = first.asset_materializations_for_node("predictions")[0].metadata
    assert metadata["symbol_windows_skipped"].value == len(keys) + LOOKBACK
    assert metadata["compiled_calls"].value == len(keys) - LOOKBACK  # one call per as-of window, not per symbol

    # One partition with history and a sound model: rows, no alert, the check passes.
    single = materialize(
        [predictions],
        instance=instance,
        partition_key=str(market_bars_key("AAPL", keys[-1])),
        resources={"bars_store": bars_store, "model_store": model_store, "forecast_store": forecast_store},
    )
    assert single.success and [check.passed for check in single.get_asset_check_evaluations()] == [True]
    pd.testing.assert_frame_equal(forecast_store.read_predictions(), rows)

    # Re-running changes nothing; repairing MSFT's model replaces its alerts with predictions.
    assert run().success
    pd.testing.assert_frame_equal(forecast_store.read_predictions(), rows)
    assert len(forecast_store.read_alerts()) == len(alerts)
    msft_model = save_tiny(models_dir, "MSFT")
    assert run().success
    repaired = forecast_store.read_predictions()
    assert set(repaired["symbol"]) == {"AAPL", "MSFT"}
    assert (repaired.loc[repaired["symbol"] == "MSFT", "model_version"] == msft_model.version).all()
    assert set(forecast_store.read_alerts()["kind"]) == {"insufficient_bars"}
