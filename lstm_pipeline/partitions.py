"""Partitions: symbol x 15-minute NYSE session window.

Why a dynamic window dimension (see README, "Partitions"): a ``TimeWindowPartitionsDefinition`` can only
describe the session with a market-hours cron plus holiday exclusions, which takes Dagster's slow counting path
(seconds per count) and still needs per-day exclusions for holidays and early closes; a plain ``*/15 * * * *``
cron is fast but makes 96 windows a day (350,000 partitions for 10 symbols x 1 year, past Dagster's guidance).
A dynamic dimension holds exactly the session windows (about 6,500 a year), each added by the market sensor once
the exchange calendar says it has closed, so counts are a database lookup and keys never run ahead of the market.
Symbols are static: adding one is a config change.
"""

from __future__ import annotations

from dagster import (
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from lstm_pipeline.settings import Settings, load_settings

SYMBOL_DIMENSION = "symbol"
WINDOW_DIMENSION = "window"

session_window_partitions = DynamicPartitionsDefinition(name="session_windows")
"""15-minute NYSE regular-session windows, keyed by their New York start (``YYYY-MM-DD-HH:MM``)."""


def build_symbol_partitions(settings: Settings) -> StaticPartitionsDefinition:
    """The configured symbols, in config order."""
    return StaticPartitionsDefinition(list(settings.symbols))


def build_market_bars_partitions(symbols: StaticPartitionsDefinition) -> MultiPartitionsDefinition:
    """Symbol x session window; keys read ``SYMBOL|YYYY-MM-DD-HH:MM``."""
    return MultiPartitionsDefinition({SYMBOL_DIMENSION: symbols, WINDOW_DIMENSION: session_window_partitions})


def split_market_bars_key(key: str) -> tuple[str, str]:
    """(symbol, window key) of a ``market_bars`` partition key."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims[SYMBOL_DIMENSION], dims[WINDOW_DIMENSION]
    symbol, _, window = str(key).partition("|")
    if not window:
        raise ValueError(f"Partition key {key!r} is not of the form SYMBOL|YYYY-MM-DD-HH:MM.")
    return symbol, window


def market_bars_key(symbol: str, window: str) -> MultiPartitionKey:
    """The ``market_bars`` partition key of one symbol-window."""
    return MultiPartitionKey({SYMBOL_DIMENSION: symbol, WINDOW_DIMENSION: window})


symbol_partitions = build_symbol_partitions(load_settings())
"""The configured symbols (``symbols`` in the config, or ``LSTM_PIPELINE_SYMBOLS``)."""

market_bars_partitions = build_market_bars_partitions(symbol_partitions)
"""Partitions of ``market_bars`` and of everything computed per symbol-window."""
