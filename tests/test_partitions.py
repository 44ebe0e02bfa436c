"""The window vocabulary: ranges follow time order whatever order windows were registered in."""

import warnings

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    BackfillPolicy,
    BetaWarning,
    MaterializeResult,
    PartitionKeyRange,
    asset,
    materialize,
    partition_loading_context,
)

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    contiguous_ranges,
    market_bars_key,
    market_bars_partitions,
    partition_range_tags,
    register_session_windows,
    registered_in_order,
    requested_windows,
    session_window_partitions,
    window_registration,
)
from tests.helpers import range_tags, window_keys

LATER = ("2025-07-07", "2025-07-08")
EARLIER = ("2025-07-03", "2025-07-07")  # the 07-03 early close (07-04 is a holiday)


with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)

    @asset(partitions_def=market_bars_partitions, backfill_policy=BackfillPolicy.single_run())
    def market_bars(context) -> MaterializeResult:
        """Stands in for the real asset: records the partition keys a range run resolves to."""
        return MaterializeResult(metadata={"partition_keys": [str(key) for key in context.partition_keys]})


def test_range_tags_are_dagsters_partition_range_tags():
    tags = partition_range_tags("AAPL", "MSFT", "2025-07-07-09:30", "2025-07-07-15:45")
    assert tags == {
        "dagster/asset_partition_range_start": "AAPL|2025-07-07-09:30",
        "dagster/asset_partition_range_end": "MSFT|2025-07-07-15:45",
    }
    assert (PARTITION_RANGE_START_TAG, PARTITION_RANGE_END_TAG) == tuple(tags)
    with pytest.raises(ValueError, match="ends before it starts"):
        partition_range_tags("AAPL", "AAPL", "2025-07-07-15:45", "2025-07-07-09:30")


def test_requested_windows_are_sorted_whatever_order_keys_come_in():
    keys = ["MSFT|2025-07-07-10:00", "AAPL|2025-07-07-09:45", "AAPL|2025-07-01-09:30", "AAPL|2025-07-07-09:45"]
    wanted = requested_windows(keys)
    assert list(wanted) == ["AAPL", "MSFT"]
    assert wanted["AAPL"] == [pd.Timestamp(f"2025-07-0{d}", tz=NEW_YORK) for d in ("1 09:30", "7 09:45")]
    shuffled = [pd.Timestamp(f"2025-07-07 {t}", tz=NEW_YORK) for t in ("10:00", "09:30", "09:45")]
    assert contiguous_ranges(shuffled) == [
        (pd.Timestamp("2025-07-07 09:30", tz=NEW_YORK), pd.Timestamp("2025-07-07 10:15", tz=NEW_YORK))
    ]


def test_new_later_windows_are_only_appended():
    registered = window_keys(*EARLIER)
    plan = window_registration(registered, window_keys(*LATER))
    assert plan.to_delete == [] and plan.to_add == window_keys(*LATER) and not plan.reorders
    assert window_registration(registered, registered[:3]).to_add == []


def test_a_range_follows_time_order_when_earlier_windows_are_registered_later(instance):
    register_session_windows(instance, window_keys(*LATER))
    register_session_windows(instance, window_keys(*EARLIER))
    registered = list(instance.get_dynamic_partitions(session_window_partitions.name))
    everything = window_keys(EARLIER[0], LATER[1])
    assert registered == everything

    first, last = str(market_bars_key("AAPL", everything[0])), str(market_bars_key("AAPL", everything[-1]))
    with partition_loading_context(dynamic_partitions_store=instance):
        keys = market_bars_partitions.get_partition_keys_in_range(PartitionKeyRange(first, last))
    assert [str(key).split("|")[1] for key in keys] == everything

    result = materialize([market_bars], instance=instance, tags=range_tags(["AAPL"], everything))
    resolved = result.asset_materializations_for_node("market_bars")[0].metadata["partition_keys"].value
    assert requested_windows(resolved)["AAPL"][0] == pd.Timestamp("2025-07-03 09:30", tz=NEW_YORK)
    assert len(resolved) == len(everything)


def test_moving_windows_keeps_their_materialization_history(instance):
    instance.add_dynamic_partitions(session_window_partitions.name, window_keys(*LATER))
    done = str(market_bars_key("AAPL", "2025-07-07-09:30"))
    instance.report_runless_asset_event(AssetMaterialization(AssetKey("market_bars"), partition=done))
    instance.add_dynamic_partitions(session_window_partitions.name, window_keys(*EARLIER))  # the old, broken order
    registered = instance.get_dynamic_partitions(session_window_partitions.name)
    assert not registered_in_order(registered, window_keys("2025-07-03", "2025-07-08"))

    moved = register_session_windows(instance, [])  # repairs the order: from the first misplaced key on
    assert moved == window_keys(EARLIER[0], LATER[1])
    assert instance.get_dynamic_partitions(session_window_partitions.name) == moved
    assert done in instance.get_materialized_partitions(AssetKey("market_bars"))
