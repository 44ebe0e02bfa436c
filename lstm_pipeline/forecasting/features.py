"""Bars -> the feature matrix the LSTM reads, and the calendar features of windows still to come.

Features are built from returns, not price levels, so a model trained on one price regime still applies after the
price has doubled: the log return of the close, the log high-low range, log volume and the window's slot in the
session as a point on the unit circle (so 15:45 sits next to 09:30 of the next session). Standardisation (the
volume z-score included) is the scaler's job, with statistics from the training span alone.

Bars are first laid on the exchange calendar: windows outside the regular session are dropped and a session window
with no bar is filled flat (previous close, zero volume), so one model step is always one session window and the
time-of-day features of future steps are exactly those of the next session windows.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import (
    NEW_YORK,
    SLOTS_PER_SESSION,
    WINDOW,
    WINDOW_MINUTES,
    session_windows,
    to_new_york,
    week_ahead_windows,
)

LOG_RETURN = "log_return"
LOG_RANGE = "log_range"
LOG_VOLUME = "log_volume"
TOD_SIN = "tod_sin"
TOD_COS = "tod_cos"

DEFAULT_FEATURES: tuple[str, ...] = (LOG_RETURN, LOG_RANGE, LOG_VOLUME, TOD_SIN, TOD_COS)
"""Inputs of the default model, in column order."""
DEFAULT_RECURSIVE_OUTPUTS: tuple[str, ...] = (LOG_RETURN, LOG_RANGE, LOG_VOLUME)
"""What a default recursive model emits each step: every input that the calendar does not already know."""
CALENDAR_FEATURES: frozenset[str] = frozenset({TOD_SIN, TOD_COS})
"""Features known in advance for any future window."""
RAW_BAR_FEATURES: frozenset[str] = frozenset({"open", "high", "low", "close", "volume", "vwap"})
"""Raw bar columns a legacy (seed) model may read; the project's own models never do."""
KNOWN_FEATURES: frozenset[str] = frozenset(DEFAULT_FEATURES) | RAW_BAR_FEATURES

# SLOTS_PER_SESSION (the period of the time-of-day encoding) lives in market/calendar.py; imported above.
_OPEN_MINUTES = 9 * 60 + 30
_PRICE_COLUMNS = ("open", "high", "low", "close")
_ALIGNED = ("open", "high", "low", "close", "volume", "vwap")


class FeatureError(ValueError):
    """Bars cannot be turned into features; the message names the symbol, what is wrong and the fix."""


def session_slot(window_starts: pd.DatetimeIndex) -> np.ndarray:
    """Slot of each window in its session (0 for 09:30, 25 for 15:45), from its New York wall-clock start."""
    stamps = pd.DatetimeIndex(window_starts).tz_convert(NEW_YORK)
    minutes = stamps.hour * 60 + stamps.minute - _OPEN_MINUTES
    return np.asarray(minutes, dtype=np.float64) / WINDOW_MINUTES


def calendar_features(window_starts: pd.DatetimeIndex) -> pd.DataFrame:
    """Time-of-day of each window as sin/cos of its session slot: known for any future window."""
    phase = 2.0 * np.pi * session_slot(window_starts) / SLOTS_PER_SESSION
    return pd.DataFrame({TOD_SIN: np.sin(phase), TOD_COS: np.cos(phase)}, index=pd.DatetimeIndex(window_starts))


@functools.lru_cache(maxsize=256)
def _session_calendar(first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    # Symbols forecast together share their first and last windows: one calendar lookup serves them all.
    return session_windows(first, last + WINDOW)


def align_to_sessions(bars: pd.DataFrame, symbol: str | None = None) -> pd.DataFrame:
    """One row per session window from the first session bar to the last, indexed by window start.

    Rows outside the regular session are dropped; a missing window is filled flat (open = high = low = close =
    the previous close, volume 0) and flagged in the ``filled`` column. Raises ``FeatureError`` on bars a model
    cannot read (several symbols, missing or non-positive prices).
    """
    name = symbol or _symbol_of(bars)
    if bars.empty:
        raise FeatureError(f"There are no bars for {name}; materialize market_bars for {name} first.")
    if "symbol" in bars.columns and bars["symbol"].nunique() > 1:
        found = sorted(map(str, bars["symbol"].dropna().unique()))
        raise FeatureError(f"Bars for {name} hold several symbols {found}; pass one symbol's bars at a time.")
    column = bars["window_start"]
    # A datetime column is taken as it is: to_datetime would first sample it element by element (its cache test).
    stamps = pd.DatetimeIndex(column if column.dtype.kind == "M" else pd.to_datetime(column))
    stamps = stamps.tz_localize(NEW_YORK) if stamps.tz is None else stamps.tz_convert(NEW_YORK)
    prices = np.column_stack(
        [pd.to_numeric(bars[column], errors="coerce").to_numpy(dtype=np.float64) for column in _PRICE_COLUMNS]
    )
    bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1)
    if bad.any():
        first = stamps[bad].min()
        raise FeatureError(
            f"Bars for {name} have {int(bad.sum())} row(s) with missing or non-positive prices (first at "
            f"{first:%Y-%m-%d %H:%M %Z}); re-fetch market_bars for {name} over those windows."
        )
    calendar = _session_calendar(stamps.min(), stamps.max())
    slots = calendar.get_indexer(stamps)
    inside = slots >= 0
    if not inside.any():
        raise FeatureError(f"None of the {len(bars)} bars for {name} lies in an NYSE regular-session window.")
    volume = pd.to_numeric(bars["volume"], errors="coerce").fillna(0).to_numpy(dtype=np.float64)
    vwap = (
        pd.to_numeric(bars["vwap"], errors="coerce").to_numpy(dtype=np.float64)
        if "vwap" in bars.columns
        else np.full(len(bars), np.nan)
    )
    first_slot = int(slots[inside].min())
    calendar = calendar[first_slot : int(slots[inside].max()) + 1]
    rows = len(calendar)
    values = np.full((rows, 6), np.nan)
    # Later rows win for a duplicated window (assignment order), as a re-fetch replaces a bar.
    values[slots[inside] - first_slot] = np.column_stack([prices, volume, vwap])[inside]
    filled = np.isnan(values[:, 3])
    # Forward-fill the close over missing windows, then open/high/low/vwap from it; volume of a gap is 0.
    last_seen = np.maximum.accumulate(np.where(filled, 0, np.arange(rows)))
    close = values[last_seen, 3]
    for column in (0, 1, 2, 5):
        values[:, column] = np.where(np.isnan(values[:, column]), close, values[:, column])
    values[:, 3] = close
    values[filled, 4] = 0.0
    frame = pd.DataFrame(values, index=pd.DatetimeIndex(calendar, name="window_start"), columns=list(_ALIGNED))
    frame["filled"] = filled
    return frame


