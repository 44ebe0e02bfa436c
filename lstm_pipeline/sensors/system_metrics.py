"""``system_metrics``: monitoring samples as a sensor-driven observation, no run per sample.

Every minute the sensor asks which of the six categories are due (``monitoring_intervals``, the cursor remembers
each one's last sample), samples those (``operations.monitoring.sample_metrics``), judges the KPIs against
``alert_thresholds`` (``monitoring_alerts``) and writes the samples and the alert rows in one transaction. Each tick
that sampled records a materialization of the ``system_metrics`` asset with the KPIs as metadata, so the UI plots
them. A busy store skips the tick without moving the cursor: the next tick samples again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import (
    AssetMaterialization,
    AssetSpec,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from lstm_pipeline.operations.monitoring import (
    METRIC_COLUMNS,
    MONITORING_SOURCE,
    RECENT,
    alert_inputs,
    due_categories,
    monitoring_alerts,
    sample_metrics,
)
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import StorageError

system_metrics = AssetSpec(
    "system_metrics",
    group_name="monitoring",
    kinds={"duckdb"},
    description="Samples of the spec's six monitoring categories (prediction accuracy, model performance, host "
    "CPU/memory/disk, API response times and error rates, DuckDB size and query times, trade performance) in the "
    "system_metrics table, taken by system_metrics_sensor on monitoring_intervals; each sample's KPIs are this "
    "asset's metadata.",
)


def build_system_metrics_sensor(
    settings: Settings,
    clock: Callable[[], pd.Timestamp] | None = None,
    psutil_module: Any | None = None,
    api_paths: Sequence[Path] | None = None,
) -> SensorDefinition:
    """The sensor bound to this load's settings; ``clock`` (UTC), ``psutil_module`` and ``api_paths`` for tests."""

    @sensor(
        name="system_metrics_sensor",
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Samples the monitoring categories whose monitoring_intervals have elapsed into system_metrics "
        "and raises or resolves threshold alerts (source monitoring) from the KPIs.",
    )
    def system_metrics_sensor(context: SensorEvaluationContext, store: PipelineStore) -> SensorResult | SkipReason:
        now = clock() if clock is not None else pd.Timestamp.now(tz="UTC")
        last = json.loads(context.cursor) if context.cursor else {}
        due = due_categories(settings.monitoring_intervals, last, now)
        if not due:
            return SkipReason("No monitoring category is due yet.")
        try:
            samples = sample_metrics(store, settings, due, now, api_paths=api_paths, psutil_module=psutil_module)
            history = store.read_rows("system_metrics", ["sampled_at >= ?"], [now - RECENT])
            frames = [frame for frame in (history.reindex(columns=METRIC_COLUMNS), samples) if len(frame)]
            everything = pd.concat(frames, ignore_index=True)
            everything["sampled_at"] = pd.to_datetime(everything["sampled_at"], utc=True)
            judged = alert_inputs(everything)
            kpis = {name: value for name, value in judged.items() if name != "mean_abs_error"}
            opened = store.read_rows("alerts", ["source = ?", "resolved_at IS NULL"], [MONITORING_SOURCE])
            alert_rows, alert_keys = monitoring_alerts(judged, settings.alert_thresholds, opened, now)
            writes = {"system_metrics": (samples[["sampled_at", "category"]].drop_duplicates(), samples)}
            if len(alert_rows):
                writes["alerts"] = (alert_keys, alert_rows)
            store.replace_tables(writes)
        except StorageError as error:
            return SkipReason(f"The store could not be read or written this tick ({error}); sampling again next tick.")
        cursor = {**last, **{category: now.isoformat() for category in due}}
        metadata: dict[str, Any] = {
            name: MetadataValue.float(float(value)) for name, value in kpis.items() if value is not None
        }
        metadata["categories_sampled"] = MetadataValue.json(due)
        metadata["kpis_missing"] = MetadataValue.json(sorted(name for name, value in kpis.items() if value is None))
        for row in alert_rows.itertuples(index=False):
            state = "resolved" if pd.notna(row.resolved_at) else row.level
            context.log.info(f"Monitoring alert {row.alert_key} {state}: {row.message}")
        return SensorResult(
            asset_events=[AssetMaterialization(asset_key="system_metrics", metadata=metadata)],
            cursor=json.dumps(cursor),
        )

    return system_metrics_sensor
