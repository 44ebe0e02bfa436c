"""Partitions and the window vocabulary: symbol x 15-minute NYSE session window.

Why a dynamic window dimension (see README, "Partitions"): a ``TimeWindowPartitionsDefinition`` can only
describe the session with a market-hours cron plus holiday exclusions, which takes Dagster's slow counting path
(seconds per count) and still needs per-day exclusions for holidays and early closes; a plain ``*/15 * * * *``
cron is fast but makes 96 windows a day (350,000 partitions for 10 symbols x 1 year, past Dagster's guidance).
A dynamic dimension holds exactly the session windows (about 6,500 a year), each added by the market sensor once
the exchange calendar says it has closed, so counts are a database lookup and keys never run ahead of the market.
Symbols are static: adding one is a config change.

A dynamic dimension keeps its keys in the order they were added, and Dagster resolves a partition range by that
order. Window keys must therefore be registered in time order: ``window_registration`` says which keys to delete
and re-add when a window earlier than a registered one arrives (an earlier ``history_start``), and every module
that turns keys into a run's windows, ranges or range tags does it here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DeleteDynamicPartitionsRequest,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from lstm_pipeline.market.calendar import WINDOW, parse_window_key, session_windows
from lstm_pipeline.settings import Settings, get_settings

SYMBOL_DIMENSION = "symbol"
WINDOW_DIMENSION = "window"

# The run tags that make a run materialize a partition range (what the UI's backfill of a range sets). Dagster
# 1.13 defines them only in the private ``dagster._core.storage.tags``; their values are part of every stored
# run, so they are spelled here once rather than imported from a private module.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

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


def partition_range_tags(
    first_symbol: str, last_symbol: str, first_window_key: str, last_window_key: str
) -> dict[str, str]:
    """Run tags that materialize every symbol from ``first_symbol`` to ``last_symbol`` (config order) times every
    registered window from ``first_window_key`` to ``last_window_key`` in one run."""
    if last_window_key < first_window_key:
        raise ValueError(f"Window range {first_window_key} .. {last_window_key} ends before it starts.")
    return {
        PARTITION_RANGE_START_TAG: str(market_bars_key(first_symbol, first_window_key)),
        PARTITION_RANGE_END_TAG: str(market_bars_key(last_symbol, last_window_key)),
    }


def requested_windows(partition_keys: Iterable[str]) -> dict[str, list[pd.Timestamp]]:
    """Symbol -> window starts (sorted in time, whatever order Dagster listed them) of a run's partitions."""
    by_symbol: dict[str, set[pd.Timestamp]] = defaultdict(set)
    for key in partition_keys:
        symbol, window = split_market_bars_key(key)
        by_symbol[symbol].add(parse_window_key(window))
    return {symbol: sorted(stamps) for symbol, stamps in sorted(by_symbol.items())}


def contiguous_ranges(windows: Iterable[pd.Timestamp]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Group session windows (any order) into ``[start, end)`` runs with no session window between them: one
    source request per run."""
    ordered = sorted(set(windows))
    if not ordered:
        return []
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


@dataclass(frozen=True)
class WindowRegistration:
    """How to bring the registered window keys to ``sorted(registered | wanted)``: delete ``to_delete`` (registered
    keys that sit after the first out-of-order position), then add ``to_add`` in this order."""

    to_delete: list[str]
    to_add: list[str]

    @property
    def reorders(self) -> bool:
        """Whether registered keys are moved (deleted and re-added), not only new keys appended."""
        return bool(self.to_delete)

    def requests(self) -> list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest]:
        """The sensor's ``dynamic_partitions_requests``: the daemon runs them in order, deletes first."""
        requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
        if self.to_delete:
            requests.append(session_window_partitions.build_delete_request(self.to_delete))
        if self.to_add:
            requests.append(session_window_partitions.build_add_request(self.to_add))
        return requests


def window_registration(registered: Sequence[str], wanted: Iterable[str]) -> WindowRegistration:
    """Keys to delete and re-add so the dynamic dimension lists ``registered`` plus ``wanted`` in time order.

    Window keys (``YYYY-MM-DD-HH:MM`` in New York) sort as text in time order. The registered keys that already
    form the start of the target order stay; the rest are deleted and re-added after the new ones. In the usual
    case (new windows are later than every registered one) nothing is deleted; when ``history_start`` moves
    earlier, the windows after the new ones are moved, and an order broken before this fix is repaired.
    Materialization history is keyed by the key text, so moving a key keeps it.
    """
    target = sorted(set(registered) | set(wanted))
    kept = 0
    for have, want in zip(registered, target, strict=False):
        if have != want:
            break
        kept += 1
    return WindowRegistration(to_delete=list(registered[kept:]), to_add=target[kept:])


def register_session_windows(instance: DagsterInstance, window_keys: Iterable[str]) -> list[str]:
    """Register window keys on an instance directly (scripts, tests), keeping time order; returns the keys added
    or moved. Sensors return ``window_registration(...).requests()`` instead."""
    plan = window_registration(instance.get_dynamic_partitions(session_window_partitions.name), window_keys)
    for key in plan.to_delete:
        instance.delete_dynamic_partition(session_window_partitions.name, key)
    if plan.to_add:
        instance.add_dynamic_partitions(session_window_partitions.name, plan.to_add)
    return plan.to_add


def registered_in_order(registered: Sequence[str], window_keys: Sequence[str]) -> bool:
    """Whether the sorted ``window_keys`` are registered and listed consecutively, so that a range from the first to
    the last resolves to exactly them."""
    if not window_keys:
        return True
    wanted = sorted(window_keys)
    try:
        first = registered.index(wanted[0])
    except ValueError:
        return False
    return list(registered[first : first + len(wanted)]) == wanted


symbol_partitions = build_symbol_partitions(get_settings())
"""The configured symbols (``symbols`` in the config, or ``LSTM_PIPELINE_SYMBOLS``)."""

market_bars_partitions = build_market_bars_partitions(symbol_partitions)
"""Partitions of ``market_bars`` and of everything computed per symbol-window."""
