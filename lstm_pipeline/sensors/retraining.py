"""The retraining sensor: retrains a symbol's model when it stopped being good enough, and repredicts on a new one.

Each tick judges every configured symbol's **serving** model version (``ModelStore.version``) on three causes, read
through the store (``validations``, ``predictions``) and the model store (``model_config.json``):

- ``accuracy_low``: of the latest ``workflow.retrain_min_validations`` validations of this model version (target
  windows of the last 7 days; ``valid`` vs ``needs_reprediction``, a bad bar's ``invalid`` rows do not count, the
  same measure as the ``model_accuracy_low`` alert), the share ``valid`` is below
  ``alert_thresholds.model_accuracy_low``. Fewer validations than that: not judged.
- ``repredictions_not_helping``: at least ``REPEATED_REPREDICTIONS`` (3) forecasts of this model version made as
  of windows in the last day were repredictions (their ``reason`` starts ``reprediction:``) and each still has a
  validation that needs reprediction: repredicting does not fix it, the model does.
- ``model_age``: the model was trained (``training.trained_at`` of its config) more than
  ``workflow.retrain_max_model_age_days`` days ago. A config without that stamp is not judged by age.

A symbol with one or more causes gets ONE ``lstm_model_training`` run (partition = symbol) tagged
``lstm_pipeline/retrain_cause=<causes, comma-separated>``; the candidate serves only if it beats the serving model
(champion/challenger, ``lstm_pipeline.forecasting.champion``). While the same version still serves, the symbol is
not requested again for ``RETRY_AFTER`` (a day: a rejected candidate is retried on newer bars the next day, not
every tick). Run keys ``retrain:<SYMBOL>:<version>:<date>`` make Dagster launch each at most once even if the cursor
were lost.

The sensor also notices a **new serving version** (a retrain that won, a script retrain, a copied-in folder) and
requests one ``reprediction`` run of the symbol's latest stored forecast window tagged
``lstm_pipeline/reason=new_model`` (run key ``new_model:<SYMBOL>:<version>``), so the latest forecast comes from the
model that now serves. The first tick only records the versions it finds (a restart is not a new model).
Everything the sensor remembers (versions seen, last retrain requests) is in its JSON cursor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from lstm_pipeline.assets.predictions import REASON_TAG
from lstm_pipeline.forecasting.store import ModelLoadError
from lstm_pipeline.jobs import lstm_model_training_job, reprediction_job
from lstm_pipeline.market.calendar import NEW_YORK, window_key
from lstm_pipeline.partitions import market_bars_key
from lstm_pipeline.resources.model_store import ModelStore
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import Settings

Clock = Callable[[], pd.Timestamp]
RETRAIN_CAUSE_TAG = "lstm_pipeline/retrain_cause"
NEW_MODEL = "new_model"

ACCURACY_LOW = "accuracy_low"
REPREDICTIONS_NOT_HELPING = "repredictions_not_helping"
MODEL_AGE = "model_age"
CAUSES: tuple[str, ...] = (ACCURACY_LOW, REPREDICTIONS_NOT_HELPING, MODEL_AGE)

VALIDATION_LOOKBACK = pd.Timedelta(days=7)
"""Validations are read over the target windows of the last 7 days (the alerts' ``week`` span)."""
REPREDICTION_SPAN = pd.Timedelta(days=1)
REPEATED_REPREDICTIONS = 3
RETRY_AFTER = pd.Timedelta(days=1)


def new_york_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz=NEW_YORK)


@dataclass
class RetrainingCursor:
    """What the sensor remembers between ticks (JSON in the sensor's cursor)."""

    versions: dict[str, str] = field(default_factory=dict)
    """Symbol -> the serving model version last seen (a change requests a ``new_model`` reprediction)."""
    requested: dict[str, tuple[str, pd.Timestamp]] = field(default_factory=dict)
    """Symbol -> (model version, when) of its last retrain request."""

    @classmethod
    def from_json(cls, text: str | None) -> RetrainingCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            versions=dict(data.get("versions", {})),
            requested={
                symbol: (str(version), pd.Timestamp(stamp))
                for symbol, (version, stamp) in data.get("requested", {}).items()
            },
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "versions": dict(sorted(self.versions.items())),
                "requested": {
                    symbol: [version, stamp.isoformat()] for symbol, (version, stamp) in sorted(self.requested.items())
                },
            },
            sort_keys=True,
        )


