"""The market sensor: registers each session window once its delayed data is due, and fetches it.

It is what makes the pipeline follow the market: every minute it asks the exchange calendar which windows
have closed at least ``delay_minutes`` ago, adds the new ones as ``session_windows`` partitions, and requests
one run that materializes them (bars, their checks, and a forecast as of each) for every symbol. History older
than ``catch_up_sessions`` sessions is only registered (for backfills from the UI), not fetched by itself, except
the ``warmup_sessions`` just before it when their bars are not stored yet (first start, or after downtime): a
bars-only run fetches them first, so the forecasts read a full lookback window.
"""


from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd
from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from lstm_pipeline.jobs import market_bars_update_job
from lstm_pipeline.market.calendar import NEW_YORK, closed_windows, sessions, window_key
from lstm_pipeline.partitions import market_bars_key, session_window_partitions, symbol_partitions
from lstm_pipeline.settings import load_settings


@dataclass(frozen=True)
class MarketUpdatePlan:
    """What one sensor tick does: window keys to register, and the window keys to fetch now."""

    new_window_keys: list[str]
    fetch_window_keys: list[str]
    warmup_window_keys: list[str] = field(default_factory=list)
    """New windows of the sessions just before the fetched ones: fetched first, bars only, as forecast history."""


def plan_market_update(
    now: pd.Timestamp,
    existing_window_keys: set[str],
    history_start: str,
    catch_up_sessions: int,
    delay: timedelta = timedelta(minutes=15),
    warmup_sessions: int = 0,
) -> MarketUpdatePlan:
    """Pure planning logic of the sensor, so it can be tested with any clock."""
    due = closed_windows(now, history_start, delay)
    new_keys = [key for key in (window_key(stamp) for stamp in due) if key not in existing_window_keys]
    if not new_keys:
        return MarketUpdatePlan([], [])
    today = pd.Timestamp(now).tz_convert(NEW_YORK).date()
    recent = sessions(today - timedelta(days=10 + 2 * (catch_up_sessions + warmup_sessions)), today)
    recent = recent[recent["open"] <= pd.Timestamp(now)]
    first_recent = recent["open"].iloc[-min(catch_up_sessions, len(recent))] if len(recent) else due[-1]
    fresh = set(new_keys)
    fetch = [key for key in (window_key(stamp) for stamp in due if stamp >= first_recent) if key in fresh]
    warmup: list[str] = []
    if warmup_sessions and len(recent) > catch_up_sessions:
        first_warmup = recent["open"].iloc[-min(catch_up_sessions + warmup_sessions, len(recent))]
        warmup = [
            key for key in (window_key(s) for s in due if first_warmup <= s < first_recent) if key in fresh
        ]
    return MarketUpdatePlan(new_keys, fetch, warmup)


MARKET_BARS = AssetKey("market_bars")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz=NEW_YORK)


@sensor(
    name="market_windows_sensor",
    job=market_bars_update_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Registers each NYSE session window once its 15-minute-delayed data is due and fetches it.",
)
def market_windows_sensor(context: SensorEvaluationContext) -> "SensorResult | SkipReason":
    settings = load_settings()
    existing = set(context.instance.get_dynamic_partitions(session_window_partitions.name))
    plan = plan_market_update(
        _now(),
        existing,
        settings.market_data.history_start,
        settings.market_data.catch_up_sessions,
        timedelta(minutes=settings.market_data.delay_minutes),
        settings.market_data.warmup_sessions,
    )
    if not plan.new_window_keys:
        return SkipReason("No session window has closed since the last tick.")
    symbols = symbol_partitions.get_partition_keys()

    def range_tags(first: str, last: str) -> dict[str, str]:
        return {
            ASSET_PARTITION_RANGE_START_TAG: str(market_bars_key(symbols[0], first)),
            ASSET_PARTITION_RANGE_END_TAG: str(market_bars_key(symbols[-1], last)),
        }

    run_requests = []
    if plan.warmup_window_keys and plan.fetch_window_keys:
        # Queued first (runs execute one at a time), so the forecasts of the next run read a full lookback.
        first, last = plan.warmup_window_keys[0], plan.warmup_window_keys[-1]
        run_requests.append(
            RunRequest(
                run_key=f"market_bars_warmup:{first}:{last}",
                asset_selection=[MARKET_BARS],
                tags=range_tags(first, last),
            )
        )
    if plan.fetch_window_keys:
        first, last = plan.fetch_window_keys[0], plan.fetch_window_keys[-1]
        run_requests.append(RunRequest(run_key=f"market_bars:{first}:{last}", tags=range_tags(first, last)))
    context.log.info(
        f"Registering {len(plan.new_window_keys)} session window(s) ({plan.new_window_keys[0]} .. "
        f"{plan.new_window_keys[-1]}); fetching {len(plan.fetch_window_keys)}, after {len(plan.warmup_window_keys)} "
        "warm-up window(s) of history."
    )
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[session_window_partitions.build_add_request(plan.new_window_keys)],
    )
