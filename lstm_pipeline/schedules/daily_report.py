"""At 17:15 New York on weekdays: the daily report of the day that just closed."""

import pandas as pd
from dagster import DefaultScheduleStatus, RunRequest, ScheduleDefinition, ScheduleEvaluationContext, schedule

from lstm_pipeline.jobs import daily_report_job
from lstm_pipeline.market.calendar import NEW_YORK


def build_daily_report_schedule() -> ScheduleDefinition:
    @schedule(
        name="daily_report_schedule",
        cron_schedule="15 17 * * 1-5",
        execution_timezone=NEW_YORK,
        job=daily_report_job,
        default_status=DefaultScheduleStatus.RUNNING,
        description="At 17:15 New York on weekdays, builds the day's HTML report (accuracy, recommendations, alerts).",
    )
    def daily_report_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        day = pd.Timestamp(context.scheduled_execution_time).tz_convert(NEW_YORK).date().isoformat()
        return RunRequest(run_key=f"daily_report:{day}", partition_key=day)

    return daily_report_schedule
