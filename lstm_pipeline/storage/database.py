"""``PipelineDatabase``: the project's tables in one DuckDB file, for assets, the REST service, exports and backups.

Writes take the write lock, bring the layout up to date (``migrate``) and replace partitions in one transaction.
Reads open the file read-only, never create or migrate anything, and read a missing file or table as empty frames
with the right columns. Bars that failed a blocking quality check stay stored (for inspection) but flagged, and
``read_bars`` leaves them out unless asked. This module imports no Dagster.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from lstm_pipeline.storage.base import (
    ALERT_COLUMNS,
    AWAITING_CHECKS,
    PREDICTION_COLUMNS,
    REJECTION_COLUMNS,
    PipelineTables,
)
from lstm_pipeline.storage.connections import DEFAULT_LOCK_TIMEOUT_SECONDS, connect, is_memory
from lstm_pipeline.storage.migrations import check_not_newer, migrate, stored_version
from lstm_pipeline.storage.rows import Replacement, empty_frame, read_table, replace_partitions
from lstm_pipeline.storage.tables import MARKET_BARS, Table

__all__ = [
    "ALERT_COLUMNS",
    "AWAITING_CHECKS",
    "PREDICTION_COLUMNS",
    "REJECTION_COLUMNS",
    "PipelineDatabase",
    "database_at",
]


@dataclass(frozen=True)
class PipelineDatabase(PipelineTables):
    """The DuckDB file at ``path``; each call opens and closes its own connection."""

    path: str
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    config: Mapping[str, Any] = field(default_factory=dict)
    logger: logging.Logger | None = None

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection on a file in the current layout (created or migrated here, and only here)."""
        with connect(
            self.path,
            read_only=False,
            lock_timeout_seconds=self.lock_timeout_seconds,
            config=self.config,
            logger=self.logger,
        ) as conn:
            migrate(conn, self.path, self.logger)
            yield conn

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A read-only connection, or None when the file does not exist yet (nothing has been written)."""
        if is_memory(self.path) or not Path(self.path).expanduser().exists():
            yield None
            return
        with connect(
            self.path,
            read_only=True,
            lock_timeout_seconds=self.lock_timeout_seconds,
            config=self.config,
            logger=self.logger,
        ) as conn:
            check_not_newer(stored_version(conn), self.path)
            yield conn

    def _replace(self, *replacements: Replacement) -> None:
        """Replace partitions of one or more tables in one transaction."""
        with self.writing() as conn:
            replace_partitions(conn, replacements)

    def read(self, table: Table, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
        """Rows of ``table`` matching ``where``; an empty typed frame when the file or table does not exist."""
        with self.reading() as conn:
            return empty_frame(table) if conn is None else read_table(conn, table, where, params)

    def _mark_checked(self, checked: pd.DataFrame, flags: pd.DataFrame) -> int:
        with self.writing() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                if len(checked):
                    conn.register("checked_bars", checked)
                    try:
                        conn.execute(
                            f"UPDATE {MARKET_BARS.name} AS t SET rejected_check = NULL, rejected_reason = NULL "
                            "FROM checked_bars AS c WHERE t.symbol = c.symbol AND t.window_start = c.window_start "
                            "AND t.rejected_check = ?",
                            [AWAITING_CHECKS],
                        )
                    finally:
                        conn.unregister("checked_bars")
                flagged = 0
                if len(flags):
                    conn.register("rejected_bars", flags)
                    try:
                        (flagged,) = conn.execute(
                            f"UPDATE {MARKET_BARS.name} AS t SET rejected_check = r.rejected_check, "
                            "rejected_reason = r.rejected_reason FROM rejected_bars AS r "
                            "WHERE t.symbol = r.symbol AND t.window_start = r.window_start"
                        ).fetchone()
                    finally:
                        conn.unregister("rejected_bars")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return int(flagged)

    def ensure_schema(self) -> int:
        """Create or migrate every registered table now; returns the layout version the file had (0: new)."""
        with connect(
            self.path, read_only=False, lock_timeout_seconds=self.lock_timeout_seconds, config=self.config,
            logger=self.logger,
        ) as conn:
            return migrate(conn, self.path, self.logger)

    def stored_version(self) -> int:
        """The file's layout version (0 when nothing is stored yet); read-only."""
        with self.reading() as conn:
            return 0 if conn is None else stored_version(conn)

    def describe(self) -> str:
        """Where the tables are, for messages and health pages."""
        return f"DuckDB file {self.path}"


def database_at(path: str | os.PathLike[str], **options: Any) -> PipelineDatabase:
    """The project's tables in the DuckDB file at ``path`` (created on the first write)."""
    return PipelineDatabase(path=str(path), **options)
