"""``accuracy_metrics``: how good a symbol's forecasts have been, as of each session window.

Partition ``AAPL|2025-07-14-10:00`` holds AAPL's accuracy as of that window: one row per trailing span (``day``,
``week``, ``month`` = the last 26, 130, 546 session windows of validated targets) and horizon bucket (``1_step``,
``1_hour``, ``1_day``, ``1_week``) with RMSE, MAE, MAPE, directional accuracy beside the up-move share, MASE against
the naive last-price forecast on the same origins, 80%/95% coverage and Winkler scores beside those of the naive and
time-of-day baseline bands on the same origins and targets, the reprediction rate, the scored trades' success rate
and mean return, and the MASE trend against the span before (definitions in ``lstm_pipeline.evaluation.accuracy``).
The asset is thin: four reads (validations, the predictions' intervals, trade outcomes, bars for the bands) for the
run's symbols and the history the spans need, one call of the pure function for every as-of window of the run, one
transaction. Its metadata shows the latest week's metrics, whether confidence separates good from bad forecasts, and
a plot of forecast vs actual and MASE over time.
"""

import base64
import time

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from lstm_pipeline.evaluation.accuracy import (
    BUCKET_SQL,
    SPAN_WINDOWS,
    baseline_band_rows,
    confidence_separates,
    error_by_confidence,
    history_start,
)
from lstm_pipeline.evaluation.accuracy import accuracy_metrics as compute_accuracy_metrics
from lstm_pipeline.forecasting.bands import adapt_history_start
from lstm_pipeline.market.calendar import WINDOW, session_windows
from lstm_pipeline.partitions import market_bars_partitions, requested_windows
from lstm_pipeline.resources.storage import PipelineStore

PLOT_SPAN = "week"


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})" if values else "FALSE"


