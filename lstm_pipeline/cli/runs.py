"""``update``: launch ``market_bars_update`` through the running Dagster webserver and follow the run.

The launch goes through dagster-graphql's ``DagsterGraphQLClient`` (the webserver's run launcher starts the run, as
if launched from the UI); the newest registered session window and the run's step progress are plain GraphQL
queries. The CLI never touches the Dagster instance's storage itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from lstm_pipeline.cli.output import UNREACHABLE, CliError

DAGSTER_URL_ENV_VAR = "LSTM_PIPELINE_DAGSTER_URL"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
UPDATE_JOB = "market_bars_update"
TERMINAL = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

_WINDOWS_QUERY = """
query { assetNodeOrError(assetKey: {path: ["market_bars"]}) {
  __typename ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }
"""
_RUN_QUERY = """
query Run($runId: ID!) { runOrError(runId: $runId) {
  __typename ... on Run { status stepStats { stepKey status } } } }
"""
_FAILURE_QUERY = """
query Logs($runId: ID!) { logsForRun(runId: $runId) {
  __typename ... on EventConnection { events { __typename
    ... on ExecutionStepFailureEvent { stepKey error { message cause { message cause { message } } } }
    ... on RunFailureEvent { message } } } } }
"""


def dagster_url(option: str | None) -> str:
    return (option or os.environ.get(DAGSTER_URL_ENV_VAR) or DEFAULT_DAGSTER_URL).rstrip("/")


@dataclass
class DagsterWebserver:
    url: str
    timeout_seconds: float = 5.0

    def _unreachable(self, why: str) -> CliError:
        return CliError(
            f"Dagster's webserver at {self.url} {why}; start it with `lstm-pipeline start` or point "
            f"--dagster-url (or {DAGSTER_URL_ENV_VAR}) at it.",
            UNREACHABLE,
        )

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}},
                                  timeout=self.timeout_seconds)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise self._unreachable(f"is not reachable ({type(error).__name__})") from None
        if body.get("errors"):
            raise self._unreachable(f"refused a query ({body['errors'][0].get('message', '?')})")
        return body["data"]

    def newest_window(self) -> str:
        node = self.query(_WINDOWS_QUERY)["assetNodeOrError"]
        if node.get("__typename") != "AssetNode":
            raise self._unreachable("does not know the market_bars asset (is this project's code location loaded?)")
        keys = next((d["partitionKeys"] for d in node["partitionKeysByDimension"] if d["name"] == "window"), [])
        if not keys:
            raise CliError(
                "No session window is registered yet; turn on market_windows_sensor (or give --window) and try "
                "again."
            )
        return max(keys)

    def launch_update(self, symbols: Sequence[str], window: str) -> str:
        from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

        parts = urlsplit(self.url)
        tags = {RANGE_START_TAG: f"{symbols[0]}|{window}", RANGE_END_TAG: f"{symbols[-1]}|{window}",
                "lstm_pipeline/launched_by": "cli"}
        try:
            client = DagsterGraphQLClient(parts.hostname or "127.0.0.1", port_number=parts.port,
                                          use_https=parts.scheme == "https", timeout=int(max(self.timeout_seconds, 10)))
            return client.submit_job_execution(UPDATE_JOB, tags=tags)
        except DagsterGraphQLClientError as error:
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise self._unreachable(f"did not launch {UPDATE_JOB} ({reason})") from None
        except Exception as error:  # noqa: BLE001 - requests/gql transport errors: the webserver is not there
            raise self._unreachable(f"is not reachable ({type(error).__name__})") from None

    def run_progress(self, run_id: str) -> tuple[str, dict[str, str]]:
        """The run's status and each started step's status."""
        run = self.query(_RUN_QUERY, {"runId": run_id})["runOrError"]
        if run.get("__typename") != "Run":
            raise self._unreachable(f"does not know run {run_id}")
        return run["status"], {step["stepKey"]: step["status"] for step in run.get("stepStats") or []}


def failure_reason(webserver: DagsterWebserver, run_id: str) -> str | None:
    """The first failed step and its error's first line, else the run failure's message (None if unknown)."""
    try:
        logs = webserver.query(_FAILURE_QUERY, {"runId": run_id})["logsForRun"]
    except CliError:
        return None
    events = logs.get("events") or []
    for event in events:
        if event.get("__typename") == "ExecutionStepFailureEvent":
            error = event.get("error") or {}
            while error.get("cause"):  # Dagster wraps the asset's own error: report the innermost
                error = error["cause"]
            message = (error.get("message") or "").strip().splitlines()
            return f"step {event.get('stepKey')} failed: {message[0][:300] if message else 'no message'}"
    for event in events:
        if event.get("__typename") == "RunFailureEvent" and event.get("message"):
            return str(event["message"]).splitlines()[0][:300]
    return None


def follow(webserver: DagsterWebserver, run_id: str, steps_total: int, timeout_seconds: float,
           on_progress: Callable[[str, dict[str, str]], None], poll_seconds: float = 1.0,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> str:
    """Poll the run until it ends (or ``timeout_seconds`` pass); returns its last status."""
    started = clock()
    while True:
        status, steps = webserver.run_progress(run_id)
        on_progress(status, steps)
        if status in TERMINAL or clock() - started >= timeout_seconds:
            return status
        sleep(poll_seconds)
