"""From one file's bars of one symbol to 15-minute session-window bars.

A file's spacing is the most common positive gap between consecutive bars of one New York day: gaps across nights
do not count, and the minutes thin trading leaves without a bar do not move it (a real 1-minute ETF file has a
median gap of 3 minutes but a most common one of 1). Bars of 15 minutes pass through; finer bars whose spacing divides
15 minutes are aggregated into their window (open first, high max, low min, close last, volume and trade count
summed, vwap volume-weighted); anything coarser, or bars off their own grid, is refused: storing a 1-minute bar or
an hourly bar as a 15-minute one would be wrong data without a word.
"""

from __future__ import annotations

import pandas as pd

from lstm_pipeline.market.bar_files import BarFile
from lstm_pipeline.market.bars import MarketDataError
from lstm_pipeline.market.calendar import NEW_YORK, WINDOW, window_key

VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "trade_count")


def bar_spacing(stamps: pd.Series) -> pd.Timedelta | None:
    """Most common positive gap between consecutive bars of one New York day (of any bars if none share a day)."""
    ordered = stamps.dropna().drop_duplicates().sort_values()
    if len(ordered) < 2:
        return None
    gaps = ordered.diff().iloc[1:]
    days = ordered.dt.tz_convert(NEW_YORK).dt.date
    same_day = gaps[(days.iloc[1:].to_numpy() == days.iloc[:-1].to_numpy())]
    counts = (same_day if not same_day.empty else gaps).value_counts()
    return counts[counts == counts.max()].index.min()


def describe_spacing(spacing: pd.Timedelta) -> str:
    seconds = spacing.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


def session_window_bars(located: BarFile, rows: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """``rows`` (one symbol of ``located``, no problems) as one bar per 15-minute window, keyed ``window_start``."""
    rows = _without_repeats(located, rows, symbol)
    spacing = bar_spacing(rows["stamp"])
    if spacing is not None:
        _check_spacing(located, rows, spacing)
    window = rows["stamp"].dt.floor(WINDOW)  # offsets are whole hours, so UTC quarter hours are New York ones
    ordered = rows.assign(window_start=window).sort_values("stamp", kind="stable")
    grouped = ordered.groupby("window_start", sort=True)
    bars = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        line=("line", "first"),
    )
    bars["trade_count"] = grouped["trade_count"].sum(min_count=1)
    has_vwap = ordered["vwap"].notna()
    weight = ordered["volume"].where(has_vwap, 0.0)
    weighted = (ordered["vwap"].fillna(0.0) * weight).groupby(ordered["window_start"]).sum()
    total = weight.groupby(ordered["window_start"]).sum()
    bars["vwap"] = (weighted / total).where(total > 0, grouped["vwap"].mean())
    bars = bars.reset_index()
    bars["window_start"] = bars["window_start"].dt.tz_convert(NEW_YORK)
    return bars


def _without_repeats(located: BarFile, rows: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """Drop rows that repeat another exactly; two different rows for one stamp are an error."""
    repeated = rows[rows.duplicated("stamp", keep=False)]
    if repeated.empty:
        return rows
    distinct = repeated.drop_duplicates(["stamp", *VALUE_COLUMNS])
    clashing = distinct[distinct.duplicated("stamp", keep=False)]
    if not clashing.empty:
        first = clashing[clashing["stamp"] == clashing["stamp"].iloc[0]]
        stamp = first["stamp"].iloc[0]
        lines = " and ".join(str(line) for line in first["line"].iloc[:2])
        raise MarketDataError(
            f"{located.path} has two different {symbol} bars for {stamp.tz_convert(NEW_YORK):%Y-%m-%d %H:%M} "
            f"New York (window {window_key(stamp.floor(WINDOW))}, {located.line_label}s {lines}); keep one of them."
        )
    return rows.drop_duplicates(["stamp", *VALUE_COLUMNS])


def _check_spacing(located: BarFile, rows: pd.DataFrame, spacing: pd.Timedelta) -> None:
    found = describe_spacing(spacing)
    if spacing > WINDOW:
        raise MarketDataError(
            f"{located.path} holds bars {found} apart, coarser than the 15-minute session windows; export "
            "15-minute (or finer: 1, 5 minute) bars."
        )
    if WINDOW % spacing != pd.Timedelta(0):
        raise MarketDataError(
            f"{located.path} holds bars {found} apart, which does not divide the 15-minute session windows; export "
            "15-minute (or 1, 3, 5 minute) bars."
        )
    local = rows["stamp"].dt.tz_convert(NEW_YORK)
    minutes = local.dt.hour * 60 + local.dt.minute
    in_session = (local.dt.dayofweek < 5) & (minutes >= 9 * 60 + 30) & (minutes < 16 * 60)
    off_grid = in_session & ((rows["stamp"] - rows["stamp"].dt.floor(WINDOW)) % spacing != pd.Timedelta(0))
    if off_grid.any():
        first = rows[off_grid].iloc[0]
        raise MarketDataError(
            f"{located.path} holds bars {found} apart but {int(off_grid.sum())} session bar(s) fall off that grid "
            f"(first: {located.line_label} {first['line']}, {first['stamp'].tz_convert(NEW_YORK):%Y-%m-%d %H:%M:%S} "
            "New York), so its spacing is irregular; export bars on a regular 15-minute (or finer) grid."
        )