def _number(value: float, digits: int = 3) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def _latest_markdown(rows: pd.DataFrame) -> str:
    """The week span's metrics as of each symbol's latest window of the run, one line per horizon bucket."""
    week = rows[rows["span"] == PLOT_SPAN]
    latest = week[week["window_start"] == week.groupby("symbol")["window_start"].transform("max")]
    lines = [
        "| symbol | as of | bucket | n | MAE | MAPE % | direction | up share | MASE | cov 80 | cov 95 | Winkler 80 "
        "| naive band cov 80 / Winkler 80 | tod band cov 80 / Winkler 80 | repredict | MASE trend |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in latest.itertuples(index=False):
        lines.append(
            f"| {row.symbol} | {row.window_start:%Y-%m-%d %H:%M} | {row.horizon_bucket} | {row.n} | {_number(row.mae)} "
            f"| {_number(row.mape)} | {_number(row.directional_accuracy, 2)} | {_number(row.up_move_share, 2)} "
            f"| {_number(row.mase)} | {_number(row.coverage_80, 2)} | {_number(row.coverage_95, 2)} "
            f"| {_number(row.winkler_80)} | {_number(row.naive_band_coverage_80, 2)} / "
            f"{_number(row.naive_band_winkler_80)} | {_number(row.tod_band_coverage_80, 2)} / "
            f"{_number(row.tod_band_winkler_80)} | {_number(row.reprediction_rate, 2)} | {_number(row.mase_trend)} |"
        )
    return "\n".join(lines)


def _confidence_markdown(table: pd.DataFrame) -> str:
    lines = ["| confidence level | n | mean abs error % | MASE | cov 95 |", "|---|---|---|---|---|"]
    lines += [
        f"| {row.confidence_level} | {row.n} | {_number(row.mean_abs_error_pct)} | {_number(row.mase)} "
        f"| {_number(row.coverage_95, 2)} |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join(lines)


MAX_PLOT_PARTITIONS = 100
"""The plot (a PNG of tens of kB) is drawn only for runs of at most this many symbol-windows: Dagster stores a
range run's metadata on each partition's materialization event, so a 5,200-partition backfill would write the
image 5,200 times into the event log (a live tick covers one window of each symbol)."""


def _plot_markdown(store: PipelineStore, rows: pd.DataFrame, forecasts: pd.DataFrame) -> str | None:
    """The plot of the first symbol with metrics, as of its latest window of the run (reads one forecast partition,
    a week of bars and the stored week-span MASE history)."""
    from lstm_pipeline.evaluation.accuracy_plot import accuracy_plot

    if rows.empty:
        return None
    symbol = str(rows["symbol"].iloc[0])
    latest = rows.loc[rows["symbol"] == symbol, "window_start"].max()
    week = session_windows(latest - pd.Timedelta(days=21), latest + WINDOW)[-(SPAN_WINDOWS[PLOT_SPAN] + 1):]
    week_ago = week[0]
    bars = store.read_bars(symbol, start=week[1], end=latest + WINDOW)
    actual = pd.Series(bars["close"].to_numpy(), index=pd.DatetimeIndex(bars["window_start"]))
    path = store.read_rows("predictions", ["symbol = ?", "as_of_window = ?"], [symbol, week_ago])
    one_step = forecasts[(forecasts["symbol"] == symbol) & (forecasts["horizon_step"] == 1)]
    history = store.read_rows(
        "accuracy_metrics",
        ["symbol = ?", "span = ?", "window_start >= ?", "window_start <= ?"],
        [symbol, PLOT_SPAN, history_start(latest), latest],
    )
    png = accuracy_plot(symbol, actual, path, one_step, history)
    return f"![{symbol} accuracy](data:image/png;base64,{base64.b64encode(png).decode()})"


@asset(
    partitions_def=market_bars_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetKey("validations")],
    group_name="evaluation",
    kinds={"duckdb"},
    description=(
        "Rolling accuracy of each symbol's forecasts as of each session window, per span (last day, week, month of "
        "validated targets) and horizon bucket (1 step, 1 hour, 1 day, 1 week): RMSE, MAE, MAPE, directional "
        "accuracy vs the up-move share, MASE against the naive last-price forecast, 80%/95% coverage and Winkler "
        "score beside the naive and time-of-day baseline bands', reprediction rate"
        ", trade success rate and mean return, and the MASE trend against the span before."
    ),
)
def accuracy_metrics(context: AssetExecutionContext, store: PipelineStore) -> MaterializeResult:
    wanted = requested_windows(list(context.partition_keys))
    as_of = pd.DataFrame(
        [(symbol, window) for symbol, windows in wanted.items() for window in windows],
        columns=["symbol", "window_start"],
    )
    symbols = sorted(wanted)
    start = history_start(min(windows[0] for windows in wanted.values()))
    end = max(windows[-1] for windows in wanted.values())

    started = time.perf_counter()
    targets = [_in("symbol", symbols), "target_window >= ?", "target_window <= ?", BUCKET_SQL]
    validations = store.read_rows("validations", targets, [*symbols, start, end])
    forecasts = store.read_rows("predictions", targets, [*symbols, start, end])
    trades = store.read_rows(
        "trade_outcomes", [_in("symbol", symbols), "scored_window >= ?", "scored_window <= ?"], [*symbols, start, end]
    )
    # The baseline bands' history: 60 sessions before the first validated target (warm-up of sigma and quantiles).
    bars = store.read_bars(symbols=symbols, start=adapt_history_start(start), end=end + WINDOW)
    read_seconds = time.perf_counter() - started

    started = time.perf_counter()
    bands = baseline_band_rows(bars, validations)
    result = compute_accuracy_metrics(validations, as_of, forecasts, trades, bands=bands)
    by_confidence = error_by_confidence(validations, forecasts)
    compute_seconds = time.perf_counter() - started

    started = time.perf_counter()
    store.replace_tables({"accuracy_metrics": (as_of, result.rows)})
    write_seconds = time.perf_counter() - started

    for symbol, group in result.skipped.groupby("symbol", sort=True):
        context.log.warning(f"No accuracy metrics for {len(group)} window(s) of {symbol}: {group['reason'].iloc[0]}.")
    context.log.info(
        f"Accuracy of {len(as_of) - len(result.skipped)} of {len(as_of)} symbol-windows from {len(validations)} "
        f"validation(s) and {len(trades)} scored trade(s): {len(result.rows)} row(s), read {read_seconds:.2f} s, "
        f"computed {compute_seconds:.2f} s."
    )
    separates = confidence_separates(by_confidence)
    metadata = {
        "rows": MetadataValue.int(len(result.rows)),
        "symbol_windows": MetadataValue.int(len(as_of)),
        "symbol_windows_without_metrics": MetadataValue.int(len(result.skipped)),
        "validations_read": MetadataValue.int(len(validations)),
        "trades_read": MetadataValue.int(len(trades)),
        "bars_read": MetadataValue.int(len(bars)),
        "read_seconds": MetadataValue.float(round(read_seconds, 3)),
        "compute_seconds": MetadataValue.float(round(compute_seconds, 3)),
        "write_seconds": MetadataValue.float(round(write_seconds, 3)),
        "latest_week_metrics": MetadataValue.md(_latest_markdown(result.rows)),
        "error_by_confidence": MetadataValue.md(_confidence_markdown(by_confidence)),
        "confidence_separates": MetadataValue.text(
            "not known (fewer than two scored confidence levels)" if separates is None
            else ("yes: the highest level's MASE is below the lowest's" if separates
                  else "no: the highest level's MASE is not below the lowest's")
        ),
    }
    started = time.perf_counter()
    partitions = len(context.partition_keys)
    if partitions > MAX_PLOT_PARTITIONS:
        metadata["accuracy_plot"] = MetadataValue.text(
            f"not drawn for a run of {partitions} symbol-windows (Dagster copies a run's metadata onto the event of "
            f"every partition it materializes); runs of at most {MAX_PLOT_PARTITIONS}, like the market sensor's, "
            "draw it"
        )
    else:
        plot = _plot_markdown(store, result.rows, forecasts)
        if plot is not None:
            metadata["accuracy_plot"] = MetadataValue.md(plot)
    metadata["plot_seconds"] = MetadataValue.float(round(time.perf_counter() - started, 3))
    return MaterializeResult(metadata=metadata)
