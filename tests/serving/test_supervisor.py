"""``run_stack``: one process starts ``dagster dev`` and the REST service, prints both URLs, and Ctrl-C stops both
(and everything they started) in a subprocess, as a user would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from lstm_pipeline.settings import PROJECT_ROOT
from tests.serving.conftest import READER_KEY, make_service
from tests.serving.test_control_dagster import free_port

SCRIPT = "import sys; from serving.supervisor import run_stack; sys.exit(run_stack(dagster_port={d}, api_port={a}))"


def test_the_stack_starts_both_prints_both_urls_and_ctrl_c_stops_both_with_no_orphan(tmp_path, populated_db):
    service = make_service(tmp_path, populated_db)
    # Runs stay queued (no run starts while the daemon's sensors tick during the test).
    (service.home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 0\n"
    )
    dagster_port, api_port = free_port(), free_port()
    output = tmp_path / "stack.log"
    with output.open("wb") as log:
        stack = subprocess.Popen(
            [sys.executable, "-c", SCRIPT.format(d=dagster_port, a=api_port)], cwd=PROJECT_ROOT,
            env={**os.environ, **service.environ}, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                api = httpx.get(f"http://127.0.0.1:{api_port}/status", headers={"X-API-Key": READER_KEY})
                dagster = httpx.get(f"http://127.0.0.1:{dagster_port}/server_info")
                if api.status_code == 200 and dagster.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert stack.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.5)
        text = output.read_text()
        assert f"Dagster UI: http://127.0.0.1:{dagster_port}" in text
        assert f"REST API:   http://127.0.0.1:{api_port}" in text
        family = psutil.Process(stack.pid).children(recursive=True)
        assert len(family) >= 3  # dagster dev (and its webserver, daemon, code server) and the REST service
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=90) == 0
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert alive == [], [p.cmdline() for p in alive]
        assert "Stopped Dagster and the REST service." in output.read_text()
        assert READER_KEY not in output.read_text()
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
