"""10 symbols x 1 year of session windows (about 65,000 partitions) stays exact and cheap to enumerate.

Timings live in benchmarks/bench_ingest.py; this test proves the partition set at that scale behaves.
"""

import subprocess
import sys

from dagster import StaticPartitionsDefinition, partition_loading_context

from lstm_pipeline.market.calendar import session_windows, window_key
from lstm_pipeline.partitions import build_market_bars_partitions, session_window_partitions

TEN_SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "SPY", "QQQ", "NVDA", "META", "JPM"]


def test_ten_symbols_by_one_year_of_windows(instance):
    keys = [window_key(stamp) for stamp in session_windows("2024-11-01", "2025-11-01")]
    instance.add_dynamic_partitions(session_window_partitions.name, keys)
    partitions = build_market_bars_partitions(StaticPartitionsDefinition(TEN_SYMBOLS))

    with partition_loading_context(dynamic_partitions_store=instance):
        count = partitions.get_num_partitions()
        all_keys = partitions.get_partition_keys()
        subset = partitions.empty_subset().with_partition_keys(all_keys[: 26 * 5])
    assert count == 10 * len(keys) == 64_640
    assert len(set(all_keys)) == count
    assert len(subset) == 130
    assert instance.get_dynamic_partitions(session_window_partitions.name)[:2] == keys[:2]


def test_definitions_load_without_tensorflow_or_great_expectations():
    # The forecasting package is imported too: its modules defer TensorFlow, Keras and matplotlib to call time;
    # the operations assets defer openpyxl.
    code = (
        "import sys, lstm_pipeline.definitions as d, lstm_pipeline.forecasting.forecaster, "
        "lstm_pipeline.forecasting.training; "
        "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib', 'great_expectations', 'openpyxl') "
        "if m in sys.modules]; "
        "assert not heavy, heavy; print(sorted(k.to_user_string() for k in d.defs.resolve_all_asset_keys()))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == str(
        sorted(["accuracy_metrics", "alerts", "backtest_report", "backups", "daily_report", "exports", "lstm_model",
                "market_bars", "predictions", "system_metrics", "trade_recommendations", "validations"])
    )
