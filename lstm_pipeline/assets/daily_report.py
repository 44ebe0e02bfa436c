"""``daily_report``: one New York day's accuracy, recommendations and alerts as a self-contained HTML page + PNGs.

Partitioned by calendar day (New York); the ``daily_report_schedule`` runs it at 17:15 on weekdays for that day, and
any past day can be (re)built from the UI. Thin: ``operations.daily_report.build_daily_report`` reads and draws; this
asset writes ``<folder of the DuckDB file>/reports/<day>/`` (``daily_report.html`` and the charts) and records the
page's path, the day's summary and the accuracy chart as metadata.
"""


import base64
import datetime as dt
from pathlib import Path

from dagster import AssetExecutionContext, DailyPartitionsDefinition, MaterializeResult, MetadataValue, asset

from lstm_pipeline.operations.daily_report import build_daily_report
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import get_settings

daily_report_partitions = DailyPartitionsDefinition(
    start_date=get_settings().market_data.history_start, timezone="America/New_York", end_offset=1
)
"""One partition per New York calendar day, today included (the 17:15 schedule reports the day just closed)."""


def report_folder(db_path: str | Path, day: dt.date) -> Path:
    return Path(db_path).expanduser().parent / "reports" / day.isoformat()


@asset(
    partitions_def=daily_report_partitions,
    group_name="monitoring",
    kinds={"html"},
    description="The day's accuracy (model vs naive error of the windows it targeted), recommendations and alerts "
    "as a self-contained HTML page with PNG charts, written beside the DuckDB file under reports/<day>/.",
)
def daily_report(context: AssetExecutionContext, store: PipelineStore) -> MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    report = build_daily_report(store, get_settings(), day)
    folder = report_folder(store.duckdb.database, day)
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "daily_report.html"
    page.write_text(report.html, encoding="utf-8")
    for name, data in report.charts.items():
        (folder / name).write_bytes(data)
    context.log.info(f"Daily report of {day} written to {page}.")
    chart = base64.b64encode(report.charts["accuracy.png"]).decode()
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(page)),
            "summary": MetadataValue.json(report.summary),
            "accuracy_chart": MetadataValue.md(f"![accuracy](data:image/png;base64,{chart})"),
        }
    )
