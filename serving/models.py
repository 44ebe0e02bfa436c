"""Response bodies: the OpenAPI document generated from these is the REST service's contract."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.pagination import PrunedSpan


class ErrorBody(BaseModel):
    """Every error: one sentence naming the problem and the fix; ``errors`` lists each malformed parameter."""

    detail: str
    errors: list[dict[str, Any]] | None = None


class Check(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    process: Check
    store: Check
    dagster: Check


class SymbolStatus(BaseModel):
    symbol: str
    latest_bar_window: dt.datetime | None
    latest_forecast_window: dt.datetime | None
    freshness_lag_minutes: float | None = Field(
        description="Minutes from the end of the newest stored bar's window to now (market closed: it grows)."
    )


class AssetRun(BaseModel):
    asset: str
    last_materialized_at: dt.datetime | None
    run_id: str | None


class Status(BaseModel):
    symbols: list[SymbolStatus]
    assets: list[AssetRun] | None = Field(description="Last materialization per asset, from Dagster; null when "
                                          "Dagster is not reachable (see dagster_detail).")
    dagster_detail: str
    data_as_of: dt.datetime | None = Field(description="When the data served was last refreshed from the store.")


class ConfigDocument(BaseModel):
    path: str | None = Field(description="The config file POST /config writes (null: built-in defaults only).")
    settings: dict[str, Any] = Field(description="The validated settings, secrets redacted.")


class ConfigChange(BaseModel):
    key: str
    old: Any = None
    new: Any = None


class EnvironmentOverride(BaseModel):
    key: str = Field(description="A key of the change, saved to the file...")
    variable: str = Field(description="...that this environment variable overrides, so its value in effect stays.")


class ConfigUpdate(BaseModel):
    path: str
    changes: list[ConfigChange] = Field(description="Keys whose value in effect changed, old and new (secrets "
                                        "redacted).")
    overridden: list[EnvironmentOverride] = Field(
        default_factory=list, description="Keys of the change that an environment variable decides instead.")
    note: str


class ForecastStep(BaseModel):
    horizon_step: int
    target_window: dt.datetime
    predicted_close: float
    lower_80: float | None
    upper_80: float | None
    lower_95: float | None
    upper_95: float | None


class ForecastSummary(BaseModel):
    symbol: str
    as_of_window: dt.datetime
    model_version: str
    forecast_mode: str
    last_close: float
    next_close: float = Field(description="The one-step-ahead predicted close.")
    confidence: float | None
    confidence_level: str | None
    created_at: dt.datetime | None


class Forecast(ForecastSummary):
    reason: str | None
    path: list[ForecastStep]


class Recommendation(BaseModel):
    symbol: str
    as_of_window: dt.datetime
    model_version: str | None
    action: str
    entry_window: dt.datetime | None
    entry_price: float | None
    exit_window: dt.datetime | None
    exit_price: float | None
    predicted_return_pct: float | None
    confidence: float | None
    confidence_level: str | None
    recent_mase: float | None = Field(None, description="The skill gate's MASE at the trade's exit horizon (month "
                                      "span): below 1 beats the naive last-price forecast.")
    skill_p_value: float | None = Field(None, description="Its Diebold-Mariano p-value (overlap-aware): a trade needs "
                                        "it below workflow.skill_significance; null: too few validations to tell.")
    held_back_by: str | None
    reason: str
    active: bool = Field(description="A buy or short whose exit window is after the symbol's newest stored bar.")


class AccuracyMetric(BaseModel):
    symbol: str
    window_start: dt.datetime
    span: str
    horizon_bucket: str
    n: int
    rmse: float | None
    mae: float | None
    mape: float | None
    directional_accuracy: float | None
    mase: float | None
    skill_p_value: float | None = Field(None, description="One-sided p-value that the model's errors are smaller than "
                                        "naive's (Diebold-Mariano, overlap-aware); null: too few validations.")
    coverage_80: float | None
    coverage_95: float | None
    trade_success_rate: float | None
    mean_trade_return_pct: float | None


class TradeSuccess(BaseModel):
    scored: int
    hits: int
    success_rate: float | None
    mean_realized_return_pct: float | None


class RunDuration(BaseModel):
    run_id: str
    status: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    duration_seconds: float | None


class SymbolPerformance(BaseModel):
    symbol: str
    period_start: dt.datetime | None
    period_end: dt.datetime | None = Field(description="The newest accuracy window of the symbol (stored, or pruned "
                                           "by retention): periods are counted back from the data, not the wall "
                                           "clock.")
    latest_metrics: list[AccuracyMetric]
    trade_success: TradeSuccess
    pruned: PrunedSpan | None = Field(None, description="The span of the period whose accuracy metrics retention "
                                      "pruned; null when none was.")


class Performance(BaseModel):
    symbols: list[SymbolPerformance]
    runs: list[RunDuration] | None = Field(description="Recent market_bars_update runs from Dagster; null when it "
                                           "is not reachable.")
    dagster_detail: str


class SymbolPerformanceHistory(SymbolPerformance):
    period_hours: float
    metrics: list[AccuracyMetric] = Field(description="Every metric row of the period, newest first.")
    runs: list[RunDuration] | None
    dagster_detail: str


class Alert(BaseModel):
    source: str
    symbol: str
    as_of_window: dt.datetime
    kind: str
    level: str | None
    severity: str
    message: str
    alert_key: str | None
    run_id: str | None
    created_at: dt.datetime | None
    resolved_at: dt.datetime | None
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = Field(None, description="Who acknowledged it (api:<key id> through this API).")
    resolved_by: str | None = Field(None, description="Who resolved it by hand (null: resolved by the pipeline).")
    escalated_at: dt.datetime | None = Field(None, description="When an unacknowledged WARNING became ERROR.")


class LaunchedRuns(BaseModel):
    job: str
    window: str = Field(description="The newest registered session window (YYYY-MM-DD-HH:MM, New York).")
    symbols: list[str]
    run_ids: list[str]


class AuditEntry(BaseModel):
    id: str
    time: dt.datetime
    key_id: str | None
    role: str | None
    client: str
    method: str
    path: str
    outcome: int
    detail: str | None = None
    config_changes: list[ConfigChange] | None = None
    config_overridden: list[EnvironmentOverride] | None = Field(
        None, description="Keys of a config change that an environment variable overrides.")
    run_ids: list[str] | None = None
    repeated: int | None = Field(None, description="Rate-limit refusals of the same caller folded into this entry "
                                 "since its previous one (a flood is recorded as counts, not one line each).")


class AlertActionLaunched(BaseModel):
    job: str = Field(description="The Dagster job that writes the change (the service never writes the store).")
    alert_key: str
    action: Literal["acknowledge", "resolve"]
    open_alerts: int = Field(description="Open alerts with this key when the run was launched.")
    run_ids: list[str] = Field(description="The launched run; the alert reads as changed once it has finished.")
