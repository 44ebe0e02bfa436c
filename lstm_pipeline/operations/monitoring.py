"""Monitoring: samples of the spec's six categories, its eight KPIs, and threshold alerts (issue #10).

``sample_metrics`` measures the categories it is asked for (the ``system_metrics_sensor`` asks for those whose
``monitoring_intervals`` have elapsed) and returns ``system_metrics`` rows, one per metric; a value that cannot be
measured (no validations today, no timed API request) is a row with a null value and the reason in ``detail``, never
a made-up number. ``key_performance_indicators`` reads the KPIs from the newest samples (sampling the store-based
categories fresh when there is none). ``monitoring_alerts`` turns KPIs past ``alert_thresholds`` into alerts with the
same lifecycle as the workflow's (source ``monitoring``, one open row per kind, updated while it holds, resolved when
it clears; a KPI that cannot be judged leaves its alert as it is).

Categories and where each reads from:
- ``prediction_accuracy``: validations of the last day (share ``valid``, mean absolute error, reprediction rate) and
  the mean confidence of forecasts made in the last day;
- ``model_performance``: RMSE, MAE and R² of those validations (predicted vs actual close), MASE and its trend from
  each symbol's newest ``week`` accuracy;
- ``system_health``: host CPU, memory and disk of the store's folder (``psutil``), this process's memory, and whether
  the store answered (the uptime KPI is the share of samples in the last day where it did);
- ``api_performance``: the REST service's own record beside the instance (``api_access.jsonl``, else
  ``api_audit.jsonl``): mean and p95 response time, error rate (5xx share), cache hit rate, request count;
- ``storage``: the DuckDB file's size (and its WAL's) and the time of two typical read queries;
- ``trade_performance``: trades scored in the last 30 days: success rate, mean and total realized return.

Plain module: no Dagster import; the clock, psutil and the API record's paths are injectable.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.settings import Settings

CATEGORIES: tuple[str, ...] = (
    "prediction_accuracy", "model_performance", "system_health", "api_performance", "storage", "trade_performance",
)
"""The spec's six monitoring categories (the keys of ``monitoring_intervals``)."""
KPI_NAMES: tuple[str, ...] = (
    "prediction_accuracy", "mean_confidence", "reprediction_rate", "cache_hit_rate", "api_response_time_seconds",
    "uptime", "memory_used_mb_mean", "memory_used_mb_peak", "trade_success_rate",
)
"""The spec's eight KPIs (memory as its mean and peak); rates and accuracy are fractions."""
MONITORING_SOURCE = "monitoring"
"""``alerts.source`` of the threshold alerts."""
ALL_SYMBOLS = "*"
RECENT = pd.Timedelta(days=1)
"""Prediction accuracy, model performance, API performance and uptime look back one day."""
TRADE_SPAN = pd.Timedelta(days=30)
API_LOG_FILES: tuple[str, ...] = ("api_access.jsonl", "api_audit.jsonl")
_DURATION_MS_FIELDS = ("duration_ms", "elapsed_ms", "latency_ms", "response_time_ms")
METRIC_COLUMNS = ["sampled_at", "category", "metric", "value", "unit", "detail"]


def _row(now: pd.Timestamp, category: str, metric: str, value: float | None, unit: str, detail: str | None = None
         ) -> dict[str, Any]:
    if value is not None and not math.isfinite(float(value)):
        value = None
    return {"sampled_at": now, "category": category, "metric": metric,
            "value": None if value is None else float(value), "unit": unit, "detail": detail}


def due_categories(intervals: Mapping[str, float], last_sampled: Mapping[str, str], now: pd.Timestamp) -> list[str]:
    """The categories whose interval (minutes) has elapsed since their last sample (never sampled: due)."""
    due = []
    for category in CATEGORIES:
        last = last_sampled.get(category)
        minutes = float(intervals.get(category, 60.0))
        if last is None or pd.Timestamp(now) - pd.Timestamp(last) >= pd.Timedelta(minutes=minutes):
            due.append(category)
    return due


# ----------------------------------------------------------------------------------------------- categories


def _recent_validations(store: Any, now: pd.Timestamp) -> pd.DataFrame:
    return store.read_rows("validations", ["validated_at >= ?"], [now - RECENT])


