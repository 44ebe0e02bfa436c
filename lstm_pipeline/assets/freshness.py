"""Freshness checks on ``market_bars`` and ``predictions``: Dagster's own last-update checks, on the session clock.

Each check passes when the asset was updated (any partition) within ``lower_bound`` of the latest tick of
``SESSION_DEADLINE_CRON``, i.e. every quarter hour from 10:00 to 16:45 New York on weekdays: while the session is
open (and up to the close's last bars) a quarter hour without fresh data past the data delay makes the check fail;
overnight and at weekends the latest tick is the last session's, which the closing update satisfies, so nothing
fails while the market is shut. The bound is two windows plus ``market_data.delay_minutes``. (Exchange holidays
have cron ticks but no data: the check fails on them; the run-status sensors turn that into a WARNING alert.)
``freshness_checks_sensor`` evaluates them. Dagster 1.13 also offers ``FreshnessPolicy`` (asset health, behind the
instance's ``freshness: enabled`` flag); these checks are what fails visibly and raises an alert.
"""

from __future__ import annotations

import datetime as dt
import warnings

from dagster import AssetChecksDefinition, AssetCheckSeverity, DefaultSensorStatus, SensorDefinition

from lstm_pipeline.settings import Settings

SESSION_DEADLINE_CRON = "*/15 10-16 * * 1-5"
"""Every quarter hour from 10:00 (the first bar's arrival) to 16:45 New York, Monday to Friday."""
FRESHNESS_TIMEZONE = "America/New_York"
WINDOWS_OF_SLACK = 2


def freshness_lower_bound(settings: Settings) -> dt.timedelta:
    return dt.timedelta(minutes=15 * WINDOWS_OF_SLACK + settings.market_data.delay_minutes)


def build_freshness_checks(settings: Settings) -> list[AssetChecksDefinition]:
    from dagster import build_last_update_freshness_checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # superseded in favour of FreshnessPolicy, which is not an asset check
        return list(
            build_last_update_freshness_checks(
                assets=["market_bars", "predictions"],
                lower_bound_delta=freshness_lower_bound(settings),
                deadline_cron=SESSION_DEADLINE_CRON,
                timezone=FRESHNESS_TIMEZONE,
                severity=AssetCheckSeverity.WARN,
            )
        )


def build_freshness_sensor(checks: list[AssetChecksDefinition]) -> SensorDefinition:
    from dagster import build_sensor_for_freshness_checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_sensor_for_freshness_checks(
            freshness_checks=checks, minimum_interval_seconds=300, default_status=DefaultSensorStatus.RUNNING
        )
