"""``backups``: encrypted backups of the store, partitioned like ``market_bars`` so lineage makes them incremental.

A run backs up every table's rows of its symbol-windows into one backup folder (``operations.backups``) and saves
model versions not saved yet. ``backups_restore_verified`` (blocking) restores that backup into a scratch DuckDB and
compares row counts and checksums; a tampered or truncated file fails authentication and fails the check.

Nightly, Dagster's own lineage picks the partitions: the automation condition below requests, at the first
evaluation after ``backups.nightly_cron``, every partition never backed up (missing) and every partition one of whose
upstream partitions was materialized again since its last backup (stale). A full backup is a backfill of every
partition, or ``lstm-pipeline backup`` (always full), which also holds the tables without symbol-windows.
"""

from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AutomationCondition,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from lstm_pipeline.jobs import WORKFLOW_CHAIN
from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.operations.backups import backup_models, create_backup, verify_backup
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.partitions import market_bars_partitions, requested_windows
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import Settings, get_settings


def nightly_backup_condition(cron: str) -> AutomationCondition:
    """New or stale partitions, once per ``cron`` tick (New York time), whose bars exist and nothing upstream runs."""
    # Stale from an upstream update until a backup lands; a backup landing in the same evaluation as an upstream
    # update (which it may not hold) does not clear it, and a failed backup never does.
    stale = AutomationCondition.any_deps_updated().since(
        AutomationCondition.newly_updated() & ~AutomationCondition.any_deps_updated()
    )
    bars_missing = AutomationCondition.any_deps_match(AutomationCondition.missing()).allow(
        AssetSelection.assets("market_bars")
    )
    # ``stale`` comes first: an AND evaluates later operands only where earlier ones hold, and ``since`` must see
    # every upstream update as it happens, not only at the nightly tick.
    return (
        (AutomationCondition.missing() | stale)
        & AutomationCondition.cron_tick_passed(cron, NEW_YORK)
        & ~bars_missing
        & ~AutomationCondition.in_progress()
        & ~AutomationCondition.any_deps_in_progress()
    ).with_label(f"nightly ({cron}): never backed up, or upstream changed since the last backup")


def settings_for(store: PipelineStore) -> Settings:
    """The settings with ``db_path`` of the store resource the run was given."""
    return get_settings().model_copy(update={"db_path": Path(store.duckdb.database)})


@asset(
    partitions_def=market_bars_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=list(WORKFLOW_CHAIN),
    group_name="operations",
    kinds={"parquet"},
    automation_condition=nightly_backup_condition(get_settings().backups.nightly_cron),
    description=(
        "Every table's rows of these symbol-windows as zstd Parquet, encrypted (AES-256-GCM, key "
        "LSTM_PIPELINE_BACKUP_KEY), with a signed manifest of row counts and SHA-256s, in backups.dir; plus each "
        "model version not saved yet. Nightly: the partitions never backed up or whose upstream changed."
    ),
)
def backups(context: AssetExecutionContext, store: PipelineStore) -> MaterializeResult:
    settings = settings_for(store)
    partitions = [
        (symbol, window) for symbol, windows in requested_windows(list(context.partition_keys)).items()
        for window in windows
    ]
    try:
        result = create_backup(settings, partitions, run_id=context.run_id)
        models = backup_models(settings)
    except OperationError as error:
        raise Failure(description=str(error), allow_retries=False) from None
    context.log.info(
        f"Backed up {result.partitions} symbol-window(s) to {result.path} ({result.bytes_written} bytes, "
        f"{'encrypted' if result.encrypted else 'UNENCRYPTED'}); model versions saved: {models or 'none new'}."
    )
    return MaterializeResult(
        metadata={
            "backup_id": MetadataValue.text(result.backup_id),
            "path": MetadataValue.path(str(result.path)),
            "encrypted": MetadataValue.bool(result.encrypted),
            "rows": MetadataValue.json(result.row_counts),
            "partitions": MetadataValue.int(result.partitions),
            "bytes": MetadataValue.int(result.bytes_written),
            "seconds": MetadataValue.float(round(result.seconds, 3)),
            "models_saved": MetadataValue.json(models),
        }
    )


@asset_check(
    asset=backups,
    name="backups_restore_verified",
    blocking=True,
    description="Restores the new backup into a scratch DuckDB and compares every table's row count and checksum "
    "with its manifest; a tampered or truncated file fails authentication.",
)
def backups_restore_verified(context: AssetCheckExecutionContext, store: PipelineStore) -> AssetCheckResult:
    event = context.instance.get_latest_materialization_event(AssetKey("backups"))
    if event is None or event.asset_materialization is None:
        return AssetCheckResult(
            passed=False, severity=AssetCheckSeverity.ERROR,
            description="No backup has been made yet; materialize backups first.",
        )
    backup_id = str(event.asset_materialization.metadata["backup_id"].value)
    try:
        result = verify_backup(settings_for(store), backup_id)
    except OperationError as error:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, description=str(error),
                                metadata={"backup_id": backup_id})
    for problem in result.problems:
        context.log.error(problem)
    return AssetCheckResult(
        passed=result.ok,
        severity=AssetCheckSeverity.ERROR,
        description=result.problems[0] if result.problems else f"Backup {backup_id} restores and matches its manifest.",
        metadata={
            "backup_id": backup_id,
            "rows": MetadataValue.json(result.row_counts),
            "problems": MetadataValue.json(result.problems),
            "seconds": MetadataValue.float(round(result.seconds, 3)),
        },
    )
