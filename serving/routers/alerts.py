"""``GET /alerts`` (``level=``, ``since=``, ``active=``, ``symbol=``), newest first, paginated."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from serving import queries
from serving.deps import IsoDateTime, SnapshotDep
from serving.models import Alert
from serving.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from serving.security import require_reader

router = APIRouter(tags=["monitoring"], dependencies=[Depends(require_reader)])
SymbolFilter = Annotated[str | None, Query(max_length=16, description="Only this symbol's alerts.")]
Level = Annotated[Literal["INFO", "WARNING", "ERROR", "CRITICAL"] | None, Query(description="Only this level.")]
Since = Annotated[IsoDateTime | None, Query(description="Only alerts raised at or after this time.")]
Active = Annotated[bool | None, Query(description="true: open alerts only; false: resolved only; absent: all.")]


@router.get("/alerts", response_model=Page[Alert], summary="Alerts, newest first")
def list_alerts(
    snapshot: SnapshotDep, symbol: SymbolFilter = None, level: Level = None, since: Since = None,
    active: Active = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
) -> Page[Alert]:
    wanted = symbol.strip().upper() if symbol else None
    rows, next_cursor = queries.alerts(
        snapshot, wanted, level, queries.as_instant(since) if since else None, active, limit, cursor
    )
    return Page[Alert](items=[Alert(**row) for row in rows], next_cursor=next_cursor, limit=limit)
