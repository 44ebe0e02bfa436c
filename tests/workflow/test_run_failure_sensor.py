"""A failed (canceled) run is one open ERROR (WARNING) alert per job; a repeat updates it; a success resolves it."""

import pandas as pd
from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    Definitions,
    asset,
    build_run_status_sensor_context,
    materialize,
)

from lstm_pipeline.evaluation.alerting import first_sentence
from lstm_pipeline.sensors.run_failures import build_run_failure_sensors, run_scope


@asset
def flaky_asset() -> None:
    raise ValueError("Model for MSFT: models/MSFT/model.keras is corrupt; retrain it. Traceback follows here.")


@asset
def steady_asset() -> None:
    return None


def run_and_notify(instance, store, sensor, *assets, tags=None, status=DagsterEventType.RUN_FAILURE):
    result = materialize(list(assets), instance=instance, raise_on_error=False, tags=tags or {})
    run = instance.get_run_by_id(result.run_id)
    records = instance.get_records_for_run(result.run_id, of_type=status).records
    with build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=records[-1].event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"store": store},
    ) as context:
        if status == DagsterEventType.RUN_FAILURE:
            with context.for_run_failure() as failure_context:
                sensor(failure_context)
        else:
            sensor(context)
    return run


def run_alerts(store) -> pd.DataFrame:
    return store.read_rows("alerts", ["source = ?"], ["runs"])


def test_a_failed_run_becomes_one_error_alert_and_a_repeat_updates_it(instance, store):
    failure_sensor, success_sensor, _ = build_run_failure_sensors()
    first = run_and_notify(instance, store, failure_sensor, flaky_asset)
    (alert,) = run_alerts(store).itertuples(index=False)
    assert (alert.level, alert.kind, alert.symbol) == ("ERROR", "run_failed", "*")
    assert alert.alert_key == f"run_failed:{first.job_name}"
    assert "Model for MSFT: models/MSFT/model.keras is corrupt; retrain it." in alert.message
    assert "Traceback" not in alert.message and first.job_name in alert.message
    assert pd.isna(alert.resolved_at)

    second = run_and_notify(instance, store, failure_sensor, flaky_asset)
    (again,) = run_alerts(store).itertuples(index=False)
    assert again.run_id == second.run_id and again.as_of_window == alert.as_of_window
    assert again.created_at == alert.created_at

    # A successful run of the same job resolves the open alert; a later failure opens a new one.
    run_and_notify(instance, store, success_sensor, steady_asset, status=DagsterEventType.RUN_SUCCESS)
    (resolved,) = run_alerts(store).itertuples(index=False)
    assert pd.notna(resolved.resolved_at) and "succeeded" in resolved.message

    # The row's window is the failure's own 15-minute window; a failure in a later window opens a new row.
    later = run_alerts(store).assign(as_of_window=resolved.as_of_window - pd.Timedelta(minutes=15))
    store.replace_tables({"alerts": (run_alerts(store)[["source", "symbol", "as_of_window", "kind"]], later)})
    run_and_notify(instance, store, failure_sensor, flaky_asset)
    stored = run_alerts(store)
    assert len(stored) == 2 and stored["resolved_at"].isna().sum() == 1


def test_a_partitioned_run_names_its_symbols_and_window():
    tags = {
        "dagster/asset_partition_range_start": "AAPL|2026-11-24-09:30",
        "dagster/asset_partition_range_end": "TSLA|2026-11-24-10:00",
    }
    symbols, window = run_scope(tags)
    assert symbols == ["AAPL..TSLA"] and window == pd.Timestamp("2026-11-24 10:00", tz="America/New_York")
    assert run_scope({"dagster/partition": "MSFT"}) == (["MSFT"], None)
    assert run_scope({}) == ([], None)


def test_first_sentence_drops_the_exception_class_and_the_rest():
    assert first_sentence("ValueError: Bad key for Polygon. Set POLYGON_API_KEY.\nTraceback") == "Bad key for Polygon."
    assert first_sentence("dagster._core.errors.DagsterError: x") == "x"
    assert first_sentence("") == ""


def test_the_sensor_is_running_by_default():
    sensors = build_run_failure_sensors()
    assert [sensor.name for sensor in sensors] == [
        "run_failure_alert_sensor", "run_success_alert_sensor", "run_canceled_alert_sensor"
    ]
    assert all(sensor.default_status.value == "RUNNING" for sensor in sensors)


def notify(instance, store, sensor, run, status) -> None:
    records = instance.get_records_for_run(run.run_id, of_type=status).records
    with build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=records[-1].event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run.run_id),
        resources={"store": store},
    ) as context:
        sensor(context)


def test_a_canceled_run_is_a_warning_that_the_next_success_resolves(instance, store):
    _, success_sensor, canceled_sensor = build_run_failure_sensors()
    job = Definitions(assets=[steady_asset]).resolve_implicit_global_asset_job_def()
    tags = {"dagster/partition": "MSFT"}

    first = instance.create_run_for_job(job, tags=tags)
    instance.report_run_canceled(first, message="Canceled from the UI by an operator. Nothing ran.")
    assert instance.get_run_by_id(first.run_id).status == DagsterRunStatus.CANCELED
    notify(instance, store, canceled_sensor, first, DagsterEventType.RUN_CANCELED)
    (alert,) = run_alerts(store).itertuples(index=False)
    assert (alert.level, alert.severity, alert.kind, alert.source) == ("WARNING", "warning", "run_canceled", "runs")
    assert alert.alert_key == f"run_canceled:{job.name}" and pd.isna(alert.resolved_at)
    assert "for MSFT was canceled: Canceled from the UI by an operator." in alert.message
    assert "Nothing ran" not in alert.message

    # Canceled again: the same open row is updated (new run id), no second row.
    second = instance.create_run_for_job(job, tags=tags)
    instance.report_run_canceled(second)
    notify(instance, store, canceled_sensor, second, DagsterEventType.RUN_CANCELED)
    (again,) = run_alerts(store).itertuples(index=False)
    assert again.run_id == second.run_id and again.created_at == alert.created_at

    # The job's next success resolves it.
    succeeded = job.execute_in_process(instance=instance)
    assert succeeded.success
    notify(instance, store, success_sensor, succeeded.dagster_run, DagsterEventType.RUN_SUCCESS)
    (resolved,) = run_alerts(store).itertuples(index=False)
    assert pd.notna(resolved.resolved_at) and "succeeded" in resolved.message