def _prediction_accuracy(store: Any, now: pd.Timestamp) -> list[dict[str, Any]]:
    category = "prediction_accuracy"
    validations = _recent_validations(store, now)
    judged = validations[validations["status"].isin(["valid", "needs_reprediction"])]
    rows = [_row(now, category, "validations", len(judged), "count", "validations of the last day")]
    if judged.empty:
        why = "no forecast was validated in the last day"
        rows += [_row(now, category, name, None, unit, why) for name, unit in
                 (("accuracy", "fraction"), ("mean_abs_error_pct", "percent"), ("reprediction_rate", "fraction"))]
    else:
        rows += [
            _row(now, category, "accuracy", float((judged["status"] == "valid").mean()), "fraction",
                 "share of the last day's validations within validation_threshold"),
            _row(now, category, "mean_abs_error_pct", float(judged["abs_error_pct"].mean()), "percent"),
            _row(now, category, "reprediction_rate", float((judged["status"] == "needs_reprediction").mean()),
                 "fraction", "share of the last day's validations that asked for a reprediction"),
        ]
    forecasts = store.read_rows("predictions", ["created_at >= ?", "confidence IS NOT NULL"], [now - RECENT])
    mean = float(forecasts["confidence"].mean()) if len(forecasts) else None
    why = None if len(forecasts) else "no forecast with a confidence in the last day"
    rows.append(_row(now, category, "mean_confidence", mean, "fraction", why))
    return rows


def _model_performance(store: Any, settings: Settings, now: pd.Timestamp) -> list[dict[str, Any]]:
    category = "model_performance"
    validations = _recent_validations(store, now).dropna(subset=["actual_close", "predicted_close"])
    rows = []
    if validations.empty:
        why = "no validated forecast with an actual close in the last day"
        rows += [_row(now, category, name, None, "price" if name != "r2" else "ratio", why)
                 for name in ("rmse", "mae", "r2")]
    else:
        error = validations["predicted_close"] - validations["actual_close"]
        actual = validations["actual_close"]
        total = float(((actual - actual.mean()) ** 2).sum())
        rows += [
            _row(now, category, "rmse", float(np.sqrt((error**2).mean())), "price"),
            _row(now, category, "mae", float(error.abs().mean()), "price"),
            _row(now, category, "r2", 1 - float((error**2).sum()) / total if total > 0 else None, "ratio",
                 None if total > 0 else "actual closes did not vary"),
        ]
    placeholders = ", ".join("?" for _ in settings.symbols)
    accuracy = store.read_rows(
        "accuracy_metrics",
        [f"symbol IN ({placeholders})", "span = 'week'",
         "window_start = (SELECT max(l.window_start) FROM accuracy_metrics AS l WHERE l.symbol = t.symbol)"],
        list(settings.symbols),
    )
    for name in ("mase", "mase_trend", "directional_accuracy"):
        values = accuracy[name].dropna() if len(accuracy) else pd.Series(dtype=float)
        rows.append(_row(now, category, name, float(values.mean()) if len(values) else None, "ratio",
                         "mean over symbols of the newest week span" if len(values) else "no accuracy computed yet"))
    return rows


def _system_health(store: Any, settings: Settings, now: pd.Timestamp, psutil_module: Any | None) -> list[dict]:
    category = "system_health"
    if psutil_module is None:
        import psutil as psutil_module
    memory = psutil_module.virtual_memory()
    folder = Path(settings.db_path).expanduser().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    disk = psutil_module.disk_usage(str(folder))
    process = psutil_module.Process()
    try:
        store.read_rows("schema_version")
        up, why = 1.0, None
    except Exception as error:  # noqa: BLE001 - recorded as a sample, not raised
        up, why = 0.0, f"the store did not answer: {str(error)[:200]}"
    return [
        _row(now, category, "cpu_percent", float(psutil_module.cpu_percent(interval=0.2)), "percent"),
        _row(now, category, "memory_percent", float(memory.percent), "percent"),
        _row(now, category, "memory_used_mb", float(memory.used) / 2**20, "MB"),
        _row(now, category, "disk_percent", float(disk.percent), "percent", str(folder)),
        _row(now, category, "process_rss_mb", float(process.memory_info().rss) / 2**20, "MB",
             "the sampling process (the Dagster daemon under the sensor)"),
        _row(now, category, "pipeline_up", up, "boolean", why),
    ]


def api_log_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The REST service's own record beside the Dagster instance, access log first."""
    try:
        from serving.keys import instance_dir
    except ImportError:  # the service is not installed: nothing recorded
        return []
    folder = instance_dir(environ)
    return [folder / name for name in API_LOG_FILES]


