"""The market sensor: registers each session window once its delayed data is due, and fetches it.

It is what makes the pipeline follow the market: every minute it asks the exchange calendar which windows
have closed at least ``delay_minutes`` ago, adds the new ones as ``session_windows`` partitions, and requests
one run that materializes them (bars, their checks, and a forecast as of each) for every symbol. History older
than ``catch_up_sessions`` sessions is only registered (for backfills from the UI), not fetched by itself, except
the ``warmup_sessions`` just before it when their bars are not stored yet (first start, or after downtime): a
bars-only run fetches them first, so the forecasts read a full lookback window.

Keys are registered in time order (ranges resolve by registration order): when ``history_start`` moves earlier, the
tick deletes and re-adds the later keys after the new ones (materialization history, keyed by key text, stays).
The sensor is built once per code-location load from the settings, with a clock tests can replace.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from lstm_pipeline.jobs import market_bars_update_job
from lstm_pipeline.market.calendar import NEW_YORK, closed_windows, sessions, window_key
from lstm_pipeline.partitions import partition_range_tags, session_window_partitions, window_registration
from lstm_pipeline.settings import Settings

Clock = Callable[[], pd.Timestamp]


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
    history_start: date | str,
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


def new_york_now() -> pd.Timestamp:
    """The wall clock, in New York: the sensors' default clock."""
    return pd.Timestamp.now(tz=NEW_YORK)


def build_market_windows_sensor(settings: Settings, clock: Clock = new_york_now) -> SensorDefinition:
    """The market sensor for these settings; ``clock`` says what time a tick runs at (tests pass a fixed one)."""
    market = settings.market_data
    symbols = list(settings.symbols)
    delay = timedelta(minutes=market.delay_minutes)

    @sensor(
        name="market_windows_sensor",
        job=market_bars_update_job,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Registers each NYSE session window once its 15-minute-delayed data is due and fetches it.",
    )
    def market_windows_sensor(context: SensorEvaluationContext) -> "SensorResult | SkipReason":
        registered = list(context.instance.get_dynamic_partitions(session_window_partitions.name))
        plan = plan_market_update(
            clock(), set(registered), market.history_start, market.catch_up_sessions, delay, market.warmup_sessions
        )
        registration = window_registration(registered, plan.new_window_keys)
        if not registration.to_add:
            return SkipReason("No session window has closed since the last tick.")

        def range_tags(first: str, last: str) -> dict[str, str]:
            return partition_range_tags(symbols[0], symbols[-1], first, last)

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
        if plan.new_window_keys:
            warmup = len(plan.warmup_window_keys) if plan.fetch_window_keys else 0
            context.log.info(
                f"Registering {len(plan.new_window_keys)} session window(s) ({plan.new_window_keys[0]} .. "
                f"{plan.new_window_keys[-1]}); fetching {len(plan.fetch_window_keys)}, after {warmup} warm-up "
                "window(s) of history."
            )
        if registration.reorders:
            context.log.info(
                f"Moving {len(registration.to_delete)} registered window(s) from {registration.to_delete[0]} on "
                "behind earlier ones, so partition ranges follow time order (their run history is kept)."
            )
        return SensorResult(run_requests=run_requests, dynamic_partitions_requests=registration.requests())

    return market_windows_sensor
