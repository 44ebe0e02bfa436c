"""``PipelineDatabase``: the project's tables in one DuckDB file, for assets, the REST service, exports and backups.

Writes take the write lock, bring the layout up to date (``migrate``) and replace partitions in one transaction.
Reads open the file read-only, never create or migrate anything, and read a missing file or table as empty frames
with the right columns. Bars that failed a blocking quality check stay stored (for inspection) but flagged, and
``read_bars`` leaves them out unless asked. This module imports no Dagster.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from lstm_pipeline.market.bars import BAR_COLUMNS, conform_bars, empty_bars
from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.storage.connections import DEFAULT_LOCK_TIMEOUT_SECONDS, connect, is_memory
from lstm_pipeline.storage.migrations import check_not_newer, migrate, stored_version
from lstm_pipeline.storage.rows import Replacement, empty_frame, read_table, replace_partitions
from lstm_pipeline.storage.tables import ALERTS, MARKET_BARS, PREDICTIONS, TABLES, Table

AWAITING_CHECKS = "awaiting_checks"
"""``rejected_check`` of a bar written by ``market_bars`` whose blocking checks have not passed yet: staged, not
readable by forecasting or training until ``record_checks`` promotes it (or a check rejects it)."""
REJECTION_COLUMNS = ("symbol", "window_start", "check_name", "reason")
"""What ``reject_bars`` takes: one row per bar and failed check."""
PREDICTION_COLUMNS = PREDICTIONS.written_columns
ALERT_COLUMNS = ALERTS.written_columns


def _utc(stamp: Any) -> Any:
    """A query parameter for a TIMESTAMPTZ column; a naive stamp means New York."""
    value = pd.Timestamp(stamp)
    return (value.tz_localize(NEW_YORK) if value.tz is None else value).tz_convert("UTC").to_pydatetime()


def _by_symbol(symbol: str | None) -> tuple[list[str], list[object]]:
    return (["symbol = ?"], [symbol]) if symbol else ([], [])


@dataclass(frozen=True)
class PipelineDatabase:
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

    # ----------------------------------------------------------------------------------------- generic helpers

    def replace(self, *replacements: Replacement) -> None:
        """Replace partitions of one or more tables in one transaction."""
        with self.writing() as conn:
            replace_partitions(conn, replacements)

    def read(self, table: Table, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
        """Rows of ``table`` matching ``where``; an empty typed frame when the file or table does not exist."""
        with self.reading() as conn:
            return empty_frame(table) if conn is None else read_table(conn, table, where, params)

    def replace_tables(self, rows_by_table: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]]) -> None:
        """Replace partitions of several registered tables in one transaction: ``{table name: (keys, rows)}``,
        ``keys`` holding the values of the table's partition columns to replace, ``rows`` the new rows."""
        unknown = [name for name in rows_by_table if name not in TABLES]
        if unknown:
            raise ValueError(f"Unknown table(s) {unknown}; the registered tables are {sorted(TABLES)}.")
        self.replace(
            *(Replacement(TABLES[name], keys, rows) for name, (keys, rows) in rows_by_table.items())
        )

    def read_rows(self, table: str, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
        """Rows of the registered ``table`` matching every SQL clause of ``where`` (``?`` placeholders)."""
        if table not in TABLES:
            raise ValueError(f"Unknown table {table!r}; the registered tables are {sorted(TABLES)}.")
        return self.read(TABLES[table], where, [_utc(p) if isinstance(p, pd.Timestamp) else p for p in params])

    # --------------------------------------------------------------------------------------------- market bars

    def replace_bars(
        self, bars: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]], awaiting_checks: bool = False
    ) -> int:
        """Atomically replace the given (symbol, window_start) partitions with ``bars``; returns rows written.

        Partitions with no row in ``bars`` end up empty (the source had no bar for them): a missing window is
        recorded as missing, never carried over from an earlier fetch. A replaced bar loses any rejection flag.
        With ``awaiting_checks`` (what ``market_bars`` does) the new bars are staged: stored, but not read by
        ``read_bars`` until ``record_checks`` promotes them, so a run that dies between writing bars and checking
        them never lets an unchecked bar reach a forecast or a training set.
        """
        keys = pd.DataFrame(list(partitions), columns=["symbol", "window_start"])
        rows = conform_bars(bars) if len(bars) else empty_bars()
        rows = rows[list(BAR_COLUMNS)]
        if awaiting_checks:
            rows = rows.assign(
                rejected_check=AWAITING_CHECKS,
                rejected_reason="written by market_bars; its blocking quality checks have not passed yet",
            )
        self.replace(Replacement(MARKET_BARS, keys, rows))
        return len(rows)

    def read_bars(
        self,
        symbol: str | None = None,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        symbols: Iterable[str] | None = None,
        include_rejected: bool = False,
    ) -> pd.DataFrame:
        """Stored bars with ``start <= window_start < end``, sorted, in the bar schema (empty if none).

        Bars flagged by a blocking quality check are left out unless ``include_rejected``: forecasting and
        training must never read them.
        """
        wanted = [symbol] if symbol is not None else (list(symbols) if symbols is not None else None)
        clauses: list[str] = []
        params: list[object] = []
        if wanted is not None:
            clauses.append(f"symbol IN ({', '.join('?' for _ in wanted)})" if wanted else "FALSE")
            params.extend(wanted)
        if start is not None:
            clauses.append("window_start >= ?")
            params.append(_utc(start))
        if end is not None:
            clauses.append("window_start < ?")
            params.append(_utc(end))
        if not include_rejected:
            clauses.append("rejected_check IS NULL")
        frame = self.read(MARKET_BARS, clauses, params)
        return conform_bars(frame[list(BAR_COLUMNS)]) if len(frame) else empty_bars()

    def read_rejected_bars(self, symbol: str | None = None) -> pd.DataFrame:
        """The stored bars a blocking check flagged, with ``rejected_check`` and ``rejected_reason``."""
        clauses, params = ["rejected_check IS NOT NULL"], []
        if symbol is not None:
            clauses.append("symbol = ?")
            params.append(symbol)
        frame = self.read(MARKET_BARS, clauses, params)
        return frame[[*BAR_COLUMNS, "rejected_check", "rejected_reason"]]

    def record_checks(
        self, checked: Iterable[tuple[str, pd.Timestamp]], rejections: pd.DataFrame, promote: bool = True
    ) -> int:
        """In one transaction: flag the ``rejections`` and, with ``promote``, make every other ``checked`` bar that
        was awaiting its checks readable. Returns how many stored bars were flagged.

        ``promote`` is False when a run checked only some of the blocking rules: its bars stay staged.
        """
        keys = pd.DataFrame(list(checked), columns=["symbol", "window_start"])
        with self.writing() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                if promote and len(keys):
                    keys["window_start"] = pd.to_datetime(keys["window_start"], utc=True)
                    keys["symbol"] = keys["symbol"].astype(str)
                    conn.register("checked_bars", keys)
                    try:
                        conn.execute(
                            f"UPDATE {MARKET_BARS.name} AS t SET rejected_check = NULL, rejected_reason = NULL "
                            "FROM checked_bars AS c WHERE t.symbol = c.symbol AND t.window_start = c.window_start "
                            "AND t.rejected_check = ?",
                            [AWAITING_CHECKS],
                        )
                    finally:
                        conn.unregister("checked_bars")
                flagged = self._flag(conn, rejections)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return flagged

    def reject_bars(self, rejections: pd.DataFrame) -> int:
        """Flag stored bars as unusable; returns how many stored rows were flagged.

        ``rejections`` has one row per bar and failed check (``REJECTION_COLUMNS``); several checks failing on one
        bar are recorded together. Re-materializing the bar's partition replaces the row and so clears the flag.
        """
        with self.writing() as conn:
            return self._flag(conn, rejections)

    @staticmethod
    def _flag(conn: duckdb.DuckDBPyConnection, rejections: pd.DataFrame) -> int:
        missing = [name for name in REJECTION_COLUMNS if name not in rejections.columns]
        if missing:
            raise ValueError(f"Rejections are missing the column(s) {missing}; give {list(REJECTION_COLUMNS)}.")
        if rejections.empty:
            return 0
        frame = rejections[list(REJECTION_COLUMNS)].dropna(subset=["symbol", "window_start"]).copy()
        stamps = pd.to_datetime(frame["window_start"])
        stamps = stamps.dt.tz_localize(NEW_YORK) if stamps.dt.tz is None else stamps
        frame["window_start"] = stamps.dt.tz_convert("UTC")
        frame["symbol"] = frame["symbol"].astype(str)
        flags = (
            frame.groupby(["symbol", "window_start"], sort=True)
            .agg(
                rejected_check=("check_name", lambda names: ", ".join(dict.fromkeys(map(str, names)))),
                rejected_reason=("reason", lambda reasons: "; ".join(dict.fromkeys(map(str, reasons)))),
            )
            .reset_index()
        )
        conn.register("rejected_bars", flags)
        try:
            (count,) = conn.execute(
                f"UPDATE {MARKET_BARS.name} AS t SET rejected_check = r.rejected_check, "
                "rejected_reason = r.rejected_reason FROM rejected_bars AS r "
                "WHERE t.symbol = r.symbol AND t.window_start = r.window_start"
            ).fetchone()
        finally:
            conn.unregister("rejected_bars")
        return int(count)

    # -------------------------------------------------------------------------------------- predictions, alerts

    def replace_forecasts(
        self, predictions: pd.DataFrame, alerts: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]]
    ) -> None:
        """Replace, per (symbol, as_of_window) partition, its prediction rows and its prediction alerts, in one
        transaction: a re-run replaces both exactly (no duplicate rows; an alert that no longer holds disappears)."""
        for frame, table in ((predictions, PREDICTIONS), (alerts, ALERTS)):
            required = [column.name for column in table.columns if not column.nullable and column.default is None]
            missing = [name for name in required if name not in frame.columns]
            if len(frame) and missing:
                raise ValueError(
                    f"The rows for table {table.name} are missing the column(s) {missing}; it needs "
                    f"{required}."
                )
        keys = pd.DataFrame(list(partitions), columns=["symbol", "as_of_window"])
        self.replace(
            Replacement(PREDICTIONS, keys, predictions.reindex(columns=PREDICTION_COLUMNS)),
            Replacement(ALERTS, keys.assign(source="predictions"), alerts.reindex(columns=ALERT_COLUMNS)),
        )

    def read_predictions(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored prediction rows (one per symbol, as-of window and horizon step), oldest first."""
        return self.read(PREDICTIONS, *_by_symbol(symbol))

    def read_alerts(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored alerts, with when they were raised."""
        return self.read(ALERTS, *_by_symbol(symbol))


def database_at(path: str | os.PathLike[str], **options: Any) -> PipelineDatabase:
    """The project's tables in the DuckDB file at ``path`` (created on the first write)."""
    return PipelineDatabase(path=str(path), **options)
