"""REST latency on loopback: ``GET /predictions/{symbol}`` and ``GET /recommendations`` at a fixed request rate, for
10 symbols, with and without a backfill writing the same DuckDB file, served two ways side by side:

- ``snapshot``: the service as shipped (``serving.snapshot.ReadSnapshot``: a private copy of the file, refreshed
  when the file changes and no writer holds it; requests never open the pipeline's file);
- ``naive``: the same app, but every read opens the pipeline's file read-only (``PipelineDatabase.read_rows``:
  a fresh DuckDB connection per read, waiting up to its 30 s lock timeout while a writer holds the file).

The store: 10 symbols x 20 sessions of bars, forecasts (130 steps each, as the week-ahead path is) as of each window
of the last 2 sessions, a recommendation per forecast, accuracy rows and alerts. The backfill is a writer process
that replaces one new window's forecasts and recommendations for all 10 symbols per write, through the storage
layer (``PipelineDatabase.replace_tables``, the path every asset writes through), back to back with 50 ms pauses;
it reports how long its writes waited for the file and whether any failed.

The server runs in its own process (uvicorn, one worker, as ``lstm-pipeline start`` runs it); the load is open-loop
(requests are sent on a fixed schedule, half to ``/predictions/{symbol}`` for a random symbol, half to
``/recommendations``), and latency is measured from each request's scheduled time (no coordinated omission).
``cpu ms`` is the server process's CPU time per request (user + system): on a shared machine it says what the
service costs even when other processes' load inflates the latencies.

    python benchmarks/bench_api.py [rate_per_s] [seconds]      # default 200 req/s for 10 s per scenario

After the table it says whether the issue's goals are met by the service as shipped (the ``snapshot`` rows): p99
under 20 ms at 200 requests/s with no backfill (and no failed request), and no failed request (nor failed write)
with one. A run at another rate reports the figures but does not judge the first goal.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "SPY", "QQQ", "NVDA", "META", "NFLX"]
READER_KEY = "bench-reader-key-0123456789abcdef0123456789"
HISTORY_SESSIONS = 20
FORECAST_SESSIONS = 2
HORIZON_STEPS = 130
WRITER_PAUSE_SECONDS = 0.05
REQUEST_TIMEOUT_SECONDS = 10.0
GOAL_RATE_PER_S = 200.0
GOAL_P99_MS = 20.0


# ------------------------------------------------------------------------------------------------ the store


def session_windows(first_day: str, sessions: int) -> list:
    import pandas as pd

    from lstm_pipeline.market.calendar import session_windows as windows

    start = pd.Timestamp(first_day)
    found = list(windows(start, start + pd.Timedelta(days=sessions * 2)))
    days = sorted({w.date() for w in found})[:sessions]
    return [w for w in found if w.date() in days]


def forecast_rows(symbol: str, window, close: float, steps: int = HORIZON_STEPS) -> list[dict]:
    from lstm_pipeline.market.calendar import WINDOW

    rows = []
    for step in range(1, steps + 1):
        spread = 0.002 * close * step ** 0.5
        rows.append({
            "symbol": symbol, "as_of_window": window, "horizon_step": step, "target_window": window + step * WINDOW,
            "predicted_close": close * (1 + 0.0002 * step), "lower_80": close - spread, "upper_80": close + spread,
            "lower_95": close - 1.6 * spread, "upper_95": close + 1.6 * spread, "last_close": close,
            "forecast_mode": "lstm", "model_version": f"{symbol.lower()}-bench", "confidence": 0.65,
            "confidence_level": "MEDIUM", "reason": "schedule",
        })
    return rows


def recommendation_row(symbol: str, window, close: float) -> dict:
    from lstm_pipeline.market.calendar import WINDOW

    return {
        "symbol": symbol, "as_of_window": window, "model_version": f"{symbol.lower()}-bench", "action": "buy",
        "entry_window": window + WINDOW, "entry_price": close, "exit_window": window + 26 * WINDOW,
        "exit_price": close * 1.03, "predicted_return_pct": 2.8, "confidence": 0.65, "confidence_level": "MEDIUM",
        "recent_mase": 0.9, "held_back_by": None, "reason": "bench",
    }


def build_store(path: Path) -> list:
    """Write the benchmark's store; returns the session windows it holds (the writer continues after them)."""
    import pandas as pd

    from lstm_pipeline.storage import database_at

    windows = session_windows("2025-03-03", HISTORY_SESSIONS)
    forecast_from = windows[-26 * FORECAST_SESSIONS]
    bars, predictions, recs, metrics, alerts = [], [], [], [], []
    for index, symbol in enumerate(SYMBOLS):
        close = 100.0 + 20 * index
        for window in windows:
            close *= 1 + random.gauss(0, 0.002)
            bars.append({"symbol": symbol, "window_start": window, "open": close, "high": close * 1.001,
                         "low": close * 0.999, "close": close, "volume": 1000, "vwap": close, "trade_count": 10,
                         "source": "bench"})
            if window >= forecast_from:
                predictions += forecast_rows(symbol, window, close)
                recs.append(recommendation_row(symbol, window, close))
                for bucket in ("1_step", "1_hour", "1_day", "1_week"):
                    metrics.append({"symbol": symbol, "window_start": window, "span": "day",
                                    "horizon_bucket": bucket, "n": 26, "mape": 0.4, "directional_accuracy": 0.55})
        alerts.append({"source": "alerts", "symbol": symbol, "as_of_window": windows[-1], "kind": "confidence_low",
                       "severity": "warning", "message": "bench", "level": "WARNING",
                       "alert_key": f"confidence_low:{symbol}"})
    database = database_at(path)
    for name, rows, partition in (
        ("market_bars", bars, ["symbol", "window_start"]),
        ("predictions", predictions, ["symbol", "as_of_window"]),
        ("trade_recommendations", recs, ["symbol", "as_of_window"]),
        ("accuracy_metrics", metrics, ["symbol", "window_start"]),
        ("alerts", alerts, ["source", "symbol", "as_of_window"]),
    ):
        frame = pd.DataFrame(rows)
        database.replace_tables({name: (frame[partition].drop_duplicates(), frame)})
    return windows


