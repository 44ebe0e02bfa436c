"""The whole workflow chain under load: a single-run backfill, one live tick, and whether confidence separates.

The workload: 10 symbols (the five shipped models, and five more served by copies of them under new tickers: each
copy's config names its ticker and records the content hash of its files, so the store loads it like any model) on
the simulated market, a temporary DuckDB file and a temporary Dagster instance (SQLite event log, as ``dagster dev``
keeps it). Three sessions of bars are stored first (bars only) so the first as-of windows read a full lookback.

(b) **Backfill**: ONE run of the ``market_bars_update`` job (bars -> checks -> predictions -> validations ->
    accuracy_metrics -> trade_recommendations -> alerts) over 10 symbols x N sessions (default 20: 5,200
    symbol-windows), as a UI backfill of a range runs it. Printed: wall time, peak resident memory of the process
    (``ru_maxrss``, which also holds TensorFlow and the models), and each step's time split from the run's event
    log into its own work (STEP_START -> STEP_OUTPUT: reads, the pure function, the write) and Dagster's
    per-partition bookkeeping after it (STEP_OUTPUT -> STEP_SUCCESS: one materialization event per partition),
    plus the run's own overhead outside steps (planning, resolving the partition range, run events).
(a) **Live tick**: the market sensor (clock set to the next window's due time) registers the window after the
    backfill and requests one run for all 10 symbols; its wall time (sensor + run) with per-step times, and the
    recommendation rows stored for that window. This process already holds TensorFlow and the models; the cold
    cost a fresh run process adds (imports + loading 10 models) is measured first and printed beside it.
(c) **Confidence separation**: from the backfill's validations joined with the forecasts' confidence level, the
    mean absolute error % and MASE (against the naive last-price forecast on the same origins) per confidence level
    and horizon bucket, with ``evaluation.accuracy.error_by_confidence``.

    python benchmarks/bench_workflow.py [sessions]     # default 20
"""

import json
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHIPPED = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]
COPIES = {"SPY": "AAPL", "QQQ": "MSFT", "NVDA": "GOOGL", "META": "AMZN", "NFLX": "TSLA"}
SYMBOLS = SHIPPED + list(COPIES)
WORKDIR = Path(tempfile.mkdtemp(prefix="bench_workflow_"))
MODELS_DIR = WORKDIR / "models"
# The partitions (symbol dimension) are built from the settings when lstm_pipeline is imported: set them first.
os.environ["LSTM_PIPELINE_SYMBOLS"] = ",".join(SYMBOLS)
os.environ["LSTM_PIPELINE_MODELS_DIR"] = str(MODELS_DIR)
os.environ["LSTM_PIPELINE_DB_PATH"] = str(WORKDIR / "workflow.duckdb")

import logging  # noqa: E402

logging.disable(logging.WARNING)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_models() -> None:
    """The shipped folders, plus a copy of one under each new ticker with its symbol and version rewritten."""
    from lstm_pipeline.forecasting.store import CONFIG_FILE, content_version

    for symbol in SHIPPED:
        shutil.copytree(ROOT / "models" / symbol, MODELS_DIR / symbol)
    for symbol, source in COPIES.items():
        folder = MODELS_DIR / symbol
        shutil.copytree(ROOT / "models" / source, folder)
        document = json.loads((folder / CONFIG_FILE).read_text())
        assert document["symbol"] == source, "the config names its symbol: the copy must name the new one"
        document["symbol"] = symbol
        (folder / CONFIG_FILE).write_text(json.dumps(document, indent=2))
        document["version"] = content_version(folder, symbol)  # the hash covers the config without its version
        (folder / CONFIG_FILE).write_text(json.dumps(document, indent=2))


def step_times(instance, run_id: str) -> tuple[dict[str, tuple[float, float]], float]:
    """Per step: (own work s, bookkeeping after it s) from the event log; and the run's wall time."""
    starts, outputs, ends = {}, {}, {}
    run_start = run_end = None
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind, step = event.event_type_value, event.step_key
        if kind == "PIPELINE_START":
            run_start = entry.timestamp
        elif kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
            run_end = entry.timestamp
        elif kind == "STEP_START":
            starts[step] = entry.timestamp
        elif kind == "STEP_OUTPUT" and step not in outputs:
            outputs[step] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[step] = entry.timestamp
    times = {}
    for step, started in starts.items():
        output = outputs.get(step, ends[step])
        times[step] = (output - started, ends[step] - output)
    return times, (run_end - run_start) if run_start and run_end else float("nan")


