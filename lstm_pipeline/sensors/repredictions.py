"""The reprediction sensor: a forecast that validation found wrong is made again, once per symbol and cause.

Each tick reads the validations flagged ``needs_reprediction`` since its cursor (the last ``validated_at`` it
consumed) and requests, per symbol and cause, ONE run of the ``reprediction`` job over the symbol's latest
``predictions`` partition: it re-fetches that window's bar (providers correct bars), checks it, forecasts again
tagged ``lstm_pipeline/reprediction_cause=<cause>`` (the rows' reason reads ``reprediction: <cause>`` and the new
forecast supersedes the old), and runs the rest of the chain for that window. Run keys
``reprediction:<symbol>:<cause>:<as_of_window>`` make Dagster launch each at most once.

Guards, all kept in the JSON cursor so they survive a restart of the daemon: a cooldown per (symbol, cause)
(``workflow.reprediction_cooldown_minutes``: a symbol that keeps failing validation is repredicted at most that
often; flags inside the cooldown are dropped), and a cap per tick (``workflow.max_repredictions_per_tick``: the
rest wait, oldest first, for the next ticks, so one bad tick over 50 symbols does not launch 50 runs). Without a
cursor (first start) only the last day's flags are read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from lstm_pipeline.assets.predictions import REPREDICTION_CAUSE_TAG
from lstm_pipeline.jobs import reprediction_job
from lstm_pipeline.market.calendar import NEW_YORK, window_key
from lstm_pipeline.partitions import market_bars_key
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import Settings

Clock = Callable[[], pd.Timestamp]
VALIDATION_ERROR = "validation_error"
"""Cause of a reprediction asked for by ``needs_reprediction`` validations."""
NEEDS_REPREDICTION = "needs_reprediction"
FIRST_TICK_LOOKBACK = pd.Timedelta(days=1)


def new_york_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz=NEW_YORK)


@dataclass
class RepredictionCursor:
    """What the sensor remembers between ticks (stored as JSON in the sensor's cursor)."""

    validated_at: pd.Timestamp | None = None
    """The newest ``validated_at`` consumed: later ticks read only newer flags."""
    last_requested: dict[str, pd.Timestamp] = field(default_factory=dict)
    """``SYMBOL:cause`` -> when its last reprediction was requested (for the cooldown)."""
    pending: dict[str, pd.Timestamp] = field(default_factory=dict)
    """``SYMBOL:cause`` -> the latest flagged window of a request the cap deferred to a later tick."""

    @classmethod
    def from_json(cls, text: str | None) -> RepredictionCursor:
        if not text:
            return cls()
        data = json.loads(text)
        stamp = data.get("validated_at")
        return cls(
            validated_at=pd.Timestamp(stamp) if stamp else None,
            last_requested={key: pd.Timestamp(value) for key, value in data.get("last_requested", {}).items()},
            pending={key: pd.Timestamp(value) for key, value in data.get("pending", {}).items()},
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "validated_at": self.validated_at.isoformat() if self.validated_at is not None else None,
                "last_requested": {key: value.isoformat() for key, value in sorted(self.last_requested.items())},
                "pending": {key: value.isoformat() for key, value in sorted(self.pending.items())},
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class RepredictionPlan:
    """One tick's decision: (symbol, cause, latest flagged window) to request, and the cursor after it."""

    requests: list[tuple[str, str, pd.Timestamp]]
    cursor: RepredictionCursor
    cooling_down: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)


def plan_repredictions(
    flagged: pd.DataFrame,
    cursor: RepredictionCursor,
    now: pd.Timestamp,
    cooldown: pd.Timedelta,
    max_per_tick: int,
    cause: str = VALIDATION_ERROR,
) -> RepredictionPlan:
    """Pure planning: ``flagged`` holds the new flagged validations (symbol, target_window, validated_at)."""
    now = pd.Timestamp(now)
    candidates = dict(cursor.pending)
    if len(flagged):
        for symbol, window in flagged.groupby("symbol")["target_window"].max().items():
            key = f"{symbol}:{cause}"
            candidates[key] = max(window, candidates.get(key, window))
    last_requested = {key: stamp for key, stamp in cursor.last_requested.items() if now - stamp < cooldown}
    cooling = sorted(key for key in candidates if key in last_requested)
    ready = sorted((window, key) for key, window in candidates.items() if key not in last_requested)
    chosen, deferred = ready[:max_per_tick], ready[max_per_tick:]
    requests = []
    for window, key in chosen:
        symbol, _, reason = key.rpartition(":")
        requests.append((symbol, reason, window))
        last_requested[key] = now
    consumed = flagged["validated_at"].max() if len(flagged) else None
    validated_at = cursor.validated_at
    if consumed is not None and not pd.isna(consumed):
        validated_at = consumed if validated_at is None else max(validated_at, consumed)
    return RepredictionPlan(
        requests=requests,
        cursor=RepredictionCursor(validated_at, last_requested, {key: window for window, key in deferred}),
        cooling_down=cooling,
        deferred=[key for _, key in deferred],
    )


def latest_as_of_windows(store: PipelineStore, wanted: dict[str, pd.Timestamp]) -> dict[str, pd.Timestamp]:
    """Each symbol's latest stored forecast as of its flagged window or later (the flagged window if none)."""
    if not wanted:
        return {}
    clauses = " OR ".join("(symbol = ? AND as_of_window >= ?)" for _ in wanted)
    params: list[object] = [value for item in wanted.items() for value in item]
    stored = store.read_rows("predictions", [f"({clauses})", "horizon_step = 1"], params)
    latest = stored.groupby("symbol")["as_of_window"].max().to_dict() if len(stored) else {}
    return {symbol: max(window, latest.get(symbol, window)) for symbol, window in wanted.items()}


def build_reprediction_sensor(settings: Settings, clock: Clock = new_york_now) -> SensorDefinition:
    """The reprediction sensor for these settings; ``clock`` says what time a tick runs at (tests pass a fixed one)."""
    workflow = settings.workflow
    cooldown = pd.Timedelta(minutes=workflow.reprediction_cooldown_minutes)

    @sensor(
        name="reprediction_sensor",
        job=reprediction_job,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Re-fetches and re-forecasts a symbol's latest window when its validations need reprediction: "
        "one run per symbol and cause, with a cooldown and a cap per tick.",
    )
    def reprediction_sensor(context: SensorEvaluationContext, store: PipelineStore) -> SensorResult | SkipReason:
        now = clock()
        cursor = RepredictionCursor.from_json(context.cursor)
        where, params = ["status = ?"], [NEEDS_REPREDICTION]
        if cursor.validated_at is not None:
            where.append("validated_at > ?")
            params.append(cursor.validated_at)
        else:
            where.append("target_window > ?")
            params.append(now - FIRST_TICK_LOOKBACK)
        flagged = store.read_rows("validations", where, params)
        plan = plan_repredictions(
            flagged, cursor, now, cooldown, workflow.max_repredictions_per_tick, VALIDATION_ERROR
        )
        as_of = latest_as_of_windows(store, {symbol: window for symbol, _, window in plan.requests})
        run_requests = []
        for symbol, cause, _ in plan.requests:
            key = window_key(as_of[symbol])
            run_requests.append(
                RunRequest(
                    run_key=f"reprediction:{symbol}:{cause}:{key}",
                    partition_key=str(market_bars_key(symbol, key)),
                    tags={REPREDICTION_CAUSE_TAG: cause},
                )
            )
        if plan.cooling_down or plan.deferred:
            context.log.info(
                f"Cooling down: {plan.cooling_down or 'none'}; deferred by the cap of "
                f"{workflow.max_repredictions_per_tick}: {plan.deferred or 'none'}."
            )
        if not run_requests:
            # The cursor still moves past what was read (and the cooldowns expire), so nothing is read twice.
            return SensorResult(
                skip_reason=SkipReason(f"No reprediction due ({len(flagged)} new flagged validation(s))."),
                cursor=plan.cursor.to_json(),
            )
        return SensorResult(run_requests=run_requests, cursor=plan.cursor.to_json())

    return reprediction_sensor
