"""NYSE regular-session 15-minute windows.

A window is named by its start in America/New_York and covers ``[start, start + 15 min)``. Windows exist only
inside the regular session (09:30-16:00, or the early close), never on weekends or exchange holidays. The
exchange calendar comes from ``exchange_calendars`` (XNYS), which carries holidays, early closes and history.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

NEW_YORK = "America/New_York"
WINDOW_MINUTES = 15
WINDOW = pd.Timedelta(minutes=WINDOW_MINUTES)
WINDOW_KEY_FORMAT = "%Y-%m-%d-%H:%M"
"""Partition-key format of a window: its New York start, the format Dagster uses for sub-daily windows."""
SLOTS_PER_SESSION = 26
"""15-minute windows in a full 09:30-16:00 session (an early close has fewer)."""
WEEK_DAYS = 7
"""A forecast week: calendar days, counted in New York wall-clock time."""


@functools.lru_cache(maxsize=1)
def _xnys():
    import exchange_calendars

    # The calendar's default span reaches back 20 years; a fixed wide span keeps lookups cheap and cached.
    return exchange_calendars.get_calendar("XNYS", start="2000-01-01")


def to_new_york(ts: datetime | pd.Timestamp | str) -> pd.Timestamp:
    """A timezone-aware New York timestamp; naive input is read as New York wall-clock time."""
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        return stamp.tz_localize(NEW_YORK)
    return stamp.tz_convert(NEW_YORK)


def sessions(start: date | str | pd.Timestamp, end: date | str | pd.Timestamp) -> pd.DataFrame:
    """Trading sessions between two dates (inclusive) with their New York open and close."""
    cal = _xnys()
    first = pd.Timestamp(pd.Timestamp(start).date())
    last = pd.Timestamp(pd.Timestamp(end).date())
    first = max(first, cal.first_session)
    last = min(last, cal.last_session)
    if first > last:
        return pd.DataFrame({"open": pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]"),
                             "close": pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]")})
    schedule = cal.schedule.loc[first:last, ["open", "close"]]
    return pd.DataFrame(
        {"open": schedule["open"].dt.tz_convert(NEW_YORK), "close": schedule["close"].dt.tz_convert(NEW_YORK)},
        index=schedule.index,
    )


def session_windows(start: datetime | pd.Timestamp | str, end: datetime | pd.Timestamp | str) -> pd.DatetimeIndex:
    """Starts of the session windows with ``start <= window_start < end`` (New York, ascending).

    Both bounds may be dates or timestamps; a date means its midnight in New York.
    """
    lo = to_new_york(start)
    hi = to_new_york(end)
    if hi <= lo:
        return pd.DatetimeIndex([], tz=NEW_YORK)
    days = sessions(lo.date(), hi.date())
    if days.empty:
        return pd.DatetimeIndex([], tz=NEW_YORK)
    opens = days["open"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    closes = days["close"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    counts = ((closes - opens) // WINDOW.to_timedelta64()).astype(np.int64)
    # Position of each window inside its session, without a Python loop over days.
    first_index = np.repeat(np.cumsum(counts) - counts, counts)
    slot = np.arange(int(counts.sum()), dtype=np.int64) - first_index
    starts_utc = opens.repeat(counts) + slot * WINDOW.to_timedelta64()
    starts = pd.DatetimeIndex(starts_utc).tz_localize("UTC").tz_convert(NEW_YORK)
    return starts[(starts >= lo) & (starts < hi)]


def windows_for_session(day: date | str | pd.Timestamp) -> pd.DatetimeIndex:
    """All window starts of one trading day; empty on weekends and holidays."""
    first = pd.Timestamp(pd.Timestamp(day).date())
    return session_windows(first, first + pd.Timedelta(days=1))


def closed_windows(
    now: datetime | pd.Timestamp, start: datetime | pd.Timestamp | str, delay: timedelta = timedelta(minutes=15)
) -> pd.DatetimeIndex:
    """Windows since ``start`` whose data is available at ``now``: closed at least ``delay`` ago.

    US equity data on free and delayed feeds arrives 15 minutes late, so the window ``[10:00, 10:15)`` can be
    fetched from 10:30.
    """
    cutoff = to_new_york(now) - pd.Timedelta(delay) - WINDOW
    windows = session_windows(start, cutoff + pd.Timedelta(minutes=1))
    return windows[windows <= cutoff]


def week_ahead_windows(as_of_window: datetime | pd.Timestamp | str) -> pd.DatetimeIndex:
    """The session windows a week-ahead forecast made as of ``as_of_window``'s close covers.

    Every session window starting after ``as_of_window`` up to and including the same New York wall-clock time
    seven calendar days later: 130 from the middle of a normal week, fewer across a holiday or an early close.
    The week is counted on the wall clock, not as 168 hours, so a daylight-saving change inside it moves no window
    in or out (168 hours after Thursday 15:00 is Thursday 16:00 across the spring change).
    """
    return _week_ahead_windows(to_new_york(as_of_window))


@functools.lru_cache(maxsize=4096)
def _week_ahead_windows(as_of: pd.Timestamp) -> pd.DatetimeIndex:
    # Calendar arithmetic on the naive wall clock, then back to New York (a 15-minute window start never falls in
    # the skipped or repeated hour of a DST change, which happens at 02:00).
    wall = as_of.tz_localize(None) + pd.Timedelta(days=WEEK_DAYS)
    last = wall.tz_localize(NEW_YORK, ambiguous=True, nonexistent="shift_forward")
    return session_windows(as_of + WINDOW, last + pd.Timedelta(minutes=1))


def week_ahead_spans(
    as_of_windows: Sequence[pd.Timestamp] | pd.DatetimeIndex,
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """``week_ahead_windows`` of many as-of windows as positions in one calendar: ``(calendar, first, end)``, where
    the week ahead of ``as_of_windows[i]`` is ``calendar[first[i]:end[i]]``.

    One calendar lookup for the whole span and two binary searches for all origins; positions rather than an index
    per origin, because building 6,500 small indexes (a year of origins) costs more than the lookup itself.
    """
    stamps = pd.DatetimeIndex(as_of_windows)
    if len(stamps) == 0:
        return pd.DatetimeIndex([], tz=NEW_YORK), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    stamps = stamps.tz_localize(NEW_YORK) if stamps.tz is None else stamps.tz_convert(NEW_YORK)
    walls = stamps.tz_localize(None) + pd.Timedelta(days=WEEK_DAYS)
    lasts = walls.tz_localize(NEW_YORK, ambiguous=np.ones(len(walls), dtype=bool), nonexistent="shift_forward")
    calendar = session_windows(stamps.min() + WINDOW, lasts.max() + pd.Timedelta(minutes=1))
    firsts = calendar.searchsorted(stamps, side="right").astype(np.int64)
    ends = calendar.searchsorted(lasts, side="right").astype(np.int64)
    return calendar, firsts, ends


def week_ahead_windows_many(as_of_windows: Sequence[pd.Timestamp] | pd.DatetimeIndex) -> list[pd.DatetimeIndex]:
    """``week_ahead_windows`` of many as-of windows at once, in their order (``week_ahead_spans`` as indexes)."""
    calendar, firsts, ends = week_ahead_spans(as_of_windows)
    return [calendar[first:end] for first, end in zip(firsts, ends, strict=True)]


def is_session_window(ts: datetime | pd.Timestamp) -> bool:
    """Whether ``ts`` is exactly the start of a session window."""
    stamp = to_new_york(ts)
    return bool(len(windows_for_session(stamp.date()).intersection(pd.DatetimeIndex([stamp]))))


def window_key(ts: datetime | pd.Timestamp) -> str:
    """Partition key of the window starting at ``ts``: its New York start as ``YYYY-MM-DD-HH:MM``."""
    return to_new_york(ts).strftime(WINDOW_KEY_FORMAT)


def parse_window_key(key: str) -> pd.Timestamp:
    """The New York start of a window from its partition key; a clear error on a malformed key."""
    try:
        naive = datetime.strptime(key, WINDOW_KEY_FORMAT)
    except ValueError as exc:
        raise ValueError(
            f"Window key {key!r} is not of the form YYYY-MM-DD-HH:MM (the window's New York start)."
        ) from exc
    return pd.Timestamp(naive).tz_localize(NEW_YORK)
