"""Every table of the project's DuckDB file, declared once.

The registry is the single source of truth for a table's columns and types, its key (one row per key), the
columns a write replaces by (its partition), and the schema version that introduced its current shape. The
migration (``migrations.py``) creates and reconciles tables from it, and readers project from it, so a column is
named in exactly one place. This module imports no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstm_pipeline.market.calendar import NEW_YORK

SCHEMA_VERSION = 2
"""The layout this code writes and reads. 1: the first layout (predictions had ``window_start`` and
``origin_window``; market_bars had no quarantine columns). 2: ``predictions.target_window``, ``origin_window``
dropped, ``market_bars.rejected_check`` / ``rejected_reason``."""

_PANDAS_DTYPES = {
    "VARCHAR": "object",
    "DOUBLE": "float64",
    "TIMESTAMPTZ": f"datetime64[ns, {NEW_YORK}]",
}


@dataclass(frozen=True)
class Column:
    """One column: its SQL type, whether it may be null, its SQL default, and the names it had before."""

    name: str
    sql_type: str
    nullable: bool = True
    default: str | None = None
    renamed_from: tuple[str, ...] = ()
    """Earlier names of this column: the migration renames them, readers of an unmigrated file alias them."""

    @property
    def pandas_dtype(self) -> str:
        """The dtype read frames carry for this column (integers are nullable ``Int64`` only where SQL allows)."""
        if self.sql_type in ("BIGINT", "INTEGER"):
            return "Int64" if self.nullable else "int64"
        return _PANDAS_DTYPES[self.sql_type]

    def ddl(self) -> str:
        null = "" if self.nullable else " NOT NULL"
        default = f" DEFAULT {self.default}" if self.default is not None else ""
        return f"{self.name} {self.sql_type}{null}{default}"


@dataclass(frozen=True)
class Table:
    """A table of the DuckDB file: columns, key, the columns a write replaces by, and its description."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    """Identifies one row; reads are ordered by it."""
    partition: tuple[str, ...]
    """A write replaces every row matching the given values of these columns (delete, then insert)."""
    description: str

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def written_columns(self) -> list[str]:
        """The columns a writer supplies; the others are filled by their SQL default."""
        return [column.name for column in self.columns if column.default is None]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"Table {self.name} has no column {name!r}.")

    def create_sql(self) -> str:
        body = ",\n    ".join(column.ddl() for column in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {body}\n)"


MARKET_BARS = Table(
    name="market_bars",
    columns=(
        Column("symbol", "VARCHAR", nullable=False),
        Column("window_start", "TIMESTAMPTZ", nullable=False),
        Column("open", "DOUBLE"),
        Column("high", "DOUBLE"),
        Column("low", "DOUBLE"),
        Column("close", "DOUBLE"),
        Column("volume", "BIGINT"),
        Column("vwap", "DOUBLE"),
        Column("trade_count", "BIGINT"),
        Column("source", "VARCHAR", nullable=False),
        Column("ingested_at", "TIMESTAMPTZ", nullable=False, default="current_timestamp"),
        Column("rejected_check", "VARCHAR"),
        Column("rejected_reason", "VARCHAR"),
    ),
    key=("symbol", "window_start"),
    partition=("symbol", "window_start"),
    description="One 15-minute OHLCV bar per symbol and New York window start. A bar that failed a blocking "
    "quality check carries the check's name and reason in rejected_check / rejected_reason and is never read by "
    "forecasting or training; re-materializing its partition replaces the row and clears the flag.",
)

PREDICTIONS = Table(
    name="predictions",
    columns=(
        Column("symbol", "VARCHAR", nullable=False),
        Column("as_of_window", "TIMESTAMPTZ", nullable=False),
        Column("horizon_step", "INTEGER", nullable=False),
        Column("target_window", "TIMESTAMPTZ", nullable=False, renamed_from=("window_start",)),
        Column("predicted_close", "DOUBLE", nullable=False),
        Column("lower_80", "DOUBLE"),
        Column("upper_80", "DOUBLE"),
        Column("lower_95", "DOUBLE"),
        Column("upper_95", "DOUBLE"),
        Column("last_close", "DOUBLE", nullable=False),
        Column("forecast_mode", "VARCHAR", nullable=False),
        Column("model_version", "VARCHAR", nullable=False),
        Column("created_at", "TIMESTAMPTZ", nullable=False, default="current_timestamp"),
    ),
    key=("symbol", "as_of_window", "horizon_step"),
    partition=("symbol", "as_of_window"),
    description="The week-ahead forecast made as of a symbol's window: one row per horizon step, naming the "
    "window it forecasts (target_window) and the model version that made it.",
)

ALERTS = Table(
    name="alerts",
    columns=(
        Column("source", "VARCHAR", nullable=False),
        Column("symbol", "VARCHAR", nullable=False),
        Column("as_of_window", "TIMESTAMPTZ", nullable=False),
        Column("kind", "VARCHAR", nullable=False),
        Column("severity", "VARCHAR", nullable=False),
        Column("message", "VARCHAR", nullable=False),
        Column("run_id", "VARCHAR"),
        Column("created_at", "TIMESTAMPTZ", nullable=False, default="current_timestamp"),
    ),
    key=("source", "symbol", "as_of_window", "kind"),
    partition=("source", "symbol", "as_of_window"),
    description="Something a step could not do for a symbol-window (skipped forecast, unusable model), with why.",
)

SCHEMA_VERSION_TABLE = Table(
    name="schema_version",
    columns=(
        Column("version", "INTEGER", nullable=False),
        Column("applied_at", "TIMESTAMPTZ", nullable=False, default="current_timestamp"),
        Column("note", "VARCHAR"),
    ),
    key=("version",),
    partition=("version",),
    description="One row per schema version applied to this file; the highest is the file's layout.",
)

TABLES: dict[str, Table] = {table.name: table for table in (MARKET_BARS, PREDICTIONS, ALERTS, SCHEMA_VERSION_TABLE)}
"""Every table of the file, by name."""
