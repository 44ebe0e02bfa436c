"""market_close_schedule: after the close, one run re-fetches the whole session for every symbol."""

from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import PartitionKeyRange, RunRequest, SkipReason, build_schedule_context, partition_loading_context

from lstm_pipeline.definitions import defs, settings
from lstm_pipeline.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    market_bars_partitions,
    partition_range_tags,
    session_window_partitions,
)
from tests.helpers import register_windows, window_keys

market_close_schedule = defs.resolve_schedule_def("market_close_schedule")


def tick(instance, day: str):
    when = datetime.fromisoformat(f"{day} 16:40").replace(tzinfo=ZoneInfo("America/New_York"))
    return market_close_schedule(build_schedule_context(instance=instance, scheduled_execution_time=when))


def resolved(instance, tags: dict[str, str]) -> list[str]:
    with partition_loading_context(dynamic_partitions_store=instance):
        keys = market_bars_partitions.get_partition_keys_in_range(
            PartitionKeyRange(tags[PARTITION_RANGE_START_TAG], tags[PARTITION_RANGE_END_TAG])
        )
    return [str(key) for key in keys]


def test_a_trading_day_refetches_its_session_for_every_symbol(instance):
    register_windows(instance, "2025-07-01", "2025-07-09")  # the sessions around it are registered too
    request = tick(instance, "2025-07-07")
    assert isinstance(request, RunRequest)
    assert request.run_key == "market_close:2025-07-07"
    symbols = list(settings.symbols)
    assert request.tags == partition_range_tags(symbols[0], symbols[-1], "2025-07-07-09:30", "2025-07-07-15:45")
    session = window_keys("2025-07-07", "2025-07-08")
    assert sorted(resolved(instance, request.tags)) == sorted(f"{s}|{w}" for s in symbols for w in session)


def test_an_early_close_ends_its_range_at_the_last_window(instance):
    register_windows(instance, "2025-07-03", "2025-07-04")
    request = tick(instance, "2025-07-03")
    assert request.tags[PARTITION_RANGE_END_TAG].endswith("|2025-07-03-12:45")
    assert len(resolved(instance, request.tags)) == 14 * len(settings.symbols)


def test_a_holiday_is_skipped(instance):
    register_windows(instance, "2025-07-01", "2025-07-09")
    skip = tick(instance, "2025-07-04")
    assert isinstance(skip, SkipReason) and "2025-07-04 is not an NYSE trading day" in skip.skip_message


def test_a_session_whose_windows_are_not_registered_yet_is_skipped(instance):
    register_windows(instance, "2025-07-01", "2025-07-03")  # the sensor has not reached 07-07 yet
    skip = tick(instance, "2025-07-07")
    assert isinstance(skip, SkipReason)
    assert "26 window(s) of 2025-07-07 are not registered yet" in skip.skip_message


def test_a_session_registered_out_of_time_order_is_skipped_not_run_on_a_wrong_range(instance):
    instance.add_dynamic_partitions(session_window_partitions.name, window_keys("2025-07-08", "2025-07-09"))
    instance.add_dynamic_partitions(session_window_partitions.name, window_keys("2025-07-07", "2025-07-08"))
    instance.add_dynamic_partitions(session_window_partitions.name, window_keys("2025-07-01", "2025-07-03"))
    # 07-07's windows are consecutive, so its own range still resolves to exactly them.
    assert isinstance(tick(instance, "2025-07-07"), RunRequest)
    instance.delete_dynamic_partition(session_window_partitions.name, "2025-07-08-12:00")
    instance.add_dynamic_partitions(session_window_partitions.name, ["2025-07-08-12:00"])
    skip = tick(instance, "2025-07-08")
    assert isinstance(skip, SkipReason) and "not registered in time order" in skip.skip_message
