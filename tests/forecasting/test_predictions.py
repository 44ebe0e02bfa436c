"""predictions: every symbol-window of a run forecast in one compiled call; a symbol-window that cannot be forecast
(broken model, rejected or missing as-of bar, too little history) skipped with an alert while the others are
forecast; re-runs replace rows and alerts exactly."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckSeverity, materialize

from lstm_pipeline.assets.predictions import REPREDICTION_CAUSE_TAG, forecast_reason, predictions
from lstm_pipeline.forecasting.forecaster import forecast_prices
from lstm_pipeline.forecasting.store import WEIGHTS_FILE
from lstm_pipeline.market.calendar import parse_window_key, week_ahead_windows
from lstm_pipeline.partitions import market_bars_key
from lstm_pipeline.resources.model_store import LocalModelStore
from lstm_pipeline.storage.tables import CONFIDENCE_FACTORS
from tests.forecasting.conftest import saved_model, sim_bars, tiny_config
from tests.helpers import range_tags, register_windows

LOOKBACK = 8  # tiny_config's
SYMBOLS = ["AAPL", "MSFT"]


def save_tiny(models_dir: Path, symbol: str):
    training_bars = sim_bars(symbol, "2025-06-02", "2025-06-20")
    return saved_model(models_dir, symbol, tiny_config(symbol, "recursive"), seed=1, bars=training_bars)


def store_bars(store, start: str, end: str) -> None:
    bars = pd.concat([sim_bars(symbol, start, end, seed=7) for symbol in SYMBOLS], ignore_index=True)
    store.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))


@pytest.fixture
def keys(instance):
    """Two full sessions (07-07, 07-08) registered; the week after holds no holiday."""
    return register_windows(instance, "2025-07-07", "2025-07-09")


@pytest.fixture
def models_dir(tmp_path):
    folder = tmp_path / "models"
    for symbol in SYMBOLS:
        save_tiny(folder, symbol)
    return folder


def run(instance, store, models_dir, keys, tags=None, **options):
    return materialize(
        [predictions],
        instance=instance,
        tags={**range_tags(SYMBOLS, keys), **(tags or {})},
        resources={"store": store, "model_store": LocalModelStore(models_dir=str(models_dir))},
        **options,
    )


def forecasts(store, symbol=None) -> pd.DataFrame:
    """Stored prediction rows without ``created_at`` (a re-run writes them again, later)."""
    return store.read_predictions(symbol).drop(columns=["created_at"]).reset_index(drop=True)


def metadata_of(result) -> dict:
    materialization = result.asset_materializations_for_node("predictions")[0]  # one per partition, same metadata
    return {key: value.value for key, value in materialization.metadata.items()}


def test_a_run_forecasts_every_symbol_window_in_one_compiled_call(instance, store, models_dir, keys):
    store_bars(store, "2025-06-30", "2025-07-09")  # a week of history before the first as-of window
    result = run(instance, store, models_dir, keys)
    assert result.success
    rows = store.read_predictions()
    assert sorted(set(zip(rows["symbol"], rows["as_of_window"].map(pd.Timestamp), strict=True))) == sorted(
        (symbol, parse_window_key(key)) for symbol in SYMBOLS for key in keys
    )
    per_window = rows.groupby(["symbol", "as_of_window"])["horizon_step"].agg(["count", "max"])
    assert (per_window == 130).all().all()
    assert (rows["target_window"] > rows["as_of_window"]).all()
    assert not rows.duplicated(["symbol", "as_of_window", "horizon_step"]).any()
    metadata = metadata_of(result)
    assert metadata["compiled_calls"] == 1  # not one per as-of window
    assert metadata["symbol_windows_predicted"] == 2 * len(keys) and metadata["symbol_windows_skipped"] == 0
    assert metadata["rows"] == len(rows) and set(metadata["model_versions"]) == set(SYMBOLS)
    assert store.read_alerts().empty
    (check,) = result.get_asset_check_evaluations()
    assert check.passed


def test_the_stored_forecast_is_the_one_made_from_the_as_of_windows_bars(instance, store, models_dir, keys):
    store_bars(store, "2025-06-30", "2025-07-09")
    assert run(instance, store, models_dir, keys).success
    as_of = parse_window_key(keys[10])
    stored = store.read_predictions("AAPL")
    stored = stored[stored["as_of_window"] == as_of].sort_values("horizon_step")
    bars = store.read_bars("AAPL", end=as_of + pd.Timedelta(minutes=15))
    model = LocalModelStore(models_dir=str(models_dir)).load("AAPL")
    alone = forecast_prices([model], {"AAPL": bars})["AAPL"]
    assert pd.DatetimeIndex(stored["target_window"]).tz_convert("UTC").equals(
        week_ahead_windows(as_of).tz_convert("UTC")
    )
    np.testing.assert_allclose(stored["predicted_close"], alone.predicted_close, atol=1e-6)
    assert (stored["model_version"] == model.version).all()
    assert (stored["last_close"] == bars["close"].iloc[-1]).all()


def test_a_broken_model_skips_only_its_symbol_with_error_alerts_and_a_failing_warn_check(
    instance, store, models_dir, keys
):
    store_bars(store, "2025-06-30", "2025-07-09")
    weights = models_dir / "MSFT" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:500])  # a bad copy
    result = run(instance, store, models_dir, keys)
    assert result.success
    assert set(store.read_predictions()["symbol"]) == {"AAPL"}
    alerts = store.read_alerts()
    assert len(alerts) == len(keys) and set(alerts["symbol"]) == {"MSFT"}
    assert set(alerts["kind"]) == {"model_unavailable"} and set(alerts["severity"]) == {"error"}
    message = alerts["message"].iloc[0]
    assert message.startswith("Model for MSFT: ") and "model.keras is truncated or corrupt" in message
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.description.startswith(f"Skipped: MSFT ({len(keys)} window(s)): Model for MSFT: ")


def test_a_rejected_as_of_bar_skips_that_window_only(instance, store, models_dir, keys):
    store_bars(store, "2025-06-30", "2025-07-09")
    window = parse_window_key(keys[5])
    rejection = pd.DataFrame(
        {"symbol": ["MSFT"], "window_start": [window], "check_name": ["high_low_bounds"], "reason": ["high < low"]}
    )
    store.reject_bars(rejection)
    result = run(instance, store, models_dir, keys)
    assert result.success
    predicted = set(zip(store.read_predictions()["symbol"], store.read_predictions()["as_of_window"], strict=True))
    assert ("MSFT", window) not in predicted and ("AAPL", window) in predicted
    assert len(predicted) == 2 * len(keys) - 1
    (alert,) = store.read_alerts().itertuples()
    assert (alert.symbol, alert.kind, alert.severity) == ("MSFT", "missing_as_of_bar", "warning")
    assert f"MSFT has no usable stored bar for {window:%Y-%m-%d %H:%M}" in alert.message


def test_too_little_history_is_a_warning_per_window_until_the_lookback_is_stored(instance, store, models_dir, keys):
    store_bars(store, "2025-07-07", "2025-07-09")  # nothing before the first as-of window
    result = run(instance, store, models_dir, keys)
    assert result.success
    alerts = store.read_alerts()
    # The first bar has no return, so the window at index LOOKBACK is the first with LOOKBACK returns.
    assert len(alerts) == 2 * LOOKBACK and set(alerts["kind"]) == {"insufficient_bars"}
    assert set(alerts["severity"]) == {"warning"}
    assert sorted(store.read_predictions()["as_of_window"].unique())[0] == parse_window_key(keys[LOOKBACK])
    assert metadata_of(result)["symbol_windows_skipped"] == 2 * LOOKBACK


def test_rerunning_replaces_rows_and_alerts_and_a_repaired_model_is_forecast(instance, store, models_dir, keys):
    store_bars(store, "2025-06-30", "2025-07-09")
    weights = models_dir / "MSFT" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:500])
    assert run(instance, store, models_dir, keys).success
    rows, alerts = forecasts(store), store.read_alerts()
    assert run(instance, store, models_dir, keys).success
    pd.testing.assert_frame_equal(forecasts(store), rows)
    pd.testing.assert_frame_equal(store.read_alerts().drop(columns=["run_id", "created_at"]),
                                  alerts.drop(columns=["run_id", "created_at"]))

    repaired = save_tiny(models_dir, "MSFT")
    assert run(instance, store, models_dir, keys).success
    assert (forecasts(store, "MSFT")["model_version"] == repaired.version).all()
    assert store.read_alerts().empty
    pd.testing.assert_frame_equal(forecasts(store, "AAPL"), rows[rows["symbol"] == "AAPL"].reset_index(drop=True))


def test_one_partition_is_forecast_alone(instance, store, models_dir, keys):
    store_bars(store, "2025-06-30", "2025-07-09")
    result = materialize(
        [predictions],
        instance=instance,
        partition_key=str(market_bars_key("AAPL", keys[-1])),
        resources={"store": store, "model_store": LocalModelStore(models_dir=str(models_dir))},
    )
    assert result.success and [check.passed for check in result.get_asset_check_evaluations()] == [True]
    rows = store.read_predictions()
    assert set(rows["symbol"]) == {"AAPL"} and len(rows) == 130
    assert set(rows["as_of_window"]) == {parse_window_key(keys[-1])}


FACTOR_COLUMNS = [f"factor_{name}" for name in CONFIDENCE_FACTORS]


def test_every_row_carries_its_forecasts_confidence_level_factors_and_reason(instance, store, models_dir, keys):
    store_bars(store, "2025-06-30", "2025-07-09")
    result = run(instance, store, models_dir, keys, tags={"dagster/backfill": "abcdefgh"})
    assert result.success
    rows = store.read_predictions()
    filled = rows[["confidence", "confidence_level", *FACTOR_COLUMNS]]
    assert filled.notna().all().all()
    values = rows[["confidence", *FACTOR_COLUMNS]].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert set(rows["confidence_level"]) <= {"Very Low", "Low", "Medium", "High", "Very High"}
    # One value per forecast, the same on each of its horizon steps.
    per_forecast = rows.groupby(["symbol", "as_of_window"])[["confidence", *FACTOR_COLUMNS]].nunique()
    assert (per_forecast == 1).all().all()
    # The factors read real inputs: the session's open and close windows score lower on time of day than midday,
    # and the bars are all there (the tiny models read 8 windows).
    time_of_day = rows.groupby("as_of_window")["factor_time_of_day"].first()
    assert time_of_day[parse_window_key(keys[0])] == 0.5 and time_of_day[parse_window_key(keys[10])] == 1.0
    assert (rows["factor_data_quality"] == 1.0).all()
    # The second session's forecasts have earlier forecasts of the same targets: stability is measured, not 0.5.
    assert (rows.loc[rows["as_of_window"] > parse_window_key(keys[4]), "factor_prediction_stability"] != 0.5).all()
    assert set(rows["reason"]) == {"backfill"}
    metadata = metadata_of(result)
    assert metadata["reason"] == "backfill" and 0 < metadata["mean_confidence"] < 1
    assert sum(metadata["confidence_levels"].values()) == 2 * len(keys)


def test_the_reason_follows_the_runs_tags(instance, store, models_dir, keys):
    store_bars(store, "2025-06-30", "2025-07-09")
    assert run(instance, store, models_dir, keys, tags={"dagster/schedule_name": "market_close"}).success
    assert set(store.read_predictions()["reason"]) == {"schedule"}
    assert run(instance, store, models_dir, keys[-1:], tags={REPREDICTION_CAUSE_TAG: "price_shock"}).success
    rows = store.read_predictions()
    latest = rows["as_of_window"] == parse_window_key(keys[-1])
    assert set(rows.loc[latest, "reason"]) == {"reprediction: price_shock"}
    assert set(rows.loc[~latest, "reason"]) == {"schedule"}  # the other partitions were not touched


def test_forecast_reason_reads_every_kind_of_run():
    assert forecast_reason({"dagster/sensor_name": "market_windows"}) == "schedule"
    assert forecast_reason({"dagster/schedule_name": "market_close"}) == "schedule"
    assert forecast_reason({"dagster/backfill": "x"}) == "backfill"
    assert forecast_reason({}) == "backfill"  # launched by hand
    assert forecast_reason({"lstm_pipeline/reason": "new_model", "dagster/sensor_name": "retrain"}) == "new_model"
    cause = {REPREDICTION_CAUSE_TAG: "price_shock", "dagster/sensor_name": "repredictions"}
    assert forecast_reason(cause) == "reprediction: price_shock"


def test_stored_validations_feed_the_historical_accuracy_of_the_next_forecasts(instance, store, models_dir, keys):
    store_bars(store, "2025-06-30", "2025-07-09")
    targets = [parse_window_key(key) for key in keys[-30:-1]]  # validated before the last window
    missed = pd.DataFrame(
        {
            "symbol": "AAPL",
            "target_window": targets,
            "as_of_window": [target - pd.Timedelta(minutes=15) for target in targets],
            "horizon_step": 1,
            "model_version": "any",
            "predicted_close": 100.0,
            "actual_close": 110.0,
            "last_close": 100.0,
            "abs_error_pct": 9.1,
            "naive_abs_error_pct": 9.1,
            "inside_80": False,
            "status": "needs_reprediction",
        }
    )
    store.replace_tables({"validations": (missed[["symbol", "target_window"]], missed)})
    assert run(instance, store, models_dir, keys[-1:]).success
    rows = store.read_predictions()
    by_symbol = rows.groupby("symbol")["factor_historical_accuracy"].first()
    assert by_symbol["AAPL"] == 0.0 and by_symbol["MSFT"] == 0.5  # MSFT has no record yet: neutral
