"""Market-data sources as Dagster resources: the simulated market, Polygon.io, and recorded files.

Each one answers ``fetch_bars(symbol, start, end)`` with the session bars it has for ``start <= window_start
< end`` in the bar schema, and only for windows whose (15-minute delayed) data is available now. The
definitions choose one per deployment (see ``lstm_pipeline.definitions``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from lstm_pipeline.market.bars import empty_bars
from lstm_pipeline.market.calendar import NEW_YORK, WINDOW, to_new_york


class MarketDataSource(ConfigurableResource, ABC):
    """Where ``market_bars`` gets its bars."""

    delay_minutes: int = Field(default=15, ge=0, description="Minutes after a window closes before its bar exists.")

    @property
    @abstractmethod
    def source_name(self) -> str:
        """Short label stored with every row and shown in metadata."""

    @abstractmethod
    def _fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame: ...

    def available_until(self, now: pd.Timestamp | None = None) -> pd.Timestamp:
        """Window starts before this instant have delayed data available."""
        current = to_new_york(now if now is not None else pd.Timestamp.now(tz=NEW_YORK))
        return current - timedelta(minutes=self.delay_minutes) - WINDOW + pd.Timedelta(microseconds=1)

    def fetch_bars(
        self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Bars of ``symbol`` for the session windows with ``start <= window_start < end`` available now."""
        start, end = to_new_york(start), min(to_new_york(end), self.available_until(now))
        if end <= start:
            return empty_bars()
        return self._fetch(symbol, start, end)


class SimulatedMarketData(MarketDataSource):
    """The embedded simulated market: offline, deterministic per (symbol, seed, predictability)."""

    seed: int = Field(default=0, description="Seed of the simulated paths; the same seed gives the same bars.")
    predictability: float = Field(
        default=0.0,
        ge=0.0,
        le=0.5,
        description="Lag-1 autocorrelation of the simulated 15-minute returns (an AR(1) component; 0 = none, the "
        "default); see lstm_pipeline.market.simulated.",
    )

    @property
    def source_name(self) -> str:
        from lstm_pipeline.market.simulated import simulation_source

        return simulation_source(self.seed, self.predictability)

    def _fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        from lstm_pipeline.market.calendar import session_windows
        from lstm_pipeline.market.simulated import simulate_bars

        return simulate_bars(
            symbol, session_windows(start, end), seed=self.seed, predictability=self.predictability
        )


class PolygonMarketData(MarketDataSource):
    """Polygon.io 15-minute aggregates through the official ``polygon.RESTClient``."""

    api_key: str | None = Field(
        default=None, description="Polygon API key; pass EnvVar('POLYGON_API_KEY') so it never shows in the UI."
    )
    api_key_from_config: bool = Field(
        default=False,
        description="Without api_key: read polygon_api_key from the project's config file when a run starts.",
    )
    base_url: str = "https://api.polygon.io"
    requests_per_minute: float = Field(default=5.0, gt=0, description="Request cap; the free tier allows 5/minute.")
    max_retries: int = Field(default=5, ge=0)
    fetch_max_seconds: float = Field(
        default=30.0, gt=0, description="Total time one fetch may spend retrying before it fails."
    )

    _bars_client: object | None = PrivateAttr(default=None)

    @property
    def source_name(self) -> str:
        return "polygon"

    def __repr__(self) -> str:  # the key must never print
        return f"PolygonMarketData(base_url={self.base_url!r}, requests_per_minute={self.requests_per_minute})"

    def _client(self):
        """One client per resource instance, so the rate cap spans every symbol of a run."""
        from lstm_pipeline.market.polygon_source import PolygonBarsClient

        if self._bars_client is None:
            self._bars_client = PolygonBarsClient(
                self._api_key(),
                base_url=self.base_url,
                requests_per_minute=self.requests_per_minute,
                max_retries=self.max_retries,
                fetch_max_s=self.fetch_max_seconds,
            )
        return self._bars_client

    def _api_key(self) -> str:
        if self.api_key or not self.api_key_from_config:
            return self.api_key or ""
        from lstm_pipeline.settings import get_settings

        secret = get_settings().polygon_api_key
        return secret.get_secret_value() if secret else ""

    def _fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        return self._client().fetch_bars(symbol, start, end)


class FileMarketData(MarketDataSource):
    """Replays recorded bars from a folder (or file) of CSV or Parquet (rules: ``lstm_pipeline.market.file_source``)."""

    path: str = Field(
        description="Folder of <SYMBOL>.csv / <SYMBOL>_*.csv / .parquet files (or files with a symbol column), or one "
        "file."
    )
    column_map: dict[str, str] = Field(default_factory=dict, description="Source column -> bar column.")
    timezone: str = Field(
        default=NEW_YORK,
        description="Zone of timestamps written without a UTC offset (exchange time unless the export says UTC).",
    )
    delay_minutes: int = 0

    @property
    def source_name(self) -> str:
        return f"file:{self.path}"

    def _fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        from lstm_pipeline.market.file_source import load_recorded_bars

        return load_recorded_bars(self.path, symbol, start, end, self.column_map, self.timezone)
