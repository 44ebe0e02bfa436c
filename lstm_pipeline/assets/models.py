"""``lstm_model``: one LSTM per symbol, trained from stored ``market_bars``, saved to the model store.

Thin on purpose: the numerics (features, split, training, mode choice, intervals, metrics, plot) live in
``lstm_pipeline.forecasting`` and import TensorFlow only when a run trains; this module imports neither, so loading
the definitions stays cheap. Retraining a symbol is one click (Materialize on its partition) or one command
(``python scripts/train_default_models.py --symbols AAPL``). Where a model already serves, the retrained one is a
candidate: it replaces the serving model only if its MASE is lower on the candidate's held-out test span
(``lstm_pipeline.forecasting.champion``); otherwise it is kept in ``models/.candidates/<SYMBOL>/<version>/`` and a
WARNING alert ``challenger_rejected:<SYMBOL>`` (source ``models``) says why, resolved when a later candidate serves.
"""


import base64
import re
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    asset,
    asset_check,
)
from pydantic import Field

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.forecasting.features import SLOTS_PER_SESSION
from lstm_pipeline.forecasting.store import ModelLoadError
from lstm_pipeline.partitions import SYMBOL_DIMENSION, symbol_partitions
from lstm_pipeline.resources.model_store import ModelStore
from lstm_pipeline.resources.storage import PipelineStore

if TYPE_CHECKING:
    from lstm_pipeline.forecasting.champion import ChallengeResult
    from lstm_pipeline.forecasting.training import TrainedModel


class LstmTrainingConfig(Config):
    """Launchpad settings of a training run; the defaults train ~1 year of bars in about a minute on 2 cores."""

    history_sessions: int = Field(252, ge=10, description="Train on the most recent this-many sessions of bars.")
    lookback_steps: int = Field(48, ge=2, description="15-minute windows the network reads per forecast.")
    horizon_steps: int = Field(130, ge=1, description="Steps calibrated and evaluated (130 = one 5-session week).")
    lstm_units: list[int] = Field(default_factory=lambda: [32, 32], description="Width of each stacked LSTM layer.")
    max_epochs: int = Field(20, ge=1)
    patience: int = Field(3, ge=1, description="Early stopping: epochs without validation improvement.")
    seed: int = Field(0, description="Seed of weight initialisation and batch order; same seed, same model.")
    modes: list[str] = Field(
        default_factory=lambda: ["recursive", "direct"],
        description="Forecast modes to train; with both, the lower validation error wins.",
    )


def describe_source(sources: list[str]) -> str:
    """How a model's config labels its training data: ``simulated market (seed N)`` for the simulated source."""
    labels = []
    for source in sorted(set(sources)):
        match = re.fullmatch(r"simulated\(seed=(-?\d+)\)", source)
        labels.append(f"simulated market (seed {match.group(1)})" if match else source)
    return ", ".join(labels) or "unknown source"


