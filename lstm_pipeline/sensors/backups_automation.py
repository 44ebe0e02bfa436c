"""The nightly backup: this sensor evaluates ``backups``' automation condition (``assets/backups.py``).

After each ``backups.nightly_cron`` tick it requests every ``backups`` partition never backed up, or one of whose
upstream partitions was materialized again since its last backup, as one single-run backfill: incremental backups
decided by Dagster's own lineage, not by a list kept here.

It runs by default, but backups need a key (``LSTM_PIPELINE_BACKUP_KEY``) or ``backups.allow_unencrypted``: without
either, every nightly run would fail on the refusal. So each tick first asks ``backups_refused`` and, when backups
are not configured, skips with that one sentence and launches nothing (the tick's skip reason is what the UI shows);
a backup asked for by hand still fails with the same sentence. The condition is therefore evaluated in the code
server (``use_user_code_server``), where the settings are, rather than in the daemon.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SkipReason,
)

from lstm_pipeline.operations.backups import backups_refused
from lstm_pipeline.settings import Settings, get_settings

SENSOR_NAME = "backups_automation_sensor"


class BackupsAutomationSensor(AutomationConditionSensorDefinition):
    """An automation condition sensor that evaluates only while backups can be written under the settings."""

    def __init__(self, name: str, *, settings: Callable[[], Settings] = get_settings, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # use_user_code_server is marked beta
            super().__init__(name, use_user_code_server=True, **kwargs)
        self._settings = settings
        self._init_kwargs = kwargs
        evaluate_condition = self._raw_fn

        def evaluate(context: SensorEvaluationContext) -> Any:
            refusal = backups_refused(self._settings())
            if refusal is not None:
                return SkipReason(f"Nightly backups are off: {refusal}")
            return evaluate_condition(context)

        # The parent wires its own evaluation function; the gate goes in front of it (what the daemon and tests call).
        from dagster._core.definitions.sensor_definition import wrap_sensor_evaluation

        self._raw_fn = evaluate
        self._evaluation_fn = wrap_sensor_evaluation(self._name, evaluate)

    def with_attributes(
        self, *, jobs: Any = None, metadata: Mapping[str, Any] | None = None
    ) -> BackupsAutomationSensor:
        """A copy (Dagster makes some while resolving definitions) that keeps the gate."""
        kwargs = dict(self._init_kwargs)
        if metadata is not None:
            kwargs["metadata"] = metadata
        return BackupsAutomationSensor(self.name, settings=self._settings, **kwargs)


def build_backups_automation_sensor(settings: Callable[[], Settings] = get_settings) -> BackupsAutomationSensor:
    return BackupsAutomationSensor(
        SENSOR_NAME,
        settings=settings,
        target=AssetSelection.assets("backups"),
        default_status=DefaultSensorStatus.RUNNING,
        description="Backs up, after backups.nightly_cron, the partitions never backed up or whose upstream changed; "
        "skips (launching nothing) while neither LSTM_PIPELINE_BACKUP_KEY nor backups.allow_unencrypted is set.",
    )


backups_automation_sensor = build_backups_automation_sensor()
