"""After the close: re-fetch the whole session, so late corrections from the provider replace intraday bars."""

import pandas as pd
from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from lstm_pipeline.jobs import market_bars_update_job
from lstm_pipeline.market.calendar import NEW_YORK, window_key, windows_for_session
from lstm_pipeline.partitions import partition_range_tags, registered_in_order, session_window_partitions
from lstm_pipeline.settings import Settings


def build_market_close_schedule(settings: Settings) -> ScheduleDefinition:
    """The after-close schedule for the configured symbols (built once per code-location load)."""
    symbols = list(settings.symbols)

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
        registered = list(context.instance.get_dynamic_partitions(session_window_partitions.name))
        missing = sorted(set(windows) - set(registered))
        if missing:
            return SkipReason(
                f"{len(missing)} window(s) of {day} are not registered yet (is market_windows_sensor running?)."
            )
        if not registered_in_order(registered, windows):
            # A range resolves by registration order; the market sensor puts the keys back in time order.
            return SkipReason(
                f"The windows of {day} are not registered in time order; market_windows_sensor reorders them on its "
                "next tick, then this session can be re-run from the UI."
            )
        return RunRequest(
            run_key=f"market_close:{day}",
            tags=partition_range_tags(symbols[0], symbols[-1], windows[0], windows[-1]),
        )

    return market_close_schedule
