"""The reprediction sensor: one run per symbol and cause, a cooldown, a cap per tick, a cursor surviving restarts."""

import pandas as pd
from dagster import SensorResult, build_sensor_context

from lstm_pipeline.assets.predictions import forecast_reason
from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.sensors.repredictions import REPREDICTION_CAUSE_TAG, accuracy_drops, build_reprediction_sensor
from lstm_pipeline.settings import Settings, WorkflowSettings
from tests.helpers import FrozenClock

WINDOW_1 = pd.Timestamp("2026-11-24 10:00", tz=NEW_YORK)
WINDOW_2 = pd.Timestamp("2026-11-24 10:15", tz=NEW_YORK)


def settings(cooldown_minutes: int = 60, cap: int = 5) -> Settings:
    return Settings(
        symbols=["AAPL", "MSFT", "GOOGL"],
        workflow=WorkflowSettings(reprediction_cooldown_minutes=cooldown_minutes, max_repredictions_per_tick=cap),
    )


def store_validations(store, symbol: str, target: pd.Timestamp, statuses: list[str], validated_at: str) -> None:
    n = len(statuses)
    rows = pd.DataFrame({
        "symbol": symbol, "target_window": target,
        "as_of_window": [target - pd.Timedelta(minutes=15 * (i + 1)) for i in range(n)],
        "horizon_step": list(range(1, n + 1)), "model_version": "v1", "predicted_close": 100.0, "actual_close": 90.0,
        "last_close": 100.0, "error_pct": 11.1, "abs_error_pct": 11.1, "status": statuses,
        "validated_at": pd.Timestamp(validated_at, tz="UTC"),
    })
    keys = pd.DataFrame({"symbol": [symbol], "target_window": [target]})
    store.replace_tables({"validations": (keys, rows)})


def store_forecast(store, symbol: str, as_of: pd.Timestamp) -> None:
    rows = pd.DataFrame({
        "symbol": [symbol], "as_of_window": [as_of], "horizon_step": [1], "target_window": [as_of + pd.Timedelta(
            minutes=15)], "predicted_close": [100.0], "last_close": [100.0], "forecast_mode": ["direct"],
        "model_version": ["v1"],
    })
    store.replace_tables({"predictions": (rows[["symbol", "as_of_window"]], rows)})


def tick(sensor, instance, store, cursor=None) -> SensorResult:
    with build_sensor_context(instance=instance, cursor=cursor, resources={"store": store}) as context:
        result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def test_one_run_per_symbol_and_cause_over_its_latest_forecast(instance, store):
    clock = FrozenClock("2026-11-24 10:31")
    store_validations(store, "AAPL", WINDOW_1, ["needs_reprediction"] * 3 + ["valid"], "2026-11-24 15:20")
    store_validations(store, "AAPL", WINDOW_2, ["needs_reprediction"] * 5, "2026-11-24 15:35")
    store_validations(store, "MSFT", WINDOW_2, ["valid"] * 4, "2026-11-24 15:35")
    store_forecast(store, "AAPL", WINDOW_1)
    store_forecast(store, "AAPL", WINDOW_2)

    result = tick(build_reprediction_sensor(settings(), clock), instance, store)
    (request,) = result.run_requests
    assert request.run_key == "reprediction:AAPL:validation_error:2026-11-24-10:15"
    assert request.partition_key == "AAPL|2026-11-24-10:15"
    assert request.tags[REPREDICTION_CAUSE_TAG] == "validation_error"
    assert forecast_reason(request.tags) == "reprediction: validation_error"


def test_a_restarted_sensor_requests_nothing_twice_and_respects_the_cooldown(instance, store):
    clock = FrozenClock("2026-11-24 10:31")
    store_validations(store, "AAPL", WINDOW_1, ["needs_reprediction"], "2026-11-24 15:20")
    first = tick(build_reprediction_sensor(settings(), clock), instance, store)
    assert len(first.run_requests) == 1

    # A new sensor (daemon restart) with the stored cursor: the same flags are not read again.
    restarted = build_reprediction_sensor(settings(), clock)
    assert tick(restarted, instance, store, first.cursor).run_requests == []

    # A new flag for AAPL within the cooldown is dropped; after the cooldown a new one is requested.
    store_validations(store, "AAPL", WINDOW_2, ["needs_reprediction"], "2026-11-24 15:40")
    clock.set("2026-11-24 10:45")
    cooled = tick(restarted, instance, store, first.cursor)
    assert cooled.run_requests == []
    store_validations(store, "AAPL", WINDOW_2 + pd.Timedelta(hours=1), ["needs_reprediction"], "2026-11-24 16:40")
    clock.set("2026-11-24 11:32")
    (later,) = tick(restarted, instance, store, cooled.cursor).run_requests
    assert later.run_key == "reprediction:AAPL:validation_error:2026-11-24-11:15"


