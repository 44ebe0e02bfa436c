"""Failed and canceled runs, and asset checks that did not pass, become alerts; a later success resolves them.

- A failed run: one open ERROR alert per job (``run_failed:<job>``, source ``runs``); a canceled run: one open
  WARNING alert per job (``run_canceled:<job>``). The job's next successful run resolves both.
- Every finished run (success, failure or cancel): each asset check evaluation in it that did not pass becomes one
  alert per check (``check_failed:<asset>.<check>``, source ``checks``, WARNING for a WARN check, ERROR for an ERROR
  check, the check's description as message), updated while the check keeps failing and resolved when a later
  run's evaluation of the same check passes. The evaluations are read from the instance's event log for that run
  (``instance.get_records_for_run(..., of_type=ASSET_CHECK_EVALUATION)``); the rules are
  ``evaluation.alerting.check_alerts``.

The sensors run in the daemon, not in a run: they write through the ``store`` resource, one short transaction
each (the DuckDB file takes one writer at a time; a run holding it is waited for, up to the store's lock timeout,
and a tick that could not write fails and is retried from the same cursor by Dagster). A run that is not for any
partition is recorded for every symbol (``*``); a partitioned run names its symbols and window in the message.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorDefinition,
    run_failure_sensor,
    run_status_sensor,
)

from lstm_pipeline.evaluation.alerting import (
    CHECK_EVALUATION_COLUMNS,
    CHECKS_SOURCE,
    RUN_ALERT_KINDS,
    RUN_CANCELED,
    RUN_FAILED,
    RUNS_SOURCE,
    alert_key,
    check_alerts,
    run_canceled_alert,
    run_failure_alert,
    run_success_resolution,
)
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


def _open_alerts(store: PipelineStore, source: str, keys: list[str] | None = None) -> pd.DataFrame:
    where, params = ["source = ?", "resolved_at IS NULL"], [source]
    if keys:
        where.append(f"alert_key IN ({', '.join('?' for _ in keys)})")
        params += keys
    return store.read_rows("alerts", where, params)


def _error_of(context: RunFailureSensorContext) -> str:
    """The innermost error of the first failed step (the user's sentence), else the run's failure message."""
    for event in context.get_step_failure_events():
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None and error.message:
            return error.message
    return context.failure_event.message or ""


def _ended_at(instance: DagsterInstance, run: DagsterRun) -> pd.Timestamp:
    record = instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None else None
    return pd.Timestamp(ended, unit="s", tz="UTC") if ended else pd.Timestamp.now(tz="UTC")


def check_evaluations(instance: DagsterInstance, run_id: str) -> pd.DataFrame:
    """Every asset check evaluation of a run (``CHECK_EVALUATION_COLUMNS``), from the instance's event log."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    rows = []
    for record in records:
        evaluation = record.event_log_entry.asset_check_evaluation
        if not isinstance(evaluation, AssetCheckEvaluation):
            continue
        rows.append({
            "asset": evaluation.asset_key.to_user_string(),
            "check_name": evaluation.check_name,
            "passed": bool(evaluation.passed),
            "severity": evaluation.severity.value,
            "description": evaluation.description,
        })
    return pd.DataFrame(rows, columns=CHECK_EVALUATION_COLUMNS)


def _check_alert_rows(
    instance: DagsterInstance, store: PipelineStore, run: DagsterRun, at: pd.Timestamp, log
) -> pd.DataFrame:
    """The check alerts a finished run raises, updates or resolves (rows to write; empty if none)."""
    evaluations = check_evaluations(instance, run.run_id)
    if evaluations.empty:
        return pd.DataFrame()
    symbols, window = run_scope(run.tags)
    result = check_alerts(evaluations, _open_alerts(store, CHECKS_SOURCE), at, run.run_id, window, symbols)
    for row in result.upserts.itertuples(index=False):
        state = "raised" if row.alert_key in result.raised_keys else "still failing"
        log.info(f"Alert {row.alert_key} ({row.level}, {state}): {row.message}")
    for row in result.resolutions.itertuples(index=False):
        log.info(f"Resolved {row.alert_key}: the check passed in run {run.run_id[:8]}.")
    return result.rows


def _write(store: PipelineStore, *frames: pd.DataFrame) -> None:
    """Write alert rows by their full keys, in one transaction."""
    frames = tuple(frame for frame in frames if len(frame))
    if not frames:
        return
    rows = pd.concat(frames, ignore_index=True)
    store.replace_tables({"alerts": (rows[["source", "symbol", "as_of_window", "kind"]], rows)})


def build_run_failure_sensors() -> list[SensorDefinition]:
    """The sensors that record failed and canceled runs and failed checks as alerts, and resolve them."""

    @run_failure_sensor(
        name="run_failure_alert_sensor",
        default_status=DefaultSensorStatus.RUNNING,
        description="Records each failed run as an ERROR alert (source 'runs', key run_failed:<job>; a repeated "
        "failure of the same job updates the open alert) and each of its asset checks that did not pass as a "
        "check alert (source 'checks', key check_failed:<asset>.<check>).",
    )
    def run_failure_alert_sensor(context: RunFailureSensorContext, store: PipelineStore) -> None:
        run = context.dagster_run
        symbols, window = run_scope(run.tags)
        key = alert_key(RUN_FAILED, run.job_name)
        failed_at = _ended_at(context.instance, run)
        row = run_failure_alert(
            run.job_name, run.run_id, _error_of(context), failed_at, _open_alerts(store, RUNS_SOURCE, [key]),
            symbols, window,
        )
        _write(store, row, _check_alert_rows(context.instance, store, run, failed_at, context.log))
        context.log.info(f"Alert {key}: {row['message'].iloc[0]}")

    @run_status_sensor(
        run_status=DagsterRunStatus.CANCELED,
        name="run_canceled_alert_sensor",
        default_status=DefaultSensorStatus.RUNNING,
        description="Records each canceled run as a WARNING alert (source 'runs', key run_canceled:<job>; resolved "
        "by the job's next success) and its asset checks that did not pass as check alerts.",
    )
    def run_canceled_alert_sensor(context: RunStatusSensorContext, store: PipelineStore) -> None:
        run = context.dagster_run
        symbols, window = run_scope(run.tags)
        key = alert_key(RUN_CANCELED, run.job_name)
        canceled_at = _ended_at(context.instance, run)
        reason = context.dagster_event.message or "canceled"
        row = run_canceled_alert(
            run.job_name, run.run_id, reason, canceled_at, _open_alerts(store, RUNS_SOURCE, [key]), symbols, window
        )
        _write(store, row, _check_alert_rows(context.instance, store, run, canceled_at, context.log))
        context.log.info(f"Alert {key}: {row['message'].iloc[0]}")

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS,
        name="run_success_alert_sensor",
        default_status=DefaultSensorStatus.RUNNING,
        description="Resolves the open run_failed:<job> and run_canceled:<job> alerts when a later run of the same "
        "job succeeds, and raises, updates or resolves the check alerts of the run's asset checks.",
    )
    def run_success_alert_sensor(context: RunStatusSensorContext, store: PipelineStore) -> None:
        run = context.dagster_run
        succeeded_at = _ended_at(context.instance, run)
        keys = [alert_key(kind, run.job_name) for kind in RUN_ALERT_KINDS]
        opened = _open_alerts(store, RUNS_SOURCE, keys)
        resolved = (
            run_success_resolution(run.job_name, run.run_id, succeeded_at, opened) if len(opened) else pd.DataFrame()
        )
        _write(store, resolved, _check_alert_rows(context.instance, store, run, succeeded_at, context.log))
        for key in resolved.get("alert_key", []):
            context.log.info(f"Resolved {key}: run {run.run_id[:8]} succeeded.")

    return [run_failure_alert_sensor, run_success_alert_sensor, run_canceled_alert_sensor]
