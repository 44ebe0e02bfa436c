"""Every table of the project's DuckDB file, declared once.

The registry is the single source of truth for a table's columns and types, its key (one row per key), the
columns a write replaces by (its partition), and the schema version that introduced its current shape. The
migration (``migrations.py``) creates and reconciles tables from it, and readers project from it, so a column is
named in exactly one place. This module imports no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstm_pipeline.market.calendar import NEW_YORK

SCHEMA_VERSION = 5
"""The layout this code writes and reads. 1: the first layout (predictions had ``window_start`` and
``origin_window``; market_bars had no quarantine columns). 2: ``predictions.target_window``, ``origin_window``
dropped, ``market_bars.rejected_check`` / ``rejected_reason``. 3: the prediction workflow (issue #13):
``predictions`` gains its confidence, factors and reason; ``validations``, ``accuracy_metrics``,
``trade_recommendations``, ``trade_outcomes`` are added and ``alerts`` gains a level, a dedup key and a resolution.
4: operations (issue #10): ``pruned_partitions`` (what retention deleted, so readers answer "pruned"); issue #14:
``accuracy_metrics`` gains the naive and time-of-day bands' coverage and Winkler scores (``*_band_*``); alert
channels and monitoring (issue #10): ``alerts`` gains ``acknowledged_at``/``acknowledged_by``, ``resolved_by`` and
``escalated_at``; ``alert_deliveries`` and ``system_metrics`` are added. 5: the skill gate's significance (issue
#14): ``accuracy_metrics.skill_p_value`` and ``trade_recommendations.skill_p_value``."""

_PANDAS_DTYPES = {
    "VARCHAR": "object",
    "DOUBLE": "float64",
    "BOOLEAN": "boolean",
    "TIMESTAMPTZ": f"datetime64[ns, {NEW_YORK}]",
}


CONFIDENCE_FACTORS: tuple[str, ...] = (
    "model_performance",
    "data_quality",
    "market_volatility",
    "trend_consistency",
    "volume_analysis",
    "technical_indicators",
    "time_of_day",
    "market_regime",
    "prediction_stability",
    "historical_accuracy",
)
"""The spec's ten confidence factors (the keys of ``confidence_factor_weights``); ``predictions`` stores each one's
value in ``factor_<name>``."""


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
        # Added in layout 3 (after created_at, where the migration appends them, so old and new files match).
        Column("confidence", "DOUBLE"),
        Column("confidence_level", "VARCHAR"),
        *(Column(f"factor_{name}", "DOUBLE") for name in CONFIDENCE_FACTORS),
        Column("reason", "VARCHAR"),
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
        # Added in layout 3.
        Column("level", "VARCHAR"),
        # INFO, WARNING, ERROR or CRITICAL (the spec's alert levels).
        Column("alert_key", "VARCHAR"),
        # What makes a repeated condition the same alert (e.g. ``prediction_error_high:AAPL``).
        Column("resolved_at", "TIMESTAMPTZ"),
        # When the condition stopped holding; null while the alert is open.
        # Added in layout 4 (alert channels, issue #10): who acknowledged or resolved it by hand, and when a WARNING
        # left unresolved was escalated to ERROR. Writers of an open row carry them over.
        Column("acknowledged_at", "TIMESTAMPTZ"),
        Column("acknowledged_by", "VARCHAR"),
        Column("resolved_by", "VARCHAR"),
        Column("escalated_at", "TIMESTAMPTZ"),
    ),
    key=("source", "symbol", "as_of_window", "kind"),
    partition=("source", "symbol", "as_of_window"),
    description="Something a step could not do or found wrong, with why. source 'predictions': a skipped forecast "
    "of a symbol-window (replaced with its partition; level from severity). source 'alerts' (the alerts asset) and "
    "'runs' (failed runs): one row per open condition, as_of_window = the window it was first raised at, written by "
    "its full key so an update (level, message) or a resolution (resolved_at) replaces exactly that row.",
)

VALIDATIONS = Table(
    name="validations",
    columns=(
        Column("symbol", "VARCHAR", nullable=False),
        Column("target_window", "TIMESTAMPTZ", nullable=False),
        Column("as_of_window", "TIMESTAMPTZ", nullable=False),
        Column("horizon_step", "INTEGER", nullable=False),
        Column("model_version", "VARCHAR", nullable=False),
        Column("predicted_close", "DOUBLE", nullable=False),
        Column("actual_close", "DOUBLE"),
        Column("last_close", "DOUBLE", nullable=False),
        Column("error_pct", "DOUBLE"),
        # Signed: 100 * (predicted - actual) / actual.
        Column("abs_error_pct", "DOUBLE"),
        Column("naive_abs_error_pct", "DOUBLE"),
        # The naive last-price forecast's absolute error on the same origin and target.
        Column("inside_80", "BOOLEAN"),
        Column("inside_95", "BOOLEAN"),
        Column("status", "VARCHAR", nullable=False),
        # ``valid``, ``needs_reprediction`` or ``invalid`` (the spec's statuses).
        Column("status_reason", "VARCHAR"),
        Column("validated_at", "TIMESTAMPTZ", nullable=False, default="current_timestamp"),
    ),
    key=("symbol", "target_window", "as_of_window"),
    partition=("symbol", "target_window"),
    description="Every stored prediction of a window, judged once that window's actual bar arrived: one row per "
    "prediction (as-of window), partitioned by the target window.",
)

ACCURACY_METRICS = Table(
    name="accuracy_metrics",
    columns=(
        Column("symbol", "VARCHAR", nullable=False),
        Column("window_start", "TIMESTAMPTZ", nullable=False),
        # The window as of which the metrics were computed (the partition's window).
        Column("span", "VARCHAR", nullable=False),
        # ``day``, ``week`` or ``month``: the validated targets of the last 26, 130 or 546 session windows up to
        # and including window_start.
        Column("horizon_bucket", "VARCHAR", nullable=False),
        # ``1_step``, ``1_hour``, ``1_day`` or ``1_week``.
        Column("n", "BIGINT", nullable=False),
        Column("rmse", "DOUBLE"),
        Column("mae", "DOUBLE"),
        Column("mape", "DOUBLE"),
        Column("directional_accuracy", "DOUBLE"),
        Column("up_move_share", "DOUBLE"),
        Column("mase", "DOUBLE"),
        # Model MAE / naive last-price MAE on the same origins and targets (below 1 beats naive).
        Column("skill_p_value", "DOUBLE"),
        # One-sided Diebold-Mariano p-value of "the model's errors are smaller than naive's", overlap-aware (null:
        # too few validations to tell); the skill gate requires it below ``workflow.skill_significance``.
        Column("coverage_80", "DOUBLE"),
        Column("coverage_95", "DOUBLE"),
        Column("winkler_80", "DOUBLE"),
        Column("winkler_95", "DOUBLE"),
        Column("reprediction_rate", "DOUBLE"),
        Column("trade_success_rate", "DOUBLE"),
        Column("mean_trade_return_pct", "DOUBLE"),
        Column("mase_trend", "DOUBLE"),
        # This span's MASE minus the previous span's (negative: improving).
        Column("naive_band_coverage_80", "DOUBLE"),
        Column("naive_band_coverage_95", "DOUBLE"),
        Column("naive_band_winkler_80", "DOUBLE"),
        Column("naive_band_winkler_95", "DOUBLE"),
        Column("tod_band_coverage_80", "DOUBLE"),
        Column("tod_band_coverage_95", "DOUBLE"),
        Column("tod_band_winkler_80", "DOUBLE"),
        Column("tod_band_winkler_95", "DOUBLE"),
        # The two baseline bands of issue #14 (naive and time-of-day, ``forecasting.bands.baseline_bands``) on the
        # same validated origins and targets: compare with coverage_80 .. winkler_95 (null: a band still warming up).
        Column("computed_at", "TIMESTAMPTZ", nullable=False, default="current_timestamp"),
    ),
    key=("symbol", "window_start", "span", "horizon_bucket"),
    partition=("symbol", "window_start"),
    description="Rolling accuracy of a symbol's forecasts as of a window, per span and horizon bucket, against the "
    "naive last-price forecast on the same origins.",
)

TRADE_RECOMMENDATIONS = Table(
    name="trade_recommendations",
    columns=(
        Column("symbol", "VARCHAR", nullable=False),
        Column("as_of_window", "TIMESTAMPTZ", nullable=False),
        Column("model_version", "VARCHAR"),
        Column("action", "VARCHAR", nullable=False),
        # ``buy``, ``short`` or ``none`` (held back: ``held_back_by`` says which rule).
        Column("entry_window", "TIMESTAMPTZ"),
        Column("entry_price", "DOUBLE"),
        Column("exit_window", "TIMESTAMPTZ"),
        Column("exit_price", "DOUBLE"),
        Column("predicted_return_pct", "DOUBLE"),
        # After round-trip costs.
        Column("confidence", "DOUBLE"),
        Column("confidence_level", "VARCHAR"),
        Column("recent_mase", "DOUBLE"),
        Column("skill_p_value", "DOUBLE"),
        # The skill gate's evidence at the trade's exit horizon: MASE and its p-value (``accuracy_metrics``).
        Column("held_back_by", "VARCHAR"),
        Column("reason", "VARCHAR", nullable=False),
        Column("created_at", "TIMESTAMPTZ", nullable=False, default="current_timestamp"),
    ),
    key=("symbol", "as_of_window"),
    partition=("symbol", "as_of_window"),
    description="What the active forecast of a symbol-window recommends, or which rule held a trade back.",
)

TRADE_OUTCOMES = Table(
    name="trade_outcomes",
    columns=(
        Column("symbol", "VARCHAR", nullable=False),
        Column("as_of_window", "TIMESTAMPTZ", nullable=False),
        # The recommendation scored (its as-of window).
        Column("scored_window", "TIMESTAMPTZ", nullable=False),
        # The window whose bar completed the score (the partition).
        Column("action", "VARCHAR", nullable=False),
        Column("entry_price_actual", "DOUBLE"),
        Column("exit_price_actual", "DOUBLE"),
        Column("realized_return_pct", "DOUBLE"),
        # After round-trip costs.
        Column("hit", "BOOLEAN"),
        Column("scored_at", "TIMESTAMPTZ", nullable=False, default="current_timestamp"),
    ),
    key=("symbol", "scored_window", "as_of_window"),
    partition=("symbol", "scored_window"),
    description="Each past recommendation scored once its exit window has passed: realized return after costs, hit "
    "or miss. Kept apart from trade_recommendations so that table stays an audit trail.",
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

ALERT_DELIVERIES = Table(
    name="alert_deliveries",
    columns=(
        Column("channel", "VARCHAR", nullable=False),
        # console, file, webhook or email.
        Column("source", "VARCHAR", nullable=False),
        Column("symbol", "VARCHAR", nullable=False),
        Column("as_of_window", "TIMESTAMPTZ", nullable=False),
        Column("kind", "VARCHAR", nullable=False),
        # The alert delivered (the alerts table's key).
        Column("event", "VARCHAR", nullable=False),
        # What was announced: ``open:<LEVEL>`` (raised, or its level changed) or ``resolved``.
        Column("alert_key", "VARCHAR"),
        Column("level", "VARCHAR"),
        Column("status", "VARCHAR", nullable=False),
        # ``sent``, ``failed`` (retried from next_attempt_at) or ``gave_up`` (after the last attempt).
        Column("attempts", "INTEGER", nullable=False),
        Column("last_error", "VARCHAR"),
        Column("first_attempt_at", "TIMESTAMPTZ", nullable=False),
        Column("last_attempt_at", "TIMESTAMPTZ", nullable=False),
        Column("next_attempt_at", "TIMESTAMPTZ"),
    ),
    key=("channel", "source", "symbol", "as_of_window", "kind", "event"),
    partition=("channel", "source", "symbol", "as_of_window", "kind", "event"),
    description="Every attempt to announce an alert event on a channel: sent, failed (with the error and when it is "
    "retried) or given up. The alert itself stays in alerts whatever happens here.",
)

SYSTEM_METRICS = Table(
    name="system_metrics",
    columns=(
        Column("sampled_at", "TIMESTAMPTZ", nullable=False),
        Column("category", "VARCHAR", nullable=False),
        # One of the spec's six monitoring categories (the keys of monitoring_intervals).
        Column("metric", "VARCHAR", nullable=False),
        Column("value", "DOUBLE"),
        Column("unit", "VARCHAR"),
        Column("detail", "VARCHAR"),
        # Why a value is missing, or what it was computed over.
    ),
    key=("sampled_at", "category", "metric"),
    partition=("sampled_at", "category"),
    description="Samples of the spec's monitoring categories (prediction accuracy, model performance, system health, "
    "API performance, storage, trade performance), one row per metric and sample time.",
)

PRUNED_PARTITIONS = Table(
    name="pruned_partitions",
    columns=(
        Column("table_name", "VARCHAR", nullable=False),
        Column("symbol", "VARCHAR", nullable=False),
        Column("window_start", "TIMESTAMPTZ", nullable=False),
        # The partition's window in that table's window column (window_start, as_of_window, target_window, ...).
        Column("rows_deleted", "BIGINT", nullable=False),
        Column("backup_id", "VARCHAR", nullable=False),
        # A verified backup that holds the deleted rows (restore brings them back).
        Column("pruned_at", "TIMESTAMPTZ", nullable=False),
    ),
    key=("table_name", "symbol", "window_start"),
    partition=("table_name", "symbol", "window_start"),
    description="Symbol-windows of a table whose rows the retention job deleted (after a verified backup held them): "
    "readers say 'pruned' for them instead of answering an empty success.",
)

TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        MARKET_BARS,
        PREDICTIONS,
        ALERTS,
        VALIDATIONS,
        ACCURACY_METRICS,
        TRADE_RECOMMENDATIONS,
        TRADE_OUTCOMES,
        SCHEMA_VERSION_TABLE,
        PRUNED_PARTITIONS,
        ALERT_DELIVERIES,
        SYSTEM_METRICS,
    )
}
"""Every table of the file, by name."""
