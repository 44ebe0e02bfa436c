"""The registry's tables in PostgreSQL: types, DDL, indexes, layout version and the migration.

The same registry (``tables.py``) and the same reconciliation (``migrations.reconcile_statements``) as DuckDB, in
PostgreSQL's types. Each table also gets an index on its key (whose leading columns are its partition), so
replacing or reading a partition never scans the table. Migrating holds a transaction-level advisory lock, so
several writers starting at once migrate once and never race on ``CREATE``/``ALTER``. This module imports no Dagster.
"""

from __future__ import annotations

import logging

import psycopg

from lstm_pipeline.storage.connections import LOGGER, StorageError
from lstm_pipeline.storage.migrations import reconcile_statements, version_note
from lstm_pipeline.storage.tables import SCHEMA_VERSION, SCHEMA_VERSION_TABLE, TABLES, Column, Table

PG_TYPES = {
    "VARCHAR": "TEXT",
    "DOUBLE": "DOUBLE PRECISION",
    "BOOLEAN": "BOOLEAN",
    "TIMESTAMPTZ": "TIMESTAMPTZ",
    "BIGINT": "BIGINT",
    "INTEGER": "INTEGER",
}
MIGRATION_LOCK_ID = 7_150_015_001
"""The advisory lock (any 64-bit number unique to this project) held while one writer migrates."""


def pg_type(column: Column) -> str:
    return PG_TYPES[column.sql_type]


def column_ddl(column: Column) -> str:
    null = "" if column.nullable else " NOT NULL"
    default = f" DEFAULT {column.default}" if column.default is not None else ""
    return f"{column.name} {pg_type(column)}{null}{default}"


def create_sql(table: Table) -> str:
    body = ",\n    ".join(column_ddl(column) for column in table.columns)
    return f"CREATE TABLE IF NOT EXISTS {table.name} (\n    {body}\n)"


def index_name(table: Table) -> str:
    return f"{table.name}_key_idx"


def index_sql(table: Table) -> str:
    return f"CREATE INDEX IF NOT EXISTS {index_name(table)} ON {table.name} ({', '.join(table.key)})"


def catalog(conn: psycopg.Connection) -> tuple[dict[str, list[str]], set[str]]:
    """The registered tables present (name -> columns in order) and the indexes present, in the current schema."""
    rows = conn.execute(  # pg_catalog, not information_schema: writers ask before every write, it must be cheap
        "SELECT c.relname::text, c.relkind::text, a.attname::text FROM pg_class AS c "
        "LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "AND c.relkind IN ('r', 'p') "
        "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'i') "
        "AND (c.relname = ANY(%s) OR c.relname LIKE '%%\\_key\\_idx') ORDER BY c.relname, a.attnum",
        [list(TABLES)],
    ).fetchall()
    columns: dict[str, list[str]] = {}
    indexes: set[str] = set()
    for name, kind, column in rows:
        if kind == "i":
            indexes.add(name)
        elif name in TABLES and column is not None:
            columns.setdefault(name, []).append(column)
    return columns, indexes


def stored_version(conn: psycopg.Connection, columns: dict[str, list[str]] | None = None) -> int:
    """The database's layout version: 0 when empty, 1 when it holds tables written before versions were kept."""
    columns = catalog(conn)[0] if columns is None else columns
    if SCHEMA_VERSION_TABLE.name in columns:
        (version,) = conn.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA_VERSION_TABLE.name}").fetchone()
        return int(version)
    return 1 if any(name in columns for name in TABLES if name != SCHEMA_VERSION_TABLE.name) else 0


def check_not_newer(version: int, shown: str) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"The PostgreSQL database {shown} has storage layout version {version}, newer than the {SCHEMA_VERSION} "
            "this code knows; upgrade lstm_pipeline or set storage.postgres_url (or LSTM_PIPELINE_POSTGRES_URL) to "
            "another database."
        )


def _current(columns: dict[str, list[str]], indexes: set[str]) -> bool:
    return all(set(columns.get(name, ())) == set(table.column_names) for name, table in TABLES.items()) and all(
        index_name(table) in indexes for table in TABLES.values()
    )


def migrate(conn: psycopg.Connection, shown: str, logger: logging.Logger | None = None) -> int:
    """Create or migrate every registered table (``conn`` in autocommit mode); returns the version it had.

    Cheap when the database is current (three catalog queries), so writers call it before every write.
    """
    columns, indexes = catalog(conn)
    version = stored_version(conn, columns)
    check_not_newer(version, shown)
    if version == SCHEMA_VERSION and _current(columns, indexes):
        return version
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK_ID])
        columns, indexes = catalog(conn)  # another writer may have migrated while this one waited
        version = stored_version(conn, columns)
        check_not_newer(version, shown)
        changes: list[str] = []
        for name, table in TABLES.items():
            statements, changed = reconcile_statements(table, columns.get(name, []), create_sql(table), column_ddl)
            for statement in statements:
                conn.execute(statement)
            changes += changed
            if index_name(table) not in indexes:
                conn.execute(index_sql(table))
        if version < SCHEMA_VERSION:
            conn.execute(
                f"INSERT INTO {SCHEMA_VERSION_TABLE.name} (version, note) VALUES (%s, %s)",
                [SCHEMA_VERSION, version_note()],
            )
    if version and version < SCHEMA_VERSION:
        (logger or LOGGER).info(
            f"Migrated {shown} from storage layout {version} to {SCHEMA_VERSION}: {'; '.join(changes)}."
        )
    return version
