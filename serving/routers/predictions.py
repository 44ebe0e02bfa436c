"""``GET /predictions`` (newest first, paginated) and ``GET /predictions/{symbol}`` (a whole forecast path).

A forecast that retention pruned is a 410 saying when and how to restore it, never a 404 or an empty success; the
list carries the span of the forecasts asked for that retention pruned (``pruned``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from serving import queries
from serving.deps import IsoDateTime, KnownSymbol, SnapshotDep, cached_json, parse_window
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
async def list_predictions(
    snapshot: SnapshotDep, since: Since = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Response:
    start = queries.as_instant(since) if since else None

    def build() -> Page[ForecastSummary]:
        rows, next_cursor = queries.forecast_summaries(snapshot, start, limit, cursor)
        pruned = queries.pruned_span("predictions", queries.pruned_partitions(snapshot, "predictions", start=start))
        return Page[ForecastSummary](items=[ForecastSummary(**row) for row in rows], next_cursor=next_cursor,
                                     limit=limit, pruned=pruned)

    return await cached_json(snapshot, "GET /predictions", (start, limit, cursor), build, ("predictions",))


@router.get("/predictions/{symbol}", response_model=Forecast,
            summary="A symbol's newest forecast path with its intervals (or the one as of `window`)")
async def symbol_prediction(symbol: KnownSymbol, snapshot: SnapshotDep, window: Window = None) -> Response:
    as_of = parse_window(window)

    def build() -> Forecast:
        found = queries.forecast(snapshot, symbol, as_of)
        if found is None:
            pruned = queries.pruned_partitions(snapshot, "predictions", symbol, as_of, as_of)
            if len(pruned):
                subject = f"The forecast of {symbol} as of {window} was" if window else \
                    f"Every stored forecast of {symbol} was"
                raise HTTPException(410, queries.pruned_sentence(subject, "predictions", pruned))
            when = f"as of {window}" if window else "yet"
            raise HTTPException(404, f"There is no forecast of {symbol} {when}; list the stored ones with GET "
                                     "/predictions.")
        return Forecast(**found)

    return await cached_json(snapshot, "GET /predictions/{symbol}", (symbol, as_of), build, ("predictions",))
