"""``GET /health``: no key needed; process, store and Dagster reported separately."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from serving.models import Check, Health

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, summary="Is the service up, the store readable, Dagster reachable?")
async def health(request: Request) -> Health:
    store_ok, store_detail = await run_in_threadpool(request.app.state.snapshot.health)
    dagster_ok, dagster_detail = await run_in_threadpool(request.app.state.dagster.health)
    return Health(
        status="ok" if store_ok and dagster_ok else "degraded",
        process=Check(ok=True, detail="The REST service is answering."),
        store=Check(ok=store_ok, detail=store_detail),
        dagster=Check(ok=dagster_ok, detail=dagster_detail),
    )
