"""DuckDB storage of market bars, through dagster-duckdb's ``DuckDBResource``.

Bars are written with an explicit transaction (delete the partitions being written, insert the new rows,
commit), so re-materializing replaces a partition exactly and a run that dies midway leaves the previous rows.
"""

from __future__ import annotations

from collections.abc import Iterable
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


class MarketBarsStore(ConfigurableResource):
    """Reads and replaces rows of the ``market_bars`` table in the project's DuckDB file."""

    duckdb: DuckDBResource

    @classmethod
    def for_path(cls, db_path: str | Path) -> MarketBarsStore:
        """A store on the DuckDB file at ``db_path`` (created on first write)."""
        return cls(duckdb=DuckDBResource(database=str(db_path)))

    def _ensure_parent(self) -> None:
        if self.duckdb.database != ":memory:":
            Path(self.duckdb.database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    def replace_bars(self, bars: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]]) -> int:
        """Atomically replace the given (symbol, window_start) partitions with ``bars``; returns rows written.

        Partitions with no row in ``bars`` end up empty (the source had no bar for them): a missing window is
        recorded as missing, never carried over from an earlier fetch.
        """
        self._ensure_parent()
        keys = pd.DataFrame(list(partitions), columns=["symbol", "window_start"])
        keys["window_start"] = pd.to_datetime(keys["window_start"]).dt.tz_convert("UTC")
        rows = conform_bars(bars) if len(bars) else empty_bars()
        rows = rows.assign(window_start=rows["window_start"].dt.tz_convert("UTC"))
        with self.duckdb.get_connection() as conn:
            conn.execute(_CREATE_MARKET_BARS)
            conn.register("partition_keys", keys)
            conn.register("new_bars", rows)
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute(
                    f"DELETE FROM {MARKET_BARS_TABLE} AS t USING partition_keys AS k "
                    "WHERE t.symbol = k.symbol AND t.window_start = k.window_start"
                )
                columns = ", ".join(BAR_COLUMNS)
                conn.execute(f"INSERT INTO {MARKET_BARS_TABLE} ({columns}) SELECT {columns} FROM new_bars")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                conn.unregister("partition_keys")
                conn.unregister("new_bars")
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
