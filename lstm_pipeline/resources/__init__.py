"""Resources chosen per deployment: the market-data source, the DuckDB stores and the model store."""

import os

from dagster import EnvVar

from lstm_pipeline.resources.market_data import (
    FileMarketData,
    MarketDataSource,
    PolygonMarketData,
    SimulatedMarketData,
)
from lstm_pipeline.resources.model_store import LocalModelStore
from lstm_pipeline.resources.storage import ForecastStore, MarketBarsStore
from lstm_pipeline.settings import ConfigError, Settings


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
        # The key reaches the resource only as EnvVar, so the UI shows the variable's name, never its value.
        os.environ.setdefault("POLYGON_API_KEY", key)
        return PolygonMarketData(
            api_key=EnvVar("POLYGON_API_KEY"),
            base_url=market.polygon_base_url,
            requests_per_minute=market.requests_per_minute,
            max_retries=market.max_retries,
            delay_minutes=market.delay_minutes,
        )
    if source == "file":
        if not market.file_path:
            raise ConfigError(
                "market_data.source is 'file' but market_data.file_path is not set; point it (or "
                "LSTM_PIPELINE_DATA_FILE) at a folder of CSV or Parquet bars."
            )
        return FileMarketData(
            path=market.file_path, column_map=market.file_column_map, timezone=market.file_timezone, delay_minutes=0
        )
    return SimulatedMarketData(seed=market.simulation_seed, delay_minutes=market.delay_minutes)


def build_resources(settings: Settings) -> dict[str, object]:
    """Every resource the definitions use, keyed by the names assets ask for."""
    return {
        "market_data": build_market_data(settings),
        "bars_store": MarketBarsStore.for_path(settings.db_path),
        "model_store": LocalModelStore(models_dir=str(settings.models_dir)),
        "forecast_store": ForecastStore.for_path(settings.db_path),
    }
