"""What the data endpoints read, through the read snapshot (``serving.snapshot.ReadSnapshot.read_rows``).

Every filter is a ``?`` parameter; the only SQL text is fixed here (including the ``max(...)`` subqueries that keep
a request from reading a symbol's whole history to find its newest row).

Retention deletes old symbol-windows (after a verified backup holds them) and records each in ``pruned_partitions``;
the functions here read that record so an answer never passes off pruned data as missing: a single forecast or a
period that retention emptied is a 410 naming when and the restore command, and lists carry the pruned span.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd
from fastapi import HTTPException

from lstm_pipeline.market.calendar import NEW_YORK, WINDOW, window_key
from serving.pagination import order_for_paging, page_frame, page_of

NEWEST_BAR_PER_SYMBOL = "(symbol, window_start) IN (SELECT symbol, max(window_start) FROM market_bars GROUP BY symbol)"
NEWEST_FORECAST_PER_SYMBOL = (
    "(symbol, as_of_window) IN (SELECT symbol, max(as_of_window) FROM predictions GROUP BY symbol)"
)


def read(snapshot: Any, table: str, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
    """Rows from the snapshot; a store that cannot be read right now is a 503 with one sentence, never a trace."""
    try:
        return snapshot.read_rows(table, list(where), list(params))
    except Exception as error:  # noqa: BLE001 - storage errors of either backend; reported, not swallowed
        raise HTTPException(
            503, f"The pipeline's store cannot be read right now ({type(error).__name__}); retry shortly."
        ) from error


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (missing values None), built column by column: the per-request hot path."""
    if frame.empty:
        return []
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        series = frame[name]
        values = series.tolist()
        missing = series.isna()
        if missing.any():
            values = [None if gap else value for value, gap in zip(values, missing.tolist(), strict=True)]
        columns[name] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def utc_text(stamp: Any) -> str:
    """A sortable text form of an instant (cursor keys)."""
    if stamp is None:
        return ""
    return pd.Timestamp(stamp).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")


