"""The dashboard page: ``GET /login`` and ``POST /login`` (the key as an HttpOnly cookie), ``GET /dashboard`` and its
JSON ``GET /dashboard/data``, plus the page's own script and style (no CDN: the page works offline).

Per symbol the page draws the recent actual closes with the newest forecast path and its 80 % / 95 % band, the
forecast accuracy over time, the active recommendations and the open alerts, and reloads its data every
``api.dashboard_refresh_seconds``. It is a reader page: any key with the reader or operator role opens it. The
key travels as the ``lstm_pipeline_key`` cookie (HttpOnly, SameSite=Strict, Secure over HTTPS), which the API's
``require_role`` accepts like the ``X-API-Key`` header; the page's script never sees the key.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from serving.security import API_KEY_COOKIE, ROLE_RANK, limit_client, limit_key, require_reader

STATIC = Path(__file__).with_name("static")
BARS_SHOWN = 78
"""Actual closes drawn per symbol: three sessions of 15-minute windows."""
ACCURACY_POINTS = 200
"""Accuracy rows drawn per symbol (newest windows), span ``day``."""
_MAX_FORM_BYTES = 4096
_ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(tags=["dashboard"])


# --------------------------------------------------------------------------------------------------- models


class PricePoint(BaseModel):
    window: dt.datetime
    close: float


class ForecastPoint(BaseModel):
    target_window: dt.datetime
    predicted_close: float
    lower_80: float | None
    upper_80: float | None
    lower_95: float | None
    upper_95: float | None


class DashboardForecast(BaseModel):
    as_of_window: dt.datetime
    model_version: str
    confidence: float | None
    confidence_level: str | None
    path: list[ForecastPoint]


class AccuracyPoint(BaseModel):
    window: dt.datetime
    horizon_bucket: str
    n: int
    mape: float | None
    directional_accuracy: float | None
    coverage_80: float | None


class DashboardRecommendation(BaseModel):
    as_of_window: dt.datetime
    action: str
    entry_window: dt.datetime | None
    entry_price: float | None
    exit_window: dt.datetime | None
    exit_price: float | None
    predicted_return_pct: float | None
    confidence: float | None
    reason: str


class DashboardAlert(BaseModel):
    level: str | None
    severity: str
    kind: str
    message: str
    created_at: dt.datetime


class SymbolPanel(BaseModel):
    symbol: str
    prices: list[PricePoint] = Field(description=f"The newest {BARS_SHOWN} stored closes, oldest first.")
    forecast: DashboardForecast | None = Field(description="The newest forecast path with its interval bands.")
    accuracy: list[AccuracyPoint] = Field(description="Rolling day-span accuracy per horizon bucket, oldest first.")
    recommendations: list[DashboardRecommendation] = Field(description="Active buy/short recommendations.")
    alerts: list[DashboardAlert] = Field(description="Open (unresolved) alerts, newest first.")


class DashboardData(BaseModel):
    data_as_of: dt.datetime | None = Field(description="When the data served was last known to equal the store.")
    refresh_seconds: float
    symbols: list[SymbolPanel]


# --------------------------------------------------------------------------------------------------- pages


def _cookie_principal(request: Request) -> Any:
    """The principal of the request's key cookie, or None (auth off on loopback admits everyone)."""
    keyring = request.app.state.keyring
    key = request.cookies.get(API_KEY_COOKIE)
    if not keyring.auth_required and not key:
        return True
    found = keyring.verify(key) if key else None
    return found if found is not None and ROLE_RANK.get(found.role, 0) >= ROLE_RANK["reader"] else None


def _login_page(message: str | None, status_code: int = 200) -> HTMLResponse:
    page = (STATIC / "login.html").read_text(encoding="utf-8")
    note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(page.replace("{{message}}", note), status_code=status_code, headers=_PAGE_HEADERS)


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form() -> HTMLResponse:
    return _login_page(None)


async def _form_key(request: Request) -> str:
    """The ``key`` field of the urlencoded login form (parsed here: no multipart package needed)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return ""
    values = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=5).get("key", [""])
    return values[0].strip()


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the key; a good one is set as the HttpOnly cookie and the browser goes on to the dashboard."""
    key = await _form_key(request)
    found = request.app.state.keyring.verify(key) if key else None
    if found is None:
        limit_client(request)  # guessing keys here is bounded like on the API (429 past the limit)
        return _login_page(
            "That API key is not valid; paste a reader or operator key (`lstm-pipeline keys add --role reader` "
            "mints a reader key).",
            403,
        )
    request.state.principal = found
    limit_key(request, found)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        API_KEY_COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", include_in_schema=False)
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(API_KEY_COOKIE, path="/")
    return response


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request) -> Response:
    """The page itself (a reader page); without a valid key cookie, the login form."""
    if _cookie_principal(request) is None:
        return RedirectResponse("/login", status_code=303)
    settings = request.app.state.settings
    refresh = float(getattr(settings.api, "dashboard_refresh_seconds", 30.0))
    page = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    page = page.replace("{{refresh_seconds}}", html.escape(f"{refresh:g}"))
    page = page.replace("{{symbols}}", html.escape(",".join(settings.symbols)))
    return HTMLResponse(page, headers=_PAGE_HEADERS)


