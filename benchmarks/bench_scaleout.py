"""Dagster's event bookkeeping on SQLite vs PostgreSQL, side by side in one run (issue #15).

Three instances, each fresh for every workload:
- ``sqlite``: the embedded default (``DagsterInstance.local_temp``: SQLite run, event-log and schedule storage, as
  ``dagster dev`` keeps it under ``dagster_home/``), Dagster's defaults;
- ``postgres``: the Postgres profile's server (``deploy/postgres/local-postgres.sh start`` on a free port in a
  temporary folder: Debian's PostgreSQL with its default durability settings), a fresh database each, Dagster's defaults
  (every event its own INSERT);
- ``postgres+batching``: the same, with the profile's ``DAGSTER_EVENT_BATCH_SIZE=1000`` and
  ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1`` (what ``dagster.env`` exports).

Workloads, each ONE run (a single-run backfill, in-process executor, simulated market, DuckDB tables in a temporary
file), in a fresh child process per (instance, workload):
- ``bars 2,600``: ``market_bars`` (+ its checks) for 5 symbols x 20 sessions;
- ``bars 10,400``: the same for 5 symbols x 80 sessions;
- ``chain 10x20``: the whole ``market_bars_update`` chain (bars -> checks -> predictions -> validations ->
  accuracy_metrics -> trade_recommendations -> alerts) for 10 symbols x 20 sessions (5,200 symbol-windows), after a
  bars-only warm-up of 3 sessions (not timed), the 5 shipped models plus copies under 5 more tickers (as
  ``bench_workflow.py``);
- ``chain 10x5`` (``postgres+batching`` only): the slope's second point for the projection to 10 symbols x 1 year
  (64,640 symbol-windows): ``t(10x20) + slope x (64,640 - 5,200)``, slope = (t(10x20) - t(10x5)) / 3,900.

Printed per cell: wall time of the run (creating it, planning, executing, every event written), our steps' own
work inside it (STEP_START to the step's output), events written to the event log for the run, ms per
symbol-window. The CPU is shared with whatever else runs on the machine: the figures are one measurement, printed
with the load average seen at the start and the end.

    python benchmarks/bench_scaleout.py                    # everything (about 20-25 minutes on 2 shared cores)
    python benchmarks/bench_scaleout.py --workloads bars2600 chain10x5 --instances postgres+batching   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_SCRIPT = ROOT / "deploy" / "postgres" / "local-postgres.sh"
INSTANCES = ("sqlite", "postgres", "postgres+batching")
WORKLOADS = {  # name: (kind, symbols, sessions)
    "bars2600": ("bars", 5, 20),
    "bars10400": ("bars", 5, 80),
    "chain10x20": ("chain", 10, 20),
    "chain10x5": ("chain", 10, 5),
}
LABELS = {"bars2600": "bars 2,600", "bars10400": "bars 10,400", "chain10x20": "chain 10x20", "chain10x5": "chain 10x5"}
BATCHING = {"DAGSTER_EVENT_BATCH_SIZE": "1000", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}
SHIPPED = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]
COPIES = {"SPY": "AAPL", "QQQ": "MSFT", "NVDA": "GOOGL", "META": "AMZN", "NFLX": "TSLA"}
YEAR_SYMBOL_WINDOWS = 64_640  # 10 symbols x the 6,464 session windows of 2024-11-01 .. 2025-11-01


def child(kind: str, symbol_count: int, sessions: int, workdir: Path, postgres_url: str | None) -> dict:
    """One run on a fresh instance; the environment (symbols, batching) was set by the parent."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import pandas as pd
    from dagster import AssetKey, DagsterInstance, Definitions, in_process_executor

    from lstm_pipeline.assets.accuracy_metrics import accuracy_metrics
    from lstm_pipeline.assets.alerts import alerts
    from lstm_pipeline.assets.market_bars import market_bars
    from lstm_pipeline.assets.market_bars_checks import market_bars_quality
    from lstm_pipeline.assets.predictions import predictions
    from lstm_pipeline.assets.trade_recommendations import trade_recommendations
    from lstm_pipeline.assets.validations import validations
    from lstm_pipeline.jobs import market_bars_update_job
    from lstm_pipeline.market.calendar import session_windows, window_key
    from lstm_pipeline.partitions import partition_range_tags, register_session_windows
    from lstm_pipeline.resources.market_data import SimulatedMarketData
    from lstm_pipeline.resources.model_store import LocalModelStore
    from lstm_pipeline.resources.storage import PipelineStore

    symbols = (SHIPPED + list(COPIES))[:symbol_count]
    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    if postgres_url:
        (home / "dagster.yaml").write_text(
            "telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url:\n"
            "      env: BENCH_DAGSTER_POSTGRES_URL\n"
        )
        instance = DagsterInstance.from_config(str(home))
    else:
        instance = DagsterInstance.local_temp(str(home), overrides={"telemetry": {"enabled": False}})

    first_day = pd.Timestamp("2025-06-02")
    windows = session_windows(first_day, first_day + pd.Timedelta(days=200))[: sessions * 26]
    keys = [window_key(stamp) for stamp in windows]
    warmup_keys = [window_key(s) for s in session_windows(first_day - pd.Timedelta(days=8), first_day)[-3 * 26 :]]
    store = PipelineStore.for_path(workdir / "tables.duckdb")
    resources: dict[str, object] = {
        "store": store,
        "market_data": SimulatedMarketData(seed=0),
        "model_store": LocalModelStore(models_dir=str(workdir / "models")),
    }
    if kind == "chain":
        copy_models(workdir / "models")
        _, failed = resources["model_store"].load_available(symbols)  # TensorFlow and models, as a warm run worker
        assert not failed, failed
        register_session_windows(instance, warmup_keys + keys)
    else:
        register_session_windows(instance, keys)
    defs = Definitions(
        assets=[market_bars, predictions, validations, accuracy_metrics, trade_recommendations, alerts],
        asset_checks=[market_bars_quality],
        jobs=[market_bars_update_job],
        resources=resources,
        executor=in_process_executor,
    )
    job = defs.resolve_job_def("market_bars_update")
    if kind == "chain":
        warm = job.execute_in_process(
            instance=instance,
            tags=partition_range_tags(symbols[0], symbols[-1], warmup_keys[0], warmup_keys[-1]),
            asset_selection=[AssetKey("market_bars")],
        )
        assert warm.success
    selection = None if kind == "chain" else [AssetKey("market_bars")]
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags={**partition_range_tags(symbols[0], symbols[-1], keys[0], keys[-1]), "dagster/backfill": "bench"},
        asset_selection=selection,
    )
    seconds = time.perf_counter() - started
    assert result.success
    logs = instance.all_logs(result.run_id)
    events = len(logs)
    own = own_work_seconds(logs)
    rows = len(store.read_rows("predictions" if kind == "chain" else "market_bars"))
    instance.dispose()
    return {"seconds": seconds, "events": events, "partitions": len(symbols) * len(keys), "rows": rows, "own": own}


