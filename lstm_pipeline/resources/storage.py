"""``PipelineStore``: the one resource (key ``"store"``) through which assets read and write the pipeline's tables.

A thin Dagster face on the storage layer, on either backend. ``backend="duckdb"`` (the embedded default): the
``DuckDBResource`` file (its ``database`` path and ``connection_config``) through ``PipelineDatabase``, read-only
reads, another process's lock waited for at most ``lock_timeout_seconds`` with the wait logged to the run.
``backend="postgres"``: the database at ``postgres_url`` (pass ``EnvVar("LSTM_PIPELINE_POSTGRES_URL")`` so the
URL, which holds a password, never shows in the UI; or ``postgres_url_from_config`` to read it from the config file
when a run starts) through ``PostgresDatabase``: concurrent writers, ``lock_timeout_seconds`` bounding the wait for
another writer of the same table and symbol. Either way writes are one transaction per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from dagster import ConfigurableResource, get_dagster_logger
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lstm_pipeline.storage import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    PipelineDatabase,
    PostgresDatabase,
    StorageBackend,
    StorageError,
)


class PipelineStore(ConfigurableResource):
    """The project's tables, in one DuckDB file (default) or a PostgreSQL database (``backend="postgres"``)."""

    duckdb: DuckDBResource
    """The DuckDB file (backend duckdb); with PostgreSQL only its folder is used, for files kept beside the data
    (e.g. backtest reports)."""
    lock_timeout_seconds: float = Field(
        default=DEFAULT_LOCK_TIMEOUT_SECONDS,
        gt=0,
        description="How long to wait for another process holding the DuckDB file (or, on PostgreSQL, another "
        "writer of the same table and symbol) before failing.",
    )
    backend: Literal["duckdb", "postgres"] = Field(
        default="duckdb", description="Where the tables live: the DuckDB file or the PostgreSQL database."
    )
    postgres_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (backend postgres); pass EnvVar('LSTM_PIPELINE_POSTGRES_URL') so it never "
        "shows in the UI.",
    )
    postgres_url_from_config: bool = Field(
        default=False,
        description="Without postgres_url: read storage.postgres_url from the project's config file when a run "
        "starts.",
    )

    @classmethod
    def for_path(cls, db_path: str | Path, lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS) -> PipelineStore:
        """A store on the DuckDB file at ``db_path`` (created on the first write)."""
        return cls(duckdb=DuckDBResource(database=str(db_path)), lock_timeout_seconds=lock_timeout_seconds)

    @classmethod
    def for_postgres(
        cls,
        url: str,
        files_beside: str | Path = "data/lstm_pipeline.duckdb",
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    ) -> PipelineStore:
        """A store on the PostgreSQL database at ``url`` (tables created on the first write); ``files_beside``
        places files kept next to the data, as ``db_path`` does for DuckDB. Tests only: a deployment passes
        the URL as an ``EnvVar`` (see ``lstm_pipeline.resources.build_resources``)."""
        return cls(
            duckdb=DuckDBResource(database=str(files_beside)),
            lock_timeout_seconds=lock_timeout_seconds,
            backend="postgres",
            postgres_url=url,
        )

    def _postgres_url(self) -> str:
        if self.postgres_url:
            return self.postgres_url
        if self.postgres_url_from_config:
            from lstm_pipeline.settings import get_settings
            from lstm_pipeline.storage import postgres_url_of

            return postgres_url_of(get_settings())
        raise StorageError(
            "The store's backend is 'postgres' but it has no postgres_url; set storage.postgres_url (or "
            "LSTM_PIPELINE_POSTGRES_URL) and reload the code location."
        )

    @property
    def database(self) -> StorageBackend:
        if self.backend == "postgres":
            return PostgresDatabase(
                url=self._postgres_url(),
                lock_timeout_seconds=self.lock_timeout_seconds,
                logger=get_dagster_logger(),
            )
        return PipelineDatabase(
            path=self.duckdb.database,
            lock_timeout_seconds=self.lock_timeout_seconds,
            config=self.duckdb.connection_config,
            logger=get_dagster_logger(),
        )

    def replace_bars(
        self, bars: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]], awaiting_checks: bool = False
    ) -> int:
        """Atomically replace the given (symbol, window_start) partitions with ``bars``; returns rows written.
        With ``awaiting_checks`` the bars stay unreadable until ``record_checks`` promotes them."""
        return self.database.replace_bars(bars, partitions, awaiting_checks)

    def read_bars(
        self,
        symbol: str | None = None,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        symbols: Iterable[str] | None = None,
        include_rejected: bool = False,
    ) -> pd.DataFrame:
        """Stored bars with ``start <= window_start < end``; never a bar a blocking check rejected, unless asked."""
        return self.database.read_bars(symbol, start, end, symbols, include_rejected)

    def read_rejected_bars(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored bars a blocking check rejected, with the check and the reason."""
        return self.database.read_rejected_bars(symbol)

    def record_checks(
        self, checked: Iterable[tuple[str, pd.Timestamp]], rejections: pd.DataFrame, promote: bool = True
    ) -> int:
        """Flag the rejected bars and (with ``promote``) make the other checked, staged bars readable; one
        transaction. Returns rows flagged."""
        return self.database.record_checks(checked, rejections, promote)

    def reject_bars(self, rejections: pd.DataFrame) -> int:
        """Flag stored bars (symbol, window_start, check_name, reason) as unusable; returns rows flagged."""
        return self.database.reject_bars(rejections)

    def replace_tables(self, rows_by_table: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]]) -> None:
        """Replace partitions of several tables in one transaction: ``{table: (partition keys, rows)}``."""
        self.database.replace_tables(rows_by_table)

    def read_rows(self, table: str, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
        """Rows of a registered table matching every SQL clause of ``where`` (``?`` placeholders), read-only."""
        return self.database.read_rows(table, where, params)

    def replace_forecasts(
        self, predictions: pd.DataFrame, alerts: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]]
    ) -> None:
        """Replace the prediction rows and alerts of (symbol, as_of_window) partitions, in one transaction."""
        self.database.replace_forecasts(predictions, alerts, partitions)

    def read_predictions(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored prediction rows (one per symbol, as-of window and horizon step), oldest first."""
        return self.database.read_predictions(symbol)

    def read_alerts(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored alerts, with when they were raised."""
        return self.database.read_alerts(symbol)
