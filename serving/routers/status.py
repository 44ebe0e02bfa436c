"""``GET /status``: symbols, newest window per symbol, freshness, last materialization per asset."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from serving import queries
from serving.dagster_control import DagsterError
from serving.deps import DagsterDep, SettingsDep, SnapshotDep, now_of
from serving.models import Status
from serving.security import require_reader

router = APIRouter(tags=["system"], dependencies=[Depends(require_reader)])


@router.get("/status", response_model=Status, summary="Symbols, their newest windows and the last runs per asset")
def status(request: Request, settings: SettingsDep, snapshot: SnapshotDep, dagster: DagsterDep) -> Status:
    symbols = queries.symbol_status(snapshot, settings.symbols, now_of(request))
    try:
        assets, detail = dagster.last_materializations(), f"Dagster answers at {dagster.url}."
    except DagsterError as error:
        assets, detail = None, str(error)
    return Status(symbols=symbols, assets=assets, dagster_detail=detail, data_as_of=snapshot.as_of)
