"""``predictions``: a 1-week-ahead forecast per symbol x session window, made once that window's bar is stored.

Partition ``AAPL|2025-07-07-10:00`` holds the forecast made as of the close of that window: the next week's session
windows (about 130), each with its predicted close, 80% and 95% intervals, and the version of the model that made
it. A run forecasts every partition it covers in as few compiled calls as possible: all symbols that share an
as-of window and an architecture go through one call of ``forecast_prices``.

A symbol whose model cannot serve (missing, corrupt, mismatched) is skipped, never forecast with anything invented:
its partitions get no prediction rows, an ``alerts`` row carries the store's one-sentence reason, and the WARN check
``every_symbol_predicted`` fails with the same reasons. So does a symbol with too few stored bars to read a full
lookback window.
"""

import time
from collections import defaultdict

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

from lstm_pipeline.assets.market_bars import market_bars, requested_windows
from lstm_pipeline.assets.models import lstm_model
from lstm_pipeline.forecasting.features import SLOTS_PER_SESSION
from lstm_pipeline.market.calendar import WINDOW
from lstm_pipeline.partitions import SYMBOL_DIMENSION, market_bars_partitions
from lstm_pipeline.resources.model_store import ModelStore
from lstm_pipeline.resources.storage import ForecastStore, MarketBarsStore


def history_margin(lookback_steps: int) -> pd.Timedelta:
    """How far before the first as-of window to read bars so a lookback of this many windows is covered: any 7
    calendar days hold at least 3 sessions, plus a week for a long weekend or holiday."""
    return pd.Timedelta(days=7 * (lookback_steps // (3 * SLOTS_PER_SESSION) + 1) + 7)


def _alert(symbol: str, window: pd.Timestamp, kind: str, message: str, run_id: str) -> dict[str, object]:
    return {
        "source": "predictions",
        "symbol": symbol,
        "as_of_window": window,
        "kind": kind,
        "severity": "error" if kind == "model_unavailable" else "warning",
        "message": message,
        "run_id": run_id,
    }


def _reasons_markdown(reasons: dict[str, str]) -> str:
    lines = ["| symbol | reason |", "|---|---|"]
    lines += [f"| {symbol} | {reason} |" for symbol, reason in sorted(reasons.items())]
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
            description="Every symbol of the run was forecast; a skipped one (its model cannot serve, too few bars) "
            "is listed with the reason.",
        )
    ],
    group_name="forecasts",
    kinds={"tensorflow", "duckdb"},
    description=(
        "1-week-ahead forecast of each symbol made as of each session window: the next week's session windows with "
        "predicted close, 80%/95% conformal intervals and the model version. Symbols whose model cannot serve are "
        "skipped with an alert, never invented."
    ),
)
def predictions(
    context: AssetExecutionContext,
    bars_store: MarketBarsStore,
    model_store: ModelStore,
    forecast_store: ForecastStore,
) -> MaterializeResult:
    from lstm_pipeline.forecasting.forecaster import forecast_prices

    wanted = requested_windows(list(context.partition_keys))
    models, failed = model_store.load_available(list(wanted))
    skipped = {symbol: str(error) for symbol, error in failed.items()}
    for symbol, reason in skipped.items():
        context.log.error(f"Skipping {symbol}: {reason}")

    bars = {
        symbol: bars_store.read_bars(
            symbol, wanted[symbol][0] - history_margin(model.config.lookback_steps), wanted[symbol][-1] + WINDOW
        )
        for symbol, model in models.items()
    }
    by_window: dict[pd.Timestamp, list[str]] = defaultdict(list)
    for symbol in models:
        for window in wanted[symbol]:
            by_window[window].append(symbol)

    started = time.perf_counter()
    frames: list[pd.DataFrame] = []
    too_short: dict[str, str] = {}
    calls = 0
    for window, symbols in sorted(by_window.items()):
        known = {symbol: bars[symbol][bars[symbol]["window_start"] <= window] for symbol in symbols}
        ready = []
        for symbol in symbols:
            lookback = models[symbol].config.lookback_steps
            if len(known[symbol]) <= lookback:  # the first bar has no return: lookback + 1 bars are needed
                too_short.setdefault(
                    symbol,
                    f"{symbol} has {len(known[symbol])} stored bars up to {window:%Y-%m-%d %H:%M} but its model "
                    f"reads the last {lookback} returns; backfill market_bars for {symbol} before this window.",
                )
                continue
            ready.append(symbol)
        if not ready:
            continue
        forecasts = forecast_prices([models[symbol] for symbol in ready], {symbol: known[symbol] for symbol in ready})
        calls += 1
        for forecast in forecasts.values():
            frames.append(forecast.to_frame().assign(as_of_window=window))
    seconds = time.perf_counter() - started

    alerts = [
        _alert(symbol, window, "model_unavailable", reason, context.run_id)
        for symbol, reason in skipped.items()
        for window in wanted[symbol]
    ]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    predicted_windows = set(zip(rows["symbol"], rows["as_of_window"], strict=True)) if len(rows) else set()
    for symbol, reason in too_short.items():
        missing = [window for window in wanted[symbol] if (symbol, window) not in predicted_windows]
        alerts += [_alert(symbol, window, "insufficient_bars", reason, context.run_id) for window in missing]
        context.log.warning(f"Skipping {len(missing)} window(s) of {symbol}: {reason}")

    partitions = [(symbol, window) for symbol, windows in wanted.items() for window in windows]
    forecast_store.replace_forecasts(rows, pd.DataFrame(alerts), partitions)

    reasons = {**too_short, **skipped}
    versions = {symbol: model.version for symbol, model in sorted(models.items())}
    context.log.info(
        f"Forecast {len(predicted_windows)} of {len(partitions)} symbol-windows in {calls} compiled call(s), "
        f"{seconds:.2f} s; {len(alerts)} alert(s)."
    )
    check = AssetCheckResult(
        check_name="every_symbol_predicted",
        passed=not reasons,
        severity=AssetCheckSeverity.WARN,
        description="Every symbol was forecast." if not reasons else "Skipped: " + " ".join(reasons.values()),
        metadata={"skipped": MetadataValue.md(_reasons_markdown(reasons)) if reasons else MetadataValue.text("none")},
    )
    return MaterializeResult(
        metadata={
            "rows": MetadataValue.int(len(rows)),
            "symbol_windows_predicted": MetadataValue.int(len(predicted_windows)),
            "symbol_windows_skipped": MetadataValue.int(len(partitions) - len(predicted_windows)),
            "model_versions": MetadataValue.json(versions),
            "horizon_steps": MetadataValue.int(int(rows["horizon_step"].max()) if len(rows) else 0),
            "forecast_seconds": MetadataValue.float(round(seconds, 3)),
            "compiled_calls": MetadataValue.int(calls),
            "alerts": MetadataValue.int(len(alerts)),
        },
        check_results=[check],
    )