def test_the_cap_per_tick_defers_the_rest_to_the_next_ticks(instance, store):
    clock = FrozenClock("2026-11-24 10:31")
    for symbol in ("AAPL", "MSFT", "GOOGL"):
        store_validations(store, symbol, WINDOW_1, ["needs_reprediction"], "2026-11-24 15:20")
    sensor = build_reprediction_sensor(settings(cap=2), clock)
    first = tick(sensor, instance, store)
    second = tick(sensor, instance, store, first.cursor)
    third = tick(sensor, instance, store, second.cursor)
    assert len(first.run_requests) == 2 and len(second.run_requests) == 1 and third.run_requests == []
    keys = [request.run_key for request in first.run_requests + second.run_requests]
    assert sorted(key.split(":")[1] for key in keys) == ["AAPL", "GOOGL", "MSFT"]


def test_the_market_sensor_runs_the_whole_chain_and_repredictions_rerun_it_for_one_window():
    from lstm_pipeline.definitions import defs
    from lstm_pipeline.jobs import WORKFLOW_CHAIN

    for job_name in ("market_bars_update", "reprediction"):
        job = defs.resolve_job_def(job_name)
        assert {node.name for node in job.graph.nodes} >= set(WORKFLOW_CHAIN)
    assert defs.resolve_sensor_def("market_windows_sensor").job_name == "market_bars_update"
    assert defs.resolve_sensor_def("reprediction_sensor").job_name == "reprediction"


def test_a_requested_reprediction_refetches_the_window_and_records_the_cause(instance, store, tmp_path):
    from dagster import materialize

    from lstm_pipeline.assets.alerts import alerts
    from lstm_pipeline.assets.market_bars import market_bars
    from lstm_pipeline.assets.market_bars_checks import market_bars_quality
    from lstm_pipeline.assets.predictions import predictions
    from lstm_pipeline.market.calendar import parse_window_key
    from lstm_pipeline.resources.market_data import SimulatedMarketData
    from lstm_pipeline.resources.model_store import LocalModelStore
    from tests.forecasting.conftest import saved_model, sim_bars, tiny_config
    from tests.helpers import register_windows

    models_dir = tmp_path / "models"
    saved_model(models_dir, "AAPL", tiny_config("AAPL", "recursive"), seed=1,
                bars=sim_bars("AAPL", "2025-06-02", "2025-06-20"))
    keys = register_windows(instance, "2025-07-07", "2025-07-08")
    bars = sim_bars("AAPL", "2025-06-30", "2025-07-08", seed=7)
    store.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
    latest = parse_window_key(keys[-1])
    store_validations(store, "AAPL", latest, ["needs_reprediction"] * 2, "2025-07-07 20:20")

    clock = FrozenClock("2025-07-07 16:20")
    (request,) = tick(build_reprediction_sensor(settings(), clock), instance, store).run_requests
    assert request.partition_key == f"AAPL|{keys[-1]}"

    result = materialize(
        [market_bars, market_bars_quality, predictions, alerts],
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        resources={
            "store": store,
            "model_store": LocalModelStore(models_dir=str(models_dir)),
            "market_data": SimulatedMarketData(seed=7),
        },
    )
    assert result.success
    forecast = store.read_rows("predictions", ["symbol = ?", "as_of_window = ?"], ["AAPL", latest])
    assert len(forecast) and set(forecast["reason"]) == {"reprediction: validation_error"}
    assert result.asset_materializations_for_node("market_bars")  # the window's bar was fetched again


# Accuracy drops ------------------------------------------------------------------------------------------------


def metric_row(symbol: str, window: pd.Timestamp, mase_trend: float, reprediction_rate: float = 0.1, n: int = 130,
               span: str = "week", bucket: str = "1_day", computed_at: str = "2026-11-24 15:20") -> dict:
    return {
        "symbol": symbol, "window_start": window, "span": span, "horizon_bucket": bucket, "n": n, "mase": 1.1,
        "mase_trend": mase_trend, "reprediction_rate": reprediction_rate,
        "computed_at": pd.Timestamp(computed_at, tz="UTC"),
    }


