"""Lifecycle: the newest unexpired forecast of a symbol is active, older ones superseded by the next newer one,
forecasts whose horizon has passed expired; derived at read time from the rows and a given time."""

import pandas as pd
import pytest

from lstm_pipeline.evaluation.lifecycle import active_forecasts, prediction_lifecycle
from lstm_pipeline.market.calendar import NEW_YORK, session_windows, week_ahead_windows


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=NEW_YORK)


def rows(symbol: str, as_of: pd.Timestamp, steps: int | None = None) -> pd.DataFrame:
    targets = week_ahead_windows(as_of)[:steps]
    return pd.DataFrame(
        {
            "symbol": symbol,
            "as_of_window": as_of,
            "horizon_step": range(1, len(targets) + 1),
            "target_window": targets,
            "created_at": at("2025-08-01 12:00"),  # a backfill wrote them all later: it does not reorder them
        }
    )


def status_of(frame: pd.DataFrame) -> dict:
    return {(row.symbol, row.as_of_window): (row.status, row.superseded_by) for row in frame.itertuples()}


def test_newest_is_active_older_ones_are_superseded_by_the_next_newer():
    windows = session_windows("2025-07-07 10:00", "2025-07-07 11:00")  # 10:00 10:15 10:30 10:45
    predictions = pd.concat([rows("AAPL", window) for window in windows] + [rows("MSFT", windows[1])])
    status = status_of(prediction_lifecycle(predictions, now=at("2025-07-07 11:05")))
    newest_status, newest_by = status[("AAPL", windows[3])]
    assert newest_status == "active" and pd.isna(newest_by)
    for older, newer in zip(windows[:-1], windows[1:], strict=True):
        assert status[("AAPL", older)] == ("superseded", newer)
    assert status[("MSFT", windows[1])][0] == "active"  # another symbol has its own active forecast


def test_a_forecast_whose_last_target_has_passed_is_expired_even_if_newest():
    first, second = at("2025-07-07 10:00"), at("2025-07-07 10:15")
    predictions = pd.concat([rows("AAPL", first, steps=4), rows("AAPL", second, steps=26)])
    last_first = week_ahead_windows(first)[3]  # 11:00; it ends at 11:15
    lifecycle = prediction_lifecycle(predictions, now=last_first + pd.Timedelta(minutes=15))
    status = status_of(lifecycle)
    assert status[("AAPL", first)][0] == "expired" and pd.isna(status[("AAPL", first)][1])
    assert status[("AAPL", second)][0] == "active"
    assert lifecycle.set_index("as_of_window").loc[first, "expires_at"] == last_first + pd.Timedelta(minutes=15)
    # One minute earlier its last target window was still open: superseded, not expired.
    before = status_of(prediction_lifecycle(predictions, now=last_first + pd.Timedelta(minutes=14)))
    assert before[("AAPL", first)] == ("superseded", second)
    # A week later everything has expired: nothing is active.
    later = prediction_lifecycle(predictions, now=at("2025-07-15 16:00"))
    assert set(later["status"]) == {"expired"}


def test_a_forecast_made_after_now_is_not_yet_there():
    first, second = at("2025-07-07 10:00"), at("2025-07-08 10:00")
    predictions = pd.concat([rows("AAPL", first), rows("AAPL", second)])
    lifecycle = prediction_lifecycle(predictions, now=at("2025-07-07 12:00"))
    assert list(lifecycle["as_of_window"]) == [first] and list(lifecycle["status"]) == ["active"]


def test_active_forecasts_returns_the_rows_of_each_symbols_active_forecast():
    windows = session_windows("2025-07-07 10:00", "2025-07-07 10:30")
    predictions = pd.concat([rows("AAPL", window) for window in windows] + [rows("MSFT", windows[0])])
    active = active_forecasts(predictions, now=at("2025-07-07 11:00"))
    assert set(zip(active["symbol"], active["as_of_window"], strict=True)) == {("AAPL", windows[1]),
                                                                               ("MSFT", windows[0])}
    assert len(active) == 2 * len(week_ahead_windows(windows[0]))


def test_a_naive_now_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="has no time zone; pass an aware timestamp"):
        prediction_lifecycle(rows("AAPL", at("2025-07-07 10:00")), now=pd.Timestamp("2025-07-07 11:00"))
