"""``market_bars``: one OHLCV row per symbol x 15-minute session window, in DuckDB."""


import time

import pandas as pd
from dagster import AssetExecutionContext, BackfillPolicy, Failure, MaterializeResult, MetadataValue, asset

from lstm_pipeline.market.bars import MarketDataError, empty_bars
from lstm_pipeline.market.calendar import WINDOW, window_key
from lstm_pipeline.partitions import contiguous_ranges, market_bars_partitions, requested_windows
from lstm_pipeline.resources.market_data import MarketDataSource
from lstm_pipeline.resources.storage import PipelineStore


@asset(
    partitions_def=market_bars_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="market_data",
    kinds={"duckdb", "pandas"},
    tags={"lstm_pipeline/storage": "duckdb"},
    description=(
        "15-minute OHLCV bars (plus vwap and trade count where the source has them) of the NYSE regular "
        "session, one row per symbol-window, from the configured market-data source. Re-materializing a "
        "partition replaces its row; a window the source has no bar for is reported missing, never invented. "
        "A symbol the source fails for (a malformed file, a refused ticker) keeps its stored bars and is listed "
        "in failed_symbols while the others are stored; the run fails only when every symbol does."
    ),
)
def market_bars(
    context: AssetExecutionContext, market_data: MarketDataSource, store: PipelineStore
) -> MaterializeResult:
    wanted = requested_windows(list(context.partition_keys))
    started = time.perf_counter()
    fetched, failures, fetch_ranges = _fetch_each_symbol(context, market_data, wanted)
    if failures and len(failures) == len(wanted):
        raise Failure(
            description=f"No symbol's bars could be fetched from {market_data.source_name}, so nothing was stored: "
            + " ".join(f"{symbol}: {reason}" for symbol, reason in failures.items()),
            metadata={"failed_symbols": MetadataValue.md(_failures_table(failures))},
        )
    bars = pd.concat(fetched, ignore_index=True) if fetched else empty_bars()
    # A failed symbol's partitions are left as they are: its previously stored bars stay until a fetch succeeds.
    partitions = [(symbol, stamp) for symbol, windows in wanted.items() if symbol not in failures for stamp in windows]
    fetched_at = time.perf_counter()
    # Staged: no forecast or training reads these bars until the blocking checks of this run promote them.
    rows = store.replace_bars(bars, partitions, awaiting_checks=True)
    written_at = time.perf_counter()

    present = set(zip(bars["symbol"], bars["window_start"], strict=True)) if rows else set()
    not_served = [f"{symbol} {window_key(stamp)}" for symbol, stamp in partitions if (symbol, stamp) not in present]
    if not_served:
        context.log.warning(
            f"{market_data.source_name} had no bar for {len(not_served)} of {len(partitions)} symbol-windows "
            f"(first: {', '.join(not_served[:5])}); they are recorded as missing."
        )
    failed = [f"{symbol} {window_key(stamp)}" for symbol in failures for stamp in wanted[symbol]]
    missing = not_served + failed
    all_windows = [stamp for windows in wanted.values() for stamp in windows]
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(rows),
            "partitions": MetadataValue.int(len(all_windows)),
            "missing_windows": MetadataValue.int(len(missing)),
            "missing_sample": MetadataValue.text(", ".join(missing[:50]) or "none"),
            "symbols": MetadataValue.text(", ".join(wanted)),
            "failed_symbols": MetadataValue.md(_failures_table(failures)),
            "first_window": MetadataValue.text(window_key(min(all_windows))),
            "last_window": MetadataValue.text(window_key(max(all_windows))),
            "source": MetadataValue.text(market_data.source_name),
            "fetch_ranges": MetadataValue.int(fetch_ranges),
            "fetch_seconds": MetadataValue.float(round(fetched_at - started, 3)),
            "write_seconds": MetadataValue.float(round(written_at - fetched_at, 3)),
        }
    )


def _fetch_each_symbol(
    context: AssetExecutionContext, market_data: MarketDataSource, wanted: dict[str, list[pd.Timestamp]]
) -> tuple[list[pd.DataFrame], dict[str, str], int]:
    """Bars of each symbol that could be fetched, symbol -> reason for each that could not, and ranges asked for.

    One symbol's source error (a malformed file, a ticker Polygon refuses) must not cost the other symbols their
    bars, so a ``MarketDataError`` fails only its symbol; any other exception is a fault and fails the run.
    """
    fetched: list[pd.DataFrame] = []
    failures: dict[str, str] = {}
    fetch_ranges = 0
    for symbol, windows in wanted.items():
        symbol_bars: list[pd.DataFrame] = []
        try:
            for start, end in contiguous_ranges(windows):
                context.log.info(f"Fetching {symbol} bars {window_key(start)} .. {window_key(end - WINDOW)}")
                fetch_ranges += 1
                bars = market_data.fetch_bars(symbol, start, end)
                symbol_bars.append(bars[bars["window_start"].isin(windows)])
        except MarketDataError as exc:
            failures[symbol] = str(exc)
            context.log.error(
                f"{symbol} was not fetched, its {len(windows)} window(s) keep their stored bars: {exc}"
            )
            continue
        fetched.extend(symbol_bars)
    return fetched, failures, fetch_ranges


def _failures_table(failures: dict[str, str]) -> str:
    if not failures:
        return "none"
    lines = ["| symbol | reason |", "|---|---|"]
    lines += [f"| {symbol} | {reason.replace('|', '/')} |" for symbol, reason in failures.items()]
    return "\n".join(lines)
