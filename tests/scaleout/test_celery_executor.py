"""The celery deployment profile: two real celery workers on a real Redis broker, a Dagster instance on a real
PostgreSQL server, and the whole chain for two symbols, compared row by row with the in-process executor.

The broker is started by the profile's own script (deploy/celery/local-redis.sh) on a free port; the workers are
``dagster-celery worker start`` processes (one step at a time each, ``--pool=solo``) that load the profile's code
location (deploy/celery/definitions.py) with the same settings as the process launching the runs
(tests/scaleout/celery_run.py, run as a child so that its settings are the profile's, not this test session's).
The celery run writes the pipeline's tables to PostgreSQL (``storage.backend = "postgres"``, the backend for
workers on several machines); the in-process reference writes the embedded default's DuckDB file: the rows must be
the same.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, Definitions, in_process_executor

from lstm_pipeline.assets.accuracy_metrics import accuracy_metrics
from lstm_pipeline.assets.alerts import alerts
from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.market_bars_checks import market_bars_quality
from lstm_pipeline.assets.predictions import predictions
from lstm_pipeline.assets.trade_recommendations import trade_recommendations
from lstm_pipeline.assets.validations import validations
from lstm_pipeline.jobs import market_bars_update_job
from lstm_pipeline.resources import build_resources
from lstm_pipeline.settings import PROJECT_ROOT, load_settings
from lstm_pipeline.storage import database_at, database_for
from tests.helpers import range_tags, register_windows

REDIS_SCRIPT = PROJECT_ROOT / "deploy" / "celery" / "local-redis.sh"
SYMBOLS = ["AAPL", "MSFT"]
WARMUP = ("2025-06-13", "2025-06-17")  # two sessions of bars: the 48-window lookback of the first forecast
CHAIN = ("2025-06-17 09:30", "2025-06-17 10:30")  # four windows through the whole chain
TABLES = ("market_bars", "predictions", "validations", "accuracy_metrics", "trade_recommendations", "alerts")
VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _exports(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return {
        name.removeprefix("export "): value.strip('"')
        for name, _, value in (line.partition("=") for line in lines if line.startswith("export "))
    }


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Redis started (and stopped) by the profile's script; the celery.env it writes."""
    folder = tmp_path_factory.mktemp("redis")
    env = {**os.environ, "LSTM_PIPELINE_REDIS_DIR": str(folder), "LSTM_PIPELINE_REDIS_PORT": str(_free_port())}
    started = subprocess.run(["bash", str(REDIS_SCRIPT), "start"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    yield _exports(folder / "celery.env")
    stopped = subprocess.run(["bash", str(REDIS_SCRIPT), "stop"], env=env, capture_output=True, text=True)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr


def _profile_env(tmp_path: Path, broker: dict[str, str], postgres_server) -> dict[str, str]:
    """The environment every process of the profile shares: instance, batching, broker, pipeline settings."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url:\n      env: TEST_DAGSTER_PG_URL\n"
    )
    dagster_url = postgres_server.new_database("dagster").replace("postgresql://", "postgresql+psycopg2://", 1)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("LSTM_PIPELINE_", "POLYGON"))}
    env.update(broker)
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "TEST_DAGSTER_PG_URL": dagster_url,
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
        "LSTM_PIPELINE_SYMBOLS": ",".join(SYMBOLS),
        "LSTM_PIPELINE_DB_PATH": str(tmp_path / "celery.duckdb"),  # unused with the postgres backend
        "LSTM_PIPELINE_STORAGE_BACKEND": "postgres",
        "LSTM_PIPELINE_POSTGRES_URL": postgres_server.new_database("tables"),
        "LSTM_PIPELINE_MODELS_DIR": str(PROJECT_ROOT / "models"),
        "LSTM_PIPELINE_MARKET_DATA_SOURCE": "simulated",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    })
    return env


class Workers:
    """``dagster-celery worker start`` processes, each in its own session so that stopping ends exactly them."""

    def __init__(self, env: dict[str, str], folder: Path, count: int) -> None:
        self.names = [f"test-worker-{i}-{uuid.uuid4().hex[:6]}" for i in range(1, count + 1)]
        self.logs = [folder / f"{name}.log" for name in self.names]
        self.processes = []
        for name, log in zip(self.names, self.logs, strict=True):
            with log.open("w") as out:
                self.processes.append(subprocess.Popen(
                    [str(VENV_BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", env["DAGSTER_CELERY_CONFIG_YAML"], "-n", name, "--", "--pool=solo"],
                    env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                ))

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(f"{name}@" in log.read_text() and " ready." in log.read_text()
                      for name, log in zip(self.names, self.logs, strict=True)):
            for process, log in zip(self.processes, self.logs, strict=True):
                assert process.poll() is None, f"a celery worker exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "celery workers not ready:\n" + self.logs[0].read_text()[-3000:]
            time.sleep(0.5)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # warm shutdown of the wrapper and its celery worker
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _in_process_reference(env: dict[str, str], db_path: Path, instance) -> None:
    """The same two runs with the embedded default's in-process executor, on the same settings but its own file."""
    settings = load_settings(
        environ={**env, "LSTM_PIPELINE_DB_PATH": str(db_path), "LSTM_PIPELINE_STORAGE_BACKEND": "duckdb"}
    )
    defs = Definitions(
        assets=[market_bars, predictions, validations, accuracy_metrics, trade_recommendations, alerts],
        asset_checks=[market_bars_quality],
        jobs=[market_bars_update_job],
        resources=build_resources(settings),
        executor=in_process_executor,
    )
    job = defs.resolve_job_def("market_bars_update")
    warmup_keys = register_windows(instance, WARMUP[0], WARMUP[1])
    chain_keys = register_windows(instance, CHAIN[0], CHAIN[1])
    warm = job.execute_in_process(instance=instance, tags=range_tags(SYMBOLS, warmup_keys),
                                  asset_selection=[AssetKey("market_bars")])
    assert warm.success
    assert job.execute_in_process(instance=instance, tags=range_tags(SYMBOLS, chain_keys)).success


def _comparable(database, table: str) -> pd.DataFrame:
    """A table's rows without what differs by when and by which run they were written."""
    rows = database.read_rows(table)
    volatile = [c for c in rows.columns if c.endswith(("_at", "_by")) or c == "run_id"]
    rows = rows.drop(columns=volatile)
    return rows.sort_values(list(rows.columns[:4])).reset_index(drop=True)


@pytest.mark.slow  # two worker processes import TensorFlow and load the models: a few minutes on 2 shared cores
def test_two_celery_workers_materialize_the_chain_with_the_same_rows_as_in_process(
    broker, postgres_server, instance, tmp_path
):
    env = _profile_env(tmp_path, broker, postgres_server)
    # The instance's tables exist before the workers start, as workers.sh makes sure: two workers creating them at
    # once on a fresh database collide ("type run_tags already exists").
    migrated = subprocess.run([str(VENV_BIN / "dagster"), "instance", "migrate"], env=env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    workers = Workers(env, tmp_path, count=2)
    try:
        workers.wait_ready()
        launched = subprocess.run(
            [sys.executable, "-m", "tests.scaleout.celery_run", WARMUP[0], WARMUP[1], CHAIN[0], CHAIN[1]],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
        )
    finally:
        workers.stop()
    assert launched.returncode == 0, launched.stderr[-5000:]
    warmup_run, chain_run = json.loads(launched.stdout.strip().splitlines()[-1])
    assert warmup_run["success"] and chain_run["success"]
    # Every step of the chain ran as a celery task on one of the two workers (which one takes a step is the
    # broker's choice: the chain's steps run one after another, so both may or may not be used).
    assert set(chain_run["workers"]) >= {"market_bars", "market_bars_quality", *TABLES[1:]}
    used = {worker.split("@")[0] for run in (warmup_run, chain_run) for worker in run["workers"].values()}
    assert used and used <= set(workers.names)

    _in_process_reference(env, tmp_path / "in_process.duckdb", instance)
    celery_tables = database_for(load_settings(environ=env))
    assert not (tmp_path / "celery.duckdb").exists()  # the workers wrote to PostgreSQL only
    for table in TABLES:
        by_celery = _comparable(celery_tables, table)
        in_process = _comparable(database_at(tmp_path / "in_process.duckdb"), table)
        assert len(by_celery) > 0 or table == "alerts", table  # four quiet windows raise no alert
        pd.testing.assert_frame_equal(by_celery, in_process, check_exact=False, rtol=1e-9, obj=table)
