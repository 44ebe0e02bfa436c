"""The project's storage layer: every table declared once, two backends with one API, one migration path each.

The embedded default is one DuckDB file (``PipelineDatabase``: one writer at a time, read-only readers); the
other is a PostgreSQL database (``PostgresDatabase``: any number of concurrent writers and readers).
``database_for(settings)`` picks per ``storage.backend``. Imports no Dagster, so assets (through
``lstm_pipeline.resources.storage.PipelineStore``), the REST service, exports and backups all read and write
through the same code.
"""

from lstm_pipeline.storage.backends import StorageBackend, database_for, postgres_url_of
from lstm_pipeline.storage.base import PipelineTables
from lstm_pipeline.storage.connections import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    DatabaseAccessError,
    DatabaseLockedError,
    StorageError,
    connect,
    writable_problem,
)
from lstm_pipeline.storage.database import REJECTION_COLUMNS, PipelineDatabase, database_at
from lstm_pipeline.storage.migrations import ensure_schema, stored_version
from lstm_pipeline.storage.postgres import PostgresDatabase, database_at_url, redact_url
from lstm_pipeline.storage.rows import Replacement, read_table, replace_partitions
from lstm_pipeline.storage.tables import (
    ALERTS,
    MARKET_BARS,
    PREDICTIONS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_TABLE,
    TABLES,
    Column,
    Table,
)

__all__ = [
    "ALERTS",
    "DEFAULT_LOCK_TIMEOUT_SECONDS",
    "MARKET_BARS",
    "PREDICTIONS",
    "REJECTION_COLUMNS",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_TABLE",
    "TABLES",
    "Column",
    "DatabaseAccessError",
    "DatabaseLockedError",
    "PipelineDatabase",
    "PipelineTables",
    "PostgresDatabase",
    "Replacement",
    "StorageBackend",
    "StorageError",
    "Table",
    "connect",
    "database_at",
    "database_at_url",
    "database_for",
    "ensure_schema",
    "postgres_url_of",
    "read_table",
    "redact_url",
    "replace_partitions",
    "stored_version",
    "writable_problem",
]
