"""The reprediction sensor: a forecast that validation found wrong, or a model whose accuracy dropped, is made again,
once per symbol and cause.

Two causes:

- ``validation_error``: validations flagged ``needs_reprediction`` since the cursor's ``validated_at``.
- ``accuracy_drop``: the ``accuracy_metrics`` rows computed since the cursor's ``metrics_computed_at``; for each
  symbol its latest row (highest ``window_start``) of span ``week`` (the last 130 validated target windows) and
  bucket ``1_day`` (horizon step 26: long enough that noise averages out, short enough to react within a day) is an
  accuracy drop when ``mase_trend`` > ``MASE_DROP_MARGIN`` (0.1: MASE, the model's error over the naive forecast's,
  worsened by more than a tenth of the naive error against the previous 130 windows) or ``reprediction_rate`` >
  1 - ``alert_thresholds.model_accuracy_low`` (with the default 0.6: more than 40% of the span's validations
  needed reprediction, the complement of the spec's model-accuracy alert). Rows with fewer than
  ``MIN_METRIC_VALIDATIONS`` validations (``n``) are not judged.

Each tick requests, per symbol and cause, ONE run of the ``reprediction`` job over the symbol's latest
``predictions`` partition: it re-fetches that window's bar (providers correct bars), checks it, forecasts again
tagged ``lstm_pipeline/reprediction_cause=<cause>`` (the rows' reason reads ``reprediction: <cause>`` and the new
forecast supersedes the old), and runs the rest of the chain for that window. Run keys
``reprediction:<symbol>:<cause>:<as_of_window>`` make Dagster launch each at most once.

Guards (the same for both causes), all kept in the JSON cursor so they survive a restart of the daemon: what was
read (``validated_at``, ``metrics_computed_at``: a restarted sensor reads nothing twice), a cooldown per (symbol, cause)
(``workflow.reprediction_cooldown_minutes``: a symbol that keeps failing validation is repredicted at most that
often; flags inside the cooldown are dropped), and a cap per tick (``workflow.max_repredictions_per_tick``: the
rest wait, oldest first, for the next ticks, so one bad tick over 50 symbols does not launch 50 runs; the cap is
shared by both causes). Without a cursor (first start) only the last day's flags and metrics are read.
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
ACCURACY_DROP = "accuracy_drop"
"""Cause of a reprediction asked for by an accuracy drop in ``accuracy_metrics``."""
NEEDS_REPREDICTION = "needs_reprediction"
ACCURACY_DROP_SPAN = "week"
ACCURACY_DROP_BUCKET = "1_day"
MASE_DROP_MARGIN = 0.1
"""An accuracy drop: the span's MASE is worse than the previous span's by more than this."""
MIN_METRIC_VALIDATIONS = 10
"""An accuracy_metrics row over fewer validations than this is not judged."""
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
    metrics_computed_at: pd.Timestamp | None = None
    """The newest ``accuracy_metrics.computed_at`` consumed: later ticks judge only newer rows."""

    @classmethod
    def from_json(cls, text: str | None) -> RepredictionCursor:
        if not text:
            return cls()
        data = json.loads(text)
        stamp, metrics_stamp = data.get("validated_at"), data.get("metrics_computed_at")
        return cls(
            validated_at=pd.Timestamp(stamp) if stamp else None,
            last_requested={key: pd.Timestamp(value) for key, value in data.get("last_requested", {}).items()},
            pending={key: pd.Timestamp(value) for key, value in data.get("pending", {}).items()},
            metrics_computed_at=pd.Timestamp(metrics_stamp) if metrics_stamp else None,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "validated_at": self.validated_at.isoformat() if self.validated_at is not None else None,
                "last_requested": {key: value.isoformat() for key, value in sorted(self.last_requested.items())},
                "pending": {key: value.isoformat() for key, value in sorted(self.pending.items())},
                "metrics_computed_at": self.metrics_computed_at.isoformat()
                if self.metrics_computed_at is not None else None,
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
    metrics_computed_at: pd.Timestamp | None = None,
) -> RepredictionPlan:
    """Pure planning: ``flagged`` holds the new flags (symbol, target_window, validated_at, and optionally a
    ``cause`` column; rows without one have ``cause``). ``metrics_computed_at``: the newest accuracy_metrics row
    read this tick, which moves the cursor's ``metrics_computed_at``."""
    now = pd.Timestamp(now)
    candidates = dict(cursor.pending)
    if len(flagged):
        causes = flagged["cause"].fillna(cause) if "cause" in flagged else pd.Series(cause, index=flagged.index)
        latest = flagged.assign(cause=causes).groupby(["symbol", "cause"])["target_window"].max()
        for (symbol, reason), window in latest.items():
            key = f"{symbol}:{reason}"
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
    consumed = flagged["validated_at"].max() if len(flagged) and "validated_at" in flagged else None
    validated_at = _later(cursor.validated_at, consumed)
    metrics_at = _later(cursor.metrics_computed_at, metrics_computed_at)
    return RepredictionPlan(
        requests=requests,
        cursor=RepredictionCursor(
            validated_at, last_requested, {key: window for window, key in deferred}, metrics_at
        ),
        cooling_down=cooling,
        deferred=[key for _, key in deferred],
    )


