"""``GET /config`` (reader, secrets redacted) and ``POST /config`` (operator, validated and written atomically)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from lstm_pipeline.settings import ConfigError, load_settings
from serving.config_store import ConfigRejected, apply_change, config_path, redacted
from serving.models import ConfigDocument, ConfigUpdate
from serving.security import require_operator, require_reader

router = APIRouter(tags=["system"])
ConfigChangeBody = Annotated[dict[str, Any], Body(
    examples=[{"confidence_threshold": 0.65, "alert_thresholds": {"confidence_low": 0.45}}],
    description="A JSON object shaped like the config file: sections merge key by key.",
)]


@router.get("/config", response_model=ConfigDocument, dependencies=[Depends(require_reader)],
            summary="The configuration, secrets redacted")
def get_config(request: Request) -> ConfigDocument:
    path = config_path(request.app.state.environ)
    try:
        settings = load_settings(path if path.is_file() else None, dict(request.app.state.environ))
    except ConfigError as error:
        raise HTTPException(409, str(error)) from None
    return ConfigDocument(path=str(path) if path.is_file() else None, settings=redacted(settings))


@router.post("/config", response_model=ConfigUpdate, dependencies=[Depends(require_operator)],
             summary="Change configuration keys (validated like the file; written atomically)")
async def post_config(
    request: Request,
    change: ConfigChangeBody,
) -> ConfigUpdate:
    environ = request.app.state.environ
    try:
        _, changes, overridden = await run_in_threadpool(apply_change, change, environ)
    except ConfigRejected as error:
        raise HTTPException(422, str(error)) from None
    request.state.audit = {"config_changes": changes, "run_ids": [], "config_overridden": overridden}
    note = "Saved. Dagster's code location reads it on its next load (reload it in the UI); this service reads " \
        "its API keys at once and everything else on its next start."
    if overridden:
        named = ", ".join(f"'{item['key']}' by {item['variable']}" for item in overridden)
        note += f" The environment overrides {named}: the saved value takes effect only once that is unset."
    return ConfigUpdate(path=str(config_path(environ)), changes=changes, overridden=overridden, note=note)
