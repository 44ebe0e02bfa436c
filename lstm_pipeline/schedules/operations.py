"""Schedules of the operations: the day's export after the close, and the nightly retention run.

Both start stopped (turn them on in the UI): an export writes files and retention deletes rows, so an operator
chooses. The nightly backup is not a schedule but ``backups``' automation condition (``sensors/backups_automation.py``),
so that Dagster's lineage picks exactly the new and stale partitions.
"""

import pandas as pd
from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from lstm_pipeline.market.calendar import NEW_YORK, windows_for_session
from lstm_pipeline.operations_jobs import export_job, retention_job
from lstm_pipeline.settings import Settings


def build_export_schedule(settings: Settings) -> ScheduleDefinition:
    """The day's windows of every symbol, exported in ``exports.default_format`` at ``exports.schedule_cron``."""

    @schedule(
        name="exports_schedule",
        cron_schedule=settings.exports.schedule_cron,
        execution_timezone=NEW_YORK,
        job=export_job,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Exports the day's predictions, validations, metrics, recommendations and alerts after the close.",
    )
    def exports_schedule(context: ScheduleEvaluationContext) -> "RunRequest | SkipReason":
        day = pd.Timestamp(context.scheduled_execution_time).tz_convert(NEW_YORK).date()
        windows = windows_for_session(day)
        if not len(windows):
            return SkipReason(f"{day} is not an NYSE trading day.")
        config = {"start": windows[0].isoformat(), "end": windows[-1].isoformat(),
                  "format": settings.exports.default_format}
        return RunRequest(run_key=f"exports:{day}", run_config={"ops": {"exports": {"config": config}}})

    return exports_schedule


def build_retention_schedule(settings: Settings) -> ScheduleDefinition:
    """The retention job at ``retention.schedule_cron`` (New York)."""
    return ScheduleDefinition(
        name="retention_schedule",
        cron_schedule=settings.retention.schedule_cron,
        execution_timezone=NEW_YORK,
        job=retention_job,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Deletes what the retention settings expire (only rows a verified backup holds).",
    )

