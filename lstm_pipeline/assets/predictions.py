"""``predictions``: a 1-week-ahead forecast per symbol x session window, made once that window's bar is stored.

Partition ``AAPL|2025-07-07-10:00`` holds the forecast made as of the close of that window (whose bar it requires):
the week ahead's session windows (130 in a normal week), each with its predicted close, 80% and 95% intervals, and
the version of the model that made it. The asset is thin: it reads the run's bars through the store (never a bar a
blocking check rejected), calls ``forecasting.batch.forecast_windows`` once for the whole run (every as-of window
of every symbol in one compiled call per architecture), and writes rows and alerts in one transaction.

A (symbol, window) that cannot be forecast (model unservable, no as-of bar, too little history, unreadable bars, a
horizon the model cannot reach, a path outside the sane band) is skipped, never invented: no rows, an ``alerts``
row with the one-sentence reason, and the WARN check ``every_symbol_predicted`` fails listing the reasons. The other
symbols are forecast.
"""

import time

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
from lstm_pipeline.forecasting.batch import alert_rows, forecast_windows, history_start, skip_summary
from lstm_pipeline.market.calendar import WINDOW
from lstm_pipeline.partitions import SYMBOL_DIMENSION, market_bars_partitions, requested_windows
from lstm_pipeline.resources.model_store import ModelStore
from lstm_pipeline.resources.storage import PipelineStore


def _skipped_markdown(summary: dict[tuple[str, str], tuple[int, str]]) -> str:
    lines = ["| symbol | kind | windows | reason (first window) |", "|---|---|---|---|"]
    lines += [f"| {symbol} | {kind} | {count} | {reason} |" for (symbol, kind), (count, reason) in summary.items()]
    return "\n".join(lines)


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
        "predicted close, 80%/95% conformal intervals and the model version. A symbol-window that cannot be "
        "forecast is skipped with an alert, never invented."
    ),
)
def predictions(context: AssetExecutionContext, store: PipelineStore, model_store: ModelStore) -> MaterializeResult:
    wanted = requested_windows(list(context.partition_keys))
    models, failed = model_store.load_available(list(wanted))
    for symbol, error in failed.items():
        context.log.error(f"Skipping {symbol}: {error}")

    bars = {}
    if models:
        start = min(history_start(wanted[symbol][0], model.config.lookback_steps) for symbol, model in models.items())
        end = max(wanted[symbol][-1] for symbol in models) + WINDOW
        stored = store.read_bars(symbols=sorted(models), start=start, end=end)
        bars = {symbol: frame.reset_index(drop=True) for symbol, frame in stored.groupby("symbol", sort=False)}

    started = time.perf_counter()
    result = forecast_windows(
        wanted, models, bars, unavailable={symbol: str(error) for symbol, error in failed.items()}
    )
    seconds = time.perf_counter() - started

    alerts = alert_rows(result.skipped, "predictions", context.run_id)
    partitions = [(symbol, window) for symbol, windows in wanted.items() for window in windows]
    store.replace_forecasts(result.rows, alerts, partitions)

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
        },
        check_results=[check],
    )
