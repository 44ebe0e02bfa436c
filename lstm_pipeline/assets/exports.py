"""``exports``: the chain's results for chosen symbols and windows as CSV, JSON, Excel or Parquet, for people.

Launched from the UI (the launchpad's config below), by ``exports_schedule`` (the day's session after the close) or
by ``lstm-pipeline export``; the work is ``operations.exports``. ``exports_readable`` re-reads every file and
compares its row count and SHA-256 with the manifest. Exports older than ``retention.exports_days`` are removed
after each run (and by the retention job).
"""

from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.exports import EXPORTED_TABLES, clean_exports, create_export, verify_export
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import get_settings


class ExportConfig(Config):
    """Launchpad settings of an export."""

    symbols: list[str] = Field(default_factory=list, description="Symbols to export (empty: every configured one).")
    start: str | None = Field(None, description="First window (New York time, e.g. 2025-01-02T09:30; empty: open).")
    end: str | None = Field(None, description="Last window, inclusive (empty: open).")
    format: str = Field("", description="csv, json, excel or parquet (empty: exports.default_format).")
    tables: list[str] = Field(default_factory=lambda: list(EXPORTED_TABLES), description="Tables to export.")


@asset(
    group_name="operations",
    deps=["predictions", "validations", "accuracy_metrics", "trade_recommendations", "alerts"],
    kinds={"csv", "parquet"},
    description=(
        "Predictions, validations, accuracy metrics, recommendations and alerts for chosen symbols and a window range, "
        "as CSV, JSON, Excel or Parquet with a manifest of row counts and SHA-256s, in exports.dir."
    ),
)
def exports(context: AssetExecutionContext, config: ExportConfig, store: PipelineStore) -> MaterializeResult:
    settings = get_settings().model_copy(update={"db_path": Path(store.duckdb.database)})
    try:
        result = create_export(
            settings,
            symbols=config.symbols or None,
            start=config.start or None,
            end=config.end or None,
            fmt=config.format or None,
            tables=config.tables,
        )
    except OperationError as error:
        raise Failure(description=str(error), allow_retries=False) from None
    removed = []
    if settings.retention.exports_days is not None:
        removed = clean_exports(settings, settings.retention.exports_days)
    context.log.info(f"Exported {result.row_counts} to {result.path}; removed {len(removed)} old export(s).")
    return MaterializeResult(
        metadata={
            "export_id": MetadataValue.text(result.export_id),
            "path": MetadataValue.path(str(result.path)),
            "format": MetadataValue.text(result.fmt),
            "rows": MetadataValue.json(result.row_counts),
            "old_exports_removed": MetadataValue.int(len(removed)),
        }
    )


@asset_check(
    asset=exports,
    name="exports_readable",
    blocking=True,
    description="Re-reads every file of the new export and compares its row count and SHA-256 with the manifest.",
)
def exports_readable(context: AssetCheckExecutionContext) -> AssetCheckResult:
    event = context.instance.get_latest_materialization_event(AssetKey("exports"))
    if event is None or event.asset_materialization is None:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR,
                                description="No export has been made yet; materialize exports first.")
    path = str(event.asset_materialization.metadata["path"].value)
    try:
        problems = verify_export(path)
    except OperationError as error:
        problems = [str(error)]
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        description=problems[0] if problems else "Every file reads back with the manifest's rows and SHA-256.",
        metadata={"path": MetadataValue.path(path), "problems": MetadataValue.json(problems)},
    )
