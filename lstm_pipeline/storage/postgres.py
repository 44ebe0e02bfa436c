"""``PostgresDatabase``: the project's tables in a PostgreSQL database, with the same API as the DuckDB file.

Same registry, same reads (timestamps stored as UTC instants, read as New York), same ``replace`` semantics: the
given partitions' rows are deleted and the new rows inserted (``COPY``) in one transaction, so a re-run replaces
exactly and a failed or killed writer leaves the previous rows. Unlike the DuckDB file, any number of processes on
any number of machines may write at once: a writer holds a transaction-level advisory lock per table and symbol
(the non-time partition columns) it replaces, taken in one sorted order, so two writers of the same partitions
queue (never duplicating rows) while writers of different symbols never wait for each other. Readers take no
lock. ``where`` clauses use ``?`` placeholders as on DuckDB; they are translated here. This module imports no
Dagster.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import psycopg
from psycopg import errors as pg_errors

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.storage import postgres_schema as schema
from lstm_pipeline.storage.base import AWAITING_CHECKS, PipelineTables
from lstm_pipeline.storage.connections import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    DatabaseAccessError,
    DatabaseLockedError,
)
from lstm_pipeline.storage.rows import Replacement, check_columns, empty_frame, to_utc
from lstm_pipeline.storage.tables import MARKET_BARS, Table

URL_SETTING = "storage.postgres_url (or LSTM_PIPELINE_POSTGRES_URL)"
RETRIED_ERRORS = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
MAX_ATTEMPTS = 3
_T = TypeVar("_T")


def redact_url(url: str) -> str:
    """``url`` with its password (and any query string, which may hold one) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = parts.username or ""
    except ValueError:
        return "postgresql://***"
    if ":" in host:
        host = f"[{host}]"
    login = f"{user}:***@" if parts.password is not None else (f"{user}@" if user else "")
    return urlunsplit((parts.scheme, f"{login}{host}{port}", parts.path, "***" if parts.query else "", ""))


def _unreachable(url: str, error: Exception) -> DatabaseAccessError:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    reason = (lines[0] if lines else type(error).__name__).rstrip(".")
    secret = urlsplit(url).password if url.startswith(("postgres://", "postgresql://")) else None
    for hidden in filter(None, (url, secret)):
        reason = reason.replace(hidden, "***")
    return DatabaseAccessError(
        f"The PostgreSQL database {redact_url(url)} cannot be reached ({reason}); start that server, create the "
        f"database or fix {URL_SETTING}."
    )


def pg_sql(sql: str) -> str:
    """DuckDB-style SQL with ``?`` placeholders as psycopg wants it: ``?`` -> ``%s`` (outside string literals) and
    every literal ``%`` doubled."""
    out, quoted = [], False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def _param(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return (value.tz_localize(NEW_YORK) if value.tz is None else value).tz_convert("UTC").to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "VARCHAR": str, "DOUBLE": float, "BIGINT": int, "INTEGER": int, "BOOLEAN": bool,
}


def _column_values(series: pd.Series, sql_type: str) -> list[object]:
    """One column as the Python values COPY writes (registry types, missing values as NULL)."""
    if sql_type == "TIMESTAMPTZ":
        tz_aware = isinstance(series.dtype, pd.DatetimeTZDtype)
        stamps = series.dt.tz_convert("UTC") if tz_aware else pd.to_datetime(series, utc=True)
        missing = stamps.isna().to_numpy()
        return [None if gone else stamp for stamp, gone in zip(stamps.array.to_pydatetime(), missing, strict=True)]
    convert = _CONVERT[sql_type]
    return [None if _missing(value) else convert(value) for value in series.tolist()]


