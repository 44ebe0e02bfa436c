"""``market_bars``: one OHLCV row per symbol x 15-minute session window, in DuckDB."""


import time
from collections import defaultdict

import pandas as pd
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from lstm_pipeline.market.calendar import WINDOW, parse_window_key, session_windows, window_key
from lstm_pipeline.partitions import market_bars_partitions, split_market_bars_key
from lstm_pipeline.resources.market_data import MarketDataSource
from lstm_pipeline.resources.storage import MarketBarsStore


def contiguous_ranges(windows: list[pd.Timestamp]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Group sorted session windows into runs with no session window between them: one request per run."""
    if not windows:
        return []
    ordered = sorted(windows)
    calendar = session_windows(ordered[0], ordered[-1] + WINDOW)
    position = {stamp: index for index, stamp in enumerate(calendar)}
    ranges: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    run_start = previous = ordered[0]
    for stamp in ordered[1:]:
        if position.get(stamp, -1) != position.get(previous, -10) + 1:
            ranges.append((run_start, previous + WINDOW))
            run_start = stamp
        previous = stamp
    ranges.append((run_start, previous + WINDOW))
    return ranges


def requested_windows(partition_keys: list[str]) -> dict[str, list[pd.Timestamp]]:
    """Symbol -> sorted window starts of the partitions a run materializes."""
    by_symbol: dict[str, set[pd.Timestamp]] = defaultdict(set)
    for key in partition_keys:
        symbol, window = split_market_bars_key(key)
        by_symbol[symbol].add(parse_window_key(window))
    return {symbol: sorted(stamps) for symbol, stamps in sorted(by_symbol.items())}


@asset(
    partitions_def=market_bars_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="market_data",
    kinds={"duckdb", "pandas"},
    tags={"lstm_pipeline/storage": "duckdb"},
    description=(
        "15-minute OHLCV bars (plus vwap and trade count where the source has them) of the NYSE regular "
        "session, one row per symbol-window, from the configured market-data source. Re-materializing a "
        "partition replaces its row; a window the source has no bar for is reported missing, never invented."
    ),
)
def market_bars(
    context: AssetExecutionContext, market_data: MarketDataSource, bars_store: MarketBarsStore
) -> MaterializeResult:
    wanted = requested_windows(list(context.partition_keys))
    fetched: list[pd.DataFrame] = []
    requests = 0
    started = time.perf_counter()
    for symbol, windows in wanted.items():
        for start, end in contiguous_ranges(windows):
            context.log.info(f"Fetching {symbol} bars {window_key(start)} .. {window_key(end - WINDOW)}")
            bars = market_data.fetch_bars(symbol, start, end)
            requests += 1
            fetched.append(bars[bars["window_start"].isin(windows)])
    bars = pd.concat(fetched, ignore_index=True) if fetched else pd.DataFrame()
    partitions = [(symbol, stamp) for symbol, windows in wanted.items() for stamp in windows]
    fetched_at = time.perf_counter()
    rows = bars_store.replace_bars(bars, partitions)
    written_at = time.perf_counter()

    present = set(zip(bars["symbol"], bars["window_start"], strict=True)) if rows else set()
    missing = [f"{symbol} {window_key(stamp)}" for symbol, stamp in partitions if (symbol, stamp) not in present]
    if missing:
        context.log.warning(
            f"{market_data.source_name} had no bar for {len(missing)} of {len(partitions)} symbol-windows "
            f"(first: {', '.join(missing[:5])}); they are recorded as missing."
        )
    all_windows = [stamp for windows in wanted.values() for stamp in windows]
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(rows),
            "partitions": MetadataValue.int(len(partitions)),
            "missing_windows": MetadataValue.int(len(missing)),
            "missing_sample": MetadataValue.text(", ".join(missing[:50]) or "none"),
            "symbols": MetadataValue.text(", ".join(wanted)),
            "first_window": MetadataValue.text(window_key(min(all_windows))),
            "last_window": MetadataValue.text(window_key(max(all_windows))),
            "source": MetadataValue.text(market_data.source_name),
            "source_requests": MetadataValue.int(requests),
            "fetch_seconds": MetadataValue.float(round(fetched_at - started, 3)),
            "write_seconds": MetadataValue.float(round(written_at - fetched_at, 3)),
        }
    )
