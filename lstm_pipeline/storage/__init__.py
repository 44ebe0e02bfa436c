"""The project's storage layer: one DuckDB file, every table declared once, read-only readers, one migration path.

Imports no Dagster, so assets (through ``lstm_pipeline.resources.storage.PipelineStore``), the REST service,
exports and backups all read and write through the same code.
"""

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
    "Replacement",
    "StorageError",
    "Table",
    "connect",
    "database_at",
    "ensure_schema",
    "read_table",
    "replace_partitions",
    "stored_version",
    "writable_problem",
]
