"""``GET /performance`` and ``GET /performance/{symbol}?period_hours=24``: accuracy, trade success, run times.

A period whose accuracy metrics retention pruned entirely is a 410 naming when and the restore command; one that
retention pruned in part carries the pruned span (``pruned``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from serving import queries
from serving.dagster_control import DagsterControl, DagsterError
from serving.deps import DagsterDep, KnownSymbol, SettingsDep, SnapshotDep
from serving.models import Performance, SymbolPerformanceHistory
from serving.security import require_reader

router = APIRouter(tags=["monitoring"], dependencies=[Depends(require_reader)])
MAX_PERIOD_HOURS = 24 * 31
PeriodHours = Annotated[float, Query(
    gt=0, le=MAX_PERIOD_HOURS, description=f"Hours back from the newest metrics window (at most {MAX_PERIOD_HOURS})."
)]
Span = Annotated[Literal["day", "week", "month"], Query(description="The rolling span of the metrics listed.")]
Bucket = Annotated[Literal["1_step", "1_hour", "1_day", "1_week"], Query(description="The horizon listed.")]


def _runs(dagster: DagsterControl) -> tuple[list[dict[str, Any]] | None, str]:
    try:
        return dagster.recent_runs(), f"Dagster answers at {dagster.url}."
    except DagsterError as error:
        return None, str(error)


@router.get("/performance", response_model=Performance, summary="Accuracy and trade success per symbol, run times")
def performance(
    settings: SettingsDep, snapshot: SnapshotDep, dagster: DagsterDep, period_hours: PeriodHours = 24.0
) -> Performance:
    symbols = [queries.symbol_performance(snapshot, symbol, period_hours) for symbol in settings.symbols]
    runs, detail = _runs(dagster)
    return Performance(symbols=symbols, runs=runs, dagster_detail=detail)


@router.get("/performance/{symbol}", response_model=SymbolPerformanceHistory,
            summary="A symbol's accuracy over a period, its trade success and recent run times")
def symbol_performance(
    symbol: KnownSymbol, snapshot: SnapshotDep, dagster: DagsterDep, period_hours: PeriodHours = 24.0,
    span: Span = "day", horizon_bucket: Bucket = "1_step",
) -> SymbolPerformanceHistory:
    summary = queries.symbol_performance(snapshot, symbol, period_hours)
    start, end = summary["period_start"], summary["period_end"]
    if summary["gone"]:
        raise HTTPException(410, summary["gone"])
    rows = queries.metrics(snapshot, symbol, start, end, span, horizon_bucket) if end is not None else []
    runs, detail = _runs(dagster)
    return SymbolPerformanceHistory(**summary, period_hours=period_hours, metrics=rows, runs=runs,
                                    dagster_detail=detail)