@router.get("/dashboard/static/{name}", include_in_schema=False)
def dashboard_asset(name: str) -> Response:
    if name not in _ASSETS:
        return Response("Not found.", status_code=404, media_type="text/plain")
    return Response(
        (STATIC / name).read_bytes(), media_type=_ASSETS[name], headers={"X-Content-Type-Options": "nosniff"}
    )


# --------------------------------------------------------------------------------------------------- data


def _plain(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    part = frame[columns].astype(object).where(frame[columns].notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in part.to_dict("records")
    ]


def symbol_panel(snapshot: Any, symbol: str) -> SymbolPanel:
    """What the page shows for one symbol, read through the snapshot (bounded reads: the newest rows only)."""
    bars = snapshot.read_rows(
        "market_bars",
        [
            "symbol = ?",
            "rejected_check IS NULL",
            "window_start >= (SELECT max(window_start) FROM market_bars WHERE symbol = ? "
            "AND rejected_check IS NULL) - INTERVAL '14 days'",
        ],
        [symbol, symbol],
    )
    bars = bars.dropna(subset=["close"]).tail(BARS_SHOWN)
    prices = [PricePoint(window=row["window_start"], close=row["close"]) for row in _plain(bars, ["window_start",
                                                                                                   "close"])]
    path = snapshot.read_rows(
        "predictions",
        ["symbol = ?", "as_of_window = (SELECT max(as_of_window) FROM predictions WHERE symbol = ?)"],
        [symbol, symbol],
    ).sort_values("horizon_step")
    forecast = None
    if len(path):
        first = _plain(path.head(1), ["as_of_window", "model_version", "confidence", "confidence_level"])[0]
        steps = _plain(path, ["target_window", "predicted_close", "lower_80", "upper_80", "lower_95", "upper_95"])
        forecast = DashboardForecast(**first, path=[ForecastPoint(**step) for step in steps])
    accuracy = snapshot.read_rows(
        "accuracy_metrics",
        [
            "symbol = ?",
            "span = 'day'",
            "window_start >= (SELECT max(window_start) FROM accuracy_metrics WHERE symbol = ?) - INTERVAL '30 days'",
        ],
        [symbol, symbol],
    ).tail(ACCURACY_POINTS * 4)
    accuracy_points = [
        AccuracyPoint(window=row.pop("window_start"), **row)
        for row in _plain(
            accuracy, ["window_start", "horizon_bucket", "n", "mape", "directional_accuracy", "coverage_80"]
        )
    ]
    newest_bar = bars["window_start"].max() if len(bars) else None
    recommendations = snapshot.read_rows(
        "trade_recommendations", ["symbol = ?", "action <> 'none'", "exit_window IS NOT NULL"], [symbol]
    )
    if newest_bar is not None:
        recommendations = recommendations[recommendations["exit_window"] > newest_bar]
    alerts = snapshot.read_rows("alerts", ["symbol = ?", "resolved_at IS NULL"], [symbol])
    alerts = alerts.sort_values("created_at", ascending=False).head(20)
    return SymbolPanel(
        symbol=symbol,
        prices=prices,
        forecast=forecast,
        accuracy=accuracy_points,
        recommendations=[
            DashboardRecommendation(**row)
            for row in _plain(
                recommendations.sort_values("as_of_window", ascending=False).head(10),
                ["as_of_window", "action", "entry_window", "entry_price", "exit_window", "exit_price",
                 "predicted_return_pct", "confidence", "reason"],
            )
        ],
        alerts=[
            DashboardAlert(**row)
            for row in _plain(alerts, ["level", "severity", "kind", "message", "created_at"])
        ],
    )


@router.get(
    "/dashboard/data",
    response_model=DashboardData,
    dependencies=[Depends(require_reader)],
    summary="Everything the dashboard page draws, per configured symbol (reader role)",
)
def dashboard_data(request: Request) -> DashboardData:
    snapshot = request.app.state.snapshot
    settings = request.app.state.settings
    try:
        panels = [symbol_panel(snapshot, symbol) for symbol in settings.symbols]
    except Exception as error:  # noqa: BLE001 - storage errors of either backend become one sentence
        raise HTTPException(
            503, f"The pipeline's store cannot be read right now ({type(error).__name__}); retry shortly."
        ) from error
    return DashboardData(
        data_as_of=snapshot.as_of,
        refresh_seconds=float(getattr(settings.api, "dashboard_refresh_seconds", 30.0)),
        symbols=panels,
    )
