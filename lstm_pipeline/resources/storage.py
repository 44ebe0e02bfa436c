"""DuckDB storage of market bars, through dagster-duckdb's ``DuckDBResource``.

Bars are written with an explicit transaction (delete the partitions being written, insert the new rows,
commit), so re-materializing replaces a partition exactly and a run that dies midway leaves the previous rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource

from lstm_pipeline.market.bars import BAR_COLUMNS, conform_bars, empty_bars
from lstm_pipeline.market.calendar import NEW_YORK

MARKET_BARS_TABLE = "market_bars"

_CREATE_MARKET_BARS = f"""
CREATE TABLE IF NOT EXISTS {MARKET_BARS_TABLE} (
    symbol VARCHAR NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    open DOUBLE,
    high DOUBLE,
    low DOUBLE,
    close DOUBLE,
    volume BIGINT,
    vwap DOUBLE,
    trade_count BIGINT,
    source VARCHAR NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
)
"""


def _ensure_parent(duckdb: DuckDBResource) -> None:
    if duckdb.database != ":memory:":
        Path(duckdb.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Replacement:
    """Rows of ``table`` to delete (those matching ``keys`` on all of its columns) and rows to insert."""

    table: str
    create_sql: str
    keys: pd.DataFrame
    rows: pd.DataFrame


def replace_rows(duckdb: DuckDBResource, *replacements: Replacement) -> None:
    """Apply every replacement in one transaction: re-running replaces exactly, a failure leaves the old rows."""
    with duckdb.get_connection() as conn:
        for replacement in replacements:
            conn.execute(replacement.create_sql)
        conn.execute("BEGIN TRANSACTION")
        try:
            for index, replacement in enumerate(replacements):
                keys, rows = f"replace_keys_{index}", f"replace_rows_{index}"
                conn.register(keys, replacement.keys)
                conn.register(rows, replacement.rows)
                match = " AND ".join(f"t.{column} = k.{column}" for column in replacement.keys.columns)
                columns = ", ".join(replacement.rows.columns)
                conn.execute(f"DELETE FROM {replacement.table} AS t USING {keys} AS k WHERE {match}")
                conn.execute(f"INSERT INTO {replacement.table} ({columns}) SELECT {columns} FROM {rows}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            for index in range(len(replacements)):
                conn.unregister(f"replace_keys_{index}")
                conn.unregister(f"replace_rows_{index}")


class MarketBarsStore(ConfigurableResource):
    """Reads and replaces rows of the ``market_bars`` table in the project's DuckDB file."""

    duckdb: DuckDBResource

    @classmethod
    def for_path(cls, db_path: str | Path) -> MarketBarsStore:
        """A store on the DuckDB file at ``db_path`` (created on first write)."""
        return cls(duckdb=DuckDBResource(database=str(db_path)))

    def replace_bars(self, bars: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]]) -> int:
        """Atomically replace the given (symbol, window_start) partitions with ``bars``; returns rows written.

        Partitions with no row in ``bars`` end up empty (the source had no bar for them): a missing window is
        recorded as missing, never carried over from an earlier fetch.
        """
        keys = pd.DataFrame(list(partitions), columns=["symbol", "window_start"])
        keys["window_start"] = pd.to_datetime(keys["window_start"]).dt.tz_convert("UTC")
        rows = conform_bars(bars) if len(bars) else empty_bars()
        rows = rows.assign(window_start=rows["window_start"].dt.tz_convert("UTC"))
        _ensure_parent(self.duckdb)
        replace_rows(self.duckdb, Replacement(MARKET_BARS_TABLE, _CREATE_MARKET_BARS, keys, rows[list(BAR_COLUMNS)]))
        return len(rows)

    def read_bars(
        self,
        symbol: str | None = None,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        symbols: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Stored bars with ``start <= window_start < end``, sorted, in the bar schema (empty if none)."""
        wanted = [symbol] if symbol is not None else (list(symbols) if symbols is not None else None)
        clauses, params = [], []
        if wanted is not None:
            clauses.append(f"symbol IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        if start is not None:
            clauses.append("window_start >= ?")
            params.append(pd.Timestamp(start).tz_convert("UTC").to_pydatetime())
        if end is not None:
            clauses.append("window_start < ?")
            params.append(pd.Timestamp(end).tz_convert("UTC").to_pydatetime())
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        if self.duckdb.database != ":memory:" and not Path(self.duckdb.database).expanduser().exists():
            return empty_bars()
        with self.duckdb.get_connection() as conn:
            conn.execute(_CREATE_MARKET_BARS)
            conn.execute("SET TimeZone = 'UTC'")
            frame = conn.execute(
                f"SELECT {', '.join(BAR_COLUMNS)} FROM {MARKET_BARS_TABLE} {where} ORDER BY symbol, window_start",
                params,
            ).df()
        if frame.empty:
            return empty_bars()
        frame["window_start"] = pd.to_datetime(frame["window_start"], utc=True).dt.tz_convert(NEW_YORK)
        return conform_bars(frame)


PREDICTIONS_TABLE = "predictions"
ALERTS_TABLE = "alerts"

_CREATE_PREDICTIONS = f"""
CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} (
    symbol VARCHAR NOT NULL,
    as_of_window TIMESTAMPTZ NOT NULL,
    origin_window TIMESTAMPTZ NOT NULL,
    horizon_step INTEGER NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    predicted_close DOUBLE NOT NULL,
    lower_80 DOUBLE,
    upper_80 DOUBLE,
    lower_95 DOUBLE,
    upper_95 DOUBLE,
    last_close DOUBLE NOT NULL,
    forecast_mode VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
)
"""

_CREATE_ALERTS = f"""
CREATE TABLE IF NOT EXISTS {ALERTS_TABLE} (
    source VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    as_of_window TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    run_id VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
)
"""

PREDICTION_COLUMNS = [
    "symbol", "as_of_window", "origin_window", "horizon_step", "window_start", "predicted_close", "lower_80",
    "upper_80", "lower_95", "upper_95", "last_close", "forecast_mode", "model_version",
]
ALERT_COLUMNS = ["source", "symbol", "as_of_window", "kind", "severity", "message", "run_id"]


def _utc(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    return frame.assign(**{column: pd.to_datetime(frame[column], utc=True) for column in columns})


class ForecastStore(ConfigurableResource):
    """The ``predictions`` and ``alerts`` tables, in the same DuckDB file as the bars."""

    duckdb: DuckDBResource

    @classmethod
    def for_path(cls, db_path: str | Path) -> ForecastStore:
        return cls(duckdb=DuckDBResource(database=str(db_path)))

    def replace_forecasts(
        self, predictions: pd.DataFrame, alerts: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]]
    ) -> None:
        """Replace, per (symbol, as_of_window) partition, its prediction rows and its prediction alerts, in one
        transaction: a re-run replaces both exactly (no duplicate rows; an alert that no longer holds disappears)."""
        keys = _utc(pd.DataFrame(list(partitions), columns=["symbol", "as_of_window"]), ["as_of_window"])
        rows = predictions.reindex(columns=PREDICTION_COLUMNS)
        rows = _utc(rows, ["as_of_window", "origin_window", "window_start"])
        _ensure_parent(self.duckdb)
        alert_rows = _utc(alerts.reindex(columns=ALERT_COLUMNS), ["as_of_window"])
        replace_rows(
            self.duckdb,
            Replacement(PREDICTIONS_TABLE, _CREATE_PREDICTIONS, keys, rows),
            Replacement(ALERTS_TABLE, _CREATE_ALERTS, keys.assign(source="predictions"), alert_rows),
        )

    def _read(self, table: str, create_sql: str, symbol: str | None, columns: str) -> pd.DataFrame:
        if self.duckdb.database != ":memory:" and not Path(self.duckdb.database).expanduser().exists():
            return pd.DataFrame()
        where, params = ("WHERE symbol = ?", [symbol]) if symbol else ("", [])
        with self.duckdb.get_connection() as conn:
            conn.execute(create_sql)
            conn.execute("SET TimeZone = 'UTC'")
            frame = conn.execute(f"SELECT {columns} FROM {table} {where} ORDER BY ALL", params).df()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                frame[column] = frame[column].dt.tz_convert(NEW_YORK)
        return frame

    def read_predictions(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored prediction rows (one per symbol, as-of window and horizon step), oldest first."""
        return self._read(PREDICTIONS_TABLE, _CREATE_PREDICTIONS, symbol, ", ".join(PREDICTION_COLUMNS))

    def read_alerts(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored alerts, with when they were raised."""
        return self._read(ALERTS_TABLE, _CREATE_ALERTS, symbol, ", ".join([*ALERT_COLUMNS, "created_at"]))
