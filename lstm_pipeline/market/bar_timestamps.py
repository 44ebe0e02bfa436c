"""Timestamps of a recorded bar file: parsed, put in UTC, and judged.

Timestamps with an offset (``-04:00``, ``Z``) or Unix epoch numbers are exact, whatever DST change they span;
naive ones are wall-clock time in the configured zone (``market_data.file_timezone``, New York by default). Naive
and offset stamps mixed in one file are refused, and so are naive stamps that put most weekday volume outside the
session in the assumed zone: the tell-tale of a UTC export read as New York time (or the reverse), which would
shift every price by 4-5 hours without a word.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lstm_pipeline.market.bars import MarketDataError
from lstm_pipeline.market.calendar import NEW_YORK

if TYPE_CHECKING:
    from lstm_pipeline.market.bar_files import BarFile

MAX_SHARE_OUTSIDE_SESSION = 0.5
"""Naive stamps that put more than this share of weekday bars (by volume) outside 09:30-16:00 mean a wrong zone."""

_OFFSET = re.compile(r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_SESSION_MINUTES = (9 * 60 + 30, 16 * 60)


def parse_stamps(
    text: pd.Series, located: BarFile, timezone: str
) -> tuple[pd.Series, pd.Series | None, pd.Series]:
    """UTC stamps, the naive values when the file's stamps are naive (else None), and per-row problems.

    Raises for naive and offset stamps mixed in one file, and for epoch numbers out of any plausible range.
    """
    problem = pd.Series(None, index=text.index, dtype=object)
    empty = text.isna()
    if isinstance(text.dtype, pd.DatetimeTZDtype):
        return text.dt.tz_convert("UTC"), None, problem.mask(empty, "the timestamp is empty")
    if pd.api.types.is_datetime64_dtype(text.dtype):
        return _localize(text, timezone), text, problem.mask(empty, "the timestamp is empty")
    if pd.api.types.is_numeric_dtype(text.dtype) and not pd.api.types.is_bool_dtype(text.dtype):
        return _epoch(text, located), None, problem.mask(empty, "the timestamp is empty")
    strings = text.astype("string").str.strip()
    aware = strings.str.contains(_OFFSET).fillna(False).astype(bool)
    present = strings.notna() & (strings != "")
    if aware[present].any() and not aware[present].all():
        first_aware, first_naive = aware[present].idxmax(), (~aware[present]).idxmax()
        raise MarketDataError(
            f"{located.path} mixes timestamps with a UTC offset ({located.line_label} "
            f"{located.rows['line'][first_aware]}: {strings[first_aware]!r}) and without one ({located.line_label} "
            f"{located.rows['line'][first_naive]}: {strings[first_naive]!r}); export every timestamp the same way."
        )
    is_aware = bool(aware[present].any())
    parsed = pd.to_datetime(strings, format="ISO8601", errors="coerce", utc=is_aware)
    retry = parsed.isna() & present
    if retry.any():
        parsed = parsed.copy()
        try:
            parsed[retry] = pd.to_datetime(strings[retry], format="mixed", errors="coerce", utc=is_aware)
        except (TypeError, ValueError):  # a zone name pandas cannot place among naive stamps: unreadable rows
            pass
    problem = problem.mask(~present, "the timestamp is empty")
    unreadable = present & parsed.isna()
    if unreadable.any():
        problem[unreadable] = "the timestamp " + strings[unreadable].map(repr) + " is not a date and time"
    if is_aware:
        return parsed, None, problem
    return _localize(parsed, timezone), parsed, problem


def _localize(naive: pd.Series, timezone: str) -> pd.Series:
    # Wall-clock times that do not exist or repeat at a DST change (night hours) cannot be session bars.
    return naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")


def _epoch(numbers: pd.Series, located: BarFile) -> pd.Series:
    magnitude = float(numbers.abs().median()) if numbers.notna().any() else 0.0
    unit = "ns" if magnitude > 1e17 else "us" if magnitude > 1e14 else "ms" if magnitude > 1e11 else "s"
    stamps = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    if stamps.notna().any() and not (1970 <= stamps.min().year and stamps.max().year <= 2100):
        raise MarketDataError(
            f"{located.path} has numeric timestamps that are not Unix epoch times; export them as ISO dates with "
            "a UTC offset."
        )
    return stamps


def check_session_share(path: Path, stamps: pd.Series, naive: pd.Series, volume: pd.Series, timezone: str) -> None:
    """Refuse naive stamps that, read in ``timezone``, put most weekday bars outside the session."""
    if len(stamps) < 2 * stamps.dropna().dt.tz_convert(NEW_YORK).dt.normalize().nunique():
        return  # not intraday bars (daily ones sit at midnight): the spacing check refuses them with the reason
    share, weighed = _outside_share(stamps, volume)
    if share <= MAX_SHARE_OUTSIDE_SESSION:
        return
    hint = ""
    for other in ("UTC", NEW_YORK):
        if other != timezone:
            other_share, _ = _outside_share(_localize(naive, other), volume)
            if other_share <= MAX_SHARE_OUTSIDE_SESSION:
                hint = f" (read as {other}, {other_share:.0%} would be)"
                break
    raise MarketDataError(
        f"{path} has timestamps without a UTC offset, read as {timezone} (market_data.file_timezone), and "
        f"{share:.0%} of its weekday {'volume' if weighed else 'rows'} then falls outside the 09:30-16:00 New York "
        f"session; set market_data.file_timezone to the zone the file was written in{hint}."
    )


def _outside_share(stamps: pd.Series, volume: pd.Series) -> tuple[float, bool]:
    """Share of weekday bars outside the regular session, weighed by volume where the file has any."""
    local = stamps.dropna().dt.tz_convert(NEW_YORK)
    weekday = local[local.dt.dayofweek < 5]
    if weekday.empty:
        return 0.0, False
    minutes = weekday.dt.hour * 60 + weekday.dt.minute
    outside = (minutes < _SESSION_MINUTES[0]) | (minutes >= _SESSION_MINUTES[1])
    weights = volume.reindex(weekday.index).fillna(0.0).clip(lower=0.0)
    if weights.sum() > 0:
        return float(weights[outside].sum() / weights.sum()), True
    return float(outside.mean()), False
