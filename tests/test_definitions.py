"""The one Definitions object: every job, schedule, sensor and asset resolves, and settings are read once."""

import shutil
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance, Definitions, SensorResult, build_sensor_context

from lstm_pipeline.definitions import defs, settings
from lstm_pipeline.market.calendar import session_windows, window_key
from lstm_pipeline.partitions import PARTITION_RANGE_START_TAG

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_every_definition_resolves():
    Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()

    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert jobs >= {"market_bars_update", "lstm_model_training", "backtest"}
    backtest_assets = defs.resolve_job_def("backtest").asset_layer.selected_asset_keys
    assert {key.to_user_string() for key in backtest_assets} == {"backtest_report"}
    chain_assets = defs.resolve_job_def("market_bars_update").asset_layer.selected_asset_keys
    assert "backtest_report" not in {key.to_user_string() for key in chain_assets}
    for job in repository.get_all_jobs():
        assert defs.resolve_job_def(job.name).name == job.name

    sensors = {sensor.name: sensor for sensor in repository.sensor_defs}
    assert set(sensors) == {
        "market_windows_sensor",
        "model_store_sensor",
        "reprediction_sensor",
        "retraining_sensor",
        "run_failure_alert_sensor",
        "run_success_alert_sensor",
        "run_canceled_alert_sensor",
        "alert_delivery_sensor",
        "system_metrics_sensor",
        "freshness_checks_sensor",
        "backups_automation_sensor",
    }
    assert sensors["reprediction_sensor"].job_name == "reprediction"
    assert sensors["market_windows_sensor"].job_name == "market_bars_update"
    assert {job.name for job in sensors["retraining_sensor"].jobs} == {"lstm_model_training", "reprediction"}
    for name in sensors:
        assert defs.resolve_sensor_def(name).name == name

    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}
    schedule = schedules["market_close_schedule"]
    assert schedule.job_name == "market_bars_update"
    assert schedules["daily_report_schedule"].job_name == "daily_reports"
    assert schedules["exports_schedule"].job_name == "export"
    assert schedules["retention_schedule"].job_name == "retention"
    assert jobs >= {"backup", "export", "restore", "retention"}
    assert defs.resolve_schedule_def("market_close_schedule").cron_schedule == "40 16 * * 1-5"

    assert sorted(key.to_user_string() for key in defs.resolve_all_asset_keys()) == [
        "accuracy_metrics",
        "alerts",
        "backtest_report",
        "backups",
        "daily_report",
        "exports",
        "lstm_model",
        "market_bars",
        "predictions",
        "system_metrics",
        "trade_recommendations",
        "validations",
    ]
    for spec in defs.resolve_all_asset_specs():
        assert defs.resolve_assets_def(spec.key).key == spec.key
    checked = {key.asset_key.to_user_string() for key in repository.asset_graph.asset_check_keys}
    assert {"market_bars", "lstm_model", "backups", "exports"} <= checked <= {
        "market_bars", "lstm_model", "predictions", "backups", "exports"}


def test_sensors_use_the_settings_of_the_load_not_a_reread_per_tick(instance, monkeypatch):
    # A tick that re-read the configuration would now fail on this value; the loaded settings stay in force
    # until the code location is reloaded.
    monkeypatch.setenv("LSTM_PIPELINE_HISTORY_START", "not a date")
    monkeypatch.setenv("LSTM_PIPELINE_SYMBOLS", "ZZZZ")
    market = defs.resolve_sensor_def("market_windows_sensor")
    result = market(build_sensor_context(instance=instance))
    assert isinstance(result, SensorResult)
    first_window = window_key(session_windows(settings.market_data.history_start, "2100-01-01")[0])
    assert result.dynamic_partitions_requests[0].partition_keys[0] == first_window
    assert all(
        request.tags[PARTITION_RANGE_START_TAG].startswith(f"{settings.symbols[0]}|") for request in result.run_requests
    )


def test_loading_the_definitions_writes_nothing_to_the_environment():
    code = (
        "import os; before = dict(os.environ); import lstm_pipeline.definitions; "
        "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)); "
        "assert not changed, changed"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_the_project_instance_opens_the_ui_without_the_newsletter_pop_up(tmp_path):
    # ``nux.enabled: false`` is what the webserver's ``shouldShowNux`` query reads before showing the pop-up.
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.nux_enabled is False
