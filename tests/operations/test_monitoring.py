"""Monitoring: the six categories sampled from a store with data, KPIs, threshold alerts, the sensor's schedule by
monitoring_intervals, freshness checks on the session clock, the daily report, and the alert delivery sensor."""

import datetime as dt
import json
import warnings
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from dagster import (
    AssetMaterialization,
    AssetSelection,
    AssetSpec,
    Definitions,
    SensorResult,
    SkipReason,
    build_sensor_context,
    define_asset_job,
    materialize,
)
from dagster._core.test_utils import freeze_time

from lstm_pipeline.assets.freshness import build_freshness_checks
from lstm_pipeline.operations.daily_report import build_daily_report
from lstm_pipeline.operations.monitoring import (
    CATEGORIES,
    KPI_NAMES,
    kpis_from,
    monitoring_alerts,
    sample_metrics,
)
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.sensors.alert_delivery import build_alert_delivery_sensor
from lstm_pipeline.sensors.system_metrics import build_system_metrics_sensor
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import database_at
from tests.cli.conftest import DAY, SYMBOLS, _populate

NOW = pd.Timestamp.now(tz="UTC").floor("min")
NY = ZoneInfo("America/New_York")


class FakePsutil:
    """Host figures a test can state (psutil's call shapes)."""

    def __init__(self, used_mb: float = 2048.0):
        self.used_mb = used_mb

    def virtual_memory(self):
        return SimpleNamespace(percent=50.0, used=self.used_mb * 2**20)

    def disk_usage(self, path):
        return SimpleNamespace(percent=70.0)

    def cpu_percent(self, interval=None):
        return 12.5

    def Process(self):  # noqa: N802 - psutil's name
        return SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=300 * 2**20))


def _api_log(path, now, durations_s, statuses, caches):
    lines = [
        json.dumps({"time": (now - pd.Timedelta(minutes=5)).isoformat(), "status": status,
                    "duration_ms": 1000 * duration, "cache": cache})
        for duration, status, cache in zip(durations_s, statuses, caches, strict=True)
    ]
    lines.append(json.dumps({"time": (now - pd.Timedelta(days=2)).isoformat(), "status": 500, "duration_ms": 9e5}))
    path.write_text("\n".join(lines) + "\n")
    return [path]


@pytest.fixture
def settings(tmp_path) -> Settings:
    db_path = tmp_path / "data" / "pipeline.duckdb"
    _populate(db_path)
    return Settings.model_validate({"db_path": str(db_path), "symbols": SYMBOLS,
                                    "alert_channels": {"console": {"enabled": False}}})


def _metric(frame, category, metric):
    row = frame[(frame["category"] == category) & (frame["metric"] == metric)]
    assert len(row) == 1, (category, metric)
    return row["value"].iloc[0]


def test_every_category_is_sampled_from_the_store_the_host_and_the_api_record(settings, tmp_path):
    paths = _api_log(tmp_path / "api_access.jsonl", NOW, [0.2, 0.4, 1.2], [200, 200, 503], ["hit", "miss", None])
    db = database_at(settings.db_path)
    samples = sample_metrics(db, settings, CATEGORIES, NOW, api_paths=paths, psutil_module=FakePsutil())
    assert set(samples["category"]) == set(CATEGORIES)
    # 10 validations per symbol, every third asks for a reprediction.
    assert _metric(samples, "prediction_accuracy", "accuracy") == pytest.approx(0.6)
    assert _metric(samples, "prediction_accuracy", "reprediction_rate") == pytest.approx(0.4)
    assert _metric(samples, "prediction_accuracy", "mean_confidence") == pytest.approx(0.7)
    assert _metric(samples, "model_performance", "mase") == pytest.approx(0.95)
    assert _metric(samples, "model_performance", "rmse") > 0
    assert _metric(samples, "system_health", "memory_used_mb") == pytest.approx(2048.0)
    assert _metric(samples, "system_health", "pipeline_up") == 1.0
    assert _metric(samples, "api_performance", "requests") == 3
    assert _metric(samples, "api_performance", "response_time_mean_s") == pytest.approx(0.6)
    assert _metric(samples, "api_performance", "error_rate") == pytest.approx(1 / 3)
    assert _metric(samples, "api_performance", "cache_hit_rate") == pytest.approx(0.5)
    assert _metric(samples, "storage", "database_size_mb") > 0
    assert _metric(samples, "storage", "latest_forecasts_query_ms") >= 0
    # Trades count by the window that scored them (the fixture's day), 30 days back from the sample.
    trades = sample_metrics(db, settings, ["trade_performance"], pd.Timestamp(f"{DAY} 18:00", tz=NY))
    assert _metric(trades, "trade_performance", "success_rate") == pytest.approx(0.5)
    assert _metric(trades, "trade_performance", "scored_trades") == 12
    assert pd.isna(_metric(samples, "trade_performance", "success_rate"))

    kpis = kpis_from(samples)
    assert set(kpis) == set(KPI_NAMES)
    assert kpis["api_response_time_seconds"] == pytest.approx(0.6) and kpis["uptime"] == 1.0


