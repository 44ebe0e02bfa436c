"""Shared fixtures: a temporary Dagster instance, a temporary DuckDB file, resources on them."""

import warnings

import pandas as pd
import pytest
from dagster import BetaWarning, DagsterInstance, PreviewWarning, instance_for_test

from lstm_pipeline.market.calendar import session_windows, window_key
from lstm_pipeline.partitions import session_window_partitions
from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.resources.storage import MarketBarsStore

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)


@pytest.fixture
def instance():
    with instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "bars.duckdb"


@pytest.fixture
def bars_store(db_path) -> MarketBarsStore:
    return MarketBarsStore.for_path(db_path)


@pytest.fixture
def simulated() -> SimulatedMarketData:
    return SimulatedMarketData(seed=7)


def register_windows(instance: DagsterInstance, start: str, end: str) -> list[str]:
    """Add the session windows of ``[start, end)`` as dynamic partitions; returns their keys."""
    keys = [window_key(stamp) for stamp in session_windows(pd.Timestamp(start), pd.Timestamp(end))]
    instance.add_dynamic_partitions(session_window_partitions.name, keys)
    return keys
