"""Failed runs become alerts: one open ERROR alert per job (``run_failed:<job>``), resolved when the job next succeeds.

The sensors run in the daemon, not in a run: they write through the ``store`` resource, one short transaction
each (the DuckDB file takes one writer at a time; a run holding it is waited for, up to the store's lock timeout,
and a tick that could not write fails and is retried from the same cursor by Dagster). A run that is not for any
partition is recorded for every symbol (``*``); a partitioned run names its symbols and window in the message.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorDefinition,
    run_failure_sensor,
    run_status_sensor,
)

from lstm_pipeline.evaluation.alerting import RUNS_SOURCE, run_failure_alert, run_success_resolution
from lstm_pipeline.market.calendar import parse_window_key
from lstm_pipeline.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from lstm_pipeline.resources.storage import PipelineStore

PARTITION_TAG = "dagster/partition"


def run_scope(tags: Mapping[str, str]) -> tuple[list[str], pd.Timestamp | None]:
    """The symbols and the last window a run was for, from its partition tags (none for an unpartitioned run)."""
    keys = [tags[name] for name in (PARTITION_RANGE_START_TAG, PARTITION_RANGE_END_TAG, PARTITION_TAG) if name in tags]
    symbols: list[str] = []
    window = None
    for key in keys:
        symbol, _, window_text = key.partition("|")
        if symbol not in symbols:
            symbols.append(symbol)
        if window_text:
            window = parse_window_key(window_text)
    if PARTITION_RANGE_START_TAG in tags and len(symbols) == 2:
        symbols = [f"{symbols[0]}..{symbols[1]}"]
    return symbols, window


def _open_run_alerts(store: PipelineStore, key: str) -> pd.DataFrame:
    return store.read_rows(
        "alerts", ["source = ?", "alert_key = ?", "resolved_at IS NULL"], [RUNS_SOURCE, key]
    )


def _error_of(context: RunFailureSensorContext) -> str:
    """The innermost error of the first failed step (the user's sentence), else the run's failure message."""
    for event in context.get_step_failure_events():
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None and error.message:
            return error.message
    return context.failure_event.message or ""


def build_run_failure_sensors() -> list[SensorDefinition]:
    """The sensor that records failed runs as alerts and the one that resolves them when the job succeeds."""

    @run_failure_sensor(
        name="run_failure_alert_sensor",
        default_status=DefaultSensorStatus.RUNNING,
        description="Records each failed run as an ERROR alert (source 'runs', key run_failed:<job>); a repeated "
        "failure of the same job updates the open alert.",
    )
    def run_failure_alert_sensor(context: RunFailureSensorContext, store: PipelineStore) -> None:
        run = context.dagster_run
        symbols, window = run_scope(run.tags)
        key = f"run_failed:{run.job_name}"
        record = context.instance.get_run_record_by_id(run.run_id)
        ended = record.end_time if record is not None else None
        failed_at = pd.Timestamp(ended, unit="s", tz="UTC") if ended else pd.Timestamp.now(tz="UTC")
        row = run_failure_alert(
            run.job_name, run.run_id, _error_of(context), failed_at, _open_run_alerts(store, key), symbols, window
        )
        store.replace_tables({"alerts": (row[["source", "symbol", "as_of_window", "kind"]], row)})
        context.log.info(f"Alert {key}: {row['message'].iloc[0]}")

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS,
        name="run_success_alert_sensor",
        default_status=DefaultSensorStatus.RUNNING,
        description="Resolves the open run_failed:<job> alert when a later run of the same job succeeds.",
    )
    def run_success_alert_sensor(context: RunStatusSensorContext, store: PipelineStore) -> None:
        run = context.dagster_run
        key = f"run_failed:{run.job_name}"
        opened = _open_run_alerts(store, key)
        if opened.empty:
            return
        rows = run_success_resolution(run.job_name, run.run_id, pd.Timestamp.now(tz="UTC"), opened)
        store.replace_tables({"alerts": (rows[["source", "symbol", "as_of_window", "kind"]], rows)})
        context.log.info(f"Resolved {key}: run {run.run_id[:8]} succeeded.")

    return [run_failure_alert_sensor, run_success_alert_sensor]