def as_instant(value: dt.datetime) -> pd.Timestamp:
    """A query's datetime as an instant; a naive one means New York time, as everywhere in this project."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize(NEW_YORK) if stamp.tzinfo is None else stamp


# ----------------------------------------------------------------------------------------------------- pruned

_PRUNED_WHAT = {
    "predictions": "forecasts", "trade_recommendations": "recommendations", "accuracy_metrics": "accuracy metrics",
    "alerts": "alerts", "market_bars": "bars", "trade_outcomes": "trade outcomes", "validations": "validations",
}


def pruned_partitions(snapshot: Any, table: str, symbol: str | None = None, start: pd.Timestamp | None = None,
                      end: pd.Timestamp | None = None) -> pd.DataFrame:
    """The symbol-windows of ``table`` that retention deleted (optionally one symbol's, within [start, end])."""
    where, params = ["table_name = ?"], [table]
    for clause, value in (("symbol = ?", symbol), ("window_start >= ?", start), ("window_start <= ?", end)):
        if value is not None:
            where.append(clause)
            params.append(value)
    return read(snapshot, "pruned_partitions", where, params)


def _day(stamp: Any) -> str:
    return pd.Timestamp(stamp).tz_convert(NEW_YORK).strftime("%Y-%m-%d")


def pruned_sentence(subject: str, table: str, pruned: pd.DataFrame) -> str:
    """One sentence: ``subject`` was pruned by retention on <day> (the newest pruning); the command that brings it
    back from the verified backup that holds it."""
    newest = pruned.sort_values("pruned_at").iloc[-1]
    return (
        f"{subject} pruned by retention on {_day(newest['pruned_at'])} (backup {newest['backup_id']} holds it); "
        f"restore it with `lstm-pipeline restore --table {table}`."
    )


def pruned_span(table: str, pruned: pd.DataFrame) -> dict[str, Any] | None:
    """Which span of the data asked for retention deleted (None: nothing of it), for a list answer's ``pruned``."""
    if pruned.empty:
        return None
    first, last = pruned["window_start"].min(), pruned["window_start"].max()
    what = _PRUNED_WHAT.get(table, table)
    return {
        "table": table, "first_window": first, "last_window": last, "partitions": len(pruned),
        "rows_deleted": int(pruned["rows_deleted"].sum()), "pruned_at": pruned["pruned_at"].max(),
        "detail": pruned_sentence(f"The {what} of windows {window_key(first)} to {window_key(last)} "
                                  f"({len(pruned)} symbol-windows) were", table, pruned),
    }


# ----------------------------------------------------------------------------------------------------- status


def newest_bars(snapshot: Any) -> dict[str, pd.Timestamp]:
    frame = read(snapshot, "market_bars", [NEWEST_BAR_PER_SYMBOL])
    return {row["symbol"]: row["window_start"] for row in records(frame)}


def newest_forecasts(snapshot: Any) -> dict[str, pd.Timestamp]:
    frame = read(snapshot, "predictions", [NEWEST_FORECAST_PER_SYMBOL, "horizon_step = 1"])
    return {row["symbol"]: row["as_of_window"] for row in records(frame)}


def symbol_status(snapshot: Any, symbols: Sequence[str], now: pd.Timestamp) -> list[dict[str, Any]]:
    bars, forecasts = newest_bars(snapshot), newest_forecasts(snapshot)
    rows = []
    for symbol in symbols:
        bar = bars.get(symbol)
        lag = (now - (bar + WINDOW)).total_seconds() / 60.0 if bar is not None else None
        rows.append({
            "symbol": symbol, "latest_bar_window": bar, "latest_forecast_window": forecasts.get(symbol),
            "freshness_lag_minutes": lag,
        })
    return rows


# ------------------------------------------------------------------------------------------------ predictions

_SUMMARY_FIELDS = (
    "symbol", "as_of_window", "model_version", "forecast_mode", "last_close", "confidence", "confidence_level",
    "created_at",
)


def forecast_summaries(snapshot: Any, since: pd.Timestamp | None, limit: int, cursor: str | None
                       ) -> tuple[list[dict[str, Any]], str | None]:
    where, params = ["horizon_step = 1"], []
    if since is not None:
        where.append("as_of_window >= ?")
        params.append(since)
    ordered, names = snapshot.derived(
        "forecast_summaries", (since,),
        lambda: order_for_paging(read(snapshot, "predictions", where, params), ["as_of_window", "symbol"]),
        tables=("predictions",),
    )
    page, next_cursor = page_of(ordered, names, limit, cursor)
    rows = [
        {**{k: row[k] for k in _SUMMARY_FIELDS}, "next_close": row["predicted_close"]} for row in records(page)
    ]
    return rows, next_cursor


def forecast(snapshot: Any, symbol: str, window: pd.Timestamp | None) -> dict[str, Any] | None:
    """The forecast of ``symbol`` as of ``window`` (its newest when None), path ordered by horizon step (not cached
    itself: the endpoint caches the JSON body built from it)."""
    if window is None:
        where = ["symbol = ?", "as_of_window = (SELECT max(as_of_window) FROM predictions WHERE symbol = ?)"]
        params: list[object] = [symbol, symbol]
    else:
        where, params = ["symbol = ?", "as_of_window = ?"], [symbol, window]
    rows = records(read(snapshot, "predictions", where, params).sort_values("horizon_step"))
    if not rows:
        return None
    first = rows[0]
    return {
        **{k: first[k] for k in _SUMMARY_FIELDS},
        "next_close": first["predicted_close"],
        "reason": first["reason"],
        "path": [
            {k: row[k] for k in ("horizon_step", "target_window", "predicted_close", "lower_80", "upper_80",
                                 "lower_95", "upper_95")}
            for row in rows
        ],
    }


# -------------------------------------------------------------------------------------------- recommendations


def recommendations(snapshot: Any, symbol: str | None, active: bool | None, limit: int, cursor: str | None
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """A page of recommendations, newest first; ``active``: a buy or short whose exit window is after the symbol's
    newest stored bar (market time, so a replayed or simulated history reads the same as a live one)."""
    ordered, names = snapshot.derived(
        "recommendations", (symbol, active), lambda: _ordered_recommendations(snapshot, symbol, active),
        tables=("trade_recommendations",),
    )
    page, next_cursor = page_of(ordered, names, limit, cursor)
    return records(page), next_cursor


def _ordered_recommendations(snapshot: Any, symbol: str | None, active: bool | None
                             ) -> tuple[pd.DataFrame, list[str]]:
    where, params = ([], []) if symbol is None else (["symbol = ?"], [symbol])
    frame = read(snapshot, "trade_recommendations", where, params)
    newest = pd.Series(newest_bars(snapshot), dtype=object)
    exits_after = frame["exit_window"] > pd.to_datetime(frame["symbol"].map(newest), utc=True)
    frame = frame.assign(active=(
        frame["action"].notna() & (frame["action"] != "none") & frame["exit_window"].notna()
        & (exits_after | frame["symbol"].map(newest).isna())
    ).astype(bool))
    if active is not None:
        frame = frame[frame["active"] == active]
    return order_for_paging(frame, ["as_of_window", "symbol"])


# ------------------------------------------------------------------------------------------------ performance


def newest_metric_window(snapshot: Any, symbol: str) -> pd.Timestamp | None:
    frame = read(
        snapshot, "accuracy_metrics",
        ["symbol = ?", "window_start = (SELECT max(window_start) FROM accuracy_metrics WHERE symbol = ?)"],
        [symbol, symbol],
    )
    return None if frame.empty else frame["window_start"].iloc[0]


def metrics(snapshot: Any, symbol: str, start: pd.Timestamp, end: pd.Timestamp, span: str | None,
            bucket: str | None) -> list[dict[str, Any]]:
    where, params = ["symbol = ?", "window_start >= ?", "window_start <= ?"], [symbol, start, end]
    if span:
        where.append("span = ?")
        params.append(span)
    if bucket:
        where.append("horizon_bucket = ?")
        params.append(bucket)
    rows = records(read(snapshot, "accuracy_metrics", where, params))
    return sorted(rows, key=lambda r: (utc_text(r["window_start"]), r["span"], r["horizon_bucket"]), reverse=True)


def trade_success(snapshot: Any, symbol: str, start: pd.Timestamp | None) -> dict[str, Any]:
    where, params = ["symbol = ?"], [symbol]
    if start is not None:
        where.append("scored_window >= ?")
        params.append(start)
    frame = read(snapshot, "trade_outcomes", where, params)
    scored = frame[frame["hit"].notna()] if "hit" in frame else frame
    hits = int(scored["hit"].astype(bool).sum()) if len(scored) else 0
    returns = frame["realized_return_pct"].dropna() if len(frame) else pd.Series(dtype=float)
    return {
        "scored": len(scored), "hits": hits,
        "success_rate": hits / len(scored) if len(scored) else None,
        "mean_realized_return_pct": float(returns.mean()) if len(returns) else None,
    }


def symbol_performance(snapshot: Any, symbol: str, period_hours: float) -> dict[str, Any]:
    """A symbol's summary over the ``period_hours`` before its newest accuracy window, stored or pruned (so a
    period that retention emptied reads as pruned, not as a shorter history); ``gone`` is the sentence saying so
    when retention pruned every metric of the period (None otherwise)."""
    stored_end = newest_metric_window(snapshot, symbol)
    pruned = pruned_partitions(snapshot, "accuracy_metrics", symbol)
    ends = [stamp for stamp in (stored_end, pruned["window_start"].max() if len(pruned) else None) if stamp is not None]
    end = max(ends) if ends else None
    start = end - pd.Timedelta(hours=period_hours) if end is not None else None
    latest = metrics(snapshot, symbol, stored_end, stored_end, None, None) if stored_end is not None else []
    in_period = pruned[pruned["window_start"] >= start] if start is not None else pruned
    stored_in_period = stored_end is not None and start is not None and stored_end >= start
    gone = None
    if len(in_period) and not stored_in_period:
        gone = pruned_sentence(f"Every accuracy metric of {symbol} in the {period_hours:g} hours to window "
                               f"{window_key(end)} was", "accuracy_metrics", in_period)
    return {
        "symbol": symbol, "period_start": start, "period_end": end, "latest_metrics": latest,
        "trade_success": trade_success(snapshot, symbol, start),
        "pruned": pruned_span("accuracy_metrics", in_period), "gone": gone,
    }


# ----------------------------------------------------------------------------------------------------- alerts


def alerts(snapshot: Any, symbol: str | None, level: str | None, since: pd.Timestamp | None,
           active: bool | None, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    where: list[str] = []
    params: list[object] = []
    for clause, value in (("symbol = ?", symbol), ("level = ?", level), ("created_at >= ?", since)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if active is not None:
        where.append("resolved_at IS NULL" if active else "resolved_at IS NOT NULL")
    page, next_cursor = page_frame(
        read(snapshot, "alerts", where, params), ["created_at", "as_of_window", "source", "symbol", "kind"], limit,
        cursor,
    )
    return records(page), next_cursor


def open_alerts_with_key(snapshot: Any, alert_key: str) -> pd.DataFrame:
    """The open alerts with ``alert_key`` (a row a writer left without one has the key ``kind:symbol``)."""
    return read(snapshot, "alerts", [
        "resolved_at IS NULL", "(alert_key = ? OR (alert_key IS NULL AND kind || ':' || symbol = ?))",
    ], [alert_key, alert_key])