# ------------------------------------------------------------------------------------------------ processes


def serve(config_path: str, mode: str, port_file: str) -> None:
    """The server process: the app over the chosen read path, uvicorn on a free loopback port."""
    import logging

    import pandas as pd
    import uvicorn

    from lstm_pipeline.settings import load_settings
    from lstm_pipeline.storage import database_at
    from serving.app import create_app

    logging.disable(logging.WARNING)
    settings = load_settings(config_path, dict(os.environ))

    class NaiveReads:
        """A fresh read-only DuckDB open of the pipeline's file per read."""

        def __init__(self) -> None:
            self.database = database_at(settings.db_path)
            self.generation = 0

        @property
        def as_of(self) -> pd.Timestamp:
            return pd.Timestamp.now(tz="UTC")

        def read_rows(self, table, where=(), params=()):  # noqa: ANN001, ANN201
            return self.database.read_rows(table, list(where), list(params))

        def derived(self, name, args, compute, tables=()):  # noqa: ANN001, ANN201
            return compute()  # no copy to key a cache on: every answer built from fresh reads

        def lookup(self, name, args, tables=()):  # noqa: ANN001, ANN201
            from serving.snapshot import MISSING

            return MISSING

        def health(self) -> tuple[bool, str]:
            return True, "naive"

    app = create_app(settings, snapshot=NaiveReads() if mode == "naive" else None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    Path(port_file).write_text(str(sock.getsockname()[1]))
    uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False)).run(sockets=[sock])


