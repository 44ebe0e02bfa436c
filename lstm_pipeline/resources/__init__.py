"""Resources chosen per deployment: the market-data source, the store (DuckDB or PostgreSQL), the model store."""

import os

from dagster import EnvVar
from dagster_duckdb import DuckDBResource

from lstm_pipeline.resources.market_data import (
    FileMarketData,
    MarketDataSource,
    PolygonMarketData,
    SimulatedMarketData,
)
from lstm_pipeline.resources.model_store import LocalModelStore
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import ConfigError, Settings
from lstm_pipeline.storage import postgres_url_of, writable_problem


def build_market_data(settings: Settings) -> MarketDataSource:
    """The market-data resource for this deployment: Polygon with a key, a file replay, else simulated."""
    market = settings.market_data
    source = settings.market_data_source
    if source == "polygon":
        key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else ""
        if not key:
            raise ConfigError(
                "market_data.source is 'polygon' but no API key is set; export POLYGON_API_KEY or use 'simulated'."
            )
        # The key never becomes a config value the UI shows: a key from the environment goes in as EnvVar (its
        # name shows), one from the config file is read from the settings by the resource when a run starts.
        variable = settings.env_variable_for("polygon_api_key")
        key_config = {"api_key": EnvVar(variable)} if variable else {"api_key_from_config": True}
        return PolygonMarketData(
            **key_config,
            base_url=market.polygon_base_url,
            requests_per_minute=market.requests_per_minute,
            max_retries=market.max_retries,
            fetch_max_seconds=market.fetch_max_seconds,
            delay_minutes=market.delay_minutes,
        )
    if source == "file":
        if not market.file_path:
            raise ConfigError(
                "market_data.source is 'file' but market_data.file_path is not set; point it (or "
                "LSTM_PIPELINE_DATA_FILE) at a folder of CSV or Parquet bars."
            )
        if not os.path.exists(market.file_path):
            named_by = settings.env_variable_for("market_data", "file_path") or "market_data.file_path"
            raise ConfigError(
                f"{named_by} names {market.file_path}, which does not exist; point it at a folder of CSV or "
                "Parquet bars (a relative path in the config file resolves beside the file)."
            )
        return FileMarketData(
            path=market.file_path, column_map=market.file_column_map, timezone=market.file_timezone, delay_minutes=0
        )
    return SimulatedMarketData(
        seed=market.simulation_seed,
        predictability=market.simulation_predictability,
        delay_minutes=market.delay_minutes,
    )


def build_store(settings: Settings) -> PipelineStore:
    """The store for ``storage.backend``: the DuckDB file ``db_path`` (refused here if it cannot be written) or the
    PostgreSQL database ``storage.postgres_url`` (refused here if it cannot be parsed; never shown in the UI)."""
    if settings.storage.backend == "postgres":
        postgres_url_of(settings)
        variable = settings.env_variable_for("storage", "postgres_url")
        url_config = {"postgres_url": EnvVar(variable)} if variable else {"postgres_url_from_config": True}
        return PipelineStore(duckdb=DuckDBResource(database=str(settings.db_path)), backend="postgres", **url_config)
    problem = writable_problem(settings.db_path)
    if problem is not None:
        raise ConfigError(problem)
    return PipelineStore.for_path(settings.db_path)


def build_resources(settings: Settings) -> dict[str, object]:
    """Every resource the definitions use, keyed by the names assets ask for.

    An unwritable ``db_path`` is refused here, when the code location loads, not by the first run that writes.
    """
    return {
        "market_data": build_market_data(settings),
        "store": build_store(settings),
        "model_store": LocalModelStore(models_dir=str(settings.models_dir)),
    }