def read_api_requests(paths: Iterable[Path], since: pd.Timestamp) -> pd.DataFrame:
    """Timed requests (time, status, duration_s, cache) since ``since``, from the first file that has any."""
    for path in paths:
        entries = []
        for candidate in (path.with_name(f"{path.name}.1"), path):
            if not candidate.exists():
                continue
            for line in candidate.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                duration = next((entry[f] / 1000 for f in _DURATION_MS_FIELDS if isinstance(entry.get(f), int | float)),
                                entry.get("duration_seconds"))
                stamp = pd.Timestamp(entry["time"]) if entry.get("time") else None
                if duration is None or stamp is None:
                    continue
                stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp
                if stamp < since:
                    continue
                cache = entry.get("cache")
                hit = cache == "hit" if cache in ("hit", "miss") else entry.get("cache_hit")
                entries.append({"time": stamp, "status": entry.get("status", entry.get("status_code")),
                                "duration_s": float(duration), "cache_hit": hit})
        if entries:
            return pd.DataFrame(entries)
    return pd.DataFrame(columns=["time", "status", "duration_s", "cache_hit"])


def _api_performance(now: pd.Timestamp, paths: Sequence[Path]) -> list[dict[str, Any]]:
    category = "api_performance"
    requests = read_api_requests(paths, now - RECENT)
    rows = [_row(now, category, "requests", len(requests), "count", "timed requests of the last day")]
    if requests.empty:
        why = "the REST service recorded no timed request in the last day"
        return rows + [_row(now, category, name, None, unit, why) for name, unit in (
            ("response_time_mean_s", "seconds"), ("response_time_p95_s", "seconds"), ("error_rate", "fraction"),
            ("cache_hit_rate", "fraction"))]
    statuses = pd.to_numeric(requests["status"], errors="coerce")
    cached = requests["cache_hit"].dropna()
    rows += [
        _row(now, category, "response_time_mean_s", float(requests["duration_s"].mean()), "seconds"),
        _row(now, category, "response_time_p95_s", float(requests["duration_s"].quantile(0.95)), "seconds"),
        _row(now, category, "error_rate", float((statuses >= 500).mean()), "fraction", "share of 5xx answers"),
        _row(now, category, "cache_hit_rate", float(cached.astype(bool).mean()) if len(cached) else None, "fraction",
             None if len(cached) else "the REST service recorded no cache hit or miss"),
    ]
    return rows


def _storage(store: Any, settings: Settings, now: pd.Timestamp) -> list[dict[str, Any]]:
    category = "storage"
    backend = getattr(getattr(settings, "storage", None), "backend", "duckdb")
    path = Path(settings.db_path).expanduser()
    rows = []
    if backend == "duckdb":
        size = path.stat().st_size if path.exists() else 0
        wal = path.with_name(path.name + ".wal")
        rows += [_row(now, category, "database_size_mb", size / 2**20, "MB", str(path)),
                 _row(now, category, "wal_size_mb", (wal.stat().st_size if wal.exists() else 0) / 2**20, "MB")]
    else:
        rows += [_row(now, category, "database_size_mb", None, "MB", f"the {backend} backend's size is not sampled")]
    for metric, table, where in (
        ("catalog_query_ms", "schema_version", []),
        ("latest_forecasts_query_ms", "predictions",
         ["as_of_window = (SELECT max(l.as_of_window) FROM predictions AS l WHERE l.symbol = t.symbol)"]),
    ):
        started = time.perf_counter()
        try:
            store.read_rows(table, where)
            rows.append(_row(now, category, metric, (time.perf_counter() - started) * 1000, "ms"))
        except Exception as error:  # noqa: BLE001 - recorded, not raised
            rows.append(_row(now, category, metric, None, "ms", f"the query failed: {str(error)[:200]}"))
    return rows


def _trade_performance(store: Any, now: pd.Timestamp) -> list[dict[str, Any]]:
    category = "trade_performance"
    cutoff = (now - TRADE_SPAN).tz_convert("America/New_York")
    outcomes = store.read_rows("trade_outcomes", ["scored_window >= ?", "hit IS NOT NULL"], [cutoff])
    rows = [_row(now, category, "scored_trades", len(outcomes), "count", "trades scored in the last 30 days")]
    if outcomes.empty:
        why = "no trade was scored in the last 30 days"
        return rows + [_row(now, category, name, None, unit, why) for name, unit in (
            ("success_rate", "fraction"), ("mean_return_pct", "percent"), ("total_return_pct", "percent"))]
    returns = outcomes["realized_return_pct"].dropna()
    return rows + [
        _row(now, category, "success_rate", float(outcomes["hit"].astype(bool).mean()), "fraction"),
        _row(now, category, "mean_return_pct", float(returns.mean()) if len(returns) else None, "percent"),
        _row(now, category, "total_return_pct", float(returns.sum()) if len(returns) else None, "percent",
             "sum of realized returns after costs"),
    ]


