"""``predictions`` backfill: every as-of window through the compiled loop's batch axis at once, against one call per
as-of window (the way the asset worked before), side by side in one run.

The workload: a ``predictions`` backfill of 5 symbols x 20 sessions (2,600 partitions) in ONE run
(``BackfillPolicy.single_run``), with the shipped models (2-layer 32-unit LSTMs, lookback 48; three direct, two
recursive, so two architectures) on simulated bars stored in a temporary DuckDB file. Each way is one
``dagster.materialize`` of the real asset on its own DuckDB file:

- **per window** (before): the asset with its pure forecasting function replaced by a faithful copy of the old loop:
  for each as-of window, the latest bars up to it and one ``forecast_windows`` call for the symbols sharing it (one
  compiled call per architecture per window);
- **batched** (after): the asset as it is (``forecast_windows`` once for the run).

Printed: forecast compute seconds (the asset's ``forecast_seconds``: the pure function alone), compiled calls, total
wall time of the run, and the largest difference between the two ways' stored rows (must be <= 1e-6).

    python benchmarks/bench_predictions.py
"""

import logging
import os
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.disable(logging.WARNING)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from dagster import instance_for_test, materialize  # noqa: E402

import lstm_pipeline.assets.predictions as predictions_module  # noqa: E402
from lstm_pipeline.assets.predictions import predictions  # noqa: E402
from lstm_pipeline.forecasting.batch import WindowForecasts, forecast_windows  # noqa: E402
from lstm_pipeline.market.calendar import session_windows, window_key  # noqa: E402
from lstm_pipeline.market.simulated import simulate_bars  # noqa: E402
from lstm_pipeline.partitions import partition_range_tags  # noqa: E402
from lstm_pipeline.resources.model_store import LocalModelStore  # noqa: E402
from lstm_pipeline.resources.storage import PipelineStore  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]
MODELS = Path(__file__).resolve().parents[1] / "models"
KEYS = [window_key(stamp) for stamp in session_windows("2025-06-02", "2025-07-01")][: 20 * 26]


def per_window(wanted, models, bars, horizon_steps=None, unavailable=None, **_):
    """The pre-batching loop: one call per as-of window for the symbols that share it, each on the latest bars up to
    that window (the old asset read ``2 * (lookback + 1) + 26`` rows per symbol per window)."""
    by_window: dict[pd.Timestamp, list[str]] = defaultdict(list)
    for symbol, windows in wanted.items():
        for window in windows:
            by_window[window].append(symbol)
    stamps = {symbol: pd.DatetimeIndex(frame["window_start"]) for symbol, frame in bars.items()}
    frames, skipped, calls = [], {}, 0
    for window, symbols in sorted(by_window.items()):
        known = {}
        for symbol in symbols:
            if symbol in bars:
                rows = 2 * (models[symbol].config.lookback_steps + 1) + 26 if symbol in models else 0
                known[symbol] = bars[symbol][stamps[symbol] <= window].iloc[-rows:]
        result = forecast_windows({symbol: [window] for symbol in symbols}, models, known, horizon_steps, unavailable)
        frames.append(result.rows)
        skipped.update(result.skipped)
        calls += result.compiled_calls
    rows = pd.concat(frames, ignore_index=True).sort_values(["symbol", "as_of_window", "horizon_step"])
    return WindowForecasts(rows=rows.reset_index(drop=True), skipped=skipped, compiled_calls=calls)


def backfill(folder: Path, way: str, keys: list[str] = KEYS) -> dict:
    """One predictions run over ``keys`` x the 5 symbols; returns its metadata, wall seconds and stored rows."""
    store = PipelineStore.for_path(folder / f"{way}.duckdb")
    windows = session_windows("2025-05-19", "2025-07-01")  # two weeks of lookback margin before the first key
    bars = pd.concat([simulate_bars(symbol, windows, seed=0) for symbol in SYMBOLS], ignore_index=True)
    store.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
    original = predictions_module.forecast_windows
    if way == "per window":
        predictions_module.forecast_windows = per_window
    try:
        with instance_for_test() as instance:
            instance.add_dynamic_partitions("session_windows", keys)
            started = time.perf_counter()
            result = materialize(
                [predictions],
                instance=instance,
                tags=partition_range_tags(SYMBOLS[0], SYMBOLS[-1], keys[0], keys[-1]),
                resources={"store": store, "model_store": LocalModelStore(models_dir=str(MODELS))},
            )
            wall = time.perf_counter() - started
    finally:
        predictions_module.forecast_windows = original
    assert result.success
    materialization = result.asset_materializations_for_node("predictions")[0]  # one per partition, same metadata
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    rows = store.read_predictions().sort_values(["symbol", "as_of_window", "horizon_step"], ignore_index=True)
    return {"metadata": metadata, "wall": wall, "rows": rows}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up outside the timings: TensorFlow, model loads, tracing, Dagster's and DuckDB's first use are paid
        # once per process either way.
        (Path(tmp) / "warm-up").mkdir()
        for way in ("batched", "per window"):
            backfill(Path(tmp) / "warm-up", way, KEYS[-2:])
        results = {way: backfill(Path(tmp), way) for way in ("per window", "batched")}
    before, after = results["per window"], results["batched"]
    same_keys = before["rows"][["symbol", "as_of_window", "horizon_step", "target_window"]].equals(
        after["rows"][["symbol", "as_of_window", "horizon_step", "target_window"]]
    )
    columns = ["predicted_close", "lower_80", "upper_80", "lower_95", "upper_95", "last_close"]
    difference = float(np.nanmax(np.abs(before["rows"][columns].to_numpy() - after["rows"][columns].to_numpy())))

    print(f"predictions backfill: {len(SYMBOLS)} symbols x 20 sessions = {len(SYMBOLS) * len(KEYS):,} partitions "
          f"in one run, shipped models (lookback 48; 3 direct + 2 recursive), {os.cpu_count()} CPU cores")
    print(f"{'way':<28}{'compiled calls':>15}{'forecast s':>12}{'run wall s':>12}{'rows':>10}")
    for label, figures in (("per as-of window (before)", before), ("batched (after)", after)):
        meta = figures["metadata"]
        print(f"{label:<28}{meta['compiled_calls']:>15,}{meta['forecast_seconds']:>12.2f}{figures['wall']:>12.1f}"
              f"{meta['rows']:>10,}")
    speedup = before["metadata"]["forecast_seconds"] / after["metadata"]["forecast_seconds"]
    print(f"forecast compute: batched is {speedup:.1f}x faster; run wall time {before['wall']:.1f} s -> "
          f"{after['wall']:.1f} s (the rest of each run is the same work: reading bars, writing the rows, and "
          "Dagster's per-partition events)")
    print(f"same rows: keys identical {same_keys}, largest difference {difference:.2e} (must be <= 1e-6)")
    assert same_keys and difference <= 1e-6


if __name__ == "__main__":
    main()