def accuracy_share(validations: pd.DataFrame, version: str, latest: int) -> tuple[float, int] | None:
    """Share ``valid`` of the latest ``latest`` judged validations (``valid`` / ``needs_reprediction``) of one model
    version, and how many were judged; None when fewer than ``latest`` exist."""
    judged = validations[
        (validations["model_version"] == version) & validations["status"].isin(["valid", "needs_reprediction"])
    ]
    if len(judged) < latest:
        return None
    recent = judged.sort_values(["target_window", "as_of_window"]).tail(latest)
    return float((recent["status"] == "valid").mean()), len(recent)


def unhelpful_repredictions(repredicted: pd.DataFrame, validations: pd.DataFrame, version: str) -> int:
    """How many repredicted forecasts (as-of windows) of this version still have a validation needing reprediction."""
    windows = set(repredicted.loc[repredicted["model_version"] == version, "as_of_window"])
    if not windows:
        return 0
    flagged = validations[
        (validations["model_version"] == version)
        & (validations["status"] == "needs_reprediction")
        & validations["as_of_window"].isin(windows)
    ]
    return int(flagged["as_of_window"].nunique())


def trained_at(record: dict) -> pd.Timestamp | None:
    """When a model was trained, from its ``model_config.json`` (``training.trained_at``), if it says."""
    stamp = (record.get("training") or {}).get("trained_at") or record.get("trained_at") or record.get("created_at")
    if not stamp:
        return None
    try:
        value = pd.Timestamp(stamp)
    except (TypeError, ValueError):
        return None
    return value.tz_localize("UTC") if value.tzinfo is None else value


@dataclass(frozen=True)
class SymbolState:
    """What the sensor read about one symbol's serving model."""

    symbol: str
    version: str
    trained_at: pd.Timestamp | None


def retrain_causes(
    state: SymbolState,
    validations: pd.DataFrame,
    repredicted: pd.DataFrame,
    now: pd.Timestamp,
    settings: Settings,
) -> dict[str, str]:
    """Cause -> one sentence, for each retrain cause that holds for this symbol's serving model (pure)."""
    workflow = settings.workflow
    low = settings.alert_thresholds.model_accuracy_low
    mine = validations[validations["symbol"] == state.symbol]
    causes: dict[str, str] = {}
    accuracy = accuracy_share(mine, state.version, workflow.retrain_min_validations)
    if accuracy is not None and accuracy[0] < low:
        causes[ACCURACY_LOW] = (
            f"{accuracy[0]:.1%} of the latest {accuracy[1]} validations of model {state.version} were valid "
            f"(retrain below {low:.1%})"
        )
    unhelpful = unhelpful_repredictions(repredicted[repredicted["symbol"] == state.symbol], mine, state.version)
    if unhelpful >= REPEATED_REPREDICTIONS:
        causes[REPREDICTIONS_NOT_HELPING] = (
            f"{unhelpful} repredicted forecasts in the last day still need reprediction "
            f"(retrain from {REPEATED_REPREDICTIONS})"
        )
    if state.trained_at is not None:
        age = pd.Timestamp(now) - state.trained_at
        if age > pd.Timedelta(days=workflow.retrain_max_model_age_days):
            causes[MODEL_AGE] = (
                f"model {state.version} was trained {age.days} days ago "
                f"(retrain after {workflow.retrain_max_model_age_days})"
            )
    return causes


def _read_states(model_store: ModelStore, symbols: Sequence[str]) -> tuple[list[SymbolState], list[str]]:
    states, problems = [], []
    for symbol in symbols:
        try:
            version = model_store.version(symbol)
            record = model_store.recorded_config(symbol)
        except ModelLoadError as exc:
            problems.append(str(exc))
            continue
        states.append(SymbolState(symbol, version, trained_at(record)))
    return states, problems


