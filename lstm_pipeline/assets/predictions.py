"""``predictions``: a 1-week-ahead forecast per symbol x session window, made once that window's bar is stored.

Partition ``AAPL|2025-07-07-10:00`` holds the forecast made as of the close of that window (whose bar it requires):
the week ahead's session windows (130 in a normal week), each with its predicted close, 80% and 95% intervals, and
the version of the model that made it. The intervals are the adapted ones (``forecasting.bands.adapt_new_forecasts``,
the backtest's adaptation: calibrated on the realized errors of the stored forecasts of the last 60 sessions and of
the last close; the model's own conformal bounds only while that history is too short). The asset is thin: it
reads the run's bars through the store (never a bar a blocking check rejected), calls
``forecasting.batch.forecast_windows`` once for the whole run (every as-of window of every symbol in one compiled
call per architecture), and writes rows and alerts in one transaction.

A (symbol, window) that cannot be forecast (model unservable, no as-of bar, too little history, unreadable bars, a
horizon the model cannot reach, a path outside the sane band) is skipped, never invented: no rows, an ``alerts``
row with the one-sentence reason, and the WARN check ``every_symbol_predicted`` fails listing the reasons. The other
symbols are forecast.

Every row also carries the forecast's confidence (``evaluation.confidence.confidence_scores``: ten factors, their
weighted sum and its level; the same values on every horizon step of one forecast, since they judge the forecast as
a whole) and the ``reason`` it was made (``forecast_reason`` of the run's tags). Confidence reads nothing more than
the bars already read, plus one store read of recent validations and one of the few forecasts just before the run.
Whether a forecast is active, superseded or expired is not stored: ``evaluation.lifecycle`` derives it when read.
"""

import time
from collections.abc import Mapping

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    asset,
)

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.models import lstm_model
from lstm_pipeline.evaluation.confidence import (
    RECENT_VALIDATION_DAYS,
    SCORE_COLUMNS,
    STABILITY_FORECASTS,
    confidence_scores,
    forecast_summaries,
    model_test_mase,
)
from lstm_pipeline.forecasting.bands import adapt_history_start, adapt_new_forecasts
from lstm_pipeline.forecasting.batch import alert_rows, forecast_windows, history_start, skip_summary
from lstm_pipeline.market.calendar import WINDOW, session_windows
from lstm_pipeline.partitions import SYMBOL_DIMENSION, market_bars_partitions, requested_windows
from lstm_pipeline.resources.model_store import ModelStore
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import get_settings

REPREDICTION_CAUSE_TAG = "lstm_pipeline/reprediction_cause"
"""Run tag the reprediction sensor sets to the cause (e.g. ``price_shock``): the rows' reason is
``reprediction: <cause>``."""
REASON_TAG = "lstm_pipeline/reason"
"""Run tag naming why a run forecasts when no other tag says it (``new_model``: the retraining sensor's run)."""
BACKFILL_TAG = "dagster/backfill"
AUTOMATION_TAGS = ("dagster/schedule_name", "dagster/sensor_name")
"""Tags Dagster puts on runs a schedule or sensor launched (the market sensor, the close schedule)."""


def forecast_reason(tags: Mapping[str, str]) -> str:
    """Why a run's forecasts were made, from its tags: ``reprediction: <cause>`` (the reprediction sensor's cause
    tag), ``new_model`` (``lstm_pipeline/reason=new_model``), ``backfill`` (a backfill's run), ``schedule`` (a
    sensor or schedule run), else ``backfill`` (a run launched by hand, e.g. from the UI)."""
    cause = (tags.get(REPREDICTION_CAUSE_TAG) or "").strip()
    if cause:
        return f"reprediction: {cause}"
    if (tags.get(REASON_TAG) or "").strip() == "new_model":
        return "new_model"
    if BACKFILL_TAG in tags:
        return "backfill"
    if any(tag in tags for tag in AUTOMATION_TAGS):
        return "schedule"
    return "backfill"