def sample_metrics(
    store: Any,
    settings: Settings,
    categories: Sequence[str] = CATEGORIES,
    now: pd.Timestamp | None = None,
    *,
    api_paths: Sequence[Path] | None = None,
    psutil_module: Any | None = None,
) -> pd.DataFrame:
    """One sample of each of ``categories``: ``system_metrics`` rows (``METRIC_COLUMNS``)."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    unknown = [name for name in categories if name not in CATEGORIES]
    if unknown:
        raise ValueError(f"{unknown} are not monitoring categories; use {list(CATEGORIES)}.")
    rows: list[dict[str, Any]] = []
    for category in categories:
        if category == "prediction_accuracy":
            rows += _prediction_accuracy(store, now)
        elif category == "model_performance":
            rows += _model_performance(store, settings, now)
        elif category == "system_health":
            rows += _system_health(store, settings, now, psutil_module)
        elif category == "api_performance":
            rows += _api_performance(now, api_log_paths() if api_paths is None else api_paths)
        elif category == "storage":
            rows += _storage(store, settings, now)
        else:
            rows += _trade_performance(store, now)
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    frame["value"] = frame["value"].astype("float64")
    return frame


# --------------------------------------------------------------------------------------------------- KPIs


def kpis_from(samples: pd.DataFrame) -> dict[str, float | None]:
    """The KPIs from ``system_metrics`` rows: the newest value of each metric; uptime and memory over all rows."""

    def latest(category: str, metric: str) -> float | None:
        rows = samples[(samples["category"] == category) & (samples["metric"] == metric) & samples["value"].notna()]
        return None if rows.empty else float(rows.sort_values("sampled_at")["value"].iloc[-1])

    def over(category: str, metric: str) -> pd.Series:
        return samples[(samples["category"] == category) & (samples["metric"] == metric)]["value"].dropna()

    up, memory = over("system_health", "pipeline_up"), over("system_health", "memory_used_mb")
    return {
        "prediction_accuracy": latest("prediction_accuracy", "accuracy"),
        "mean_confidence": latest("prediction_accuracy", "mean_confidence"),
        "reprediction_rate": latest("prediction_accuracy", "reprediction_rate"),
        "cache_hit_rate": latest("api_performance", "cache_hit_rate"),
        "api_response_time_seconds": latest("api_performance", "response_time_mean_s"),
        "uptime": float(up.mean()) if len(up) else None,
        "memory_used_mb_mean": float(memory.mean()) if len(memory) else None,
        "memory_used_mb_peak": float(memory.max()) if len(memory) else None,
        "trade_success_rate": latest("trade_performance", "success_rate"),
    }


def alert_inputs(samples: pd.DataFrame) -> dict[str, float | None]:
    """What ``monitoring_alerts`` judges: the KPIs plus the last day's mean absolute error as a fraction."""
    rows = samples[(samples["category"] == "prediction_accuracy") & (samples["metric"] == "mean_abs_error_pct")
                   & samples["value"].notna()]
    error = None if rows.empty else float(rows.sort_values("sampled_at")["value"].iloc[-1]) / 100
    return {**kpis_from(samples), "mean_abs_error": error}


