"""The market sensor registers closed session windows in time order and requests one run for the recent ones."""

import pandas as pd
from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    DeleteDynamicPartitionsRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, session_window_partitions
from lstm_pipeline.sensors.market_windows import build_market_windows_sensor, plan_market_update
from lstm_pipeline.settings import load_settings
from tests.helpers import FrozenClock, window_keys


def market_sensor(clock: FrozenClock, history_start: str = "2025-07-01"):
    return build_market_windows_sensor(load_settings(environ={"LSTM_PIPELINE_HISTORY_START": history_start}), clock)


def apply(instance, result: SensorResult) -> None:
    """What the sensor daemon does with the tick's partition requests: in order, deletes before adds."""
    for request in result.dynamic_partitions_requests:
        if isinstance(request, DeleteDynamicPartitionsRequest):
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
        else:
            assert isinstance(request, AddDynamicPartitionsRequest)
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


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


def test_sensor_adds_partitions_and_requests_a_range_run(instance):
    clock = FrozenClock("2025-07-07 10:31")
    market_windows_sensor = market_sensor(clock)
    result = market_windows_sensor(build_sensor_context(instance=instance))
    assert isinstance(result, SensorResult)
    (add_request,) = result.dynamic_partitions_requests
    assert add_request.partition_keys[-1] == "2025-07-07-10:00"
    warmup, run_request = result.run_requests
    # Two sessions of history first (07-02, and the 07-03 early close; 07-04 is a holiday), bars only.
    assert warmup.asset_selection == [AssetKey("market_bars")]
    assert warmup.tags[PARTITION_RANGE_START_TAG] == "AAPL|2025-07-02-09:30"
    assert warmup.tags[PARTITION_RANGE_END_TAG] == "TSLA|2025-07-03-12:45"
    assert run_request.asset_selection is None  # the whole job: bars, checks, predictions
    assert run_request.tags[PARTITION_RANGE_START_TAG] == "AAPL|2025-07-07-09:30"
    assert run_request.tags[PARTITION_RANGE_END_TAG] == "TSLA|2025-07-07-10:00"

    instance.add_dynamic_partitions("session_windows", list(add_request.partition_keys))
    clock.set("2025-07-07 10:40")
    assert isinstance(market_windows_sensor(build_sensor_context(instance=instance)), SkipReason)
    clock.set("2025-07-07 10:46")
    later = market_windows_sensor(build_sensor_context(instance=instance))
    assert list(later.dynamic_partitions_requests[0].partition_keys) == ["2025-07-07-10:15"]
    (next_run,) = later.run_requests  # the history is stored now: no warm-up
    assert next_run.tags[PARTITION_RANGE_START_TAG] == "AAPL|2025-07-07-10:15"


def test_an_earlier_history_start_registers_its_windows_before_the_later_ones(instance):
    clock = FrozenClock("2025-07-08 10:31")
    apply(instance, market_sensor(clock, history_start="2025-07-07")(build_sensor_context(instance=instance)))
    later = list(instance.get_dynamic_partitions(session_window_partitions.name))
    assert later[0] == "2025-07-07-09:30"

    # The user moves history_start a week earlier: the new windows must come first, not after 07-08.
    result = market_sensor(clock, history_start="2025-07-01")(build_sensor_context(instance=instance))
    delete, add = result.dynamic_partitions_requests
    assert isinstance(delete, DeleteDynamicPartitionsRequest) and list(delete.partition_keys) == later
    assert list(add.partition_keys) == window_keys("2025-07-01", "2025-07-07") + later
    assert result.run_requests == []  # the moved windows are fetched already; the new ones are history
    apply(instance, result)
    registered = list(instance.get_dynamic_partitions(session_window_partitions.name))
    assert registered == sorted(registered) and registered[0] == "2025-07-01-09:30"

    # Next tick: nothing new, nothing to move.
    assert isinstance(market_sensor(clock, "2025-07-01")(build_sensor_context(instance=instance)), SkipReason)


def test_windows_registered_out_of_order_before_the_fix_are_put_back_in_order(instance):
    instance.add_dynamic_partitions(session_window_partitions.name, window_keys("2025-07-07", "2025-07-08"))
    instance.add_dynamic_partitions(session_window_partitions.name, window_keys("2025-07-01", "2025-07-03"))
    clock = FrozenClock("2025-07-07 17:00")  # every window up to the 07-07 close is registered already
    result = market_sensor(clock)(build_sensor_context(instance=instance))
    assert isinstance(result, SensorResult) and result.run_requests == []
    apply(instance, result)
    registered = list(instance.get_dynamic_partitions(session_window_partitions.name))
    assert registered == window_keys("2025-07-01", "2025-07-08")