def _recent_rows(
    store: PipelineStore, symbols: list[str], first: pd.Timestamp, last: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validations of the days before the run's windows and the few forecasts just before its first window:
    one store read each."""
    symbol_in = f"symbol IN ({', '.join('?' for _ in symbols)})"
    validations = store.read_rows(
        "validations",
        [symbol_in, "target_window > ?", "target_window <= ?"],
        [*symbols, first - pd.Timedelta(days=RECENT_VALIDATION_DAYS), last],
    )
    earlier = session_windows(first - pd.Timedelta(days=7), first)[-STABILITY_FORECASTS:]
    if len(earlier) == 0:
        return validations, pd.DataFrame()
    previous = store.read_rows(
        "predictions", [symbol_in, "as_of_window >= ?", "as_of_window < ?"], [*symbols, earlier[0], first]
    )
    return validations, previous


def _adapted(rows: pd.DataFrame, store: PipelineStore, bars: pd.DataFrame | None) -> tuple[pd.DataFrame, float]:
    """The rows with their intervals adapted as the backtest adapts them (``forecasting.bands.adapt_new_forecasts``):
    from the realized errors of the stored forecasts of the last ``ADAPT_HISTORY_SESSIONS`` sessions and of the last
    close over the bars just read (one store read); seconds."""
    started = time.perf_counter()
    if rows.empty or bars is None:
        return rows, 0.0
    symbols = sorted(set(rows["symbol"]))
    first = pd.Timestamp(rows["as_of_window"].min())
    symbol_in = f"symbol IN ({', '.join('?' for _ in symbols)})"
    earlier = store.read_rows(
        "predictions", [symbol_in, "as_of_window >= ?", "as_of_window <= ?"],
        [*symbols, adapt_history_start(first), pd.Timestamp(rows["as_of_window"].max())],
    )
    return adapt_new_forecasts(rows, earlier, bars), time.perf_counter() - started


def _skipped_markdown(summary: dict[tuple[str, str], tuple[int, str]]) -> str:
    lines = ["| symbol | kind | windows | reason (first window) |", "|---|---|---|---|"]
    lines += [f"| {symbol} | {kind} | {count} | {reason} |" for (symbol, kind), (count, reason) in summary.items()]
    return "\n".join(lines)


def _with_confidence(
    rows: pd.DataFrame,
    models: Mapping[str, object],
    wanted: Mapping[str, list[pd.Timestamp]],
    store: PipelineStore,
    bars: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """The rows with every forecast's confidence, level and factors; the scores (one per forecast); seconds."""
    started = time.perf_counter()
    if rows.empty or bars is None:
        return rows.copy(), pd.DataFrame(columns=list(SCORE_COLUMNS)), 0.0
    symbols = sorted(set(rows["symbol"]))
    first = min(wanted[symbol][0] for symbol in symbols)
    last = max(wanted[symbol][-1] for symbol in symbols)
    validations, previous = _recent_rows(store, symbols, first, last)
    summaries = forecast_summaries(
        rows,
        {symbol: model_test_mase(models[symbol].config.record) for symbol in symbols},
        {symbol: models[symbol].config.lookback_steps for symbol in symbols},
    )
    recent = pd.concat([frame for frame in (previous, rows) if len(frame)], ignore_index=True)
    scores = confidence_scores(summaries, bars, validations, recent, get_settings().confidence_factor_weights)
    scored = rows.merge(scores, on=["symbol", "as_of_window"], how="left", validate="many_to_one")
    return scored, scores, time.perf_counter() - started


@asset(
    partitions_def=market_bars_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        AssetDep(market_bars),
        AssetDep(
            lstm_model,
            partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name=SYMBOL_DIMENSION),
        ),
    ],
    check_specs=[
        AssetCheckSpec(
            "every_symbol_predicted",
            asset="predictions",
            description="Every symbol-window of the run was forecast; a skipped one (its model cannot serve, its "
            "as-of bar is missing, too few bars, a forecast outside the sane band) is listed with the reason.",
        )
    ],
    group_name="forecasts",
    kinds={"tensorflow", "duckdb"},
    description=(
        "1-week-ahead forecast of each symbol made as of each session window: the next week's session windows with "
        "predicted close, 80%/95% intervals adapted walk-forward to the realized errors, and the model version. A "
        "symbol-window that cannot be forecast is skipped with an alert, never invented."
    ),
)
def predictions(context: AssetExecutionContext, store: PipelineStore, model_store: ModelStore) -> MaterializeResult:
    wanted = requested_windows(list(context.partition_keys))
    models, failed = model_store.load_available(list(wanted))
    for symbol, error in failed.items():
        context.log.error(f"Skipping {symbol}: {error}")

    bars = {}
    if models:
        first = min(wanted[symbol][0] for symbol in models)
        start = min(history_start(wanted[symbol][0], model.config.lookback_steps) for symbol, model in models.items())
        start = min(start, adapt_history_start(first))  # the interval adaptation's history too
        end = max(wanted[symbol][-1] for symbol in models) + WINDOW
        stored = store.read_bars(symbols=sorted(models), start=start, end=end)
        bars = {symbol: frame.reset_index(drop=True) for symbol, frame in stored.groupby("symbol", sort=False)}

    started = time.perf_counter()
    result = forecast_windows(
        wanted, models, bars, unavailable={symbol: str(error) for symbol, error in failed.items()}
    )
    seconds = time.perf_counter() - started
    adapted_rows, adapt_seconds = _adapted(result.rows, store, stored if models else None)

    reason = forecast_reason(context.run.tags)
    mean_confidence = 0.0
    rows, scores, confidence_seconds = _with_confidence(adapted_rows, models, wanted, store, stored if models else None)
    rows["reason"] = reason
    if len(scores):
        mean_confidence = round(float(scores["confidence"].mean()), 4)

    alerts = alert_rows(result.skipped, "predictions", context.run_id)
    partitions = [(symbol, window) for symbol, windows in wanted.items() for window in windows]
    store.replace_forecasts(rows, alerts, partitions)

    summary = skip_summary(result.skipped)
    for (symbol, kind), (count, reason) in summary.items():
        context.log.warning(f"Skipping {count} window(s) of {symbol} ({kind}): {reason}")
    predicted = len(partitions) - len(result.skipped)
    context.log.info(
        f"Forecast {predicted} of {len(partitions)} symbol-windows in {result.compiled_calls} compiled call(s), "
        f"{seconds:.2f} s; {len(alerts)} alert(s)."
    )
    reasons = [f"{symbol} ({count} window(s)): {reason}" for (symbol, _), (count, reason) in summary.items()]
    check = AssetCheckResult(
        check_name="every_symbol_predicted",
        passed=not summary,
        severity=AssetCheckSeverity.WARN,
        description="Skipped: " + " ".join(reasons) if reasons else "Every symbol-window was forecast.",
        metadata={"skipped": MetadataValue.md(_skipped_markdown(summary)) if summary else MetadataValue.text("none")},
    )
    return MaterializeResult(
        metadata={
            "rows": MetadataValue.int(len(result.rows)),
            "symbol_windows_predicted": MetadataValue.int(predicted),
            "symbol_windows_skipped": MetadataValue.int(len(result.skipped)),
            "model_versions": MetadataValue.json({symbol: model.version for symbol, model in sorted(models.items())}),
            "horizon_steps": MetadataValue.int(int(result.rows["horizon_step"].max()) if len(result.rows) else 0),
            "forecast_seconds": MetadataValue.float(round(seconds, 3)),
            "compiled_calls": MetadataValue.int(result.compiled_calls),
            "alerts": MetadataValue.int(len(alerts)),
            "reason": MetadataValue.text(reason),
            "mean_confidence": MetadataValue.float(mean_confidence),
            "confidence_levels": MetadataValue.json(
                {str(level): int(count) for level, count in scores["confidence_level"].value_counts().items()}
            ),
            "confidence_seconds": MetadataValue.float(round(confidence_seconds, 3)),
            "interval_adaptation_seconds": MetadataValue.float(round(adapt_seconds, 3)),
        },
        check_results=[check],
    )
