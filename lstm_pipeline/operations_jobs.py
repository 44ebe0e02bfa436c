"""Jobs of the operations (issue #10): backup, export, restore and retention, launched from the UI or a schedule;
and alert actions (acknowledge or resolve), which the REST service launches because it never writes the store.

The op jobs are thin: they build the settings of the run's store and call ``lstm_pipeline.operations``. A restore
refuses to replace the store while another run of this instance is in progress (or any process holds the DuckDB
write lock); the CLI (``lstm-pipeline restore``) calls the same function and asks ``active_runs`` the same question.
A retention run records one ``AssetObservation`` per asset it deleted rows of, listing the pruned symbol-windows as
ranges per symbol: the UI marks what is gone without one event per partition (Dagster's open-source event log cannot
wipe single partitions, and the session windows are shared by every symbol and asset, so they cannot be deleted).
"""

from pathlib import Path

import pandas as pd
from dagster import (
    AssetObservation,
    AssetSelection,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    RunsFilter,
    define_asset_job,
    job,
    op,
)
from pydantic import Field

from lstm_pipeline.operations.alert_channels import AlertNotFoundError, acknowledge_alerts, resolve_alerts
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.restore import restore
from lstm_pipeline.operations.retention import RetentionPlan, apply_retention, plan_retention, pruned_by_asset
from lstm_pipeline.partitions import contiguous_ranges, market_bars_partitions
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import Settings, get_settings

_ACTIVE = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]

backup_job = define_asset_job(
    name="backup",
    selection=AssetSelection.assets("backups"),
    partitions_def=market_bars_partitions,
    description="Backs up a range of symbol-windows (a backfill of every partition is a full backup) and verifies the "
    "backup by restoring it into a scratch DuckDB.",
)

export_job = define_asset_job(
    name="export",
    selection=AssetSelection.assets("exports"),
    description="Exports predictions, validations, accuracy metrics, recommendations and alerts (set symbols, window "
    "range and format in the launchpad).",
)


def _settings(store: PipelineStore) -> Settings:
    return get_settings().model_copy(update={"db_path": Path(store.duckdb.database)})


def runs_in_progress(context: OpExecutionContext) -> str | None:
    """Why the store may be being written: another run of this instance that has started and not finished."""
    return active_runs(context.instance, exclude_run_id=context.run_id)


def active_runs(instance: DagsterInstance, exclude_run_id: str | None = None) -> str | None:
    """Which runs of ``instance`` have started and not finished (one phrase), or None."""
    records = instance.get_run_records(RunsFilter(statuses=_ACTIVE), limit=20)
    others = [record.dagster_run for record in records if record.dagster_run.run_id != exclude_run_id]
    if not others:
        return None
    first = others[0]
    more = f" and {len(others) - 1} more" if len(others) > 1 else ""
    return f"run {first.run_id} of {first.job_name}{more} is in progress"


class RestoreConfig(Config):
    """Launchpad settings of a restore."""

    table: str = Field("", description="One table to restore (empty: the whole store).")
    as_of: str = Field("", description="Point in time (e.g. 2025-01-06T02:00Z): the newest backup of each partition "
                       "made at or before it (empty: the newest).")
    dry_run: bool = Field(False, description="Build and verify the restored file, but do not swap it in.")


@op(description="Restores the store from the backups into a new file, verifies it and swaps it in atomically.")
def restore_store(context: OpExecutionContext, config: RestoreConfig, store: PipelineStore) -> None:
    try:
        as_of = pd.Timestamp(config.as_of) if config.as_of else None
    except ValueError:
        raise Failure(description=f"as_of {config.as_of!r} is not a time; give e.g. 2025-01-06T02:00Z.",
                      allow_retries=False) from None
    try:
        result = restore(
            _settings(store), table=config.table or None, as_of=as_of, dry_run=config.dry_run,
            busy=lambda: runs_in_progress(context),
        )
    except OperationError as error:
        raise Failure(description=str(error), allow_retries=False) from None
    context.log.info(
        f"{'Verified (dry run)' if result.dry_run else 'Restored'} {result.tables_restored} from backups "
        f"{result.backups_used}: rows {result.row_counts}; previous file {result.previous_path}."
    )
    for line in result.warnings():
        context.log.warning(line)


