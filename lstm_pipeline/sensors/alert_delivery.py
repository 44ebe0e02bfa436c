"""``alert_delivery_sensor``: every minute, one delivery pass of ``operations.alert_channels.deliver_pending``.

Delivery runs in the daemon, never inside a pipeline run, so a dead webhook or SMTP server can slow nothing down
and fail nothing: the pass records the failure in ``alert_deliveries`` and retries it on a later tick. A store
that is busy (another writer holding the DuckDB file) skips the tick; the next one catches up.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from dagster import DefaultSensorStatus, SensorDefinition, SensorEvaluationContext, SkipReason, sensor

from lstm_pipeline.operations.alert_channels import deliver_pending
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import StorageError

DELIVERY_INTERVAL_SECONDS = 60


def build_alert_delivery_sensor(
    settings: Settings, clock: Callable[[], pd.Timestamp] | None = None
) -> SensorDefinition:
    """The sensor, bound to the settings of this load; ``clock`` (UTC now) is injectable for tests."""

    @sensor(
        name="alert_delivery_sensor",
        minimum_interval_seconds=DELIVERY_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description="Escalates unresolved WARNINGs and announces new, escalated and resolved alerts on the "
        "configured channels (console, JSON-lines file, signed webhook, email), throttled per alert_key; failed "
        "deliveries are recorded in alert_deliveries and retried with backoff.",
    )
    def alert_delivery_sensor(context: SensorEvaluationContext, store: PipelineStore) -> SkipReason:
        now = clock() if clock is not None else pd.Timestamp.now(tz="UTC")
        try:
            report = deliver_pending(store, settings, now=now)
        except StorageError as error:
            return SkipReason(f"The store could not be read or written this tick ({error}); retrying next tick.")
        for problem in [*report.failed, *report.gave_up]:
            context.log.warning(problem)
        return SkipReason(report.summary())

    return alert_delivery_sensor
