"""The market sensor registers closed session windows and requests one run for the recent ones."""

import pandas as pd
import pytest
from dagster import AssetKey, SensorResult, SkipReason, build_sensor_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.sensors import market_windows
from lstm_pipeline.sensors.market_windows import market_windows_sensor, plan_market_update


@pytest.fixture
def frozen_now(monkeypatch):
    def freeze(text: str) -> None:
        monkeypatch.setattr(market_windows, "_now", lambda: pd.Timestamp(text, tz=NEW_YORK))

    return freeze


def test_plan_registers_history_and_fetches_only_recent_sessions():
    plan = plan_market_update(pd.Timestamp("2025-07-07 10:31", tz=NEW_YORK), set(), "2025-07-01", catch_up_sessions=1)
    assert plan.new_window_keys[0] == "2025-07-01-09:30"
    assert len(plan.new_window_keys) == 26 * 2 + 14 + 3
    assert plan.fetch_window_keys == ["2025-07-07-09:30", "2025-07-07-09:45", "2025-07-07-10:00"]


def test_plan_on_a_holiday_catches_up_the_previous_session():
    plan = plan_market_update(pd.Timestamp("2025-07-04 12:00", tz=NEW_YORK), set(), "2025-07-01", catch_up_sessions=1)
    assert plan.fetch_window_keys[0] == "2025-07-03-09:30" and plan.fetch_window_keys[-1] == "2025-07-03-12:45"


def test_plan_warms_up_only_sessions_not_registered_yet():
    now = pd.Timestamp("2025-07-09 10:01", tz=NEW_YORK)  # 09:30-09:45 is due 15 minutes after it closes
    first = plan_market_update(now, set(), "2025-07-01", catch_up_sessions=1, warmup_sessions=2)
    assert first.fetch_window_keys == ["2025-07-09-09:30"]
    assert first.warmup_window_keys[0] == "2025-07-07-09:30" and first.warmup_window_keys[-1] == "2025-07-08-15:45"
    assert len(first.warmup_window_keys) == 52
    # Back after the 07-08 close: only 07-09's window is new, its history is already there.
    registered = set(first.new_window_keys) - {"2025-07-09-09:30"}
    again = plan_market_update(now, registered, "2025-07-01", catch_up_sessions=1, warmup_sessions=2)
    assert again.fetch_window_keys == ["2025-07-09-09:30"] and again.warmup_window_keys == []


def test_sensor_adds_partitions_and_requests_a_range_run(instance, frozen_now, monkeypatch):
    monkeypatch.setenv("LSTM_PIPELINE_HISTORY_START", "2025-07-01")
    frozen_now("2025-07-07 10:31")
    result = market_windows_sensor(build_sensor_context(instance=instance))
    assert isinstance(result, SensorResult)
    (add_request,) = result.dynamic_partitions_requests
    assert add_request.partition_keys[-1] == "2025-07-07-10:00"
    warmup, run_request = result.run_requests
    # Two sessions of history first (07-02, and the 07-03 early close; 07-04 is a holiday), bars only.
    assert warmup.asset_selection == [AssetKey("market_bars")]
    assert warmup.tags[ASSET_PARTITION_RANGE_START_TAG] == "AAPL|2025-07-02-09:30"
    assert warmup.tags[ASSET_PARTITION_RANGE_END_TAG] == "TSLA|2025-07-03-12:45"
    assert run_request.asset_selection is None  # the whole job: bars, checks, predictions
    assert run_request.tags[ASSET_PARTITION_RANGE_START_TAG] == "AAPL|2025-07-07-09:30"
    assert run_request.tags[ASSET_PARTITION_RANGE_END_TAG] == "TSLA|2025-07-07-10:00"

    instance.add_dynamic_partitions("session_windows", list(add_request.partition_keys))
    frozen_now("2025-07-07 10:40")
    assert isinstance(market_windows_sensor(build_sensor_context(instance=instance)), SkipReason)
    frozen_now("2025-07-07 10:46")
    later = market_windows_sensor(build_sensor_context(instance=instance))
    assert list(later.dynamic_partitions_requests[0].partition_keys) == ["2025-07-07-10:15"]
    (next_run,) = later.run_requests  # the history is stored now: no warm-up
    assert next_run.tags[ASSET_PARTITION_RANGE_START_TAG] == "AAPL|2025-07-07-10:15"