def write(db_path: str, first_window: str, seconds: float, stats_file: str) -> None:
    """The backfill: one new window's forecasts and recommendations for all symbols per write, for ``seconds``."""
    from contextlib import contextmanager

    import pandas as pd

    import lstm_pipeline.storage.database as database_module
    from lstm_pipeline.market.calendar import WINDOW
    from lstm_pipeline.storage import database_at

    waits: list[float] = []
    original = database_module.connect

    @contextmanager
    def timed(path, *, read_only, **options):  # noqa: ANN001, ANN202
        asked = time.monotonic()
        with original(path, read_only=read_only, **options) as conn:
            if not read_only:
                waits.append(time.monotonic() - asked)
            yield conn

    database_module.connect = timed
    database = database_at(db_path)
    window = pd.Timestamp(first_window)
    failures: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        window += WINDOW
        predictions = pd.DataFrame([r for s in SYMBOLS for r in forecast_rows(s, window, 100.0)])
        recs = pd.DataFrame([recommendation_row(s, window, 100.0) for s in SYMBOLS])
        keys = recs[["symbol", "as_of_window"]]
        try:
            database.replace_tables({"predictions": (keys, predictions), "trade_recommendations": (keys, recs)})
        except Exception as error:  # noqa: BLE001 - counted and reported
            failures.append(str(error)[:200])
        time.sleep(WRITER_PAUSE_SECONDS)
    Path(stats_file).write_text(json.dumps({"writes": len(waits), "waits": waits, "failures": failures}))


# ------------------------------------------------------------------------------------------------ load


async def load(base_url: str, rate: float, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": READER_KEY}, limits=limits,
                                 timeout=REQUEST_TIMEOUT_SECONDS) as client:
        # Warm the connections and the server's first reads; not measured.
        await asyncio.gather(*(client.get(f"/predictions/{s}") for s in SYMBOLS))
        start = time.perf_counter()

        async def one(index: int) -> None:
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            path = f"/predictions/{random.choice(SYMBOLS)}" if index % 2 == 0 else "/recommendations?limit=50"
            try:
                response = await client.get(path)
                if response.status_code != 200:
                    errors.append(f"{path} {response.status_code}")
            except Exception as error:  # noqa: BLE001 - counted and reported
                errors.append(f"{path} {type(error).__name__}")
            latencies.append(time.perf_counter() - due)

        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"sent": total, "errors": len(errors), "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": latencies[-1]
            * 1000, "throughput": (total - len(errors)) / elapsed, "error_kinds": sorted(set(errors))[:3]}