def test_a_missing_value_says_why_instead_of_inventing_one(tmp_path):
    settings = Settings.model_validate({"db_path": str(tmp_path / "empty.duckdb")})
    samples = sample_metrics(database_at(tmp_path / "empty.duckdb"), settings, ["api_performance", "trade_performance"],
                             NOW, api_paths=[tmp_path / "none.jsonl"])
    missing = samples[samples["value"].isna()]
    assert set(missing["metric"]) == {"response_time_mean_s", "response_time_p95_s", "error_rate", "cache_hit_rate",
                                      "success_rate", "mean_return_pct", "total_return_pct"}
    assert missing["detail"].str.len().min() > 10


def test_thresholds_raise_update_and_resolve_one_monitoring_alert():
    thresholds = Settings().alert_thresholds  # api 5 s high, 10 s critical
    empty = pd.DataFrame(columns=["source", "kind", "resolved_at"])
    slow, keys = monitoring_alerts({"api_response_time_seconds": 6.0}, thresholds, empty, NOW)
    (row,) = slow.to_dict("records")
    assert (row["alert_key"], row["level"], row["source"]) == ("api_response_time:*", "WARNING", "monitoring")

    opened = slow.assign(created_at=NOW)
    worse, _ = monitoring_alerts({"api_response_time_seconds": 12.0}, thresholds, opened, NOW + pd.Timedelta(hours=1))
    assert list(worse["level"]) == ["CRITICAL"] and list(worse["as_of_window"]) == list(slow["as_of_window"])
    unknown, _ = monitoring_alerts({"api_response_time_seconds": None}, thresholds, opened, NOW)
    assert unknown.empty
    fine, _ = monitoring_alerts({"api_response_time_seconds": 0.3}, thresholds, opened, NOW + pd.Timedelta(hours=2))
    assert pd.notna(fine["resolved_at"].iloc[0]) and "Resolved" in fine["message"].iloc[0]
    missed, _ = monitoring_alerts({"mean_abs_error": 0.12, "prediction_accuracy": 0.3}, thresholds, empty, NOW)
    assert dict(zip(missed["alert_key"], missed["level"], strict=True)) == {
        "prediction_error:*": "CRITICAL", "model_accuracy_low:*": "ERROR"}


def test_the_sensor_samples_each_category_on_its_interval_and_raises_threshold_alerts(settings, tmp_path):
    paths = _api_log(tmp_path / "api_access.jsonl", NOW, [6.0, 7.0], [200, 200], [None, None])
    clock = {"now": NOW}
    sensor = build_system_metrics_sensor(settings, clock=lambda: clock["now"], psutil_module=FakePsutil(),
                                         api_paths=paths)
    store = PipelineStore.for_path(settings.db_path)

    first = _tick(sensor, store)
    assert isinstance(first, SensorResult)
    (event,) = first.asset_events
    assert isinstance(event, AssetMaterialization) and event.asset_key.to_user_string() == "system_metrics"
    assert event.metadata["api_response_time_seconds"].value == pytest.approx(6.5)
    assert sorted(event.metadata["categories_sampled"].value) == sorted(CATEGORIES)
    db = database_at(settings.db_path)
    assert set(db.read_rows("system_metrics")["category"]) == set(CATEGORIES)
    alert = db.read_rows("alerts", ["source = 'monitoring'"])
    assert list(alert["alert_key"]) == ["api_response_time:*"] and list(alert["level"]) == ["WARNING"]

    clock["now"] = NOW + pd.Timedelta(minutes=1)
    assert isinstance(_tick(sensor, store, first.cursor), SkipReason)
    clock["now"] = NOW + pd.Timedelta(minutes=5)  # system_health and api_performance every 5 minutes
    later = _tick(sensor, store, first.cursor)
    assert sorted(later.asset_events[0].metadata["categories_sampled"].value) == ["api_performance", "system_health"]
    assert len(db.read_rows("system_metrics", ["category = 'storage'"])) == len(
        db.read_rows("system_metrics", ["category = 'storage'", "sampled_at = ?"], [NOW]))


def _tick(sensor, store, cursor=None):
    with build_sensor_context(resources={"store": store}, cursor=cursor) as context:
        return sensor(context)


