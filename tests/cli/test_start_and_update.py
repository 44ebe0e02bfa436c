"""``start`` brings up the Dagster UI and the REST service and stops both on SIGTERM; ``update`` launches the chain
through a real Dagster webserver and follows the run to its end. Both run the console script in a subprocess."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from dagster import DagsterInstance

from lstm_pipeline.market.calendar import NEW_YORK, session_windows, window_key
from lstm_pipeline.partitions import register_session_windows
from tests.cli.conftest import SCRIPT, run_cli

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODELS = PROJECT_ROOT / "models"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(urls: list[str], process: subprocess.Popen, limit_seconds: float) -> None:
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited before it answered"
        if all(_answers(url) for url in urls):
            return
        time.sleep(1.0)
    raise AssertionError(f"{urls} did not all answer within {limit_seconds} s")


@pytest.fixture
def one_symbol(populated):
    config = json.loads(populated["config"].read_text())
    config.update({"symbols": ["AAPL"], "models_dir": str(SHIPPED_MODELS)})
    populated["config"].write_text(json.dumps(config))
    home = Path(populated["env"]["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    return populated


def test_start_serves_the_ui_and_the_rest_service_and_stops_both_on_sigterm(one_symbol):
    dagster_port, api_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [str(SCRIPT), "start", "--dagster-port", str(dagster_port), "--api-port", str(api_port)],
        env=one_symbol["env"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=one_symbol["tmp_path"], start_new_session=True,
    )
    try:
        _wait_for([f"http://127.0.0.1:{dagster_port}/server_info", f"http://127.0.0.1:{api_port}/health"], process,
                  240)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0
    assert f"Dagster UI: http://127.0.0.1:{dagster_port}" in output and f"127.0.0.1:{api_port}" in output
    assert "Stopped Dagster and the REST service." in output
    assert not _answers(f"http://127.0.0.1:{dagster_port}/server_info")
    assert not _answers(f"http://127.0.0.1:{api_port}/health")


def test_update_launches_the_chain_through_the_webserver_and_follows_it(one_symbol):
    home = Path(one_symbol["env"]["DAGSTER_HOME"])
    # Runs start as soon as the webserver launches them (no daemon in this test to dequeue them).
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    windows = session_windows(pd.Timestamp("2026-03-03 09:30", tz=NEW_YORK), pd.Timestamp("2026-03-03 16:00",
                                                                                          tz=NEW_YORK))
    instance = DagsterInstance.from_config(str(home))
    register_session_windows(instance, [window_key(stamp) for stamp in windows])
    instance.dispose()

    port = _free_port()
    webserver = subprocess.Popen(
        [str(SCRIPT.with_name("dagster-webserver")), "-h", "127.0.0.1", "-p", str(port), "-w",
         str(PROJECT_ROOT / "workspace.yaml")],
        env=one_symbol["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT,
        start_new_session=True,
    )
    try:
        _wait_for([f"http://127.0.0.1:{port}/server_info"], webserver, 180)
        url = f"http://127.0.0.1:{port}"
        result = run_cli(one_symbol, "update", "AAPL", "--dagster-url", url, "--timeout", "400", "--json",
                         timeout=500)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        # No --window: the newest registered window.
        assert document["status"] == "SUCCESS" and document["window"] == "2026-03-03-15:45"
        assert document["symbols"] == ["AAPL"] and document["url"].startswith(f"{url}/runs/")
        status = json.loads(run_cli(one_symbol, "status", "--json").stdout)
        (aapl,) = status["per_symbol"]
        assert aapl["latest_bar"].startswith("2026-03-03T15:45")
        unknown = run_cli(one_symbol, "update", "AAPL", "--dagster-url", url, "--window", "2026-03-04-09:30")
        assert unknown.returncode == 3 and "did not launch market_bars_update" in unknown.stderr
    finally:
        os.killpg(webserver.pid, signal.SIGTERM)
        webserver.wait(timeout=60)
