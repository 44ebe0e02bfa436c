"""One command for the whole stack: ``dagster dev`` (UI, daemon, code server) and the REST service, together.

Both run as child processes, each in its own process group so that stopping one stops everything it started.
Ctrl-C or SIGTERM stops both (SIGTERM to each group, SIGKILL after a grace period); if either exits by itself the
other is stopped too and its exit status is returned. ``lstm-pipeline start`` calls ``run_stack``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import FrameType

from lstm_pipeline.settings import PROJECT_ROOT, Settings, get_settings
from serving.app import transport_problem
from serving.dagster_control import DAGSTER_URL_ENV_VAR
from serving.keys import instance_dir

GRACE_SECONDS = 20.0


def _stop(processes: list[subprocess.Popen[bytes]], grace_seconds: float = GRACE_SECONDS) -> None:
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:  # the group too: a grandchild that outlived its parent must not be orphaned
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def run_stack(
    settings: Settings | None = None,
    *,
    dagster_port: int = 3000,
    api_host: str | None = None,
    api_port: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run ``dagster dev`` on 127.0.0.1:``dagster_port`` and the REST service on ``api.host``:``api.port`` (or the
    overrides) until Ctrl-C/SIGTERM or until either exits; returns an exit status."""
    settings = settings or get_settings()
    host, port = api_host or settings.api.host, api_port or settings.api.port
    api_settings = settings.model_copy(update={"api": settings.api.model_copy(update={"host": host, "port": port})})
    problem = transport_problem(api_settings)
    if problem:
        print(problem, file=sys.stderr, flush=True)
        return 2

    env = dict(os.environ if environ is None else environ)
    env.setdefault("DAGSTER_HOME", str(instance_dir(env)))
    os.makedirs(env["DAGSTER_HOME"], exist_ok=True)
    dagster_url = f"http://127.0.0.1:{dagster_port}"
    env[DAGSTER_URL_ENV_VAR] = dagster_url
    env["LSTM_PIPELINE_API_HOST"], env["LSTM_PIPELINE_API_PORT"] = host, str(port)
    dagster_bin = os.path.join(os.path.dirname(sys.executable), "dagster")
    commands = [
        [dagster_bin, "dev", "-h", "127.0.0.1", "-p", str(dagster_port), "-w", str(PROJECT_ROOT / "workspace.yaml")],
        [sys.executable, "-m", "serving"],
    ]
    processes: list[subprocess.Popen[bytes]] = []
    stopping = {"signal": None}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for command in commands:
            processes.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True))
        scheme = "https" if settings.api.tls_certfile else "http"
        print(
            f"Dagster UI: {dagster_url}\nREST API:   {scheme}://{host}:{port} (docs at /docs)\n"
            "Press Ctrl-C to stop both.",
            flush=True,
        )
        while stopping["signal"] is None and all(p.poll() is None for p in processes):
            time.sleep(0.2)
        exited = [p for p in processes if p.poll() is not None]
        status = 0 if stopping["signal"] is not None else (exited[0].returncode or 1)
        if exited and stopping["signal"] is None:
            name = "dagster dev" if exited[0] is processes[0] else "the REST service"
            print(f"{name} exited with status {exited[0].returncode}; stopping the other.", file=sys.stderr,
                  flush=True)
        return status
    finally:
        _stop(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("Stopped Dagster and the REST service.", flush=True)


def main() -> int:
    return run_stack()


if __name__ == "__main__":
    sys.exit(main())
