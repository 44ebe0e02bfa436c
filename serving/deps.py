"""Dependencies the routers share: the settings, the read snapshot, Dagster, and path/query checks.

They do no blocking work, so they are ``async``: FastAPI runs them on the event loop instead of handing each to a
worker thread (a hop per dependency per request)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, BeforeValidator
from starlette.concurrency import run_in_threadpool

from lstm_pipeline.market.calendar import NEW_YORK, parse_window_key
from lstm_pipeline.settings import Settings
from serving.dagster_control import DagsterControl, DagsterError, DagsterUnavailable
from serving.snapshot import MISSING


async def settings_of(request: Request) -> Settings:
    return request.app.state.settings


async def snapshot_of(request: Request):  # noqa: ANN201 - serving.snapshot.ReadSnapshot
    return request.app.state.snapshot


async def dagster_of(request: Request) -> DagsterControl:
    return request.app.state.dagster


def dagster_failure(error: DagsterError) -> HTTPException:
    """503 when Dagster's webserver did not answer (start it); 502 when it answered with an error (its answer)."""
    return HTTPException(503 if isinstance(error, DagsterUnavailable) else 502, str(error))


def now_of(request: Request) -> pd.Timestamp:
    return pd.Timestamp(request.app.state.clock(), unit="s", tz="UTC").tz_convert(NEW_YORK)


async def known_symbol(
    request: Request, symbol: Annotated[str, Path(max_length=64, description="A configured ticker.")]
) -> str:
    """The path's symbol, upper-cased; 404 naming the configured ones when it is not one of them."""
    symbols = request.app.state.settings.symbols
    wanted = symbol.strip().upper()
    if wanted not in symbols:
        shown = symbol if symbol.isprintable() and len(symbol) <= 16 else "that symbol"
        raise HTTPException(
            404, f"Symbol {shown} is not configured; the configured symbols are {', '.join(symbols)}."
        )
    return wanted


def parse_window(value: str | None) -> pd.Timestamp | None:
    """A window given as its key (``YYYY-MM-DD-HH:MM``, New York) or as an ISO timestamp; 422 otherwise."""
    if value is None:
        return None
    try:
        return parse_window_key(value)
    except Exception:  # noqa: BLE001, S110 - not a key; tried as a timestamp next
        pass
    try:
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            raise ValueError
        return stamp.tz_localize(NEW_YORK) if stamp.tzinfo is None else stamp.tz_convert(NEW_YORK)
    except Exception:  # noqa: BLE001 - any unparseable text (incl. DST gaps) is the caller's 422
        raise HTTPException(
            422, "The window must be a window key such as 2025-01-02-09:30 (New York) or an ISO timestamp."
        ) from None


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _date_time_text(value: object) -> object:
    """Only an ISO 8601 date-time, as the OpenAPI document (``format: date-time``) promises: pydantic alone would
    also read ``since=0`` as 1970 (Unix seconds) and a bare date as its midnight, which a user rarely means."""
    if not isinstance(value, str | dt.datetime) or (isinstance(value, str) and not _DATE_TIME.match(value.strip())):
        raise ValueError("give an ISO 8601 date-time such as 2025-01-02T09:30:00-05:00 (no zone: New York time)")
    return value


IsoDateTime = Annotated[dt.datetime, BeforeValidator(_date_time_text)]
"""A query parameter holding an ISO 8601 date-time; anything else is a 422 with the reason."""

SettingsDep = Annotated[Settings, Depends(settings_of)]
SnapshotDep = Annotated[Any, Depends(snapshot_of)]
DagsterDep = Annotated[DagsterControl, Depends(dagster_of)]
KnownSymbol = Annotated[str, Depends(known_symbol)]


async def cached_json(snapshot: Any, name: str, args: tuple[Any, ...], build: Callable[[], BaseModel],
                      tables: tuple[str, ...]) -> Response:
    """The JSON body of ``build()`` (the endpoint's response model), cached per copy of the store like any answer
    (``ReadSnapshot.derived``): a repeated request costs a dictionary lookup on the event loop; a new one is built in
    a worker thread. ``args`` names everything the answer depends on; errors (404, 410, 422) are never cached."""
    body = snapshot.lookup(name, args, tables)
    if body is MISSING:
        body = await run_in_threadpool(
            snapshot.derived, name, args, lambda: build().model_dump_json().encode(), tables
        )
    return Response(content=body, media_type="application/json")