def print_steps(times: dict[str, tuple[float, float]], wall: float) -> float:
    """Print the step table; returns the summed own work."""
    print(f"    {'step':<24}{'own work s':>12}{'bookkeeping s':>15}")
    for step, (work, after) in times.items():
        print(f"    {step:<24}{work:>12.2f}{after:>15.2f}")
    own = sum(work for work, _ in times.values())
    after = sum(after for _, after in times.values())
    outside = wall - own - after
    print(f"    {'(outside steps)':<24}{'':>12}{outside:>15.2f}")
    print(
        f"    total: own work {own:.2f} s, Dagster bookkeeping {wall - own:.2f} s of {wall:.2f} s "
        f"({(wall - own) / wall:.0%})"
    )
    return own


def main(sessions: int) -> None:
    started = time.perf_counter()
    import pandas as pd
    from dagster import DagsterInstance, Definitions, in_process_executor

    from lstm_pipeline.assets.accuracy_metrics import accuracy_metrics
    from lstm_pipeline.assets.alerts import alerts
    from lstm_pipeline.assets.market_bars import market_bars
    from lstm_pipeline.assets.market_bars_checks import market_bars_quality
    from lstm_pipeline.assets.predictions import predictions
    from lstm_pipeline.assets.trade_recommendations import trade_recommendations
    from lstm_pipeline.assets.validations import validations
    from lstm_pipeline.evaluation.accuracy import error_by_confidence, horizon_buckets
    from lstm_pipeline.jobs import market_bars_update_job
    from lstm_pipeline.market.calendar import NEW_YORK, parse_window_key, session_windows, window_key
    from lstm_pipeline.partitions import partition_range_tags, register_session_windows
    from lstm_pipeline.resources.market_data import SimulatedMarketData
    from lstm_pipeline.resources.model_store import LocalModelStore
    from lstm_pipeline.resources.storage import PipelineStore
    from lstm_pipeline.sensors.market_windows import build_market_windows_sensor
    from lstm_pipeline.settings import MarketDataSettings, Settings

    copy_models()
    model_store = LocalModelStore(models_dir=str(MODELS_DIR))
    loaded, failed = model_store.load_available(SYMBOLS)  # imports TensorFlow, builds 10 networks
    assert not failed, failed
    cold_s = time.perf_counter() - started
    print(f"10 symbols: {', '.join(SYMBOLS)} (the last five serve copies of the shipped models)")
    print(f"cold start of a run process (imports + loading 10 models): {cold_s:.1f} s, peak RSS {rss_mib():.0f} MiB")

    first_day = pd.Timestamp("2025-06-02")
    days = pd.bdate_range(first_day, periods=60)
    backfill = session_windows(first_day, days[-1])[: sessions * 26]
    warmup = session_windows(first_day - pd.Timedelta(days=8), first_day)[-3 * 26 :]
    backfill_keys = [window_key(stamp) for stamp in backfill]
    warmup_keys = [window_key(stamp) for stamp in warmup]
    store = PipelineStore.for_path(WORKDIR / "workflow.duckdb")
    defs = Definitions(
        assets=[market_bars, predictions, validations, accuracy_metrics, trade_recommendations, alerts],
        asset_checks=[market_bars_quality],
        jobs=[market_bars_update_job],
        resources={"store": store, "model_store": model_store, "market_data": SimulatedMarketData(seed=0)},
        executor=in_process_executor,
    )
    job = defs.resolve_job_def("market_bars_update")
    (WORKDIR / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(WORKDIR / "dagster_home"), overrides={"telemetry": {"enabled": False}})
    register_session_windows(instance, warmup_keys + backfill_keys)

    def execute(keys: list[str], tags: dict[str, str] | None = None, selection=None):
        result = job.execute_in_process(
            instance=instance,
            tags={**partition_range_tags(SYMBOLS[0], SYMBOLS[-1], keys[0], keys[-1]), **(tags or {})},
            asset_selection=selection,
        )
        assert result.success
        return result

    from dagster import AssetKey

    t0 = time.perf_counter()
    execute(warmup_keys, selection=[AssetKey("market_bars")])
    print(f"warm-up bars (bars only, 10 x 3 sessions): {time.perf_counter() - t0:.1f} s")

    # (b) the backfill
    count = len(SYMBOLS) * len(backfill_keys)
    rss_before = rss_mib()
    t0 = time.perf_counter()
    result = execute(backfill_keys, tags={"dagster/backfill": "bench"})
    backfill_s = time.perf_counter() - t0
    print(
        f"\n(b) single-run backfill of the whole chain: {len(SYMBOLS)} symbols x {len(backfill_keys) // 26} sessions "
        f"({count:,} symbol-windows)"
    )
    print(
        f"    wall time {backfill_s:.1f} s ({backfill_s / count * 1000:.1f} ms per symbol-window); peak RSS "
        f"{rss_mib():.0f} MiB (before the run {rss_before:.0f} MiB)"
    )
    times, wall = step_times(instance, result.run_id)
    print_steps(times, wall)
    print(
        f"    before RUN_START / after RUN_SUCCESS (creating the run over {count:,} partitions, planning): "
        f"{backfill_s - wall:.2f} s; Dagster's share of the whole wall time: "
        f"{(backfill_s - sum(work for work, _ in times.values())) / backfill_s:.0%}"
    )
    rows = {
        table: len(store.read_rows(table))
        for table in (
            "market_bars",
            "predictions",
            "validations",
            "accuracy_metrics",
            "trade_recommendations",
            "alerts",
        )
    }
    print(f"    rows stored: {rows}")

    # (a) one live tick: the next window after the backfill
    next_window = session_windows(backfill[-1] + pd.Timedelta(minutes=15), backfill[-1] + pd.Timedelta(days=5))[0]
    due = next_window + pd.Timedelta(minutes=30, seconds=30)  # closed 15 minutes ago plus the 15-minute delay
    settings = Settings(
        symbols=SYMBOLS,
        market_data=MarketDataSettings(source="simulated", history_start=str(warmup[0].date()), warmup_sessions=3),
    )
    sensor = build_market_windows_sensor(settings, lambda: due.tz_convert(NEW_YORK))
    from dagster import build_sensor_context

    t0 = time.perf_counter()
    with build_sensor_context(instance=instance) as context:
        tick = sensor(context)
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    (request,) = tick.run_requests
    sensor_s = time.perf_counter() - t0
    tick_result = job.execute_in_process(instance=instance, tags={**request.tags, "dagster/sensor_name": sensor.name})
    assert tick_result.success
    tick_s = time.perf_counter() - t0
    window = parse_window_key(window_key(next_window))
    recommended = store.read_rows("trade_recommendations", ["as_of_window = ?"], [window])
    print(
        f"\n(a) one live tick ({window_key(next_window)}, {len(SYMBOLS)} symbols): {tick_s:.2f} s wall "
        f"(sensor {sensor_s:.2f} s + run), warm process; a fresh run process adds ~{cold_s:.0f} s (above)"
    )
    print(
        f"    recommendation rows stored for the window: {len(recommended)} "
        f"({int(recommended['held_back_by'].isna().sum())} recommended; held back: "
        f"{recommended['held_back_by'].value_counts().to_dict()})"
    )
    times, wall = step_times(instance, tick_result.run_id)
    print_steps(times, wall)

    # (c) confidence separation over the backfill
    checked = store.read_rows("validations", ["target_window <= ?"], [backfill[-1]])
    forecasts = store.read_rows("predictions", ["as_of_window <= ?"], [backfill[-1]])
    print(f"\n(c) error by confidence level, {len(checked):,} validations of the backfill (MASE < 1 beats naive)")
    buckets = horizon_buckets(checked)
    for label, chosen in (
        ("all 10 symbols", checked),
        ("the 5 shipped symbols (own models)", checked[checked["symbol"].isin(SHIPPED)]),
    ):
        print(f"  {label}:")
        print(f"    {'bucket':<8}{'level':<11}{'n':>8}{'abs err %':>11}{'MASE':>8}{'cov95':>8}")
        for bucket in ("1_step", "1_hour", "1_day", "1_week", "all"):
            subset = chosen if bucket == "all" else chosen[buckets.loc[chosen.index] == bucket]
            table = error_by_confidence(subset, forecasts)
            for _, row in table.iterrows():
                print(
                    f"    {bucket:<8}{row['confidence_level']:<11}{row['n']:>8,}{row['mean_abs_error_pct']:>11.3f}"
                    f"{row['mase']:>8.3f}{row['coverage_95']:>8.3f}"
                )
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s; work dir {WORKDIR} (removed)")
    shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
