"""What every storage backend offers, written once on top of three primitives each backend implements.

A backend (``PipelineDatabase`` on DuckDB, ``PostgresDatabase`` on PostgreSQL) implements ``_replace`` (delete the
given partitions' rows and insert the new ones, for one or more tables, in one transaction), ``read`` (rows of a
registered table, timestamps in New York, an empty typed frame when nothing is stored) and ``_mark_checked``
(promote staged bars and flag rejected ones in one transaction). Everything the pipeline calls (bars, forecasts,
any registered table by name) is defined here on top of them, so both backends behave the same by construction.
This module imports no Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from lstm_pipeline.market.bars import BAR_COLUMNS, conform_bars, empty_bars
from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.storage.rows import Replacement
from lstm_pipeline.storage.tables import ALERTS, MARKET_BARS, PREDICTIONS, PRUNED_PARTITIONS, TABLES, Table

AWAITING_CHECKS = "awaiting_checks"
"""``rejected_check`` of a bar written by ``market_bars`` whose blocking checks have not passed yet: staged, not
readable by forecasting or training until ``record_checks`` promotes it (or a check rejects it)."""
REJECTION_COLUMNS = ("symbol", "window_start", "check_name", "reason")
"""What ``reject_bars`` takes: one row per bar and failed check."""
PREDICTION_COLUMNS = PREDICTIONS.written_columns
ALERT_COLUMNS = ALERTS.written_columns


def utc_param(stamp: Any) -> Any:
    """A query parameter for a TIMESTAMPTZ column; a naive stamp means New York."""
    value = pd.Timestamp(stamp)
    return (value.tz_localize(NEW_YORK) if value.tz is None else value).tz_convert("UTC").to_pydatetime()


def _by_symbol(symbol: str | None) -> tuple[list[str], list[object]]:
    return (["symbol = ?"], [symbol]) if symbol else ([], [])


def rejection_flags(rejections: pd.DataFrame) -> pd.DataFrame:
    """One row per rejected bar (symbol, UTC window_start, rejected_check, rejected_reason): several checks failing
    on one bar are joined in the order given."""
    missing = [name for name in REJECTION_COLUMNS if name not in rejections.columns]
    if missing:
        raise ValueError(f"Rejections are missing the column(s) {missing}; give {list(REJECTION_COLUMNS)}.")
    frame = rejections[list(REJECTION_COLUMNS)].dropna(subset=["symbol", "window_start"]).copy()
    if frame.empty:
        return pd.DataFrame(columns=["symbol", "window_start", "rejected_check", "rejected_reason"])
    stamps = pd.to_datetime(frame["window_start"])
    stamps = stamps.dt.tz_localize(NEW_YORK) if stamps.dt.tz is None else stamps
    frame["window_start"] = stamps.dt.tz_convert("UTC")
    frame["symbol"] = frame["symbol"].astype(str)
    return (
        frame.groupby(["symbol", "window_start"], sort=True)
        .agg(
            rejected_check=("check_name", lambda names: ", ".join(dict.fromkeys(map(str, names)))),
            rejected_reason=("reason", lambda reasons: "; ".join(dict.fromkeys(map(str, reasons)))),
        )
        .reset_index()
    )


def _window_column(table: Table) -> str | None:
    """The window column of a symbol-window partitioned table (``window_start``, ``as_of_window``, ...), else None."""
    if "symbol" not in table.partition or table is PRUNED_PARTITIONS:
        return None
    last = table.partition[-1]
    return last if last != "symbol" and table.column(last).sql_type == "TIMESTAMPTZ" else None


def with_pruned_markers_cleared(replacements: Sequence[Replacement]) -> tuple[Replacement, ...]:
    """``replacements`` plus, in the same transaction, the removal of the ``pruned_partitions`` markers of every
    symbol-window that a replacement writes rows to again: a partition re-materialized after retention pruned it holds
    data, so readers must no longer call it pruned. Replacements that only delete (retention itself) clear nothing."""
    cleared = []
    for replacement in replacements:
        column = _window_column(replacement.table)
        if column is None or replacement.rows.empty or column not in replacement.rows.columns:
            continue
        written = replacement.rows[["symbol", column]].drop_duplicates().rename(columns={column: "window_start"})
        cleared.append(written.assign(table_name=replacement.table.name)[["table_name", "symbol", "window_start"]])
    if not cleared:
        return tuple(replacements)
    keys = pd.concat(cleared, ignore_index=True)
    return (*replacements, Replacement(PRUNED_PARTITIONS, keys, keys.iloc[0:0].reindex(
        columns=[column.name for column in PRUNED_PARTITIONS.columns])))


class PipelineTables:
    """The storage API shared by every backend (see the module docstring for what a backend implements)."""

    def replace(self, *replacements: Replacement) -> None:
        """Replace partitions of one or more tables in one transaction (and clear the pruned markers of the
        partitions written again: ``with_pruned_markers_cleared``)."""
        self._replace(*with_pruned_markers_cleared(replacements))

    def _replace(self, *replacements: Replacement) -> None:
        """The backend's primitive: delete the given partitions' rows and insert the new ones, in one transaction."""
        raise NotImplementedError

    def read(self, table: Table, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
        """Rows of ``table`` matching every clause of ``where`` (``?`` placeholders), ordered by its key."""
        raise NotImplementedError

    def _mark_checked(self, checked: pd.DataFrame, flags: pd.DataFrame) -> int:
        """In one transaction: clear the staging flag of the ``checked`` (symbol, UTC window_start) bars still
        awaiting their checks, then set the ``flags`` (``rejection_flags``); returns how many stored bars were
        flagged."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- generic helpers

    def replace_tables(self, rows_by_table: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]]) -> None:
        """Replace partitions of several registered tables in one transaction: ``{table name: (keys, rows)}``,
        ``keys`` holding the values of the table's partition columns to replace, ``rows`` the new rows."""
        unknown = [name for name in rows_by_table if name not in TABLES]
        if unknown:
            raise ValueError(f"Unknown table(s) {unknown}; the registered tables are {sorted(TABLES)}.")
        self.replace(
            *(Replacement(TABLES[name], keys, rows) for name, (keys, rows) in rows_by_table.items())
        )

    def read_rows(self, table: str, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
        """Rows of the registered ``table`` matching every SQL clause of ``where`` (``?`` placeholders)."""
        if table not in TABLES:
            raise ValueError(f"Unknown table {table!r}; the registered tables are {sorted(TABLES)}.")
        return self.read(TABLES[table], where, [utc_param(p) if isinstance(p, pd.Timestamp) else p for p in params])

    # --------------------------------------------------------------------------------------------- market bars

    def replace_bars(
        self, bars: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]], awaiting_checks: bool = False
    ) -> int:
        """Atomically replace the given (symbol, window_start) partitions with ``bars``; returns rows written.

        Partitions with no row in ``bars`` end up empty (the source had no bar for them): a missing window is
        recorded as missing, never carried over from an earlier fetch. A replaced bar loses any rejection flag.
        With ``awaiting_checks`` (what ``market_bars`` does) the new bars are staged: stored, but not read by
        ``read_bars`` until ``record_checks`` promotes them, so a run that dies between writing bars and checking
        them never lets an unchecked bar reach a forecast or a training set.
        """
        keys = pd.DataFrame(list(partitions), columns=["symbol", "window_start"])
        rows = conform_bars(bars) if len(bars) else empty_bars()
        rows = rows[list(BAR_COLUMNS)]
        if awaiting_checks:
            rows = rows.assign(
                rejected_check=AWAITING_CHECKS,
                rejected_reason="written by market_bars; its blocking quality checks have not passed yet",
            )
        self.replace(Replacement(MARKET_BARS, keys, rows))
        return len(rows)

    def read_bars(
        self,
        symbol: str | None = None,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        symbols: Iterable[str] | None = None,
        include_rejected: bool = False,
    ) -> pd.DataFrame:
        """Stored bars with ``start <= window_start < end``, sorted, in the bar schema (empty if none).

        Bars flagged by a blocking quality check are left out unless ``include_rejected``: forecasting and
        training must never read them.
        """
        wanted = [symbol] if symbol is not None else (list(symbols) if symbols is not None else None)
        clauses: list[str] = []
        params: list[object] = []
        if wanted is not None:
            clauses.append(f"symbol IN ({', '.join('?' for _ in wanted)})" if wanted else "FALSE")
            params.extend(wanted)
        if start is not None:
            clauses.append("window_start >= ?")
            params.append(utc_param(start))
        if end is not None:
            clauses.append("window_start < ?")
            params.append(utc_param(end))
        if not include_rejected:
            clauses.append("rejected_check IS NULL")
        frame = self.read(MARKET_BARS, clauses, params)
        return conform_bars(frame[list(BAR_COLUMNS)]) if len(frame) else empty_bars()

    def read_rejected_bars(self, symbol: str | None = None) -> pd.DataFrame:
        """The stored bars a blocking check flagged, with ``rejected_check`` and ``rejected_reason``."""
        clauses, params = ["rejected_check IS NOT NULL"], []
        if symbol is not None:
            clauses.append("symbol = ?")
            params.append(symbol)
        frame = self.read(MARKET_BARS, clauses, params)
        return frame[[*BAR_COLUMNS, "rejected_check", "rejected_reason"]]

    def record_checks(
        self, checked: Iterable[tuple[str, pd.Timestamp]], rejections: pd.DataFrame, promote: bool = True
    ) -> int:
        """In one transaction: flag the ``rejections`` and, with ``promote``, make every other ``checked`` bar that
        was awaiting its checks readable. Returns how many stored bars were flagged.

        ``promote`` is False when a run checked only some of the blocking rules: its bars stay staged.
        """
        keys = pd.DataFrame(list(checked), columns=["symbol", "window_start"])
        if not promote:
            keys = keys.iloc[0:0]
        keys["window_start"] = pd.to_datetime(keys["window_start"], utc=True)
        keys["symbol"] = keys["symbol"].astype(str)
        return self._mark_checked(keys, rejection_flags(rejections))

    def reject_bars(self, rejections: pd.DataFrame) -> int:
        """Flag stored bars as unusable; returns how many stored rows were flagged.

        ``rejections`` has one row per bar and failed check (``REJECTION_COLUMNS``); several checks failing on one
        bar are recorded together. Re-materializing the bar's partition replaces the row and so clears the flag.
        """
        flags = rejection_flags(rejections)
        if flags.empty:
            return 0
        nothing_checked = pd.DataFrame(
            {"symbol": pd.Series(dtype=object), "window_start": pd.Series(dtype="datetime64[ns, UTC]")}
        )
        return self._mark_checked(nothing_checked, flags)

    # -------------------------------------------------------------------------------------- predictions, alerts

    def replace_forecasts(
        self, predictions: pd.DataFrame, alerts: pd.DataFrame, partitions: Iterable[tuple[str, pd.Timestamp]]
    ) -> None:
        """Replace, per (symbol, as_of_window) partition, its prediction rows and its prediction alerts, in one
        transaction: a re-run replaces both exactly (no duplicate rows; an alert that no longer holds disappears)."""
        for frame, table in ((predictions, PREDICTIONS), (alerts, ALERTS)):
            required = [column.name for column in table.columns if not column.nullable and column.default is None]
            missing = [name for name in required if name not in frame.columns]
            if len(frame) and missing:
                raise ValueError(
                    f"The rows for table {table.name} are missing the column(s) {missing}; it needs "
                    f"{required}."
                )
        keys = pd.DataFrame(list(partitions), columns=["symbol", "as_of_window"])
        self.replace(
            Replacement(PREDICTIONS, keys, predictions.reindex(columns=PREDICTION_COLUMNS)),
            Replacement(ALERTS, keys.assign(source="predictions"), alerts.reindex(columns=ALERT_COLUMNS)),
        )

    def read_predictions(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored prediction rows (one per symbol, as-of window and horizon step), oldest first."""
        return self.read(PREDICTIONS, *_by_symbol(symbol))

    def read_alerts(self, symbol: str | None = None) -> pd.DataFrame:
        """Stored alerts, with when they were raised."""
        return self.read(ALERTS, *_by_symbol(symbol))
