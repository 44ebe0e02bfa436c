"""How operations see the store: each table's symbol-window partition, and the store for a settings object.

A backup, an export and retention all work per symbol-window, the partition of ``market_bars`` and every asset
computed from it. Each registered table names the window in its own column (a bar's ``window_start``, a
forecast's ``as_of_window``, a validation's ``target_window``, a trade outcome's ``scored_window``); this module says
which, and reads the rows of a set of symbol-windows through the storage layer's public ``read_rows`` only, so
operations work on every storage backend. This module imports no Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import TABLES, database_at
from lstm_pipeline.storage.rows import empty_frame

WINDOW_COLUMNS: Mapping[str, str] = {
    "market_bars": "window_start",
    "predictions": "as_of_window",
    "validations": "target_window",
    "accuracy_metrics": "window_start",
    "trade_recommendations": "as_of_window",
    "trade_outcomes": "scored_window",
    "alerts": "as_of_window",
}
"""Tables written per symbol-window, and the column holding the window. The other registered tables (the schema
version, pruned partitions, monitoring samples, alert deliveries) have no symbol-window: full backups hold them."""

NOT_BACKED_UP = frozenset({"schema_version", "pruned_partitions"})
"""Written by the migration and by retention themselves; a restore never takes them from a backup."""

WHOLE_TABLES: tuple[str, ...] = tuple(
    name for name in TABLES if name not in WINDOW_COLUMNS and name not in NOT_BACKED_UP
)
"""Tables without a symbol-window (monitoring samples, alert deliveries): only full backups hold them, each row by
its registered partition columns."""


def holding_columns(table: str) -> list[str]:
    """The columns that name one partition of ``table`` for backups, restore and retention: ``symbol`` and the
    table's window column for the chain's tables, the registered partition columns for the others."""
    if table in WINDOW_COLUMNS:
        return ["symbol", WINDOW_COLUMNS[table]]
    return list(TABLES[table].partition)


def without(frame: pd.DataFrame, drop: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose ``columns`` match no row of ``drop`` (an anti-join)."""
    if frame.empty or drop.empty:
        return frame.reset_index(drop=True)
    marked = frame.merge(drop[columns].drop_duplicates().assign(_drop=True), on=columns, how="left")
    return frame[marked["_drop"].isna().to_numpy()].reset_index(drop=True)


def open_store(settings: Settings) -> Any:
    """The configured store (DuckDB or PostgreSQL) through the storage layer's public methods."""
    try:
        from lstm_pipeline.storage import database_for  # type: ignore[attr-defined]
    except ImportError:  # the PostgreSQL backend has not landed in this checkout
        return database_at(settings.db_path)
    return database_for(settings)


def partition_frame(partitions: Iterable[tuple[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Distinct ``(symbol, window_start)`` pairs (pairs, or a frame with those columns) as a frame, windows as New
    York timestamps, sorted."""
    if isinstance(partitions, pd.DataFrame):
        frame = partitions[["symbol", "window_start"]].drop_duplicates().copy()
    else:
        frame = pd.DataFrame(list(partitions), columns=["symbol", "window_start"])
    frame["symbol"] = frame["symbol"].astype(str)
    stamps = pd.to_datetime(frame["window_start"])
    stamps = stamps.dt.tz_localize(NEW_YORK) if stamps.dt.tz is None else stamps
    frame["window_start"] = stamps.dt.tz_convert(NEW_YORK)
    return frame.drop_duplicates().sort_values(["symbol", "window_start"]).reset_index(drop=True)


def rows_of_partitions(store: Any, table: str, partitions: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``table`` in the given symbol-windows: one range read per symbol, then an exact match."""
    column = WINDOW_COLUMNS[table]
    if partitions.empty:
        return empty_frame(TABLES[table])
    clauses, params = [], []
    for symbol, windows in partitions.groupby("symbol", sort=True)["window_start"]:
        clauses.append(f"(symbol = ? AND {column} >= ? AND {column} <= ?)")
        params += [symbol, windows.min(), windows.max()]
    rows = store.read_rows(table, ["(" + " OR ".join(clauses) + ")"], params)
    if rows.empty:
        return rows
    keys = partitions.rename(columns={"window_start": column}).assign(_held=True)
    held = rows[["symbol", column]].merge(keys, on=["symbol", column], how="left")["_held"].notna().to_numpy()
    return rows[held].reset_index(drop=True)


def partitions_in(table: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The symbol-windows ``rows`` of ``table`` belong to."""
    column = WINDOW_COLUMNS[table]
    return partition_frame(rows[["symbol", column]].rename(columns={column: "window_start"}))


def content_checksum(frame: pd.DataFrame) -> str:
    """An order-independent checksum of a frame's rows (as read through the storage layer), as 16 hex digits."""
    if frame.empty:
        return "0" * 16
    ordered = frame[sorted(frame.columns)]
    hashes = pd.util.hash_pandas_object(ordered, index=False).to_numpy(dtype=np.uint64)
    return f"{int(hashes.sum(dtype=np.uint64)):016x}"


def as_read(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``frame`` with ``table``'s registry columns and read dtypes (nulls as ``None`` in text columns), as the
    storage layer reads it back: what checksums and comparisons are computed on."""
    template = empty_frame(TABLES[table])
    if frame.empty:
        return template
    out = frame.reindex(columns=template.columns)
    for column in TABLES[table].columns:
        values = out[column.name]
        if column.sql_type == "TIMESTAMPTZ":
            values = pd.to_datetime(values, utc=True, format="ISO8601").dt.tz_convert(NEW_YORK)
        elif column.sql_type == "BOOLEAN" and values.dtype == object:
            values = values.map({True: True, False: False, "True": True, "False": False, "true": True,
                                 "false": False}, na_action="ignore")
        elif column.sql_type == "VARCHAR":
            values = values.astype(object).where(values.notna(), None)
        out[column.name] = values.astype(column.pandas_dtype)
    return out.reset_index(drop=True)