def _run_freshness(instance, job, when):
    with freeze_time(when):
        result = job.execute_in_process(instance=instance)
    return {ev.asset_key.to_user_string(): ev.passed for ev in result.get_asset_check_evaluations()}


def test_freshness_checks_fail_only_while_the_session_is_open_and_data_lags(instance):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks = build_freshness_checks(Settings())
        defs = Definitions(assets=[AssetSpec("market_bars"), AssetSpec("predictions")], asset_checks=checks,
                           jobs=[define_asset_job("freshness", selection=AssetSelection.all_asset_checks())])
    job = defs.resolve_job_def("freshness")

    def update(*names, at):
        with freeze_time(at):
            for name in names:
                instance.report_runless_asset_event(AssetMaterialization(name))

    friday = dt.datetime(2026, 3, 6, tzinfo=NY)
    update("market_bars", "predictions", at=friday.replace(hour=11))
    assert _run_freshness(instance, job, friday.replace(hour=11, minute=10)) == {
        "market_bars": True, "predictions": True}
    # Session open, nothing since 11:00: at 12:00 both lag by more than two windows plus the data delay.
    assert _run_freshness(instance, job, friday.replace(hour=12)) == {"market_bars": False, "predictions": False}
    # The close's update; in the evening and on Saturday (market shut) both are fresh.
    update("market_bars", "predictions", at=friday.replace(hour=16, minute=20))
    assert _run_freshness(instance, job, friday.replace(hour=20)) == {"market_bars": True, "predictions": True}
    assert _run_freshness(instance, job, friday.replace(day=7, hour=12)) == {"market_bars": True, "predictions": True}
    # Monday 10:30: the session's first bars are due; Friday's data now lags.
    assert _run_freshness(instance, job, friday.replace(day=9, hour=10, minute=30)) == {
        "market_bars": False, "predictions": False}


def test_the_daily_report_is_a_self_contained_page_with_png_charts(settings):
    report = build_daily_report(database_at(settings.db_path), settings, dt.date.fromisoformat(DAY))
    assert report.html.count('src="data:image/png;base64,') == 3
    assert set(report.charts) == {"accuracy.png", "recommendations.png", "alerts.png"}
    assert all(data.startswith(b"\x89PNG") for data in report.charts.values())
    assert report.summary["validations"] == 20 and report.summary["trades"] == 1
    assert "AAPL" in report.html and "<script" not in report.html


def test_the_daily_report_asset_writes_the_page_beside_the_store(settings, monkeypatch):
    from lstm_pipeline.assets import daily_report as daily_report_module

    monkeypatch.setattr(daily_report_module, "get_settings", lambda: settings)
    result = materialize([daily_report_module.daily_report], partition_key=DAY,
                         resources={"store": PipelineStore.for_path(settings.db_path)})
    assert result.success
    folder = daily_report_module.report_folder(settings.db_path, dt.date.fromisoformat(DAY))
    assert (folder / "daily_report.html").read_text().startswith("<!DOCTYPE html>")
    assert (folder / "alerts.png").read_bytes().startswith(b"\x89PNG")


def test_the_delivery_sensor_survives_a_dead_webhook_and_keeps_the_alert(settings):
    with_hook = settings.model_copy(update={"alert_channels": settings.alert_channels.model_copy(update={
        "webhook": settings.alert_channels.webhook.model_copy(update={
            "enabled": True, "url": "http://127.0.0.1:9/hook", "retries": 0}),
    })})
    sensor = build_alert_delivery_sensor(with_hook, clock=lambda: pd.Timestamp.now(tz="UTC"))
    store = PipelineStore.for_path(settings.db_path)
    result = _tick(sensor, store)
    assert isinstance(result, SkipReason)
    assert "2 failed" in result.skip_message and "Sent 2 by file" in result.skip_message
    deliveries = database_at(settings.db_path).read_rows("alert_deliveries")
    assert set(deliveries[deliveries["channel"] == "webhook"]["status"]) == {"failed"}
    assert len(database_at(settings.db_path).read_rows("alerts", ["resolved_at IS NULL"])) == 2


def test_sampling_reads_only_through_the_public_api_on_both_backends(storage_backend, tmp_path):
    settings = Settings.model_validate({"db_path": str(tmp_path / "unused.duckdb"), "symbols": ["AAPL"]})
    samples = sample_metrics(storage_backend, settings,
                             ["prediction_accuracy", "model_performance", "storage", "trade_performance"], NOW)
    assert _metric(samples, "prediction_accuracy", "validations") == 0
    assert pd.isna(_metric(samples, "model_performance", "mase"))
    assert _metric(samples, "storage", "latest_forecasts_query_ms") >= 0