def store_metrics(store, *rows: dict) -> None:
    frame = pd.DataFrame(list(rows))
    store.replace_tables({"accuracy_metrics": (frame[["symbol", "window_start"]].drop_duplicates(), frame)})


def test_the_accuracy_drop_rule_reads_the_latest_week_one_day_row():
    low = Settings().alert_thresholds.model_accuracy_low  # 0.6: a reprediction rate above 40% is a drop
    metrics = pd.DataFrame([
        metric_row("AAPL", WINDOW_1, mase_trend=0.3),  # older row: the latest one (healthy) decides
        metric_row("AAPL", WINDOW_2, mase_trend=0.02),
        metric_row("MSFT", WINDOW_2, mase_trend=-0.2, reprediction_rate=0.45),  # too many repredictions
        metric_row("GOOGL", WINDOW_2, mase_trend=0.11),  # MASE worse by more than the margin
        metric_row("AMZN", WINDOW_2, mase_trend=0.5, n=5),  # too few validations to judge
        metric_row("TSLA", WINDOW_2, mase_trend=0.5, bucket="1_step"),  # other buckets are not read
        metric_row("NVDA", WINDOW_2, mase_trend=0.1, reprediction_rate=0.4),  # at the bounds: no drop
    ])
    drops = accuracy_drops(metrics, low)
    assert dict(zip(drops["symbol"], drops["cause"], strict=True)) == {
        "MSFT": "accuracy_drop", "GOOGL": "accuracy_drop"
    }
    reasons = dict(zip(drops["symbol"], drops["reason"], strict=True))
    assert "reprediction rate 45%" in reasons["MSFT"] and "MASE worsened by 0.11" in reasons["GOOGL"]
    assert set(drops["target_window"]) == {WINDOW_2}


def test_an_accuracy_drop_requests_one_run_with_cooldown_and_a_cursor_surviving_restarts(instance, store):
    clock = FrozenClock("2026-11-24 10:31")
    store_metrics(store, metric_row("AAPL", WINDOW_2, mase_trend=0.25), metric_row("MSFT", WINDOW_2, mase_trend=0.0))
    store_forecast(store, "AAPL", WINDOW_2)

    first = tick(build_reprediction_sensor(settings(), clock), instance, store)
    (request,) = first.run_requests
    assert request.run_key == "reprediction:AAPL:accuracy_drop:2026-11-24-10:15"
    assert request.partition_key == "AAPL|2026-11-24-10:15"
    assert forecast_reason(request.tags) == "reprediction: accuracy_drop"

    # A restarted sensor with the stored cursor reads nothing twice and requests nothing.
    restarted = build_reprediction_sensor(settings(), clock)
    assert tick(restarted, instance, store, first.cursor).run_requests == []

    # The row recomputed (the reprediction's own run) within the cooldown: dropped; after it: one new request.
    later = WINDOW_2 + pd.Timedelta(hours=1)
    store_metrics(store, metric_row("AAPL", later, mase_trend=0.3, computed_at="2026-11-24 16:20"))
    clock.set("2026-11-24 11:20")
    cooled = tick(restarted, instance, store, first.cursor)
    assert cooled.run_requests == []
    store_metrics(store, metric_row("AAPL", later, mase_trend=0.3, computed_at="2026-11-24 16:40"))
    clock.set("2026-11-24 11:45")
    (again,) = tick(restarted, instance, store, cooled.cursor).run_requests
    assert again.run_key == "reprediction:AAPL:accuracy_drop:2026-11-24-11:15"


def test_both_causes_share_the_cap_and_count_separately(instance, store):
    clock = FrozenClock("2026-11-24 10:31")
    store_validations(store, "AAPL", WINDOW_1, ["needs_reprediction"], "2026-11-24 15:20")
    store_metrics(
        store, metric_row("AAPL", WINDOW_1, mase_trend=0.4), metric_row("MSFT", WINDOW_1, mase_trend=0.4),
    )
    sensor = build_reprediction_sensor(settings(cap=2), clock)
    first = tick(sensor, instance, store)
    second = tick(sensor, instance, store, first.cursor)
    third = tick(sensor, instance, store, second.cursor)
    assert len(first.run_requests) == 2 and len(second.run_requests) == 1 and third.run_requests == []
    keys = sorted(request.run_key for request in first.run_requests + second.run_requests)
    assert keys == [
        "reprediction:AAPL:accuracy_drop:2026-11-24-10:00",
        "reprediction:AAPL:validation_error:2026-11-24-10:00",
        "reprediction:MSFT:accuracy_drop:2026-11-24-10:00",
    ]
