"""``PipelineStore``: the one resource (key ``"store"``) through which assets read and write the DuckDB file.

A thin Dagster face on ``lstm_pipeline.storage.PipelineDatabase``: the file is one ``DuckDBResource`` (its
``database`` path and ``connection_config``), writes are one transaction per call, reads are read-only, and a lock
held by another process is waited for at most ``lock_timeout_seconds``, with the wait logged to the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from dagster import ConfigurableResource, get_dagster_logger
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lstm_pipeline.storage import DEFAULT_LOCK_TIMEOUT_SECONDS, PipelineDatabase


class PipelineStore(ConfigurableResource):
    """The project's tables (market_bars, predictions, alerts) in one DuckDB file."""

    duckdb: DuckDBResource
    lock_timeout_seconds: float = Field(
        default=DEFAULT_LOCK_TIMEOUT_SECONDS,
        gt=0,
        description="How long to wait for another process that holds the DuckDB file before failing.",
    )

    @classmethod
    def for_path(cls, db_path: str | Path, lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS) -> PipelineStore:
        """A store on the DuckDB file at ``db_path`` (created on the first write)."""
        return cls(duckdb=DuckDBResource(database=str(db_path)), lock_timeout_seconds=lock_timeout_seconds)

    @property
    def database(self) -> PipelineDatabase:
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