def _later(stamp: pd.Timestamp | None, other: pd.Timestamp | None) -> pd.Timestamp | None:
    if other is None or pd.isna(other):
        return stamp
    return other if stamp is None else max(stamp, other)


def accuracy_drops(metrics: pd.DataFrame, model_accuracy_low: float) -> pd.DataFrame:
    """Which symbols' accuracy dropped, from ``accuracy_metrics`` rows (the rule is in the module docstring).

    Returns symbol, target_window (the judged row's ``window_start``), cause and reason, one row per symbol whose
    latest ``week``/``1_day`` row breaches; pure, for a whole batch of symbols."""
    columns = ["symbol", "target_window", "cause", "reason"]
    rows = metrics[(metrics["span"] == ACCURACY_DROP_SPAN) & (metrics["horizon_bucket"] == ACCURACY_DROP_BUCKET)]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    latest = rows.sort_values("window_start").groupby("symbol").tail(1)
    latest = latest[latest["n"] >= MIN_METRIC_VALIDATIONS]
    max_rate = 1 - model_accuracy_low
    trend = pd.to_numeric(latest["mase_trend"], errors="coerce")
    rate = pd.to_numeric(latest["reprediction_rate"], errors="coerce")
    worse, repredicted = trend > MASE_DROP_MARGIN, rate > max_rate
    dropped = latest[worse | repredicted]
    reasons = [
        " and ".join(
            ([f"MASE worsened by {t:.2f} (> {MASE_DROP_MARGIN})"] if w else [])
            + ([f"reprediction rate {r:.0%} (> {max_rate:.0%})"] if p else [])
        )
        for t, r, w, p in zip(trend[dropped.index], rate[dropped.index], worse[dropped.index],
                              repredicted[dropped.index], strict=True)
    ]
    return pd.DataFrame({
        "symbol": dropped["symbol"].tolist(), "target_window": dropped["window_start"].tolist(),
        "cause": ACCURACY_DROP, "reason": reasons,
    }, columns=columns)


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
        description="Re-fetches and re-forecasts a symbol's latest window when its validations need reprediction "
        "(validation_error) or its week/1_day accuracy dropped (accuracy_drop): one run per symbol and cause, with a "
        "cooldown and a cap per tick.",
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
        metrics_where: list[str] = ["span = ?", "horizon_bucket = ?"]
        metrics_params: list[object] = [ACCURACY_DROP_SPAN, ACCURACY_DROP_BUCKET]
        if cursor.metrics_computed_at is not None:
            metrics_where.append("computed_at > ?")
            metrics_params.append(cursor.metrics_computed_at)
        else:
            metrics_where.append("window_start > ?")
            metrics_params.append(now - FIRST_TICK_LOOKBACK)
        metrics = store.read_rows("accuracy_metrics", metrics_where, metrics_params)
        drops = accuracy_drops(metrics, settings.alert_thresholds.model_accuracy_low)
        for drop in drops.itertuples(index=False):
            context.log.info(f"Accuracy drop for {drop.symbol} as of {drop.target_window}: {drop.reason}.")
        frames = [frame for frame in (flagged.assign(cause=VALIDATION_ERROR), drops) if len(frame)]
        candidates = pd.concat(frames, ignore_index=True) if len(frames) > 1 else flagged if len(flagged) else drops
        plan = plan_repredictions(
            candidates, cursor, now, cooldown, workflow.max_repredictions_per_tick, VALIDATION_ERROR,
            metrics_computed_at=metrics["computed_at"].max() if len(metrics) else None,
        )
        wanted: dict[str, pd.Timestamp] = {}
        for symbol, _, window in plan.requests:  # a symbol due for both causes: its later flagged window
            wanted[symbol] = max(window, wanted.get(symbol, window))
        as_of = latest_as_of_windows(store, wanted)
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
                skip_reason=SkipReason(
                    f"No reprediction due ({len(flagged)} new flagged validation(s), {len(drops)} accuracy drop(s))."
                ),
                cursor=plan.cursor.to_json(),
            )
        return SensorResult(run_requests=run_requests, cursor=plan.cursor.to_json())

    return reprediction_sensor
