"""The one place tables are created and migrated: ``ensure_schema``, run by writers before they write.

A file's layout is the highest version in its ``schema_version`` table; a file written before that table existed
(but holding tables) is version 1. Migrating reconciles every registered table with the registry in one
transaction: a missing table is created, a column found under an earlier name (``Column.renamed_from``) is renamed,
a missing nullable column is added, a column the registry no longer has is dropped. Readers never run this; they
read an older file through the same registry (``read_table`` aliases renamed columns and fills added ones).
This module imports no Dagster.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import duckdb

from lstm_pipeline.storage.connections import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    LOGGER,
    StorageError,
    connect,
)
from lstm_pipeline.storage.tables import SCHEMA_VERSION, SCHEMA_VERSION_TABLE, TABLES, Column, Table

_NOTES = {
    1: "first layout",
    2: "predictions.window_start renamed target_window, origin_window dropped; market_bars quarantine columns",
    3: "prediction workflow: predictions confidence/factors/reason, validations, accuracy_metrics, "
    "trade_recommendations, trade_outcomes, alerts level/alert_key/resolved_at",
    4: "operations (issue #10): pruned_partitions; alerts acknowledged/resolved_by/escalated_at, alert_deliveries, "
    "system_metrics",
    5: "skill gate significance (issue #14): accuracy_metrics.skill_p_value, trade_recommendations.skill_p_value",
}


def version_note() -> str | None:
    """What the current layout added, for the ``schema_version`` row."""
    return _NOTES.get(SCHEMA_VERSION)


def existing_columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The columns ``table`` has in the open file, in order; empty if the table does not exist."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ? "
        "ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [name for (name,) in rows]


def stored_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The layout version of the open file: 0 for an empty file, 1 for one written before versions were kept."""
    if existing_columns(conn, SCHEMA_VERSION_TABLE.name):
        (version,) = conn.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA_VERSION_TABLE.name}").fetchone()
        return int(version)
    data_tables = [name for name in TABLES if name != SCHEMA_VERSION_TABLE.name]
    return 1 if any(existing_columns(conn, name) for name in data_tables) else 0


def check_not_newer(version: int, path: str) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"The DuckDB file {path} has storage layout version {version}, newer than the {SCHEMA_VERSION} this "
            "code knows; upgrade lstm_pipeline or set db_path (or LSTM_PIPELINE_DB_PATH) to another file."
        )


def reconcile_statements(
    table: Table,
    present: list[str],
    create_sql: str,
    column_ddl: Callable[[Column], str],
) -> tuple[list[str], list[str]]:
    """The statements that bring one table (with columns ``present``) to its registered shape, and what they
    change, for the log. Shared by both backends; ``create_sql`` and ``column_ddl`` speak the backend's SQL."""
    if not present:
        return [create_sql], [f"created {table.name}"]
    present = list(present)
    statements, changes = [], []
    for column in table.columns:
        if column.name in present:
            continue
        earlier = next((name for name in column.renamed_from if name in present), None)
        if earlier is not None:
            statements.append(f"ALTER TABLE {table.name} RENAME COLUMN {earlier} TO {column.name}")
            present[present.index(earlier)] = column.name
            changes.append(f"renamed {table.name}.{earlier} to {column.name}")
            continue
        if not column.nullable and column.default is None:
            raise StorageError(
                f"Cannot add the required column {table.name}.{column.name} to existing rows; give it a default "
                "or make it nullable in lstm_pipeline/storage/tables.py."
            )
        statements.append(f"ALTER TABLE {table.name} ADD COLUMN {column_ddl(column)}")
        present.append(column.name)
        changes.append(f"added {table.name}.{column.name}")
    for name in present:
        if name not in table.column_names:
            statements.append(f"ALTER TABLE {table.name} DROP COLUMN {name}")
            changes.append(f"dropped {table.name}.{name}")
    return statements, changes


def _reconcile(conn: duckdb.DuckDBPyConnection, table: Table) -> list[str]:
    """Bring one table to its registered shape; returns what was changed, for the log."""
    statements, changes = reconcile_statements(
        table, existing_columns(conn, table.name), table.create_sql(), Column.ddl
    )
    for statement in statements:
        conn.execute(statement)
    return changes


def migrate(conn: duckdb.DuckDBPyConnection, path: str, logger: logging.Logger | None = None) -> int:
    """Create or migrate every registered table of the open write connection; returns the version it had.

    Cheap when the file is current (two catalog queries), so writers call it on every write.
    """
    version = stored_version(conn)
    check_not_newer(version, path)
    if version == SCHEMA_VERSION and all(existing_columns(conn, name) for name in TABLES):
        return version
    conn.execute("BEGIN TRANSACTION")
    try:
        changes = []
        for table in TABLES.values():
            changes += _reconcile(conn, table)
        if version < SCHEMA_VERSION:
            conn.execute(
                f"INSERT INTO {SCHEMA_VERSION_TABLE.name} (version, note) VALUES (?, ?)",
                [SCHEMA_VERSION, version_note()],
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if version and version < SCHEMA_VERSION:
        (logger or LOGGER).info(
            f"Migrated {path} from storage layout {version} to {SCHEMA_VERSION}: {'; '.join(changes)}."
        )
    return version


def ensure_schema(
    path: str | os.PathLike[str],
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    logger: logging.Logger | None = None,
) -> int:
    """Create the DuckDB file at ``path`` if needed and bring every table to the current layout.

    Returns the version the file had before (0 for a new file). Takes the write lock: readers never call it.
    """
    with connect(path, read_only=False, lock_timeout_seconds=lock_timeout_seconds, logger=logger) as conn:
        return migrate(conn, str(path), logger)
