"""The REST service keeps answering while Dagster writes the same DuckDB file, and never holds Dagster up.

A real uvicorn server (``create_app``) answers concurrent requests while another process runs a multi-run backfill
(real Dagster runs of the whole chain, one per window, into the same DuckDB file). Every request must succeed,
every run must succeed, and every answer must be at least as new as the last run that completed
``freshness_bound_seconds`` before the request was sent (the bound ``serving.snapshot`` states).

Run as a script (``python -m tests.serving.test_snapshot_under_backfill DB PROGRESS``) this module is the backfill:
it drives the market-windows sensor over a simulated morning and executes each run it requests, appending one JSON
line per finished run to PROGRESS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from lstm_pipeline.market.calendar import parse_window_key
from tests.serving.conftest import READER_KEY, SYMBOLS, make_service
from tests.serving.live import live_server

ROOT = Path(__file__).resolve().parents[2]
DAY = "2025-06-17"
TICKS = ("10:00:30", "10:15:30", "10:30:30", "10:45:30")
"""Market-sensor ticks: the first also fetches three warm-up sessions (a bars-only run); each requests the chain for
the window that just closed. Five runs in all."""
CLIENTS = 3
PACE_SECONDS = 0.05
"""Each client's pause between requests: about 50 requests/s in all, leaving the two CI cores to the runs."""
WRITER_WAIT_LIMIT_SECONDS = 1.0
"""The longest a run's write may wait for the file because the service was copying it."""
BACKFILL_TIMEOUT_SECONDS = 300


# --------------------------------------------------------------------------------------------- the backfill


def run_backfill(db_path: str, progress_path: str) -> int:
    """Execute the runs the market sensor requests over the morning, as the daemon would; 0 if all succeeded."""
    import warnings

    from dagster import DagsterInstance, Definitions, build_sensor_context, in_process_executor

    from lstm_pipeline.assets.accuracy_metrics import accuracy_metrics
    from lstm_pipeline.assets.alerts import alerts
    from lstm_pipeline.assets.market_bars import market_bars
    from lstm_pipeline.assets.market_bars_checks import market_bars_quality
    from lstm_pipeline.assets.predictions import predictions
    from lstm_pipeline.assets.trade_recommendations import trade_recommendations
    from lstm_pipeline.assets.validations import validations
    from lstm_pipeline.jobs import market_bars_update_job
    from lstm_pipeline.partitions import PARTITION_RANGE_END_TAG, split_market_bars_key
    from lstm_pipeline.resources.market_data import SimulatedMarketData
    from lstm_pipeline.resources.model_store import LocalModelStore
    from lstm_pipeline.resources.storage import PipelineStore
    from lstm_pipeline.sensors.market_windows import build_market_windows_sensor
    from lstm_pipeline.settings import PROJECT_ROOT, MarketDataSettings, Settings
    from tests.helpers import FrozenClock

    warnings.filterwarnings("ignore")
    lock_waits = _time_writer_lock_waits()
    settings = Settings(
        symbols=list(SYMBOLS),
        market_data=MarketDataSettings(source="simulated", history_start="2025-06-10", warmup_sessions=3),
    )
    clock = FrozenClock(f"{DAY} 09:00")
    sensor = build_market_windows_sensor(settings, clock)
    defs = Definitions(
        assets=[market_bars, predictions, validations, accuracy_metrics, trade_recommendations, alerts],
        asset_checks=[market_bars_quality],
        jobs=[market_bars_update_job],
        resources={
            "store": PipelineStore.for_path(db_path),
            "model_store": LocalModelStore(models_dir=str(PROJECT_ROOT / "models")),
            "market_data": SimulatedMarketData(seed=0),
        },
        executor=in_process_executor,
    )
    job = defs.resolve_job_def("market_bars_update")
    failed = 0
    with DagsterInstance.ephemeral() as instance, open(progress_path, "a", encoding="utf-8") as progress:
        for at in TICKS:
            clock.set(f"{DAY} {at}")
            with build_sensor_context(instance=instance) as context:
                result = sensor(context)
            for request in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            for request in result.run_requests:
                started = time.time()
                outcome = job.execute_in_process(
                    instance=instance, partition_key=request.partition_key, tags=dict(request.tags),
                    asset_selection=request.asset_selection, raise_on_error=False,
                )
                chain = not request.asset_selection
                window = split_market_bars_key(request.tags[PARTITION_RANGE_END_TAG])[1] if chain else None
                failed += not outcome.success
                progress.write(json.dumps({
                    "run_key": request.run_key, "success": outcome.success, "chain": chain, "window": window,
                    "started_at": started, "completed_at": time.time(), "lock_waits": lock_waits[:],
                }) + "\n")
                lock_waits.clear()
                progress.flush()
    return 1 if failed else 0


def _time_writer_lock_waits() -> list[float]:
    """Seconds each of this process's write connections waited for the DuckDB file's lock (appended per open)."""
    from contextlib import contextmanager

    import lstm_pipeline.storage.database as database

    waits: list[float] = []
    original = database.connect

    @contextmanager
    def timed(path, *, read_only, **options):  # noqa: ANN001, ANN202
        asked = time.monotonic()
        with original(path, read_only=read_only, **options) as conn:
            if not read_only:
                waits.append(time.monotonic() - asked)
            yield conn

    database.connect = timed
    return waits


