"""The REST service: ``create_app`` wires the routers, keys, rate limit, audit trail and CORS; ``serve`` runs it
under uvicorn, with TLS when ``api.tls_certfile``/``api.tls_keyfile`` are set.

The service reads the pipeline's tables through ``serving.snapshot.ReadSnapshot`` and writes only beside the
Dagster instance (its key hashes, audit trail and access record) and, for ``POST /config``, the config file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lstm_pipeline.settings import Settings, _loopback, get_settings
from serving.audit import (
    ACCESS_FILE_NAME,
    AUDIT_FILE_NAME,
    CHANGING_METHODS,
    REFUSED_STATUSES,
    AuditLog,
    BackgroundLog,
)
from serving.dagster_control import DagsterControl
from serving.dashboard import router as dashboard_router
from serving.keys import instance_dir
from serving.models import ErrorBody
from serving.routers import alerts, audit, config, control, health, performance, predictions, recommendations, status
from serving.security import KeyRing, Principal, RateLimiter
from serving.snapshot import CACHE_TALLY, CacheTally

_ERROR = {"model": ErrorBody}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "The body could not be read as JSON text."},
    401: {**_ERROR, "description": "No API key was sent."},
    403: {**_ERROR, "description": "The key is not valid, or its role may not call this endpoint."},
    404: {**_ERROR, "description": "Unknown symbol, or nothing stored for it yet."},
    409: {**_ERROR, "description": "The request cannot be served in the current state (the message says why)."},
    410: {**_ERROR, "description": "Retention pruned the data asked for; the message says when and how to restore "
          "it."},
    422: {**_ERROR, "description": "A malformed parameter or body; the message names it and the reason."},
    429: {**_ERROR, "description": "Rate limit reached; retry after the Retry-After header's seconds."},
    502: {**_ERROR, "description": "Dagster answered with an error (unknown job, invalid config, code location not "
          "loaded); the message quotes it."},
    503: {**_ERROR, "description": "The store or Dagster cannot be reached right now."},
}


class RecordingMiddleware:
    """Records every request in the access record (``api_access.jsonl``: status, duration and whether the read
    cache answered it, what monitoring's api_performance reads; written by a background thread, never on the event
    loop) and in the audit trail every refused request (401/403/429, a rate-limit flood folded to one 429 entry
    per caller per minute) and every changing request that reached an endpoint as a known caller (a POST to an
    unknown path, or one refused before it was identified, cannot fill the trail). An audited request's entry is
    on disk before the last part of its answer is sent: an answer the caller holds is already in the trail."""

    def __init__(self, app: ASGIApp, audit_log: AuditLog, access_log: BackgroundLog) -> None:
        self.app = app
        self.audit_log = audit_log
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        seen: dict[str, Any] = {"status": 500, "body": b""}
        started = time.perf_counter()
        tally = CacheTally()
        token = CACHE_TALLY.set(tally)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                if seen["status"] >= 400 and len(seen["body"]) < 4096:
                    seen["body"] += message.get("body", b"")
                if not message.get("more_body", False):
                    await audit()  # on disk before the caller has the whole answer
            await send(message)

        async def audit() -> None:
            if not seen.get("audited") and _audited(scope, state, seen["status"]):
                seen["audited"] = True
                await run_in_threadpool(self.audit_log.record, _entry(scope, state, seen["status"], seen["body"]))

        try:
            await self.app(scope, receive, watch)
        finally:
            CACHE_TALLY.reset(token)
            status_code = seen["status"]
            route = scope.get("route")
            principal: Principal | None = state.get("principal")
            self.access_log.record({
                "method": scope["method"], "path": scope["path"],
                "endpoint": getattr(route, "path", None), "status": status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000.0, 3),
                "key_id": principal.key_id if principal else None,
                "cache": tally.outcome,
            })
            await audit()  # a request that failed before its answer was complete


def _audited(scope: Scope, state: Mapping[str, Any], status_code: int) -> bool:
    if status_code in REFUSED_STATUSES:
        return not (state.get("audit") or {}).get("fold")
    if scope["method"] not in CHANGING_METHODS:
        return False
    route = scope.get("route")
    reached = route is not None and scope["method"] in getattr(route, "methods", ())
    return reached and state.get("principal") is not None


def _entry(scope: Scope, state: Mapping[str, Any], status_code: int, body: bytes) -> dict[str, Any]:
    principal: Principal | None = state.get("principal")
    client = scope.get("client")
    detail = None
    if status_code >= 400:
        try:
            detail = str(json.loads(body).get("detail"))[:500]
        except (ValueError, AttributeError):
            detail = None
    extra = state.get("audit") or {}
    return {
        "key_id": principal.key_id if principal else None,
        "role": principal.role if principal else None,
        "client": client[0] if client else "unknown",
        "method": scope["method"],
        "path": scope["path"],
        "outcome": status_code,
        "detail": detail,
        "config_changes": extra.get("config_changes"),
        "config_overridden": extra.get("config_overridden") or None,
        "run_ids": extra.get("run_ids"),
        "repeated": extra.get("repeated"),
    }


def _closing_entries(limiter: RateLimiter) -> list[dict[str, Any]]:
    """At shutdown: one entry per caller whose last rate-limit refusals were folded and not yet counted."""
    return [
        {**entry, "outcome": 429, "repeated": count, "config_changes": None, "run_ids": None,
         "detail": f"{count} more requests of this caller were refused by the rate limit after its last audited "
         "refusal (counted at shutdown)."}
        for count, entry in limiter.folded_refusals()
    ]


def _required_role(dependant: Any) -> str | None:
    for dependency in dependant.dependencies:
        role = getattr(dependency.call, "required_role", None) or _required_role(dependency)
        if role:
            return role
    return None


def _document_roles(app: FastAPI, routers: list[Any]) -> None:
    """Each operation of the OpenAPI document says the role it needs (``x-required-role`` and its description)."""
    roles: dict[tuple[str, str], str] = {}
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                for method in route.methods:
                    roles[(method.lower(), route.path)] = _required_role(route.dependant) or "none"
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for path, operations in document.get("paths", {}).items():
                for method, operation in operations.items():
                    role = roles.get((method, path))
                    if role is None:
                        continue
                    note = "No API key needed." if role == "none" else \
                        f"Required role: **{role}** (operator keys may call reader endpoints)."
                    operation["x-required-role"] = role
                    operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [
        {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", "")),
         "type": str(item.get("type", ""))}
        for item in error.errors()
    ]
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    where = ".".join(part for part in first["loc"] if part not in ("query", "path", "body", "header"))
    what = f"'{where}'" if where else "The request body" if first["loc"][:1] == ["body"] else "The request"
    return JSONResponse(
        status_code=422,
        content={"detail": f"{what} is invalid: {first['msg']}; fix it and retry.", "errors": problems},
    )


def create_app(
    settings: Settings | None = None,
    *,
    audit_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    snapshot: Any = None,
    dagster_url: str | None = None,
    clock: Callable[[], float] = time.time,
    rate_clock: Callable[[], float] = time.monotonic,
    announce: Callable[[str], None] | None = None,
) -> FastAPI:
    """The service. ``environ`` (default: the process's) decides ``DAGSTER_HOME`` (key file and audit trail) and
    the config file ``POST /config`` writes; ``clock`` and ``rate_clock`` are injectable for tests."""
    settings = settings or get_settings()
    environ = dict(os.environ if environ is None else environ)
    if snapshot is None:
        from serving.snapshot import ReadSnapshot

        snapshot = ReadSnapshot(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        start = getattr(snapshot, "start", None)
        if callable(start):
            start()
        yield
        close = getattr(snapshot, "close", None)
        if callable(close):
            close()
        for entry in _closing_entries(app.state.rate_limiter):
            app.state.audit.record(entry)
        app.state.access_log.close()

    app = FastAPI(
        title="lstm_pipeline REST API",
        version="1.0",
        description="Forecasts, recommendations, accuracy and alerts of the LSTM pipeline, and run control. "
        "Send an API key in the X-API-Key header: reader keys may call every GET endpoint, operator keys also "
        "POST /config, POST /control/... and GET /audit.",
        debug=settings.api.debug,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.environ = environ
    app.state.snapshot = snapshot
    app.state.keyring = KeyRing.load(settings, environ, announce=announce)
    app.state.rate_limiter = RateLimiter(settings.api.rate_limit_per_minute, clock=rate_clock)
    app.state.dagster = DagsterControl(dagster_url or environ.get("LSTM_PIPELINE_DAGSTER_URL"))
    app.state.clock = clock
    audit_file = Path(audit_path) if audit_path else instance_dir(environ) / AUDIT_FILE_NAME
    app.state.audit = AuditLog(audit_file, max_bytes=settings.api.audit_max_bytes, backups=settings.api.audit_backups)
    app.state.access_log = BackgroundLog(AuditLog(
        audit_file.with_name(ACCESS_FILE_NAME), max_bytes=settings.api.audit_max_bytes, backups=1
    ))

    app.include_router(health.router)
    guarded = (status, config, predictions, recommendations, performance, alerts, control, audit)
    for module in guarded:
        app.include_router(module.router, responses=ERROR_RESPONSES)
    app.include_router(dashboard_router)
    _document_roles(app, [health.router, *(module.router for module in guarded), dashboard_router])

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(RecordingMiddleware, audit_log=app.state.audit, access_log=app.state.access_log)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.api.cors_origins), allow_credentials=True,
            allow_methods=["GET", "POST"], allow_headers=["X-API-Key", "Content-Type"],
        )
    return app


def transport_problem(settings: Settings) -> str | None:
    """Why the service must not start on this address (plain HTTP beyond this machine), or None."""
    api = settings.api
    for name in ("tls_certfile", "tls_keyfile"):
        path = getattr(api, name)
        if path and not Path(path).is_file():
            return f"api.{name} {path} is not a file; point it at the PEM file (or remove both TLS settings)."
    if api.tls_certfile or _loopback(api.host) or api.allow_plain_http:
        return None
    return (
        f"Refusing to serve plain HTTP on {api.host}: set api.tls_certfile and api.tls_keyfile to serve HTTPS, "
        "bind api.host to 127.0.0.1, or set api.allow_plain_http to true behind a TLS-terminating proxy."
    )


def transport_sentence(settings: Settings) -> str:
    api = settings.api
    scheme = "https" if api.tls_certfile else "http"
    if api.tls_certfile:
        how = f"with TLS (certificate {api.tls_certfile})"
    elif _loopback(api.host):
        how = "over plain HTTP, on a loopback address only"
    else:
        how = "over plain HTTP because api.allow_plain_http is set"
    return f"REST API at {scheme}://{api.host}:{api.port} {how}."


def serve(settings: Settings | None = None) -> int:
    """Run the service under uvicorn until stopped; 2 (with one sentence) when the transport is refused."""
    import uvicorn

    settings = settings or get_settings()
    problem = transport_problem(settings)
    if problem:
        print(problem, file=sys.stderr, flush=True)
        return 2
    try:
        app = create_app(settings)
    except ValueError as error:  # a malformed key list or key file: its one sentence, not a traceback
        print(error, file=sys.stderr, flush=True)
        return 2
    print(transport_sentence(settings), file=sys.stderr, flush=True)
    tls = {"ssl_certfile": settings.api.tls_certfile, "ssl_keyfile": settings.api.tls_keyfile} \
        if settings.api.tls_certfile else {}
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="info", **tls)
    return 0
