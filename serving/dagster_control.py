"""Talking to the running Dagster webserver: is it up, what ran, and launching jobs (the update, alert actions).

Launching goes through dagster-graphql's ``DagsterGraphQLClient``; the read-only questions (newest registered
window, last materializations, recent runs) are plain GraphQL queries with a short timeout, so a slow or absent
webserver makes those answers say so rather than hold a request. The service never touches the Dagster
instance's storage itself.

Two failures are kept apart: ``DagsterUnavailable`` (nothing answered: the API says 503, start Dagster) and
``DagsterRefused`` (the webserver answered, with an error: the job is unknown, the run config invalid, the code
location not loaded; the API says 502 and what Dagster answered).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

import httpx

DAGSTER_URL_ENV_VAR = "LSTM_PIPELINE_DAGSTER_URL"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
UPDATE_JOB = "market_bars_update"
ALERT_ACTIONS_JOB = "alert_actions"
"""``lstm_pipeline.operations_jobs.alert_actions_job``: acknowledges or resolves alerts in the pipeline's store."""
# Dagster's run tags for a partition range (the same values lstm_pipeline.partitions spells; not imported, so the
# service does not load the code location's definitions).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

_WINDOWS_QUERY = """
query { assetNodeOrError(assetKey: {path: ["market_bars"]}) {
  __typename ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }
"""
_ASSETS_QUERY = """
query { assetNodes { assetKey { path } assetMaterializations(limit: 1) { runId timestamp } } }
"""
_RUNS_QUERY = """
query Runs($job: String!, $limit: Int!) { runsOrError(filter: {pipelineName: $job}, limit: $limit) {
  __typename ... on Runs { results { runId status startTime endTime } } } }
"""


class DagsterError(RuntimeError):
    """Dagster could not do what was asked; the message is one sentence."""


class DagsterUnavailable(DagsterError):
    """Dagster's webserver did not answer (not running, wrong address, timed out)."""


class DagsterRefused(DagsterError):
    """Dagster's webserver answered with an error (unknown job, invalid run config, code location not loaded)."""


