"""``GET /alerts`` (``level=``, ``since=``, ``active=``, ``symbol=``), newest first, paginated; and the operator's
``POST /alerts/{alert_key}/ack`` and ``POST /alerts/{alert_key}/resolve``.

The service never writes the pipeline's store, so acknowledging or resolving asks Dagster to launch the small
``alert_actions`` job that does (``lstm_pipeline.operations.alert_channels``), and answers with its run id: the
alert reads as acknowledged or resolved once that run has finished (seconds). 404 when no open alert has the key
(read from the snapshot), 503 when Dagster does not answer, 502 when it refuses the launch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from serving import queries
from serving.dagster_control import ALERT_ACTIONS_JOB, DagsterError
from serving.deps import DagsterDep, IsoDateTime, SnapshotDep, dagster_failure
from serving.models import Alert, AlertActionLaunched
from serving.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from serving.security import Principal, require_operator, require_reader

router = APIRouter(tags=["monitoring"])
SymbolFilter = Annotated[str | None, Query(max_length=16, description="Only this symbol's alerts.")]
Level = Annotated[Literal["INFO", "WARNING", "ERROR", "CRITICAL"] | None, Query(description="Only this level.")]
Since = Annotated[IsoDateTime | None, Query(description="Only alerts raised at or after this time.")]
Active = Annotated[bool | None, Query(description="true: open alerts only; false: resolved only; absent: all.")]
AlertKey = Annotated[str, Path(min_length=1, max_length=200, description="The alert's key, e.g. "
                               "prediction_error:AAPL (GET /alerts lists them).")]


@router.get("/alerts", response_model=Page[Alert], summary="Alerts, newest first",
            dependencies=[Depends(require_reader)])
def list_alerts(
    snapshot: SnapshotDep, symbol: SymbolFilter = None, level: Level = None, since: Since = None,
    active: Active = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
) -> Page[Alert]:
    wanted = symbol.strip().upper() if symbol else None
    start = queries.as_instant(since) if since else None
    rows, next_cursor = queries.alerts(snapshot, wanted, level, start, active, limit, cursor)
    pruned = queries.pruned_span("alerts", queries.pruned_partitions(snapshot, "alerts", wanted, start))
    return Page[Alert](items=[Alert(**row) for row in rows], next_cursor=next_cursor, limit=limit, pruned=pruned)


async def _launch(request: Request, snapshot: object, dagster: DagsterDep, principal: Principal, alert_key: str,
                  action: Literal["acknowledge", "resolve"]) -> AlertActionLaunched:
    found = await run_in_threadpool(queries.open_alerts_with_key, snapshot, alert_key)
    if found.empty:
        shown = alert_key if alert_key.isprintable() and len(alert_key) <= 80 else "that key"
        raise HTTPException(404, f"No open alert has the key {shown}; list the open alerts and their keys with GET "
                                 "/alerts?active=true.")
    try:
        run_id = await run_in_threadpool(dagster.launch_alert_action, alert_key, action, f"api:{principal.key_id}")
    except DagsterError as error:
        raise dagster_failure(error) from None
    request.state.audit = {"run_ids": [run_id]}
    return AlertActionLaunched(job=ALERT_ACTIONS_JOB, alert_key=alert_key, action=action, open_alerts=len(found),
                               run_ids=[run_id])


@router.post("/alerts/{alert_key}/ack", response_model=AlertActionLaunched,
             summary="Acknowledge an open alert (no more messages, no escalation), through a Dagster run")
async def acknowledge_alert(request: Request, alert_key: AlertKey, snapshot: SnapshotDep, dagster: DagsterDep,
                            principal: Annotated[Principal, Depends(require_operator)]) -> AlertActionLaunched:
    return await _launch(request, snapshot, dagster, principal, alert_key, "acknowledge")


@router.post("/alerts/{alert_key}/resolve", response_model=AlertActionLaunched,
             summary="Resolve an open alert by hand, through a Dagster run")
async def resolve_alert(request: Request, alert_key: AlertKey, snapshot: SnapshotDep, dagster: DagsterDep,
                        principal: Annotated[Principal, Depends(require_operator)]) -> AlertActionLaunched:
    return await _launch(request, snapshot, dagster, principal, alert_key, "resolve")