def _copy_rows(conn: psycopg.Connection, target: str, frame: pd.DataFrame, table: Table) -> None:
    columns = list(frame.columns)
    values = [_column_values(frame[name], table.column(name).sql_type) for name in columns]
    with conn.cursor() as cursor, cursor.copy(f"COPY {target} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in zip(*values, strict=True):
            copy.write_row(row)


def _unnest(frame: pd.DataFrame, table: Table) -> tuple[str, list[list[object]]]:
    """``frame`` as a FROM item (``unnest`` of one typed array per column) and its parameters: one statement
    however many rows, no temporary table."""
    names = list(frame.columns)
    arrays = ", ".join(f"%s::{schema.pg_type(table.column(name))}[]" for name in names)
    values = [_column_values(frame[name], table.column(name).sql_type) for name in names]
    return f"unnest({arrays}) AS k({', '.join(names)})", values


def lock_ids(replacements: Sequence[Replacement], extra: Sequence[tuple[Table, pd.DataFrame]] = ()) -> list[int]:
    """The advisory locks a write takes, sorted (one order for every writer, so two writers never deadlock): one
    per table and value of its non-time partition columns (e.g. market_bars x symbol)."""
    ids: set[int] = set()
    for table, keys in [*((r.table, r.keys) for r in replacements), *extra]:
        if not len(keys.columns) or not len(keys):
            continue
        named = [name for name in keys.columns if table.column(name).sql_type != "TIMESTAMPTZ"]
        labels = keys[named].astype(str).drop_duplicates().itertuples(index=False, name=None) if named else [()]
        for values in labels:
            text = "|".join([table.name, *(f"{name}={value}" for name, value in zip(named, values, strict=True))])
            ids.add(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True))
    return sorted(ids)


def _take_locks(conn: psycopg.Connection, ids: list[int]) -> None:
    if ids:  # unnest yields the array in order: the locks are taken in the sorted order
        conn.execute("SELECT pg_advisory_xact_lock(id) FROM unnest(%s::bigint[]) AS t(id)", [ids])