def _latest_forecast_windows(store: PipelineStore, symbols: Sequence[str]) -> dict[str, pd.Timestamp]:
    if not symbols:
        return {}
    placeholders = ", ".join("?" for _ in symbols)
    stored = store.read_rows("predictions", [f"symbol IN ({placeholders})", "horizon_step = 1"], list(symbols))
    return stored.groupby("symbol")["as_of_window"].max().to_dict() if len(stored) else {}


def build_retraining_sensor(settings: Settings, clock: Clock = new_york_now) -> SensorDefinition:
    """The retraining sensor for these settings; ``clock`` says what time a tick runs at (tests pass a fixed one)."""
    symbols = list(settings.symbols)

    @sensor(
        name="retraining_sensor",
        jobs=[lstm_model_training_job, reprediction_job],
        minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.RUNNING,
        description="Retrains a symbol's LSTM when its accuracy is low, repredictions do not help or it is too old "
        "(the candidate serves only if it beats the serving model), and repredicts the latest window when a new "
        "model version serves.",
    )
    def retraining_sensor(
        context: SensorEvaluationContext, store: PipelineStore, model_store: ModelStore
    ) -> SensorResult:
        now = pd.Timestamp(clock())
        cursor = RetrainingCursor.from_json(context.cursor)
        states, problems = _read_states(model_store, symbols)
        for problem in problems:
            context.log.warning(problem)
        requests: list[RunRequest] = []

        changed = [s for s in states if s.symbol in cursor.versions and cursor.versions[s.symbol] != s.version]
        latest = _latest_forecast_windows(store, [s.symbol for s in changed])
        for state in changed:
            if state.symbol not in latest:
                context.log.info(f"{state.symbol} has a new model {state.version} but no stored forecast to redo.")
                continue
            key = window_key(latest[state.symbol])
            requests.append(
                RunRequest(
                    run_key=f"{NEW_MODEL}:{state.symbol}:{state.version}",
                    job_name=reprediction_job.name,
                    partition_key=str(market_bars_key(state.symbol, key)),
                    tags={REASON_TAG: NEW_MODEL},
                )
            )
        for state in states:
            cursor.versions[state.symbol] = state.version

        due = [
            s for s in states
            if s.symbol not in cursor.requested
            or cursor.requested[s.symbol][0] != s.version
            or now - cursor.requested[s.symbol][1] >= RETRY_AFTER
        ]
        if due:
            placeholders = ", ".join("?" for _ in due)
            names = [s.symbol for s in due]
            versions = [s.version for s in due]
            # Only the serving versions' judged rows of the last week: what the causes read, nothing more.
            validations = store.read_rows(
                "validations",
                [
                    f"symbol IN ({placeholders})",
                    f"model_version IN ({placeholders})",
                    "status IN ('valid', 'needs_reprediction')",
                    "target_window > ?",
                ],
                [*names, *versions, now - VALIDATION_LOOKBACK],
            )
            repredicted = store.read_rows(
                "predictions",
                [f"symbol IN ({placeholders})", "as_of_window > ?", "horizon_step = 1", "reason LIKE 'reprediction:%'"],
                [*names, now - REPREDICTION_SPAN],
            )
        for state in due:
            causes = retrain_causes(state, validations, repredicted, now, settings)
            if not causes:
                continue
            context.log.info(f"Retraining {state.symbol}: " + "; ".join(causes.values()) + ".")
            cursor.requested[state.symbol] = (state.version, now)
            requests.append(
                RunRequest(
                    run_key=f"retrain:{state.symbol}:{state.version}:{now:%Y-%m-%d}",
                    job_name=lstm_model_training_job.name,
                    partition_key=state.symbol,
                    tags={RETRAIN_CAUSE_TAG: ",".join(causes)},
                )
            )
        if not requests:
            return SensorResult(
                skip_reason=f"No retraining or new-model reprediction due ({len(states)} model(s) judged).",
                cursor=cursor.to_json(),
            )
        return SensorResult(run_requests=requests, cursor=cursor.to_json())

    return retraining_sensor
