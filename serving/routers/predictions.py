"""``GET /predictions`` (newest first, paginated) and ``GET /predictions/{symbol}`` (a whole forecast path)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from serving import queries
from serving.deps import IsoDateTime, KnownSymbol, SnapshotDep, parse_window
from serving.models import Forecast, ForecastSummary
from serving.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from serving.security import require_reader

router = APIRouter(tags=["data"], dependencies=[Depends(require_reader)])
Since = Annotated[IsoDateTime | None, Query(description="Only forecasts made as of this window or later.")]
Window = Annotated[
    str | None,
    Query(max_length=64, description="As-of window: a key like 2025-01-02-09:30 (New York) or an ISO time."),
]


@router.get("/predictions", response_model=Page[ForecastSummary], summary="Forecasts of every symbol, newest first")
def list_predictions(
    snapshot: SnapshotDep, since: Since = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[ForecastSummary]:
    rows, next_cursor = queries.forecast_summaries(
        snapshot, queries.as_instant(since) if since else None, limit, cursor
    )
    return Page[ForecastSummary](items=[ForecastSummary(**row) for row in rows], next_cursor=next_cursor, limit=limit)


@router.get("/predictions/{symbol}", response_model=Forecast,
            summary="A symbol's newest forecast path with its intervals (or the one as of `window`)")
def symbol_prediction(symbol: KnownSymbol, snapshot: SnapshotDep, window: Window = None) -> Forecast:
    as_of = parse_window(window)
    found = queries.forecast(snapshot, symbol, as_of)
    if found is None:
        when = f"as of {window}" if window else "yet"
        raise HTTPException(404, f"There is no forecast of {symbol} {when}; list the stored ones with GET "
                                 "/predictions.")
    return Forecast(**found)