def bar_features(
    bars: pd.DataFrame, features: tuple[str, ...] = DEFAULT_FEATURES, symbol: str | None = None
) -> pd.DataFrame:
    """Unscaled features, one row per session window, plus the ``close`` needed to turn returns into prices.

    The first window has no previous close, so its log return is undefined and the row is dropped. Row ``t``
    holds what is known when window ``t`` has closed; the training target of row ``t`` is row ``t + 1``.
    """
    name = symbol or _symbol_of(bars)
    unknown = [feature for feature in features if feature not in KNOWN_FEATURES]
    if unknown:
        raise FeatureError(
            f"The model for {name} asks for unknown feature(s) {unknown}; known features are "
            f"{sorted(KNOWN_FEATURES)}."
        )
    aligned = align_to_sessions(bars, name)
    close = aligned["close"].to_numpy(dtype=np.float64)
    high = aligned["high"].to_numpy(dtype=np.float64)
    low = aligned["low"].to_numpy(dtype=np.float64)
    columns: dict[str, np.ndarray] = {
        LOG_RETURN: np.r_[np.nan, np.diff(np.log(close))],
        LOG_RANGE: np.log(np.maximum(high, low) / np.minimum(high, low)),
        LOG_VOLUME: np.log1p(aligned["volume"].to_numpy(dtype=np.float64)),
    }
    calendar = calendar_features(aligned.index)
    columns[TOD_SIN] = calendar[TOD_SIN].to_numpy()
    columns[TOD_COS] = calendar[TOD_COS].to_numpy()
    for raw in RAW_BAR_FEATURES:
        columns[raw] = aligned[raw].to_numpy(dtype=np.float64)
    frame = pd.DataFrame({feature: columns[feature] for feature in features}, index=aligned.index)
    frame["close"] = close
    frame["filled"] = aligned["filled"].to_numpy()
    frame = frame.iloc[1:]
    if len(frame) == 0:
        raise FeatureError(f"{name} has a single session bar; at least two are needed to compute a return.")
    return frame


def future_windows(last_window: pd.Timestamp, horizon_steps: int | None = None) -> pd.DatetimeIndex:
    """The session windows after ``last_window``: the next ``horizon_steps``, or by default one week ahead.

    One week ahead is ``market.calendar.week_ahead_windows``: every session window up to and including the same
    New York wall-clock time seven days later (130 from a full week's middle, fewer across a holiday or an early
    close, and still 130 across a daylight-saving change).
    """
    if horizon_steps is not None and horizon_steps < 1:
        raise ValueError(f"horizon_steps must be at least 1, got {horizon_steps}.")
    if horizon_steps is None:
        return week_ahead_windows(last_window)
    return _future_windows(to_new_york(last_window), horizon_steps)


@functools.lru_cache(maxsize=256)
def _future_windows(last: pd.Timestamp, horizon_steps: int) -> pd.DatetimeIndex:
    # A session holds at most 26 windows; 7 calendar days hold at least 3 sessions (a holiday week with a weekend).
    days = 7 * (horizon_steps // (3 * SLOTS_PER_SESSION) + 1) + 7
    windows = session_windows(last + WINDOW, last + pd.Timedelta(days=days))
    if len(windows) < horizon_steps:
        raise ValueError(
            f"The exchange calendar has only {len(windows)} session windows after {last:%Y-%m-%d %H:%M}; "
            f"{horizon_steps} were asked for."
        )
    return windows[:horizon_steps]


def _symbol_of(bars: pd.DataFrame) -> str:
    if "symbol" in bars.columns and len(bars) and bars["symbol"].nunique() == 1:
        return str(bars["symbol"].iloc[0])
    return "the symbol"