def key_performance_indicators(store: Any, settings: Settings, now: pd.Timestamp | None = None,
                               api_paths: Sequence[Path] | None = None) -> dict[str, float | None]:
    """The KPIs over the last day's samples plus a fresh sample of every category (read-only: nothing is written)."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    history = store.read_rows("system_metrics", ["sampled_at >= ?"], [now - RECENT])
    fresh = sample_metrics(store, settings, CATEGORIES, now, api_paths=api_paths)
    frames = [frame for frame in (history.reindex(columns=METRIC_COLUMNS), fresh) if len(frame)]
    samples = pd.concat(frames, ignore_index=True) if frames else fresh
    samples["sampled_at"] = pd.to_datetime(samples["sampled_at"], utc=True)
    return kpis_from(samples)


# ------------------------------------------------------------------------------------------ threshold alerts


def _conditions(kpis: Mapping[str, float | None], thresholds: Any) -> list[tuple[str, bool | None, str | None, str]]:
    """(kind, holds or None when not judged, level, message) for each monitored threshold."""
    out = []

    def judge(kind: str, value: float | None, level: str | None, message: str) -> None:
        out.append((kind, None if value is None else level is not None, level, message))

    error = kpis.get("mean_abs_error")
    level = None
    if error is not None:
        level = ("CRITICAL" if error >= thresholds.prediction_error_critical
                 else "WARNING" if error >= thresholds.prediction_error_high else None)
    judge("prediction_error", error, level,
          f"The last day's validated forecasts missed by {error if error is None else f'{error:.2%}'} on average "
          f"(alert from {thresholds.prediction_error_high:.0%}, critical from "
          f"{thresholds.prediction_error_critical:.0%}).")
    accuracy = kpis.get("prediction_accuracy")
    judge("model_accuracy_low", accuracy,
          "ERROR" if accuracy is not None and accuracy < thresholds.model_accuracy_low else None,
          f"Prediction accuracy over the last day is {accuracy if accuracy is None else f'{accuracy:.1%}'} "
          f"(alert below {thresholds.model_accuracy_low:.0%}).")
    confidence = kpis.get("mean_confidence")
    level = None
    if confidence is not None:
        level = ("CRITICAL" if confidence < thresholds.confidence_critical
                 else "WARNING" if confidence < thresholds.confidence_low else None)
    judge("confidence_low", confidence, level,
          f"Mean confidence of the last day's forecasts is {confidence if confidence is None else f'{confidence:.2f}'}"
          f" (alert below {thresholds.confidence_low:.2f}, critical below {thresholds.confidence_critical:.2f}).")
    seconds = kpis.get("api_response_time_seconds")
    level = None
    if seconds is not None:
        level = ("CRITICAL" if seconds >= thresholds.api_response_time_critical
                 else "WARNING" if seconds >= thresholds.api_response_time_high else None)
    judge("api_response_time", seconds, level,
          f"The REST service's mean response time over the last day is "
          f"{seconds if seconds is None else f'{seconds:.2f} s'} (alert from {thresholds.api_response_time_high:g} s, "
          f"critical from {thresholds.api_response_time_critical:g} s).")
    rate = kpis.get("trade_success_rate")
    judge("trade_success_rate_low", rate,
          "WARNING" if rate is not None and rate < thresholds.trade_success_rate_low else None,
          f"Trade success rate over the last 30 days is {rate if rate is None else f'{rate:.1%}'} "
          f"(alert below {thresholds.trade_success_rate_low:.0%}).")
    return out


def monitoring_alerts(kpis: Mapping[str, float | None], thresholds: Any, open_alerts: pd.DataFrame,
                      now: pd.Timestamp, run_id: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows to write (new, updated and resolved ``monitoring`` alerts) and their keys, from the KPIs.

    One open alert per kind (``alert_key`` ``<kind>:*``); a KPI that is missing leaves its open alert untouched."""
    from lstm_pipeline.evaluation.alerting import ALERT_ROW_COLUMNS, carried
    from lstm_pipeline.market.calendar import NEW_YORK, WINDOW

    now = pd.Timestamp(now)
    window = now.tz_convert(NEW_YORK).floor(WINDOW)
    opened = open_alerts[(open_alerts["source"] == MONITORING_SOURCE) & open_alerts["resolved_at"].isna()]
    by_kind = {row.kind: row for row in opened.itertuples(index=False)}
    rows = []
    for kind, holds, level, message in _conditions(kpis, thresholds):
        current = by_kind.get(kind)
        if holds is None:
            continue
        if holds:
            rows.append({
                "source": MONITORING_SOURCE, "symbol": ALL_SYMBOLS,
                "as_of_window": window if current is None else current.as_of_window, "kind": kind,
                "severity": str(level).lower(), "message": message, "run_id": run_id,
                "created_at": now if current is None else current.created_at, "level": level,
                "alert_key": f"{kind}:{ALL_SYMBOLS}", "resolved_at": pd.NaT, **carried(current, str(level)),
            })
        elif current is not None:
            row = current._asdict()
            row.update(resolved_at=now, message=f"{current.message} Resolved: {message}")
            rows.append(row)
    frame = pd.DataFrame(rows, columns=ALERT_ROW_COLUMNS)
    for column in ("as_of_window", "created_at", "resolved_at", "acknowledged_at", "escalated_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame, frame[["source", "symbol", "as_of_window", "kind"]]
