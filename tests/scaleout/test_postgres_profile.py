"""The Postgres deployment profile (deploy/postgres/local-postgres.sh) on a real PostgreSQL 15 cluster.

One cluster for the module, started and stopped by the script itself in a temporary folder on a free port: the
script initializes it, starts it, creates the databases and writes the instance config and the env file; a
``market_bars`` run on that instance succeeds; the run survives a stop and a start; ``stop`` stops the server.
With the profile's planned-events setting a failed run's partitions are NOT marked failed by Dagster (its
documented trade-off, checked here on this Dagster version), and ``run_failure_alert_sensor`` is what reports them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    build_run_status_sensor_context,
    materialize,
)
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.market.bars import MarketDataError
from lstm_pipeline.partitions import market_bars_partitions
from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.sensors.run_failures import build_run_failure_sensors
from lstm_pipeline.settings import PROJECT_ROOT
from tests.helpers import range_tags, register_windows

SCRIPT = PROJECT_ROOT / "deploy" / "postgres" / "local-postgres.sh"
SYMBOLS = ["AAPL", "MSFT"]  # the first two configured symbols: AAPL..MSFT is exactly them
BATCHING = ("DAGSTER_EVENT_BATCH_SIZE", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Profile:
    """The script, run against one folder and port."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.env = {**os.environ, "LSTM_PIPELINE_PG_DIR": str(folder), "LSTM_PIPELINE_PG_PORT": str(port)}

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True,
                              timeout=120)

    def exports(self) -> dict[str, str]:
        lines = (self.folder / "dagster.env").read_text().splitlines()
        return {
            name.removeprefix("export "): value.strip('"')
            for name, _, value in (line.partition("=") for line in lines if line.startswith("export "))
        }


@pytest.fixture(scope="module")
def profile():
    # The server runs as the postgres OS user, which must reach the folder: not under pytest's private tmp root.
    parent = Path(tempfile.mkdtemp(prefix="lstm-profile-"))
    parent.chmod(0o755)
    profile = Profile(parent / "pg", _free_port())
    started = profile.run("start")
    assert started.returncode == 0, started.stderr
    yield profile
    profile.run("stop")
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def profile_env(profile, monkeypatch):
    """This process as one of the profile's processes: the env file's variables exported."""
    for name, value in profile.exports().items():
        monkeypatch.setenv(name, value)
    return profile.exports()


def _instance(profile: Profile) -> DagsterInstance:
    return DagsterInstance.from_config(str(profile.folder / "dagster_home"))


def test_start_writes_an_instance_config_and_env_for_postgres_with_batching(profile):
    status = profile.run("status")
    assert status.returncode == 0 and f"127.0.0.1:{profile.port}" in status.stdout
    exports = profile.exports()
    assert exports["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
    assert exports["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] == "1"
    assert exports["DAGSTER_HOME"] == str(profile.folder / "dagster_home")
    config = (profile.folder / "dagster_home" / "dagster.yaml").read_text()
    assert f"port: {profile.port}" in config and "env: DAGSTER_PG_PASSWORD" in config
    assert exports["DAGSTER_PG_PASSWORD"] not in config  # the password lives only in the 0600 env file
    assert oct((profile.folder / "dagster.env").stat().st_mode & 0o777) == "0o600"
    # TCP needs the password; the databases for Dagster and the pipeline's tables exist.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://lstm_pipeline:wrong@127.0.0.1:{profile.port}/dagster").close()
    with psycopg.connect(exports["LSTM_PIPELINE_POSTGRES_URL"]) as connection:
        assert connection.execute("SELECT current_database()").fetchone() == ("lstm_pipeline",)
    # A second start is a no-op on the running server.
    again = profile.run("start")
    assert again.returncode == 0 and "already running" in again.stdout


def test_a_backfill_run_on_the_profile_instance_succeeds_and_survives_a_restart(profile, profile_env, store):
    instance = _instance(profile)
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    keys = register_windows(instance, "2025-06-02", "2025-06-03")[:8]
    result = materialize(
        [market_bars], instance=instance, tags=range_tags(SYMBOLS, keys),
        resources={"store": store, "market_data": SimulatedMarketData(seed=0)},
    )
    assert result.success
    assert len(store.read_bars(include_rejected=True)) == len(SYMBOLS) * len(keys)
    # The batching settings took effect: one planned event for the asset's whole subset, not one per partition.
    planned = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    assert len(planned.records) == 1
    materialized = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    assert len(materialized.records) == len(SYMBOLS) * len(keys)
    instance.dispose()

    assert profile.run("stop").returncode == 0
    assert profile.run("status").returncode == 3
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(profile_env["LSTM_PIPELINE_POSTGRES_URL"], connect_timeout=5).close()
    assert profile.run("start").returncode == 0
    reopened = _instance(profile)
    assert reopened.get_run_by_id(result.run_id).status == DagsterRunStatus.SUCCESS
    reopened.dispose()


class ProviderDown(SimulatedMarketData):
    """A market-data source that fails for every symbol, so the run fails."""

    def _fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        raise MarketDataError(f"The provider refused {symbol}; try again later.")


def test_a_failed_run_is_not_marked_failed_per_partition_so_the_alert_sensor_reports_it(profile, profile_env, store):
    instance = _instance(profile)
    keys = register_windows(instance, "2025-06-04", "2025-06-05")[:3]
    result = materialize(
        [market_bars], instance=instance, tags=range_tags(SYMBOLS, keys), raise_on_error=False,
        resources={"store": store, "market_data": ProviderDown(seed=0)},
    )
    assert not result.success
    # Dagster's trade-off of DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: no partition of the failed run is
    # marked failed (without the setting all 6 would be).
    status = get_and_update_asset_status_cache_value(instance, AssetKey("market_bars"), market_bars_partitions)
    failed = status.deserialize_failed_partition_subsets(market_bars_partitions).get_partition_keys()
    assert not [key for key in failed if key.keys_by_dimension["window"] in keys]

    # The run failure alert is what reports them: one ERROR alert naming the job, the symbols and the cause.
    failure_sensor, _, _ = build_run_failure_sensors()
    run = instance.get_run_by_id(result.run_id)
    (failure,) = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.RUN_FAILURE).records
    with build_run_status_sensor_context(
        sensor_name=failure_sensor.name, dagster_event=failure.event_log_entry.dagster_event,
        dagster_instance=instance, dagster_run=run, resources={"store": store},
    ) as context, context.for_run_failure() as failure_context:
        failure_sensor(failure_context)
    (alert,) = store.read_rows("alerts", ["source = ?"], ["runs"]).itertuples(index=False)
    assert (alert.level, alert.kind) == ("ERROR", "run_failed")
    assert f"{run.job_name} for AAPL..MSFT failed" in alert.message and "The provider refused" in alert.message
    instance.dispose()

