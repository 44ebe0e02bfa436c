"""The control endpoints against a real dagster-webserver on 127.0.0.1 (free port, temporary DAGSTER_HOME)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance

from lstm_pipeline.partitions import register_session_windows
from lstm_pipeline.settings import PROJECT_ROOT
from serving.dagster_control import DagsterControl, DagsterRefused
from tests.serving.conftest import OPERATOR_KEY, READER_KEY, make_service
from tests.serving.live import live_server

WINDOWS = ["2025-01-02-09:30", "2025-01-02-09:45"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dagster_webserver(tmp_path, populated_db):
    # The runs it launches really write: they get a copy of the shared store, never the store other tests read.
    store = tmp_path / "pipeline.duckdb"
    shutil.copyfile(populated_db, store)
    service = make_service(tmp_path, store)
    home = Path(service.environ["DAGSTER_HOME"])
    # The default coordinator launches a run at once (the project's instance queues runs for the daemon).
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
    )
    with DagsterInstance.from_config(str(home)) as instance:
        register_session_windows(instance, WINDOWS)
    port = free_port()
    env = {**os.environ, **service.environ}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-h", "127.0.0.1", "-p", str(port),
         "-w", str(PROJECT_ROOT / "workspace.yaml")],
        cwd=PROJECT_ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    control = DagsterControl(f"http://127.0.0.1:{port}", timeout_seconds=10)
    deadline = time.monotonic() + 180
    try:
        while True:  # up, and the code location loaded (it knows market_bars)
            try:
                if control.health()[0] and control.newest_window() == WINDOWS[-1]:
                    break
            except Exception:  # noqa: BLE001, S110 - still loading
                pass
            assert process.poll() is None, "dagster-webserver exited"
            assert time.monotonic() < deadline, "dagster-webserver did not load the code location in time"
            time.sleep(0.5)
        service.environ["LSTM_PIPELINE_DAGSTER_URL"] = control.url
        yield service, control
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


_RUN_QUERY = """query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status jobName
  tags { key value } } } }"""


def test_control_endpoints_launch_the_update_for_the_newest_window_through_dagster(dagster_webserver):
    service, control = dagster_webserver
    with live_server(service.app()) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/health").json()["dagster"]["ok"] is True
        everything = client.post("/control/update", headers={"X-API-Key": OPERATOR_KEY})
        assert everything.status_code == 200, everything.text
        body = everything.json()
        assert (body["job"], body["window"], body["symbols"]) == ("market_bars_update", WINDOWS[-1], ["AAPL", "MSFT"])
        single = client.post("/control/update/msft", headers={"X-API-Key": OPERATOR_KEY})
        assert single.status_code == 200, single.text
        one = single.json()
        assert one["symbols"] == ["MSFT"] and len(one["run_ids"]) == 1
        for run_id, (first, last) in ((body["run_ids"][0], ("AAPL", "MSFT")), (one["run_ids"][0], ("MSFT", "MSFT"))):
            run = control.query(_RUN_QUERY, {"id": run_id})["runOrError"]
            assert run["__typename"] == "Run" and run["jobName"] == "market_bars_update"
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            assert tags["dagster/asset_partition_range_start"] == f"{first}|{WINDOWS[-1]}"
            assert tags["dagster/asset_partition_range_end"] == f"{last}|{WINDOWS[-1]}"
        launched = {body["run_ids"][0], one["run_ids"][0]}
        audit = client.get("/audit", headers={"X-API-Key": OPERATOR_KEY}).json()["items"]
        assert {run for entry in audit for run in (entry["run_ids"] or [])} == launched
        runs = client.get("/performance/AAPL", headers={"X-API-Key": READER_KEY}).json()["runs"]
        assert launched <= {run["run_id"] for run in runs}
        assert client.get("/status", headers={"X-API-Key": READER_KEY}).json()["assets"] is not None
    deadline = time.monotonic() + 90
    while True:  # the run really started
        status = control.query(_RUN_QUERY, {"id": one["run_ids"][0]})["runOrError"]["status"]
        if status not in ("QUEUED", "NOT_STARTED"):
            break
        assert time.monotonic() < deadline, f"the launched run stayed {status}"
        time.sleep(0.5)


def _finished(control: DagsterControl, run_id: str) -> str:
    deadline = time.monotonic() + 180
    while True:
        status = control.query(_RUN_QUERY, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        assert time.monotonic() < deadline, f"run {run_id} stayed {status}"
        time.sleep(0.5)


def _open_alerts_once_written(client: httpx.Client, written: Callable[[dict], bool]) -> dict[str, str | None]:
    """AAPL's open alerts (key -> acknowledged_by) once a run's write shows: answers lag a write by the snapshot's
    freshness bound (seconds), so this asks again until then."""
    deadline = time.monotonic() + 10
    while True:
        listed = client.get("/alerts", headers={"X-API-Key": OPERATOR_KEY}, params={"active": "true",
                                                                                  "symbol": "AAPL"}).json()
        alerts = {a["alert_key"]: a["acknowledged_by"] for a in listed["items"]}
        if written(alerts) or time.monotonic() > deadline:
            return alerts
        time.sleep(0.2)


def test_alert_ack_and_resolve_run_through_dagster_and_refusals_say_what_dagster_answered(dagster_webserver,
                                                                                        monkeypatch):
    service, control = dagster_webserver
    operator = {"X-API-Key": OPERATOR_KEY}
    with live_server(service.app()) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/alerts/confidence_low:AAPL/ack", headers={"X-API-Key": READER_KEY}).status_code == 403
        ack = client.post("/alerts/confidence_low:AAPL/ack", headers=operator)
        assert ack.status_code == 200, ack.text
        body = ack.json()
        assert (body["job"], body["action"], body["open_alerts"], len(body["run_ids"])) == (
            "alert_actions", "acknowledge", 1, 1)
        run = control.query(_RUN_QUERY, {"id": body["run_ids"][0]})["runOrError"]
        assert run["jobName"] == "alert_actions"
        assert _finished(control, body["run_ids"][0]) == "SUCCESS"
        acknowledged = _open_alerts_once_written(client, lambda alerts: alerts["confidence_low:AAPL"] is not None)
        assert acknowledged == {"confidence_low:AAPL": "api:env-2", "prediction_error:AAPL": None}
        resolve = client.post("/alerts/confidence_low:AAPL/resolve", headers=operator)
        assert resolve.status_code == 200 and _finished(control, resolve.json()["run_ids"][0]) == "SUCCESS"
        assert set(_open_alerts_once_written(client, lambda alerts: "confidence_low:AAPL" not in alerts)) == {
            "prediction_error:AAPL"}
        assert client.post("/alerts/confidence_low:AAPL/resolve", headers=operator).status_code == 404  # not open
        audit = client.get("/audit", headers=operator).json()["items"]
        assert [(e["path"], e["run_ids"]) for e in audit if e["outcome"] == 200] == [
            ("/alerts/confidence_low:AAPL/resolve", resolve.json()["run_ids"]),
            ("/alerts/confidence_low:AAPL/ack", body["run_ids"]),
        ]
        # Dagster answers, but refuses: 502 quoting its answer, not "start Dagster".
        monkeypatch.setattr("serving.dagster_control.UPDATE_JOB", "no_such_job")
        refused = client.post("/control/update", headers=operator)
        assert refused.status_code == 502, refused.text
        assert "refused to launch no_such_job" in refused.json()["detail"]
        assert "NotFoundError" in refused.json()["detail"] and "start it" not in refused.json()["detail"]
    with pytest.raises(DagsterRefused, match="RunConfigValidationInvalid"):
        control.launch("alert_actions", run_config={"ops": {"apply_alert_action": {"config": {"alert_key": 1}}}})
