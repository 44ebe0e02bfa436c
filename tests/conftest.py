"""Shared fixtures: a temporary Dagster instance, a temporary DuckDB file, resources on them."""

import warnings

import pytest
from dagster import BetaWarning, PreviewWarning, instance_for_test

from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.resources.storage import PipelineStore

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
def store(db_path) -> PipelineStore:
    """The pipeline's store (resource key ``"store"``) on a temporary DuckDB file."""
    return PipelineStore.for_path(db_path)


@pytest.fixture
def simulated() -> SimulatedMarketData:
    return SimulatedMarketData(seed=7)
