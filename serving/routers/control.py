"""``POST /control/update`` and ``POST /control/update/{symbol}``: ask Dagster to run the update job for the
newest registered window; 503 with one sentence when its webserver is not reachable, 502 with what it answered
when it refuses the launch."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request

from serving.dagster_control import UPDATE_JOB, DagsterControl, DagsterError
from serving.deps import DagsterDep, KnownSymbol, SettingsDep, dagster_failure
from serving.models import LaunchedRuns
from serving.security import require_operator

router = APIRouter(tags=["control"], dependencies=[Depends(require_operator)])


def _launch(request: Request, dagster: DagsterControl, symbols: list[str]) -> LaunchedRuns:
    try:
        window = dagster.newest_window()
        if window is None:
            raise HTTPException(409, "No session window is registered yet; let the market_windows sensor run "
                                     "(or backfill) first.")
        run_ids = dagster.launch_update(symbols, window)
    except DagsterError as error:
        raise dagster_failure(error) from None
    request.state.audit = {"run_ids": run_ids}
    return LaunchedRuns(job=UPDATE_JOB, window=window, symbols=symbols, run_ids=run_ids)


@router.post("/control/update", response_model=LaunchedRuns, summary="Run the update for every symbol, newest window")
def update_all(request: Request, settings: SettingsDep, dagster: DagsterDep) -> LaunchedRuns:
    return _launch(request, dagster, list(settings.symbols))


@router.post("/control/update/{symbol}", response_model=LaunchedRuns, summary="Run the update for one symbol")
def update_symbol(request: Request, symbol: KnownSymbol, dagster: DagsterDep) -> LaunchedRuns:
    return _launch(request, dagster, [symbol])
