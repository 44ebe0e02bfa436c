"""Helpers shared by the tests (plain functions; fixtures stay in conftest.py)."""

from collections.abc import Sequence

import pandas as pd
from dagster import DagsterInstance

from lstm_pipeline.market.calendar import NEW_YORK, session_windows, window_key
from lstm_pipeline.partitions import partition_range_tags, register_session_windows


def window_keys(start: str, end: str) -> list[str]:
    """Keys of the session windows of ``[start, end)``, in time order."""
    return [window_key(stamp) for stamp in session_windows(pd.Timestamp(start), pd.Timestamp(end))]


def register_windows(instance: DagsterInstance, start: str, end: str) -> list[str]:
    """Register the session windows of ``[start, end)`` as the market sensor would (time order); returns their keys."""
    keys = window_keys(start, end)
    register_session_windows(instance, keys)
    return keys


def range_tags(symbols: Sequence[str], keys: Sequence[str]) -> dict[str, str]:
    """Run tags that materialize ``symbols[0]..symbols[-1]`` x ``keys[0]..keys[-1]`` in one run."""
    return partition_range_tags(symbols[0], symbols[-1], keys[0], keys[-1])


class FrozenClock:
    """A clock to build sensors with: says ``now`` (New York wall-clock time) until a test moves it."""

    def __init__(self, text: str) -> None:
        self.set(text)

    def set(self, text: str) -> None:
        self.now = pd.Timestamp(text, tz=NEW_YORK)

    def __call__(self) -> pd.Timestamp:
        return self.now
