"""Reading and replacing rows of registered tables on an open connection.

``replace_partitions`` deletes every row matching the given partition values and inserts the new rows, for one or
more tables, in one transaction: re-running replaces exactly (no duplicate rows) and a failure leaves the old
rows. ``read_table`` projects through the registry, so a file still in an older layout reads in the current one
(renamed columns aliased, added columns null) without being migrated by a reader. This module imports no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.storage.migrations import existing_columns
from lstm_pipeline.storage.tables import Table


@dataclass(frozen=True)
class Replacement:
    """Rows of ``table`` to delete (those matching a row of ``keys`` on all of its columns) and rows to insert."""

    table: Table
    keys: pd.DataFrame
    rows: pd.DataFrame


def empty_frame(table: Table) -> pd.DataFrame:
    """A frame with ``table``'s columns and read dtypes and no rows."""
    return pd.DataFrame({column.name: pd.Series(dtype=column.pandas_dtype) for column in table.columns})


def to_utc(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Timestamp columns as UTC instants (naive values mean New York) so DuckDB stores the right TIMESTAMPTZ."""
    out = frame.copy()
    for name in out.columns:
        if name in table.column_names and table.column(name).sql_type == "TIMESTAMPTZ":
            stamps = pd.to_datetime(out[name])
            if stamps.dt.tz is None:
                stamps = stamps.dt.tz_localize(NEW_YORK)
            out[name] = stamps.dt.tz_convert("UTC")
    return out


def check_columns(table: Table, frame: pd.DataFrame, what: str) -> None:
    unknown = [name for name in frame.columns if name not in table.column_names]
    if unknown:
        raise ValueError(f"The {what} for table {table.name} have unknown column(s) {unknown}; its columns are "
                         f"{table.column_names}.")


def replace_partitions(conn: duckdb.DuckDBPyConnection, replacements: Sequence[Replacement]) -> None:
    """Apply every replacement in one transaction (the schema must be current: writers run ``migrate`` first)."""
    for replacement in replacements:
        check_columns(replacement.table, replacement.keys, "partition keys")
        check_columns(replacement.table, replacement.rows, "rows")
    registered: list[str] = []
    conn.execute("BEGIN TRANSACTION")
    try:
        for index, replacement in enumerate(replacements):
            table = replacement.table.name
            keys, rows = f"replace_keys_{index}", f"replace_rows_{index}"
            conn.register(keys, to_utc(replacement.keys, replacement.table))
            conn.register(rows, to_utc(replacement.rows, replacement.table))
            registered += [keys, rows]
            if len(replacement.keys.columns):
                match = " AND ".join(f"t.{column} = k.{column}" for column in replacement.keys.columns)
                conn.execute(f"DELETE FROM {table} AS t USING {keys} AS k WHERE {match}")
            if len(replacement.rows):
                columns = ", ".join(replacement.rows.columns)
                conn.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {rows}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        for name in registered:
            conn.unregister(name)


def read_table(
    conn: duckdb.DuckDBPyConnection,
    table: Table,
    where: Sequence[str] = (),
    params: Sequence[object] = (),
) -> pd.DataFrame:
    """Rows of ``table`` matching every clause of ``where`` (on registry column names), ordered by its key.

    Timestamps come back as New York time; a missing table reads as an empty frame with the table's columns.
    """
    present = existing_columns(conn, table.name)
    if not present:
        return empty_frame(table)
    projection = []
    for column in table.columns:
        if column.name in present:
            projection.append(column.name)
            continue
        earlier = next((name for name in column.renamed_from if name in present), None)
        source = earlier if earlier is not None else f"CAST(NULL AS {column.sql_type})"
        projection.append(f"{source} AS {column.name}")
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT * FROM (SELECT {', '.join(projection)} FROM {table.name}) AS t {condition} "
        f"ORDER BY {', '.join(table.key)}"
    )
    frame = conn.execute(sql, list(params)).df()
    if frame.empty:
        return empty_frame(table)
    for column in table.columns:
        if column.sql_type == "TIMESTAMPTZ":
            frame[column.name] = pd.to_datetime(frame[column.name], utc=True).dt.tz_convert(NEW_YORK)
        frame[column.name] = frame[column.name].astype(column.pandas_dtype)
    return frame