def _metrics_table(horizons: dict[str, dict[str, float]]) -> str:
    lines = [
        "| horizon | steps | RMSE | MAE | naive MAE | MASE | directional acc. | up-move share | 80% cov. | 95% cov. |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, values in horizons.items():
        lines.append(
            f"| {name.replace('_', ' ')} | {values['steps']} | {values['rmse']:.4f} | {values['mae']:.4f} | "
            f"{values['naive_mae']:.4f} | {values['mase']:.3f} | {values['directional_accuracy']:.1%} | "
            f"{values['up_share']:.1%} | {values.get('coverage_80', float('nan')):.1%} | "
            f"{values.get('coverage_95', float('nan')):.1%} |"
        )
    return "\n".join(lines)


@asset(
    partitions_def=symbol_partitions,
    deps=[
        AssetDep(
            market_bars,
            partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name=SYMBOL_DIMENSION),
        )
    ],
    group_name="models",
    kinds={"tensorflow", "keras"},
    description=(
        "One LSTM per symbol, trained on its stored 15-minute bars (return features, training-span scaler, "
        "chronological train/validation/test split, early stopping, seeded). Recursive and direct 1-week forecasting "
        "are both trained and the better on the validation span is kept; metrics are on the held-out test span. "
        "Saved atomically to the model store as models/<SYMBOL>/ only if it beats the serving model on the "
        "candidate's held-out test span (MASE vs naive, champion/challenger); otherwise kept aside in "
        "models/.candidates/<SYMBOL>/<version>/ with a WARNING alert challenger_rejected:<SYMBOL>."
    ),
)
def lstm_model(
    context: AssetExecutionContext,
    config: LstmTrainingConfig,
    store: PipelineStore,
    model_store: ModelStore,
) -> MaterializeResult:
    from lstm_pipeline.forecasting.features import FeatureError
    from lstm_pipeline.forecasting.training import TrainingDataError, TrainingSettings, train_symbol

    symbol = context.partition_key
    bars = store.read_bars(symbol)
    if bars.empty:
        raise Failure(
            description=f"No market_bars are stored for {symbol}; materialize market_bars for {symbol} over about "
            f"{config.history_sessions} sessions first (a backfill), then train again.",
            allow_retries=False,
        )
    bars = bars.iloc[-config.history_sessions * SLOTS_PER_SESSION - 1:]
    trained_on = describe_source([str(source) for source in bars["source"].dropna().unique()])
    settings = TrainingSettings(
        lookback_steps=config.lookback_steps,
        horizon_steps=config.horizon_steps,
        lstm_units=tuple(config.lstm_units),
        max_epochs=config.max_epochs,
        patience=config.patience,
        seed=config.seed,
        modes=tuple(config.modes),
        max_bars=None,
    )
    context.log.info(f"Training {symbol} on {len(bars)} bars from {trained_on}.")
    try:
        trained = train_symbol(symbol, bars, settings, progress=context.log.info, trained_on=trained_on)
    except (TrainingDataError, FeatureError) as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    decision, location, version, candidate_version = _champion_or_aside(
        context, symbol, bars, trained, store, model_store
    )

    record = trained.config.record
    horizons = trained.metrics["horizons"]
    metadata: dict[str, object] = {
        "model_version": MetadataValue.text(version),
        "model_location": MetadataValue.path(location),
        "candidate_version": MetadataValue.text(candidate_version),
        "champion_decision": MetadataValue.text(decision.decision),
        "champion_reason": MetadataValue.text(decision.reason),
        "candidate_mase": MetadataValue.float(_rounded(decision.candidate_mase)),
        "current_mase": MetadataValue.float(_rounded(decision.current_mase)),
        "comparison": MetadataValue.json(decision.as_dict()),
        "forecast_mode": MetadataValue.text(trained.config.forecast_mode),
        "mode_selection": MetadataValue.json(record["mode_selection"]),
        "trained_on": MetadataValue.text(trained_on),
        "test_span": MetadataValue.text(" .. ".join(trained.metrics["test_span"])),
        "test_origins": MetadataValue.int(trained.metrics["origins"]),
        "test_metrics": MetadataValue.md(_metrics_table(horizons)),
        "interval_coverage_nominal": MetadataValue.text(", ".join(f"{c:.0%}" for c in record["intervals"]["coverage"])),
        "training_seconds": MetadataValue.float(round(trained.seconds, 1)),
        "epochs": MetadataValue.json(trained.epochs),
        "bars": MetadataValue.int(record["training"]["bars"]),
        "forecast_vs_actual": MetadataValue.md(
            f"![{symbol} forecast vs actual](data:image/png;base64,{base64.b64encode(trained.plot_png).decode()})"
        ),
    }
    for name, values in horizons.items():
        for key in ("rmse", "mae", "mase", "directional_accuracy", "up_share", "coverage_80", "coverage_95"):
            if key in values:
                metadata[f"test_{name}_{key}"] = MetadataValue.float(round(float(values[key]), 6))
    return MaterializeResult(metadata=metadata, data_version=DataVersion(version))