@job(name="restore", description="Restores the whole store, one table, or its state at a point in time from the "
     "backups; never while another run is in progress.")
def restore_job() -> None:
    restore_store()


class RetentionConfig(Config):
    """Launchpad settings of a retention run."""

    dry_run: bool = Field(False, description="Only list what would be deleted.")


@op(description="Deletes rows older than each category's retention.<category>_days that a verified backup holds, "
    "old exports and superseded backups; records pruned symbol-windows.")
def apply_store_retention(context: OpExecutionContext, config: RetentionConfig, store: PipelineStore) -> None:
    settings = _settings(store)
    try:
        plan = plan_retention(settings)
        if not config.dry_run:
            plan = apply_retention(settings, plan)
    except OperationError as error:
        raise Failure(description=str(error), allow_retries=False) from None
    for line in plan.describe():
        context.log.info(line)
    for observation in pruned_observations(plan):
        context.log_event(observation)


def pruned_observations(plan: RetentionPlan) -> list[AssetObservation]:
    """One observation per asset whose rows an applied plan deleted: its pruned symbol-windows as ranges per symbol."""
    if not plan.applied:
        return []
    observations = []
    for asset, pruned in pruned_by_asset(plan).items():
        ranges = {
            str(symbol): [[start.isoformat(), end.isoformat()] for start, end in contiguous_ranges(windows)]
            for symbol, windows in pruned.partitions.groupby("symbol")["window_start"]
        }
        observations.append(AssetObservation(
            asset_key=asset,
            description=f"Retention deleted {pruned.rows} row(s) of {', '.join(pruned.tables)} older than "
            f"{pruned.cutoff:%Y-%m-%d %H:%M} (a verified backup holds them; a restore brings them back): the "
            "symbol-windows in pruned_windows have no data in the store, whatever their materializations say.",
            metadata={
                "pruned_partitions": MetadataValue.int(len(pruned.partitions)),
                "pruned_rows": MetadataValue.int(pruned.rows),
                "pruned_windows": MetadataValue.json(ranges),
                "tables": MetadataValue.json(pruned.tables),
                "held_by_backups": MetadataValue.json(pruned.backup_ids),
                "cutoff": MetadataValue.timestamp(pruned.cutoff),
            },
        ))
    return observations


@job(name="retention", description="Applies the retention settings (or, with dry_run, lists what would go).")
def retention_job() -> None:
    apply_store_retention()


ALERT_ACTIONS = {"acknowledge": acknowledge_alerts, "resolve": resolve_alerts}


class AlertActionConfig(Config):
    """Launchpad settings of an alert action (the REST service's POST /alerts/{alert_key}/ack and /resolve)."""

    alert_key: str = Field(description="The alert's key, e.g. prediction_error:AAPL.")
    action: str = Field(description="acknowledge or resolve.")
    by: str = Field(description="Who asks (the REST service passes api:<key id>).")


@op(description="Acknowledges or resolves every open alert with the configured key, as `lstm-pipeline alerts ack` "
    "and `resolve` do.")
def apply_alert_action(context: OpExecutionContext, config: AlertActionConfig, store: PipelineStore) -> None:
    action = ALERT_ACTIONS.get(config.action)
    if action is None:
        raise Failure(description=f"Action {config.action!r} is not an alert action; use acknowledge or resolve.",
                      allow_retries=False)
    try:
        rows = action(store, config.alert_key, config.by)
    except AlertNotFoundError as error:
        raise Failure(description=str(error), allow_retries=False) from None
    context.log.info(f"{config.action.capitalize()}d {len(rows)} open alert(s) with key {config.alert_key} for "
                     f"{config.by}.")


@job(name="alert_actions", description="Acknowledges or resolves the open alerts with one key (launched by the REST "
     "service, which never writes the store itself).")
def alert_actions_job() -> None:
    apply_alert_action()
