"""After the close: re-fetch the whole session, so late corrections from the provider replace intraday bars."""

import pandas as pd
from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from lstm_pipeline.jobs import market_bars_update_job
from lstm_pipeline.market.calendar import NEW_YORK, window_key, windows_for_session
from lstm_pipeline.partitions import market_bars_key, session_window_partitions, symbol_partitions


@schedule(
    name="market_close_schedule",
    cron_schedule="40 16 * * 1-5",
    execution_timezone=NEW_YORK,
    job=market_bars_update_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="At 16:40 New York on weekdays, re-materializes the day's session windows for every symbol.",
)
def market_close_schedule(context: ScheduleEvaluationContext) -> "RunRequest | SkipReason":
    day = pd.Timestamp(context.scheduled_execution_time).tz_convert(NEW_YORK).date()
    windows = [window_key(stamp) for stamp in windows_for_session(day)]
    if not windows:
        return SkipReason(f"{day} is not an NYSE trading day.")
    registered = set(context.instance.get_dynamic_partitions(session_window_partitions.name))
    missing = [key for key in windows if key not in registered]
    if missing:
        return SkipReason(
            f"{len(missing)} window(s) of {day} are not registered yet (is market_windows_sensor running?)."
        )
    symbols = symbol_partitions.get_partition_keys()
    return RunRequest(
        run_key=f"market_close:{day}",
        tags={
            ASSET_PARTITION_RANGE_START_TAG: str(market_bars_key(symbols[0], windows[0])),
            ASSET_PARTITION_RANGE_END_TAG: str(market_bars_key(symbols[-1], windows[-1])),
        },
    )