def _rounded(value: float | None) -> float:
    return round(float(value), 6) if value is not None else float("nan")


def _champion_or_aside(
    context: AssetExecutionContext,
    symbol: str,
    bars: pd.DataFrame,
    trained: "TrainedModel",
    store: PipelineStore,
    model_store: ModelStore,
) -> tuple["ChallengeResult", str, str, str]:
    """Champion/challenger (``lstm_pipeline.forecasting.champion``): the candidate replaces the serving model only if
    it beats it on the candidate's held-out test span; otherwise it is kept aside and a WARNING alert says why.
    Returns (decision, serving location, serving version, candidate version)."""
    from lstm_pipeline.forecasting.champion import (
        MODELS_SOURCE,
        SERVE,
        Contender,
        challenge,
        challenger_alert_rows,
    )
    from lstm_pipeline.forecasting.features import FeatureError

    candidate = Contender(trained.config, trained.network, trained.scaler)
    current: Contender | None = None
    problem = None
    try:
        loaded = model_store.load(symbol)
        current = Contender(loaded.config, loaded.network, loaded.scaler, loaded.version)
    except ModelLoadError as exc:
        problem = None if exc.problem == "does not exist" else str(exc)  # none yet vs one that is broken
    try:
        decision = challenge(symbol, bars, candidate, current)
    except FeatureError as exc:  # a seed-layout model asking for features the bars cannot give
        decision = challenge(symbol, bars, candidate, None)
        decision = replace(decision, reason=f"the serving model cannot be evaluated on these bars ({exc})")
    if current is None and problem is not None:
        decision = replace(decision, reason=f"the serving model cannot serve ({problem})")
    if decision.decision == SERVE:
        location, version = model_store.save(trained)
        candidate_version = version
        context.log.info(f"Saved {symbol} model version {version} to {location}: {decision.reason}.")
        serving_location = location
    else:
        location, candidate_version = model_store.save_candidate(trained)
        version, serving_location = current.version, model_store.location(symbol)  # type: ignore[union-attr]
        context.log.warning(
            f"Kept {symbol} candidate {candidate_version} aside at {location}; {version} still serves: "
            f"{decision.reason}."
        )
    open_alerts = store.read_rows(
        "alerts", ["source = ?", "symbol = ?", "resolved_at IS NULL"], [MODELS_SOURCE, symbol]
    )
    rows = challenger_alert_rows(
        symbol, decision, candidate_version, location, version, pd.Timestamp(bars["window_start"].iloc[-1]),
        open_alerts, pd.Timestamp.now(tz="UTC"), context.run_id,
    )
    if len(rows):
        store.replace_tables({"alerts": (rows[["source", "symbol", "as_of_window", "kind"]], rows)})
    return decision, serving_location, version, candidate_version


@asset_check(
    asset=lstm_model,
    blocking=True,
    partitions_def=symbol_partitions,
    description="The saved model loads back from the model store and passes the health check (input shape matches "
    "its config; a probe window gives finite outputs of the declared width).",
)
def lstm_model_loads(context: AssetCheckExecutionContext, model_store: ModelStore) -> AssetCheckResult:
    symbol = context.partition_key
    try:
        model = model_store.load(symbol)
    except ModelLoadError as exc:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=str(exc),
            metadata={
                "symbol": MetadataValue.text(symbol),
                "location": MetadataValue.text(model_store.location(symbol)),
            },
        )
    return AssetCheckResult(
        passed=True,
        metadata={
            "symbol": MetadataValue.text(symbol),
            "model_version": MetadataValue.text(model.version),
            "forecast_mode": MetadataValue.text(model.config.forecast_mode),
            "health": MetadataValue.json(model.health),
        },
    )
