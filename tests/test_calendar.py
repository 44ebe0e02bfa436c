"""NYSE session windows: holidays, early closes, DST, and the delayed-data cutoff."""

import pandas as pd
import pytest

from lstm_pipeline.market.calendar import (
    NEW_YORK,
    SLOTS_PER_SESSION,
    closed_windows,
    is_session_window,
    parse_window_key,
    session_windows,
    week_ahead_windows,
    window_key,
    windows_for_session,
)


def test_regular_day_has_26_windows_from_0930_to_1545():
    windows = windows_for_session("2025-07-07")
    assert len(windows) == 26
    assert window_key(windows[0]) == "2025-07-07-09:30"
    assert window_key(windows[-1]) == "2025-07-07-15:45"


@pytest.mark.parametrize("holiday", ["2025-07-04", "2025-12-25", "2025-01-01", "2025-11-27", "2025-04-18"])
def test_holiday_has_no_windows(holiday):
    assert len(windows_for_session(holiday)) == 0


def test_weekend_has_no_windows():
    assert len(session_windows("2025-07-05", "2025-07-07")) == 0


def test_early_close_ends_at_1300():
    windows = windows_for_session("2025-07-03")
    assert len(windows) == 14
    assert windows[-1] + pd.Timedelta(minutes=15) == pd.Timestamp("2025-07-03 13:00", tz=NEW_YORK)


@pytest.mark.parametrize("day", ["2025-03-10", "2025-11-03"])  # the Mondays after the DST changes
def test_dst_change_keeps_26_windows_at_new_york_times(day):
    windows = windows_for_session(day)
    assert len(windows) == 26
    assert windows[0].strftime("%H:%M") == "09:30"
    assert all(stamp.strftime("%H:%M") != "16:00" for stamp in windows)


def test_windows_utc_offsets_follow_dst():
    assert windows_for_session("2025-03-07")[0].tz_convert("UTC").hour == 14  # EST: 09:30 = 14:30 UTC
    assert windows_for_session("2025-03-10")[0].tz_convert("UTC").hour == 13  # EDT: 09:30 = 13:30 UTC


def test_closed_windows_respect_the_15_minute_delay():
    now = pd.Timestamp("2025-07-07 10:29", tz=NEW_YORK)
    assert [window_key(w) for w in closed_windows(now, "2025-07-07")] == ["2025-07-07-09:30", "2025-07-07-09:45"]
    now = pd.Timestamp("2025-07-07 10:30", tz=NEW_YORK)
    assert window_key(closed_windows(now, "2025-07-07")[-1]) == "2025-07-07-10:00"


def test_window_keys_round_trip_and_reject_garbage():
    stamp = pd.Timestamp("2025-11-03 09:30", tz=NEW_YORK)
    assert parse_window_key(window_key(stamp)) == stamp
    assert is_session_window(stamp)
    assert not is_session_window(pd.Timestamp("2025-11-03 09:00", tz=NEW_YORK))
    with pytest.raises(ValueError, match="YYYY-MM-DD-HH:MM"):
        parse_window_key("2025/11/03 09:30")


@pytest.mark.parametrize(
    ("as_of", "last"),
    [
        ("2026-03-05 15:00", "2026-03-12 15:00"),  # clocks go forward on Sunday 2026-03-08
        ("2026-10-29 15:00", "2026-11-05 15:00"),  # clocks go back on Sunday 2026-11-01
        ("2026-07-08 11:00", "2026-07-15 11:00"),  # no change
    ],
)
def test_a_week_ahead_ends_at_the_same_new_york_wall_clock_time_across_dst(as_of, last):
    week = week_ahead_windows(pd.Timestamp(as_of, tz=NEW_YORK))
    assert len(week) == 5 * SLOTS_PER_SESSION == 130
    assert week[0] == pd.Timestamp(as_of, tz=NEW_YORK) + pd.Timedelta(minutes=15)
    assert week[-1] == pd.Timestamp(last, tz=NEW_YORK)


def test_a_thanksgiving_week_ahead_skips_the_holiday_and_stops_at_the_early_close():
    week = week_ahead_windows(pd.Timestamp("2026-11-24 10:00", tz=NEW_YORK))
    days = pd.Series(week.date).value_counts().sort_index()
    assert [str(day) for day in days.index] == ["2026-11-24", "2026-11-25", "2026-11-27", "2026-11-30", "2026-12-01"]
    # the rest of Tuesday, Wednesday, Thanksgiving shut, Friday closes 13:00 (14 windows), Monday, Tuesday to 10:00
    assert list(days) == [23, 26, 14, 26, 3] and len(week) == 92
    assert week[-1] == pd.Timestamp("2026-12-01 10:00", tz=NEW_YORK)


def test_a_week_ahead_from_an_early_close_starts_on_the_next_session():
    # as of the last window of the 2026-11-27 early close (12:45): nothing more that day, then a week of sessions
    week = week_ahead_windows(pd.Timestamp("2026-11-27 12:45", tz=NEW_YORK))
    assert week[0] == pd.Timestamp("2026-11-30 09:30", tz=NEW_YORK)
    assert week[-1] == pd.Timestamp("2026-12-04 12:45", tz=NEW_YORK)
    assert len(week) == 4 * 26 + 14  # Mon-Thu whole, Friday 2026-12-04 09:30 .. 12:45 inclusive


def test_week_ahead_windows_of_many_origins_equal_one_at_a_time_across_dst_holidays_and_early_closes():
    from lstm_pipeline.market.calendar import week_ahead_windows, week_ahead_windows_many

    # The spring DST change, then the autumn one and Thanksgiving week (a holiday and an early close).
    origins = session_windows(pd.Timestamp("2026-02-27"), pd.Timestamp("2026-03-12"))
    origins = origins.append(session_windows(pd.Timestamp("2026-10-26"), pd.Timestamp("2026-12-01")))
    many = week_ahead_windows_many(list(reversed(origins)))  # any order, answered in the order given
    for origin, windows in zip(reversed(origins), many, strict=True):
        assert windows.equals(week_ahead_windows(origin)), origin
    assert week_ahead_windows_many([]) == []