# --------------------------------------------------------------------------------------------- the proof


@dataclass(frozen=True)
class Answer:
    path: str
    sent_at: float
    seconds: float
    status: int | None
    forecast_window: pd.Timestamp | None = None
    error: str | None = None


def _forecast_window(path: str, response: httpx.Response) -> pd.Timestamp | None:
    if path.startswith("/predictions/") and response.status_code == 200:
        return pd.Timestamp(response.json()["as_of_window"])
    return None


def _load(url: str, symbol: str, stop: threading.Event, answers: list[Answer]) -> None:
    paths = (f"/predictions/{symbol}", "/recommendations?limit=50", "/dashboard/data")
    with httpx.Client(base_url=url, headers={"X-API-Key": READER_KEY}, timeout=30) as client:
        while not stop.is_set():
            for path in paths:
                sent = time.time()
                try:
                    response = client.get(path)
                    window = _forecast_window(path, response)
                    answers.append(Answer(path, sent, time.time() - sent, response.status_code, window))
                except Exception as error:  # noqa: BLE001 - every failure is counted and shown
                    answers.append(Answer(path, sent, time.time() - sent, None, error=repr(error)))
                stop.wait(PACE_SECONDS)


@pytest.mark.slow
def test_the_service_answers_fresh_data_while_a_multi_run_backfill_writes(tmp_path):
    db_path = tmp_path / "pipeline.duckdb"
    progress_path = tmp_path / "progress.jsonl"
    service = make_service(tmp_path, db_path, api={"rate_limit_per_minute": 1_000_000, "snapshot_poll_seconds": 0.25})
    app = service.app()
    snapshot = app.state.snapshot
    answers: list[Answer] = []
    stop = threading.Event()
    with live_server(app) as url:
        backfill = subprocess.Popen(
            [sys.executable, "-m", "tests.serving.test_snapshot_under_backfill", str(db_path), str(progress_path)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        clients = [
            threading.Thread(target=_load, args=(url, SYMBOLS[i % len(SYMBOLS)], stop, answers), daemon=True)
            for i in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        try:
            log, _ = backfill.communicate(timeout=BACKFILL_TIMEOUT_SECONDS)
            finished = time.time()
            while time.time() < finished + snapshot.freshness_bound_seconds + 0.5:  # until the last run must show
                time.sleep(0.05)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=60)
            if backfill.poll() is None:
                backfill.kill()

    bound = snapshot.freshness_bound_seconds  # the stated bound, given the copies' measured lock holds
    runs = [json.loads(line) for line in progress_path.read_text().splitlines()]
    # Zero failed runs: one warm-up run and one chain run per tick, each a success.
    assert backfill.returncode == 0 and len(runs) == 1 + len(TICKS), log[-3000:]
    assert all(run["success"] for run in runs), [run for run in runs if not run["success"]]

    # The service never held a run up for long: every write connection got the file within the limit.
    waits = [wait for run in runs for wait in run["lock_waits"]]
    assert len(waits) >= 2 * len(TICKS) and max(waits) < WRITER_WAIT_LIMIT_SECONDS, sorted(waits)[-5:]

    # Zero failed requests (a 404 "no forecast yet" is a correct answer before the first chain run is visible).
    failures = [a for a in answers if a.status not in (200, 404) or (a.status == 404 and a.path.startswith("/d"))]
    assert not failures, failures[:5]
    assert len(answers) > 100

    # Never older than the last completed materialization plus the bound, for every forecast answer.
    chain_runs = sorted((run["completed_at"], parse_window_key(run["window"])) for run in runs if run["chain"])
    forecasts = [a for a in answers if a.path.startswith("/predictions/")]
    stalest = 0.0
    for answer in forecasts:
        newest_due = [window for completed, window in chain_runs if completed <= answer.sent_at - bound]
        if newest_due:
            assert answer.forecast_window is not None and answer.forecast_window >= max(newest_due), answer
        missing = [c for c, window in chain_runs if answer.forecast_window is None or window > answer.forecast_window]
        if missing and min(missing) < answer.sent_at:
            stalest = max(stalest, answer.sent_at - min(missing))
    assert stalest <= bound
    # ...and the service caught up: the answers after the backfill show the last window.
    assert max(a.forecast_window for a in forecasts if a.forecast_window is not None) == chain_runs[-1][1]
    print(
        f"\n{len(answers)} requests during {len(runs)} runs, 0 failed; stalest forecast answer {stalest:.2f} s after "
        f"the run that made a newer one completed (bound {bound:.2f} s); {len(waits)} writes, longest wait for the "
        f"file {max(waits) * 1000:.0f} ms; {snapshot.copies} copies, each holding the file at most "
        f"{snapshot.lock_hold_seconds_max * 1000:.0f} ms; request p99 "
        f"{sorted(a.seconds for a in answers)[int(0.99 * (len(answers) - 1))] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    sys.exit(run_backfill(sys.argv[1], sys.argv[2]))