@dataclass(frozen=True)
class PostgresDatabase(PipelineTables):
    """The project's tables in the PostgreSQL database at ``url``; each call opens and closes its own connection."""

    url: str = field(repr=False)
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    """How long a writer waits for another writer of the same table and symbol before failing."""
    connect_timeout_seconds: int = 10
    logger: logging.Logger | None = field(default=None, repr=False, compare=False)

    @property
    def shown(self) -> str:
        """The URL without its password, for messages."""
        return redact_url(self.url)

    def describe(self) -> str:
        return f"PostgreSQL database {self.shown}"

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout_seconds)
        except psycopg.Error as error:
            raise _unreachable(self.url, error) from None
        try:
            conn.execute(
                "SELECT set_config('TimeZone', 'UTC', false), set_config('lock_timeout', %s, false)",
                [f"{max(1, int(self.lock_timeout_seconds * 1000))}ms"],
            )
            yield conn
        finally:
            conn.close()

    @contextmanager
    def writing(self) -> Iterator[psycopg.Connection]:
        """A connection to a database in the current layout (created or migrated here, and only by writers)."""
        with self._connection() as conn:
            try:
                schema.migrate(conn, self.shown, self.logger)
            except pg_errors.LockNotAvailable:
                raise DatabaseLockedError(
                    f"Another process was migrating the tables of the PostgreSQL database {self.shown} for more than "
                    f"{self.lock_timeout_seconds:g} s; wait for it to finish, then run again."
                ) from None
            yield conn

    @contextmanager
    def reading(self) -> Iterator[tuple[psycopg.Connection, dict[str, list[str]]]]:
        """A connection and the registered tables present (name -> columns); never creates or migrates anything."""
        with self._connection() as conn:
            columns, _ = schema.catalog(conn)
            schema.check_not_newer(schema.stored_version(conn, columns), self.shown)
            yield conn, columns

    def _write(self, tables: str, work: Callable[[psycopg.Connection], _T]) -> _T:
        """Run ``work`` in one transaction, again on a deadlock or serialization failure (at most 3 times)."""
        with self.writing() as conn:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    with conn.transaction():
                        return work(conn)
                except RETRIED_ERRORS:
                    if attempt == MAX_ATTEMPTS:
                        raise
                except pg_errors.LockNotAvailable:
                    raise DatabaseLockedError(
                        f"Another writer held {tables} partitions in the PostgreSQL database {self.shown} for more "
                        f"than {self.lock_timeout_seconds:g} s; wait for that run to finish (or stop it), then run "
                        "again."
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------------------------------------- primitives

    def _replace(self, *replacements: Replacement) -> None:
        """Replace partitions of one or more tables in one transaction."""
        for replacement in replacements:
            check_columns(replacement.table, replacement.keys, "partition keys")
            check_columns(replacement.table, replacement.rows, "rows")
        prepared = [
            (r.table, to_utc(r.keys, r.table), to_utc(r.rows, r.table)) for r in replacements
        ]
        ids = lock_ids(replacements)

        def work(conn: psycopg.Connection) -> None:
            _take_locks(conn, ids)
            for table, keys, rows in prepared:
                if len(keys.columns) and len(keys):
                    source, values = _unnest(keys, table)
                    match = " AND ".join(f"t.{name} = k.{name}" for name in keys.columns)
                    conn.execute(f"DELETE FROM {table.name} AS t USING {source} WHERE {match}", values)
                if len(rows):
                    _copy_rows(conn, table.name, rows, table)

        names = list(dict.fromkeys(r.table.name for r in replacements))
        # The pruned markers a write clears ride along with the tables it writes: name those.
        shown = [name for name in names if name != "pruned_partitions"] or names
        self._write(", ".join(shown), work)

    def read(self, table: Table, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
        """Rows of ``table`` matching ``where`` (``?`` placeholders), ordered by its key; an empty typed frame when
        the table does not exist yet."""
        with self.reading() as (conn, catalog):
            present = catalog.get(table.name)
            if not present:
                return empty_frame(table)
            projection = []
            for column in table.columns:
                if column.name in present:
                    projection.append(column.name)
                    continue
                earlier = next((name for name in column.renamed_from if name in present), None)
                source = earlier if earlier is not None else f"CAST(NULL AS {schema.pg_type(column)})"
                projection.append(f"{source} AS {column.name}")
            order = ", ".join(  # byte order for text, as DuckDB sorts, whatever the database's collation
                f'{name} COLLATE "C"' if table.column(name).sql_type == "VARCHAR" else name for name in table.key
            )
            condition = f" WHERE {' AND '.join(where)}" if where else ""
            sql = f"SELECT * FROM (SELECT {', '.join(projection)} FROM {table.name}) AS t{condition} ORDER BY {order}"
            rows = conn.execute(pg_sql(sql), [_param(value) for value in params]).fetchall()
        if not rows:
            return empty_frame(table)
        frame = pd.DataFrame.from_records(rows, columns=table.column_names)
        for column in table.columns:
            if column.sql_type == "TIMESTAMPTZ":
                frame[column.name] = pd.to_datetime(frame[column.name], utc=True).dt.tz_convert(NEW_YORK)
            frame[column.name] = frame[column.name].astype(column.pandas_dtype)
        return frame

    def _mark_checked(self, checked: pd.DataFrame, flags: pd.DataFrame) -> int:
        ids = lock_ids((), [(MARKET_BARS, checked[["symbol"]]), (MARKET_BARS, flags[["symbol"]])])

        def work(conn: psycopg.Connection) -> int:
            _take_locks(conn, ids)
            if len(checked):
                source, values = _unnest(checked[["symbol", "window_start"]], MARKET_BARS)
                conn.execute(
                    f"UPDATE {MARKET_BARS.name} AS t SET rejected_check = NULL, rejected_reason = NULL "
                    f"FROM {source} WHERE t.symbol = k.symbol AND t.window_start = k.window_start "
                    "AND t.rejected_check = %s",
                    [*values, AWAITING_CHECKS],
                )
            if not len(flags):
                return 0
            columns = ["symbol", "window_start", "rejected_check", "rejected_reason"]
            source, values = _unnest(flags[columns], MARKET_BARS)
            cursor = conn.execute(
                f"UPDATE {MARKET_BARS.name} AS t SET rejected_check = k.rejected_check, "
                f"rejected_reason = k.rejected_reason FROM {source} "
                "WHERE t.symbol = k.symbol AND t.window_start = k.window_start",
                values,
            )
            return cursor.rowcount

        return self._write(MARKET_BARS.name, work)

    # ------------------------------------------------------------------------------------------------- layout

    def ensure_schema(self) -> int:
        """Create or migrate every registered table now; returns the layout version the database had (0: new)."""
        with self._connection() as conn:
            return schema.migrate(conn, self.shown, self.logger)

    def stored_version(self) -> int:
        """The database's layout version (0 when nothing is stored yet); read-only."""
        with self.reading() as (conn, catalog):
            return schema.stored_version(conn, catalog)


def database_at_url(url: str, **options: Any) -> PostgresDatabase:
    """The project's tables in the PostgreSQL database at ``url`` (tables created on the first write)."""
    return PostgresDatabase(url=url, **options)