def own_work_seconds(logs) -> float:
    """Our code's share of the run: each step's STEP_START to its first STEP_OUTPUT (reads, compute, the write);
    the rest of the wall time is Dagster's (creating and planning the run, per-partition events)."""
    starts: dict[str, float] = {}
    outputs: dict[str, float] = {}
    for entry in logs:
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_OUTPUT", "STEP_SUCCESS") and event.step_key not in outputs:
            outputs[event.step_key] = entry.timestamp
    return sum(outputs[step] - started for step, started in starts.items() if step in outputs)


def copy_models(models_dir: Path) -> None:
    """The shipped folders, plus a copy of one under each new ticker with its symbol and version rewritten."""
    from lstm_pipeline.forecasting.store import CONFIG_FILE, content_version

    for symbol in SHIPPED:
        shutil.copytree(ROOT / "models" / symbol, models_dir / symbol)
    for symbol, source in COPIES.items():
        folder = models_dir / symbol
        shutil.copytree(ROOT / "models" / source, folder)
        document = json.loads((folder / CONFIG_FILE).read_text())
        document["symbol"] = symbol
        (folder / CONFIG_FILE).write_text(json.dumps(document, indent=2))
        document["version"] = content_version(folder, symbol)
        (folder / CONFIG_FILE).write_text(json.dumps(document, indent=2))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ProfileServer:
    """The Postgres profile's server, started by its own script in a temporary folder on a free port."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-scaleout-pg-"))
        self.folder.chmod(0o755)  # the server runs as the postgres user, which must reach its folder
        self.env = {**os.environ, "LSTM_PIPELINE_PG_DIR": str(self.folder / "pg"),
                    "LSTM_PIPELINE_PG_PORT": str(free_port())}
        self.count = 0

    def start(self) -> None:
        subprocess.run(["bash", str(PG_SCRIPT), "start"], env=self.env, check=True, capture_output=True)
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (self.folder / "pg" / "dagster.env").read_text().splitlines()
            if line.startswith("export ")
        )
        self.password = exports["DAGSTER_PG_PASSWORD"].strip('"')
        self.port = self.env["LSTM_PIPELINE_PG_PORT"]

    def new_database(self) -> str:
        import psycopg

        self.count += 1
        name = f"bench_{self.count}"
        admin = f"postgresql://lstm_pipeline:{self.password}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg2://lstm_pipeline:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(["bash", str(PG_SCRIPT), "stop"], env=self.env, check=False, capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def measure(instance: str, workload: str, server: ProfileServer) -> dict:
    kind, symbol_count, sessions = WORKLOADS[workload]
    workdir = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    env = {key: value for key, value in os.environ.items() if key not in BATCHING}
    if instance == "postgres+batching":
        env.update(BATCHING)
    env.update({
        "LSTM_PIPELINE_SYMBOLS": ",".join((SHIPPED + list(COPIES))[:symbol_count]),
        "LSTM_PIPELINE_DB_PATH": str(workdir / "tables.duckdb"),
        "LSTM_PIPELINE_MODELS_DIR": str(workdir / "models"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore",
    })
    if instance != "sqlite":
        env["BENCH_DAGSTER_POSTGRES_URL"] = server.new_database()  # in the environment: argv is public (ps)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(symbol_count), str(sessions), str(workdir)],
            env=env, check=True, capture_output=True, text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{instance} / {workload} failed:\n{exc.stderr[-3000:]}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", nargs="+", choices=INSTANCES, default=list(INSTANCES))
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        kind, symbols, sessions, workdir = args.child
        url = os.environ.get("BENCH_DAGSTER_POSTGRES_URL") or None
        print(json.dumps(child(kind, int(symbols), int(sessions), Path(workdir), url)))
        return

    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores, shared with other work)")
    server = ProfileServer()
    server.start()
    results: dict[tuple[str, str], dict] = {}
    started = time.perf_counter()
    try:
        # The fast instance first: on a busy machine its figures (and the projection) come out even if the slow
        # defaults are cut short.
        for instance in sorted(args.instances, key=lambda name: name != "postgres+batching"):
            for workload in args.workloads:
                if workload == "chain10x5" and instance != "postgres+batching":
                    continue  # the projection's second point
                results[instance, workload] = cell = measure(instance, workload, server)
                print(f"  measured {LABELS[workload]:<12} {instance:<18} {cell['seconds']:8.1f} s "
                      f"(own work {cell['own']:.1f} s, {cell['events']:,} events)", flush=True)
    except KeyboardInterrupt:
        print("  interrupted: the table below holds the cells measured so far", flush=True)
    finally:
        server.stop()

    results = dict(sorted(results.items(), key=lambda item: (list(WORKLOADS).index(item[0][1]),
                                                             INSTANCES.index(item[0][0]))))
    print(f"\n{'workload':<14}{'instance':<20}{'partitions':>11}{'wall s':>9}{'own work s':>12}{'events':>9}"
          f"{'ms/partition':>14}")
    for (instance, workload), cell in results.items():
        print(
            f"{LABELS[workload]:<14}{instance:<20}{cell['partitions']:>11,}{cell['seconds']:>9.1f}{cell['own']:>12.1f}"
            f"{cell['events']:>9,}{cell['seconds'] / cell['partitions'] * 1000:>14.2f}"
        )
    print("(own work = our steps from STEP_START to their output: reads, compute, writes; the rest is Dagster's)")
    for workload in ("bars10400", "chain10x20"):
        base = results.get(("sqlite", workload))
        fast = results.get(("postgres+batching", workload))
        if base and fast:
            ratio = base["seconds"] / fast["seconds"]
            print(f"{LABELS[workload]}: postgres+batching is {ratio:.1f}x faster than sqlite")
    small, large = results.get(("postgres+batching", "chain10x5")), results.get(("postgres+batching", "chain10x20"))
    if small and large:
        slope = (large["seconds"] - small["seconds"]) / (large["partitions"] - small["partitions"])
        projected = large["seconds"] + slope * (YEAR_SYMBOL_WINDOWS - large["partitions"])
        print(
            f"chain on postgres+batching: slope {slope * 1000:.2f} ms per symbol-window (10x5 -> 10x20); projected "
            f"10 symbols x 1 year ({YEAR_SYMBOL_WINDOWS:,} symbol-windows) in one run: {projected:.0f} s "
            f"({projected / 60:.1f} min)"
        )
        if large["seconds"] < 60:
            print(f"goal met: chain 10x20 on postgres+batching {large['seconds']:.1f} s < 60 s")
        else:
            print(f"goal NOT met: chain 10x20 on postgres+batching {large['seconds']:.1f} s >= 60 s")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}; benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
