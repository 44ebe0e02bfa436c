"""Talking to the running Dagster webserver: is it up, what ran, and launching the update job.

Launching goes through dagster-graphql's ``DagsterGraphQLClient``; the read-only questions (newest registered
window, last materializations, recent runs) are plain GraphQL queries with a short timeout, so a slow or absent
webserver makes those answers say so rather than hold a request. The service never touches the Dagster
instance's storage itself.
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


class DagsterUnavailable(RuntimeError):
    """Dagster's webserver did not answer (or answered with an error); the message is one sentence."""


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
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise self._unavailable(f"is not reachable ({type(error).__name__})") from None
        if body.get("errors"):
            raise self._unavailable(f"refused a query ({body['errors'][0].get('message', '?')})")
        return body["data"]

    def newest_window(self) -> str | None:
        """The newest registered session window key (None: none registered yet)."""
        node = self.query(_WINDOWS_QUERY, timeout_seconds=self.launch_timeout_seconds)["assetNodeOrError"]
        if node.get("__typename") != "AssetNode":
            raise self._unavailable("does not know the market_bars asset (is this project's code location loaded?)")
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
            raise self._unavailable("could not list runs")
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
        from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

        parsed = httpx.URL(self.url)
        tags = {
            RANGE_START_TAG: f"{symbols[0]}|{window}",
            RANGE_END_TAG: f"{symbols[-1]}|{window}",
            "lstm_pipeline/launched_by": "rest_api",
        }
        try:
            client = DagsterGraphQLClient(
                parsed.host, port_number=parsed.port, use_https=parsed.scheme == "https",
                timeout=int(self.launch_timeout_seconds),
            )
            return [client.submit_job_execution(UPDATE_JOB, tags=tags)]
        except DagsterGraphQLClientError as error:
            reason = str(error).splitlines()[0][:200]
            raise self._unavailable(f"did not launch {UPDATE_JOB} ({reason})") from None
