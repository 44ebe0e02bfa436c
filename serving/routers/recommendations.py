"""``GET /recommendations`` and ``GET /recommendations/{symbol}`` (``active=true|false``); ``pruned`` names the span
retention pruned."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from serving import queries
from serving.deps import KnownSymbol, SnapshotDep, cached_json
from serving.models import Recommendation
from serving.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from serving.security import require_reader

router = APIRouter(tags=["data"], dependencies=[Depends(require_reader)])
Active = Annotated[bool | None, Query(description="true: only open buys/shorts; false: only the others; absent: all.")]


def _page(snapshot: Any, symbol: str | None, active: bool | None, limit: int, cursor: str | None
          ) -> Page[Recommendation]:
    rows, next_cursor = queries.recommendations(snapshot, symbol, active, limit, cursor)
    table = "trade_recommendations"
    pruned = queries.pruned_span(table, queries.pruned_partitions(snapshot, table, symbol))
    return Page[Recommendation](items=[Recommendation(**row) for row in rows], next_cursor=next_cursor, limit=limit,
                                pruned=pruned)


async def _cached_page(snapshot: Any, symbol: str | None, active: bool | None, limit: int, cursor: str | None
                       ) -> Response:
    return await cached_json(
        snapshot, "GET /recommendations", (symbol, active, limit, cursor),
        lambda: _page(snapshot, symbol, active, limit, cursor), ("trade_recommendations",),
    )


@router.get("/recommendations", response_model=Page[Recommendation], summary="Trade recommendations, newest first")
async def list_recommendations(
    snapshot: SnapshotDep, active: Active = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Response:
    return await _cached_page(snapshot, None, active, limit, cursor)


@router.get("/recommendations/{symbol}", response_model=Page[Recommendation],
            summary="A symbol's trade recommendations, newest first")
async def symbol_recommendations(
    symbol: KnownSymbol, snapshot: SnapshotDep, active: Active = None, limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    return await _cached_page(snapshot, symbol, active, limit, cursor)
