"""Ingestion and partition-scale figures, measured side by side in one run.

1. Definitions load time (fresh interpreter each time, median of 3).
2. 10 symbols x 1 year of session windows (~65,000 partitions): count, enumerate, subset.
3. A single-run backfill of 5 symbols x 20 trading days (2,600 symbol-windows) from the simulated market, against
   one run per partition (the naive way). One run per partition costs the same per partition whatever the count,
   so it is measured on a sample (``--naive-sample``, default 60) and reported per partition and extrapolated.
   Peak memory is the child process's max RSS.

    python benchmarks/bench_ingest.py
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore")

CHILD = r"""
import json, resource, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
import logging; logging.disable(logging.WARNING)
from dagster import instance_for_test, materialize
from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.market.calendar import session_windows, window_key
from lstm_pipeline.partitions import market_bars_key, partition_range_tags
from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.resources.storage import PipelineStore

mode, sample = sys.argv[1], int(sys.argv[2])
symbols = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]
keys = [window_key(w) for w in session_windows("2025-06-02", "2025-07-01")][: 20 * 26]
with tempfile.TemporaryDirectory() as tmp, instance_for_test() as instance:
    instance.add_dynamic_partitions("session_windows", keys)
    resources = {"market_data": SimulatedMarketData(seed=0), "store": PipelineStore.for_path(f"{tmp}/b.duckdb")}
    start = time.perf_counter()
    if mode == "single_run":
        tags = partition_range_tags(symbols[0], symbols[-1], keys[0], keys[-1])
        result = materialize([market_bars], instance=instance, tags=tags, resources=resources)
        assert result.success
        meta = result.asset_materializations_for_node("market_bars")[0].metadata
        own = meta["fetch_seconds"].value + meta["write_seconds"].value
        partitions = len(symbols) * len(keys)
    else:
        partitions, own = 0, 0.0
        for symbol in symbols:
            for key in keys:
                if partitions >= sample:
                    break
                assert materialize([market_bars], instance=instance, resources=resources,
                                   partition_key=str(market_bars_key(symbol, key))).success
                partitions += 1
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "partitions": partitions, "own_seconds": own,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load_time() -> float:
    code = "import time; t = time.perf_counter(); import lstm_pipeline.definitions; print(time.perf_counter() - t)"
    runs = [float(subprocess.check_output([sys.executable, "-W", "ignore", "-c", code]).decode().split()[-1])
            for _ in range(3)]
    return statistics.median(runs)


def partition_scale() -> dict[str, float]:
    from dagster import StaticPartitionsDefinition, instance_for_test, partition_loading_context

    from lstm_pipeline.market.calendar import session_windows, window_key
    from lstm_pipeline.partitions import build_market_bars_partitions

    keys = [window_key(stamp) for stamp in session_windows("2024-11-01", "2025-11-01")]
    symbols = StaticPartitionsDefinition(["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "SPY", "QQQ", "NVDA", "META", "JPM"])
    partitions = build_market_bars_partitions(symbols)
    with instance_for_test() as instance:
        t = time.perf_counter()
        instance.add_dynamic_partitions("session_windows", keys)
        add = time.perf_counter() - t
        with partition_loading_context(dynamic_partitions_store=instance):
            t = time.perf_counter()
            count = partitions.get_num_partitions()
            count_s = time.perf_counter() - t
            t = time.perf_counter()
            all_keys = partitions.get_partition_keys()
            keys_s = time.perf_counter() - t
            t = time.perf_counter()
            subset = partitions.empty_subset().with_partition_keys(all_keys[-26 * 10:])
            subset_s = time.perf_counter() - t
    assert len(subset) == 260
    return {"partitions": count, "register_s": add, "count_s": count_s, "enumerate_s": keys_s, "subset_s": subset_s}


def run_child(mode: str, sample: int) -> dict:
    out = subprocess.check_output([sys.executable, "-c", CHILD, mode, str(sample)], stderr=subprocess.DEVNULL)
    return json.loads(out.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--naive-sample", type=int, default=60, help="partitions run one run each (measured)")
    args = parser.parse_args()

    print(f"definitions load (median of 3 fresh interpreters): {load_time():.2f} s")
    scale = partition_scale()
    print(
        f"{scale['partitions']:,} partitions (10 symbols x 1 year): register {scale['register_s']:.2f} s, "
        f"count {scale['count_s'] * 1000:.1f} ms, enumerate {scale['enumerate_s'] * 1000:.0f} ms, "
        f"subset {scale['subset_s'] * 1000:.1f} ms"
    )
    single = run_child("single_run", 0)
    naive = run_child("one_run_each", args.naive_sample)
    per_naive = naive["seconds"] / naive["partitions"]
    extrapolated = per_naive * single["partitions"]
    print(f"\nbackfill of {single['partitions']:,} symbol-windows (5 symbols x 20 trading days), simulated market")
    print(f"{'way':<34}{'wall s':>10}{'s/partition':>14}{'peak RSS MiB':>14}")
    print(f"{'single run (BackfillPolicy)':<34}{single['seconds']:>10.1f}"
          f"{single['seconds'] / single['partitions']:>14.4f}{single['peak_rss_mib']:>14.0f}")
    print(f"{'one run per partition (measured)':<34}{naive['seconds']:>10.1f}{per_naive:>14.4f}"
          f"{naive['peak_rss_mib']:>14.0f}   ({naive['partitions']} partitions)")
    print(f"{'one run per partition (all 2,600)':<34}{extrapolated:>10.0f}{per_naive:>14.4f}{'':>14}   (extrapolated)")
    print(f"ratio: single run is {extrapolated / single['seconds']:.0f}x faster than one run per partition")
    print(f"of the single run's {single['seconds']:.1f} s, fetching and writing the bars took "
          f"{single['own_seconds']:.2f} s; the rest is Dagster recording one planned and one materialization event "
          "per partition in its SQLite event log")


if __name__ == "__main__":
    main()