def _stamp(seconds: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(float(seconds), dt.UTC) if seconds not in (None, "") else None


class DagsterControl:
    def __init__(self, url: str | None = None, *, timeout_seconds: float = 3.0, launch_timeout_seconds: float = 30.0
                 ) -> None:
        self.url = (url or os.environ.get(DAGSTER_URL_ENV_VAR) or DEFAULT_DAGSTER_URL).rstrip("/")
        self.timeout_seconds = timeout_seconds
        """For the questions status and performance ask in passing."""
        self.launch_timeout_seconds = launch_timeout_seconds
        """For what an operator asked for (a launch and the window it needs): a busy webserver gets longer."""

    def _unavailable(self, why: str) -> DagsterUnavailable:
        return DagsterUnavailable(
            f"Dagster's webserver at {self.url} {why}; start it (`lstm-pipeline start` runs it with this service) "
            f"or point {DAGSTER_URL_ENV_VAR} at it."
        )

    def _refused(self, what: str, answer: str) -> DagsterRefused:
        answer = " ".join(answer.split())[:300].rstrip(".")
        return DagsterRefused(
            f"Dagster's webserver at {self.url} refused to {what}: it answered {answer}; check the code location "
            "loads without errors in the Dagster UI (Deployment) and reload it."
        )

    def health(self) -> tuple[bool, str]:
        try:
            response = httpx.get(f"{self.url}/server_info", timeout=min(self.timeout_seconds, 2.0))
            response.raise_for_status()
            version = response.json().get("dagster_version", "?")
        except (httpx.HTTPError, ValueError) as error:
            return False, f"Dagster's webserver at {self.url} is not reachable ({type(error).__name__})."
        return True, f"Dagster {version} answers at {self.url}."

    def query(self, query: str, variables: dict[str, Any] | None = None, *, timeout_seconds: float | None = None
              ) -> dict[str, Any]:
        try:
            response = httpx.post(
                f"{self.url}/graphql", json={"query": query, "variables": variables or {}},
                timeout=timeout_seconds or self.timeout_seconds,
            )
        except httpx.HTTPError as error:
            raise self._unavailable(f"is not reachable ({type(error).__name__})") from None
        try:
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPStatusError, ValueError) as error:
            raise self._refused("answer a query", f"HTTP {response.status_code} ({type(error).__name__})") from None
        if body.get("errors"):
            raise self._refused("answer a query", str(body["errors"][0].get("message", "?")))
        return body["data"]

    def newest_window(self) -> str | None:
        """The newest registered session window key (None: none registered yet)."""
        node = self.query(_WINDOWS_QUERY, timeout_seconds=self.launch_timeout_seconds)["assetNodeOrError"]
        if node.get("__typename") != "AssetNode":
            raise self._refused("find the market_bars asset", f"{node.get('__typename')} (is this project's code "
                                "location loaded?)")
        for dimension in node["partitionKeysByDimension"]:
            if dimension["name"] == "window":
                return max(dimension["partitionKeys"], default=None)
        return None

    def last_materializations(self) -> list[dict[str, Any]]:
        nodes = self.query(_ASSETS_QUERY)["assetNodes"]
        rows = []
        for node in nodes:
            events = node.get("assetMaterializations") or []
            last = events[0] if events else None
            rows.append({
                "asset": "/".join(node["assetKey"]["path"]),
                "last_materialized_at": _stamp(int(last["timestamp"]) / 1000) if last else None,
                "run_id": last["runId"] if last else None,
            })
        return sorted(rows, key=lambda row: row["asset"])

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        result = self.query(_RUNS_QUERY, {"job": UPDATE_JOB, "limit": limit})["runsOrError"]
        if result.get("__typename") != "Runs":
            raise self._refused("list runs", str(result.get("__typename")))
        runs = []
        for run in result["results"]:
            started, ended = _stamp(run.get("startTime")), _stamp(run.get("endTime"))
            runs.append({
                "run_id": run["runId"], "status": run["status"], "started_at": started, "ended_at": ended,
                "duration_seconds": (ended - started).total_seconds() if started and ended else None,
            })
        return runs

    def launch_update(self, symbols: Sequence[str], window: str) -> list[str]:
        """Launch ``market_bars_update`` for ``symbols`` (a contiguous run of the configured order) at ``window``:
        one run, the same range tags the market sensor uses; returns its run id."""
        tags = {
            RANGE_START_TAG: f"{symbols[0]}|{window}",
            RANGE_END_TAG: f"{symbols[-1]}|{window}",
            "lstm_pipeline/launched_by": "rest_api",
        }
        return [self.launch(UPDATE_JOB, tags=tags)]

    def launch_alert_action(self, alert_key: str, action: str, by: str) -> str:
        """Launch ``alert_actions`` to ``action`` (acknowledge or resolve) the open alerts with ``alert_key``."""
        config = {"ops": {"apply_alert_action": {"config": {"alert_key": alert_key, "action": action, "by": by}}}}
        return self.launch(ALERT_ACTIONS_JOB, run_config=config, tags={"lstm_pipeline/launched_by": "rest_api"})

    def launch(self, job: str, *, run_config: dict[str, Any] | None = None, tags: dict[str, str] | None = None
               ) -> str:
        """Launch one run of ``job``; its run id. ``DagsterUnavailable`` when the webserver does not answer,
        ``DagsterRefused`` with its answer when it refuses (unknown job, invalid config, location not loaded)."""
        from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

        parsed = httpx.URL(self.url)
        try:
            client = DagsterGraphQLClient(
                parsed.host, port_number=parsed.port, use_https=parsed.scheme == "https",
                timeout=int(self.launch_timeout_seconds),
            )
            return client.submit_job_execution(job, run_config=run_config or {}, tags=tags)
        except DagsterGraphQLClientError as error:
            if _unreachable(error):
                raise self._unavailable(f"is not reachable (launching {job})") from None
            raise self._refused(f"launch {job}", _answer(error)) from None


def _unreachable(error: BaseException) -> bool:
    """Whether a client error means nothing answered (connection refused, reset or timed out)."""
    import requests

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, requests.exceptions.ConnectionError | requests.exceptions.Timeout | ConnectionError
                      | TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _answer(error: BaseException) -> str:
    """What Dagster answered, from a ``DagsterGraphQLClientError`` (its type name and message, or the config
    errors' messages)."""
    args = getattr(error, "args", ())
    kind = str(args[0]) if args else type(error).__name__
    body = args[1] if len(args) > 1 else getattr(error, "body", None)
    if isinstance(body, list):
        body = "; ".join(str(item.get("message", item)) if isinstance(item, dict) else str(item) for item in body)
    if not body:
        cause = error.__cause__
        first = kind.splitlines()[0].strip() if kind.strip() else type(error).__name__
        return f"{first} ({type(cause).__name__}: {cause})" if cause is not None else first
    return f"{kind}: {body}"
