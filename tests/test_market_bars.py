"""market_bars: in-process materialization into the store (each backend), single partitions and ranges."""

import pandas as pd
from dagster import materialize

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.market.calendar import parse_window_key, session_windows
from lstm_pipeline.partitions import contiguous_ranges, market_bars_key
from tests.helpers import range_tags, register_windows


def _rows(store) -> pd.DataFrame:
    rows = store.read_rows("market_bars")[["symbol", "window_start", "close", "source"]]
    return rows.sort_values(["symbol", "window_start"], ignore_index=True)


def test_single_partition_materializes_one_row(instance, store, simulated):
    keys = register_windows(instance, "2025-07-07", "2025-07-08")
    result = materialize(
        [market_bars],
        instance=instance,
        partition_key=str(market_bars_key("AAPL", keys[3])),
        resources={"market_data": simulated, "store": store},
    )
    assert result.success
    rows = _rows(store)
    assert len(rows) == 1
    assert rows["symbol"].tolist() == ["AAPL"]
    assert pd.Timestamp(rows["window_start"].iloc[0]) == parse_window_key(keys[3])
    assert rows["source"].iloc[0] == "simulated(seed=7)"
    metadata = result.asset_materializations_for_node("market_bars")[0].metadata
    assert metadata["row_count"].value == 1
    assert metadata["missing_windows"].value == 0


def test_range_backfill_is_one_run_one_request_per_symbol_and_idempotent(instance, store, simulated):
    keys = register_windows(instance, "2025-07-01", "2025-07-08")  # includes the 07-03 early close, 07-04 holiday
    tags = range_tags(["AAPL", "MSFT"], keys)
    resources = {"market_data": simulated, "store": store}
    first = materialize([market_bars], instance=instance, tags=tags, resources=resources)
    assert first.success
    rows = _rows(store)
    expected_windows = session_windows("2025-07-01", "2025-07-08")
    assert len(keys) == len(expected_windows) == 26 * 3 + 14  # 07-01, 07-02, 07-07 full; 07-03 early close
    assert len(rows) == 2 * len(keys)
    metadata = first.asset_materializations_for_node("market_bars")[0].metadata
    assert metadata["fetch_ranges"].value == 2  # one contiguous range per symbol, not one per window

    again = materialize([market_bars], instance=instance, tags=tags, resources=resources)
    assert again.success
    rerun = _rows(store)
    assert len(rerun) == len(rows)
    assert not rerun.duplicated(["symbol", "window_start"]).any()
    pd.testing.assert_frame_equal(rerun, rows)


def test_contiguous_ranges_split_only_on_real_gaps():
    windows = list(session_windows("2025-07-02", "2025-07-08"))
    # 07-03 closes early and 07-04 is a holiday: the last window of 07-03 and 07-07 09:30 are adjacent.
    ranges = contiguous_ranges(windows)
    assert len(ranges) == 1
    gappy = windows[:3] + windows[10:12]
    assert [(start, end) for start, end in contiguous_ranges(gappy)] == [
        (windows[0], windows[2] + pd.Timedelta(minutes=15)),
        (windows[10], windows[11] + pd.Timedelta(minutes=15)),
    ]