def scenario(base_db: Path, workdir: Path, mode: str, backfill: bool, rate: float, seconds: float,
             last_window) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}_{'bf' if backfill else 'idle'}_", dir=workdir))
    db = run_dir / "pipeline.duckdb"
    shutil.copy(base_db, db)
    config = run_dir / "config.json"
    config.write_text(json.dumps({"symbols": SYMBOLS, "db_path": str(db), "models_dir": str(run_dir / "models"),
                                  "api": {"rate_limit_per_minute": 10_000_000}}))
    env = {**os.environ, "DAGSTER_HOME": str(run_dir), "LSTM_PIPELINE_API_KEYS": f"reader:{READER_KEY}",
           "LSTM_PIPELINE_DAGSTER_URL": "http://127.0.0.1:9", "PYTHONWARNINGS": "ignore"}
    port_file = run_dir / "port"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(config), mode, str(port_file)], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    writer = None
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"The {mode} server did not start: {server.stderr.read()[-2000:]}")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        import httpx

        while True:
            try:
                httpx.get(f"{url}/health", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        stats_file = run_dir / "writer.json"
        if backfill:
            writer = subprocess.Popen([sys.executable, __file__, "--write", str(db), str(last_window),
                                       str(seconds + 2), str(stats_file)], env=env, cwd=ROOT)
            time.sleep(1.0)  # the writer is importing and has started writing
        import psutil

        cpu = psutil.Process(server.pid)
        cpu_before = sum(cpu.cpu_times()[:2])
        result = asyncio.run(load(url, rate, seconds))
        result["server_cpu_ms"] = (sum(cpu.cpu_times()[:2]) - cpu_before) * 1000 / max(result["sent"], 1)
        if writer is not None:
            writer.wait(timeout=120)
            stats = json.loads(stats_file.read_text())
            result["writer"] = {"writes": stats["writes"], "failed": len(stats["failures"]),
                                "max_wait_ms": max(stats["waits"], default=0) * 1000,
                                "p50_wait_ms": sorted(stats["waits"])[len(stats["waits"]) // 2] * 1000
                                if stats["waits"] else 0.0}
        return result
    finally:
        for process in (writer, server):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        shutil.rmtree(run_dir, ignore_errors=True)


def goal_verdict(results: dict[tuple[str, bool], dict], rate: float) -> list[str]:
    """One line per goal of the issue, MET / NOT MET (or NOT JUDGED) with the figures it was judged on, from the
    ``snapshot`` scenarios (``results[(mode, backfill)]``)."""
    lines = []
    idle = results.get(("snapshot", False))
    goal = f"p99 < {GOAL_P99_MS:g} ms at {GOAL_RATE_PER_S:g} req/s with no backfill"
    if idle is None:
        lines.append(f"goal {goal}: NOT JUDGED (the scenario did not run)")
    else:
        figures = f"p99 {idle['p99_ms']:.1f} ms at {rate:g} req/s, {idle['errors']} failed requests"
        if rate < GOAL_RATE_PER_S:
            lines.append(f"goal {goal}: NOT JUDGED ({figures}: run it at {GOAL_RATE_PER_S:g} req/s or more)")
        else:
            met = idle["p99_ms"] < GOAL_P99_MS and idle["errors"] == 0
            lines.append(f"goal {goal}: {'MET' if met else 'NOT MET'} ({figures})")
    busy = results.get(("snapshot", True))
    goal = "no failed request with a backfill writing"
    if busy is None:
        lines.append(f"goal {goal}: NOT JUDGED (the scenario did not run)")
    else:
        writer = busy.get("writer") or {}
        failed_writes = writer.get("failed", 0)
        met = busy["errors"] == 0 and failed_writes == 0
        lines.append(f"goal {goal}: {'MET' if met else 'NOT MET'} ({busy['errors']} failed of {busy['sent']} "
                     f"requests, {failed_writes} failed of {writer.get('writes', 0)} writes, p99 "
                     f"{busy['p99_ms']:.1f} ms)")
    return lines


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rate", nargs="?", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("seconds", nargs="?", type=float, default=10.0, help="seconds per scenario (default 10)")
    args = parser.parse_args()
    rate, seconds = args.rate, args.seconds
    workdir = Path(tempfile.mkdtemp(prefix="bench_api_"))
    try:
        base = workdir / "base.duckdb"
        started = time.perf_counter()
        windows = build_store(base)
        print(f"store: {len(SYMBOLS)} symbols x {len(windows)} windows of bars, {HORIZON_STEPS}-step forecasts as of "
              f"the last {26 * FORECAST_SESSIONS} windows; {base.stat().st_size / 1e6:.1f} MB "
              f"(built in {time.perf_counter() - started:.1f} s); CPUs {os.cpu_count()}, load average "
              f"{os.getloadavg()[0]:.1f}")
        print(f"load: {rate:g} req/s open-loop for {seconds:g} s, half GET /predictions/{{symbol}} (10 symbols), half "
              "GET /recommendations?limit=50; latency from each request's scheduled time\n")
        header = (f"{'read path':<9} {'backfill':<8} {'sent':>5} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'max ms':>8} {'ok/s':>7} {'cpu ms':>6}   writer (writes, failed, p50/max wait for the file)")
        print(header)
        print("-" * len(header))
        results: dict[tuple[str, bool], dict] = {}
        for backfill in (False, True):
            for mode in ("snapshot", "naive"):
                r = results[(mode, backfill)] = scenario(base, workdir, mode, backfill, rate, seconds, windows[-1])
                writer = r.get("writer")
                side = (f"{writer['writes']} writes, {writer['failed']} failed, {writer['p50_wait_ms']:.0f}/"
                        f"{writer['max_wait_ms']:.0f} ms" if writer else "-")
                print(f"{mode:<9} {'yes' if backfill else 'no':<8} {r['sent']:>5} {r['errors']:>6} "
                      f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r['throughput']:>7.1f} "
                      f"{r['server_cpu_ms']:>6.2f}   {side}"
                      + (f"   e.g. {', '.join(r['error_kinds'])}" if r["errors"] else ""), flush=True)
        print()
        for line in goal_verdict(results, rate):
            print(line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "--write":
        write(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    else:
        main()
