"""Alerts from the workflow's tables: which conditions hold for each symbol, at which level, deduplicated by key.

``evaluate_alerts`` takes a whole run's symbols at once (their latest as-of window), the rows the conditions read
(validations, the latest forecast's confidence, trade outcomes, the latest stored bar) and the alerts still open,
and returns the alert rows to write: a new row for a condition that starts to hold, the same row updated (same
``alert_key``, same first-raised window, new level and message) for one that still holds, and the open row with
``resolved_at`` set for one that stopped holding. A condition that cannot be judged (no data yet) leaves its open
alert as it is and is reported with the reason. This module imports no Dagster.

Storage design: a workflow alert is one ``alerts`` row with ``source='alerts'`` whose ``as_of_window`` is the window
it was first raised at; it is written by its full key (source, symbol, as_of_window, kind), so an update or a
resolution replaces exactly that row. While it is open there is one row per ``alert_key`` (``<kind>:<symbol>``);
once resolved, the same condition raised again opens a new row at its new window, so history stays readable.

Run and check alerts follow the same lifecycle with other sources: ``source='runs'`` (``run_failure_alert``,
``run_canceled_alert``: one open row per job, resolved by the job's next success) and ``source='checks'``
(``check_alerts``: one open row per asset check that did not pass, resolved when a later run's evaluation of the
same check passes); the run-status sensors in ``lstm_pipeline.sensors.run_failures`` write them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK, WINDOW, session_windows

LEVELS: tuple[str, ...] = ("INFO", "WARNING", "ERROR", "CRITICAL")
"""The spec's alert levels, least to most severe."""
WORKFLOW_SOURCE = "alerts"
"""``alerts.source`` of the rows the ``alerts`` asset writes."""
RUNS_SOURCE = "runs"
"""``alerts.source`` of the rows the run-status sensors write for failed and canceled runs."""

PREDICTION_ERROR = "prediction_error"
CONFIDENCE_LOW = "confidence_low"
MODEL_ACCURACY_LOW = "model_accuracy_low"
TRADE_SUCCESS_RATE_LOW = "trade_success_rate_low"
STALE_DATA = "stale_data"
ALERT_KINDS: tuple[str, ...] = (
    PREDICTION_ERROR, CONFIDENCE_LOW, MODEL_ACCURACY_LOW, TRADE_SUCCESS_RATE_LOW, STALE_DATA
)
"""The conditions ``evaluate_alerts`` judges; each is one alert per symbol (its level says how bad)."""

ACCURACY_SPAN = pd.Timedelta(days=7)
"""Model accuracy is the share of ``valid`` validations over the target windows of the last 7 calendar days (the
``week`` span)."""
MIN_VALIDATIONS_FOR_ACCURACY = 30
"""Fewer validations than this in the span: accuracy is not judged yet."""
TRADE_SPAN = pd.Timedelta(days=30)
"""Trade success rate is the hit share of the trades scored in the last 30 calendar days."""
MIN_SCORED_TRADES = 5
"""Fewer scored trades than this: the success rate is not judged yet."""
STALE_AFTER_WINDOWS = 4
"""No stored bar for this many session windows (an hour) up to the as-of window: the data is stale (WARNING); a
whole session (26 windows) without one is an ERROR."""
STALE_ERROR_WINDOWS = 26
STALE_LOOKBACK = pd.Timedelta(days=7)
"""How far back the caller looks for a symbol's latest bar; none in that span reads as stale."""

SEVERITY_LEVEL = {"info": "INFO", "warning": "WARNING", "error": "ERROR", "critical": "CRITICAL"}
"""The level of an alert row that only has a severity (the rows ``predictions`` writes)."""

ALERT_ROW_COLUMNS: list[str] = [
    "source",
    "symbol",
    "as_of_window",
    "kind",
    "severity",
    "message",
    "run_id",
    "created_at",
    "level",
    "alert_key",
    "resolved_at",
    *("acknowledged_at", "acknowledged_by", "resolved_by", "escalated_at"),
]
_CONDITION_COLUMNS = ["symbol", "kind", "holds", "level", "message"]


class Thresholds(Protocol):
    """The spec's ``alert_thresholds`` (``lstm_pipeline.settings.AlertThresholds``); errors and rates are fractions."""

    prediction_error_high: float
    prediction_error_critical: float
    confidence_low: float
    confidence_critical: float
    model_accuracy_low: float
    trade_success_rate_low: float


CARRIED_COLUMNS: tuple[str, ...] = ("acknowledged_at", "acknowledged_by", "resolved_by", "escalated_at")
"""State set on an open alert by hand or by escalation (``operations.alert_channels``); rewriting the row keeps it."""


def carried(current: object | None, level: str) -> dict[str, object]:
    """``current``'s carried state and the level to write: an escalated alert stays ERROR while it is a WARNING."""
    state = {name: getattr(current, name, None) for name in CARRIED_COLUMNS} if current is not None else {}
    escalated = state.get("escalated_at") is not None and not pd.isna(state.get("escalated_at"))
    return {**state, "level": "ERROR" if escalated and level == "WARNING" else level}


def alert_key(kind: str, symbol: str) -> str:
    """What makes a repeated condition the same alert."""
    return f"{kind}:{symbol}"


def with_levels(alerts: pd.DataFrame) -> pd.DataFrame:
    """``alerts`` with ``level`` filled from ``severity`` (error -> ERROR, warning -> WARNING) and ``alert_key`` from
    kind and symbol where a writer left them empty (the per-window rows of ``predictions``)."""
    out = alerts.copy()
    derived_level = out["severity"].astype(str).str.lower().map(SEVERITY_LEVEL).fillna("WARNING")
    derived_key = out["kind"].astype(str) + ":" + out["symbol"].astype(str)
    for column, derived in (("level", derived_level), ("alert_key", derived_key)):
        out[column] = out[column].where(out[column].notna(), derived) if column in out else derived
    return out


@dataclass(frozen=True)
class AlertEvaluation:
    """What ``evaluate_alerts`` decided: rows to write (new and updated open alerts, resolved alerts) and the
    conditions it could not judge, with why."""

    upserts: pd.DataFrame
    """Open alerts to write: new ones (``created_at`` = now) and updated ones (same key, same first-raised window)."""
    resolutions: pd.DataFrame
    """Alerts that were open and no longer hold, with ``resolved_at`` set."""
    not_evaluated: pd.DataFrame
    """symbol, kind, reason: a condition with no data to judge; its open alert (if any) is left as it is."""
    raised_keys: frozenset[str] = frozenset()
    """``alert_key`` of the upserts that are new (the others were open already)."""

    @property
    def rows(self) -> pd.DataFrame:
        """Every row to write, in the ``alerts`` table's columns."""
        frames = [frame for frame in (self.upserts, self.resolutions) if len(frame)]
        return pd.concat(frames, ignore_index=True) if frames else _empty_rows()

    @property
    def keys(self) -> pd.DataFrame:
        """The full keys of the rows to write: replacing by them touches exactly these rows."""
        return self.rows[["source", "symbol", "as_of_window", "kind"]]


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame(columns=ALERT_ROW_COLUMNS)


def _conditions(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=_CONDITION_COLUMNS)


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def _within(frame: pd.DataFrame, column: str, as_of: pd.Series, span: pd.Timedelta | None) -> pd.DataFrame:
    """Rows of ``frame`` whose ``column`` lies in (as-of - span, as-of] of their symbol (equals it without a span)."""
    frame = frame[frame["symbol"].isin(as_of.index) & frame[column].notna()]
    if frame.empty:
        return frame
    ends = pd.to_datetime(frame["symbol"].map(as_of))
    stamps = pd.to_datetime(frame[column])
    if span is None:
        return frame[stamps == ends]
    return frame[(stamps <= ends) & (stamps > ends - span)]


def _prediction_error(as_of: pd.Series, validations: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """Mean absolute error (fraction) of the forecasts of each symbol's latest validated window, over every forecast
    that targeted it (one per earlier as-of window): WARNING past ``prediction_error_high``, CRITICAL past
    ``prediction_error_critical``. Validations of a bad bar (``invalid``) do not count."""
    usable = validations[(validations["status"] != "invalid") & validations["abs_error_pct"].notna()]
    usable = _within(usable, "target_window", as_of, ACCURACY_SPAN)
    if usable.empty:
        return _conditions([])
    latest = usable[usable["target_window"] == usable.groupby("symbol")["target_window"].transform("max")]
    summary = latest.groupby("symbol").agg(
        target=("target_window", "first"), mean=("abs_error_pct", "mean"), top=("abs_error_pct", "max"),
        n=("abs_error_pct", "size"),
    )
    rows = []
    for symbol, item in summary.iterrows():
        error = float(item["mean"]) / 100
        level = (
            "CRITICAL" if error >= thresholds.prediction_error_critical
            else "WARNING" if error >= thresholds.prediction_error_high else None
        )
        limit = thresholds.prediction_error_critical if level == "CRITICAL" else thresholds.prediction_error_high
        rows.append({
            "symbol": symbol, "kind": PREDICTION_ERROR, "holds": level is not None, "level": level,
            "message": f"{symbol}'s {int(item['n'])} forecast(s) of {item['target']:%Y-%m-%d %H:%M} missed the actual "
            f"close by {_pct(error)} on average (worst {float(item['top']):.1f}%; alert at {_pct(limit)}).",
        })
    return _conditions(rows)


def _confidence(as_of: pd.Series, predictions: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """Mean confidence of the steps of each symbol's forecast made as of its as-of window: WARNING below
    ``confidence_low``, CRITICAL below ``confidence_critical``."""
    scored = _within(predictions[predictions["confidence"].notna()], "as_of_window", as_of, None)
    if scored.empty:
        return _conditions([])
    rows = []
    for symbol, confidence in scored.groupby("symbol")["confidence"].mean().items():
        value = float(confidence)
        level = (
            "CRITICAL" if value < thresholds.confidence_critical
            else "WARNING" if value < thresholds.confidence_low else None
        )
        limit = thresholds.confidence_critical if level == "CRITICAL" else thresholds.confidence_low
        rows.append({
            "symbol": symbol, "kind": CONFIDENCE_LOW, "holds": level is not None, "level": level,
            "message": f"{symbol}'s forecast as of {as_of[symbol]:%Y-%m-%d %H:%M} has confidence {value:.2f} "
            f"(alert below {limit:.2f}).",
        })
    return _conditions(rows)


def _model_accuracy(as_of: pd.Series, validations: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """Share of ``valid`` validations (``valid`` / ``needs_reprediction``; a bad bar's ``invalid`` rows do not
    count) over the week span: ERROR below ``model_accuracy_low``. Judged from ``MIN_VALIDATIONS_FOR_ACCURACY``
    validations on."""
    judged = validations[validations["status"].isin(["valid", "needs_reprediction"])]
    judged = _within(judged, "target_window", as_of, ACCURACY_SPAN)
    if judged.empty:
        return _conditions([])
    summary = judged.assign(ok=judged["status"] == "valid").groupby("symbol")["ok"].agg(["mean", "size"])
    rows = []
    for symbol, item in summary[summary["size"] >= MIN_VALIDATIONS_FOR_ACCURACY].iterrows():
        share = float(item["mean"])
        holds = share < thresholds.model_accuracy_low
        rows.append({
            "symbol": symbol, "kind": MODEL_ACCURACY_LOW, "holds": holds, "level": "ERROR" if holds else None,
            "message": f"{symbol}'s model: {_pct(share)} of its {int(item['size'])} forecast(s) validated in the "
            f"last 7 days were within bounds (alert below {_pct(thresholds.model_accuracy_low)}).",
        })
    return _conditions(rows)


def _trade_success(as_of: pd.Series, trade_outcomes: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """Hit share of the trades scored over the last 30 days: WARNING below ``trade_success_rate_low``. Judged from
    ``MIN_SCORED_TRADES`` trades on."""
    scored = _within(trade_outcomes[trade_outcomes["hit"].notna()], "scored_window", as_of, TRADE_SPAN)
    if scored.empty:
        return _conditions([])
    summary = scored.assign(hit=scored["hit"].astype(bool)).groupby("symbol")["hit"].agg(["mean", "size"])
    rows = []
    for symbol, item in summary[summary["size"] >= MIN_SCORED_TRADES].iterrows():
        rate = float(item["mean"])
        holds = rate < thresholds.trade_success_rate_low
        rows.append({
            "symbol": symbol, "kind": TRADE_SUCCESS_RATE_LOW, "holds": holds, "level": "WARNING" if holds else None,
            "message": f"{symbol}: {_pct(rate)} of its {int(item['size'])} trade(s) scored in the last 30 days hit "
            f"(alert below {_pct(thresholds.trade_success_rate_low)}).",
        })
    return _conditions(rows)


def _stale_data(as_of: pd.Series, latest_bars: pd.DataFrame, stale_after_windows: int) -> pd.DataFrame:
    """Session windows without a stored bar, from the symbol's latest bar up to its as-of window."""
    latest = _within(latest_bars, "window_start", as_of, STALE_LOOKBACK).groupby("symbol")["window_start"].max()
    rows = []
    for symbol, end in as_of.items():
        last = latest.get(symbol)
        if last is None or pd.isna(last):
            missed = None
        else:
            missed = len(session_windows(last + WINDOW, end + WINDOW))
        holds = missed is None or missed >= stale_after_windows
        level = None if not holds else "ERROR" if missed is None or missed >= STALE_ERROR_WINDOWS else "WARNING"
        since = "in the last 7 days" if last is None or pd.isna(last) else f"since {last:%Y-%m-%d %H:%M}"
        count = "no" if missed is None else f"{missed} session window(s) without a"
        rows.append({
            "symbol": symbol, "kind": STALE_DATA, "holds": holds, "level": level,
            "message": f"{symbol} has {count} stored bar {since} up to {end:%Y-%m-%d %H:%M} (alert from "
            f"{stale_after_windows} windows).",
        })
    return _conditions(rows)


def evaluate_alerts(
    as_of: pd.DataFrame,
    validations: pd.DataFrame,
    predictions: pd.DataFrame,
    trade_outcomes: pd.DataFrame,
    latest_bars: pd.DataFrame,
    open_alerts: pd.DataFrame,
    thresholds: Thresholds,
    now: pd.Timestamp,
    run_id: str | None = None,
    stale_after_windows: int = STALE_AFTER_WINDOWS,
) -> AlertEvaluation:
    """Judge every alert condition for a whole run's symbols at once and deduplicate against the open alerts.

    ``as_of`` holds the run's (symbol, window_start) pairs; each symbol is judged as of its latest one (a backfill
    judges the state at its last window). ``validations`` needs symbol, target_window, status, abs_error_pct (the
    last 7 days up to the as-of window); ``predictions`` symbol, as_of_window, confidence; ``trade_outcomes``
    symbol, scored_window, hit; ``latest_bars`` symbol, window_start (stored bars of the last 7 days);
    ``open_alerts`` the unresolved ``source='alerts'`` rows of these symbols. An open alert first raised after a
    symbol's as-of window (a backfill of older windows) is left alone.
    """
    now = pd.Timestamp(now)
    if as_of.empty:
        return AlertEvaluation(_empty_rows(), _empty_rows(), pd.DataFrame(columns=["symbol", "kind", "reason"]))
    ends = as_of.groupby("symbol")["window_start"].max()
    conditions = pd.concat(
        [
            _prediction_error(ends, validations, thresholds),
            _confidence(ends, predictions, thresholds),
            _model_accuracy(ends, validations, thresholds),
            _trade_success(ends, trade_outcomes, thresholds),
            _stale_data(ends, latest_bars, stale_after_windows),
        ],
        ignore_index=True,
    )
    judged = set(zip(conditions["symbol"], conditions["kind"], strict=True))
    not_evaluated = pd.DataFrame(
        [
            {"symbol": symbol, "kind": kind, "reason": _NOT_EVALUATED[kind]}
            for symbol in ends.index
            for kind in ALERT_KINDS
            if (symbol, kind) not in judged
        ],
        columns=["symbol", "kind", "reason"],
    )

    opened = open_alerts[(open_alerts["source"] == WORKFLOW_SOURCE) & open_alerts["resolved_at"].isna()]
    opened = opened[opened["symbol"].isin(ends.index)]
    open_by_key = {(row.symbol, row.kind): row for row in opened.itertuples(index=False)}

    upserts, resolutions, raised = [], [], set()
    for condition in conditions.itertuples(index=False):
        end = ends[condition.symbol]
        current = open_by_key.get((condition.symbol, condition.kind))
        if current is not None and current.as_of_window > end:
            continue  # raised after this run's window: a backfill of the past does not judge the present
        key = alert_key(condition.kind, condition.symbol)
        if condition.holds:
            first_raised = end if current is None else current.as_of_window
            created = now if current is None else current.created_at
            if current is None:
                raised.add(key)
            upserts.append({
                "source": WORKFLOW_SOURCE, "symbol": condition.symbol, "as_of_window": first_raised,
                "kind": condition.kind, "severity": condition.level.lower(), "message": condition.message,
                "run_id": run_id, "created_at": created, "level": condition.level, "alert_key": key,
                "resolved_at": pd.NaT, **carried(current, condition.level),
            })
        elif current is not None:
            row = current._asdict()
            row.update(resolved_at=now, message=f"{current.message} Resolved: {condition.message}", alert_key=key)
            resolutions.append(row)
    return AlertEvaluation(
        upserts=_frame(upserts), resolutions=_frame(resolutions), not_evaluated=not_evaluated,
        raised_keys=frozenset(raised),
    )


_NOT_EVALUATED = {
    PREDICTION_ERROR: "no validated forecast in the last 7 days",
    CONFIDENCE_LOW: "no forecast with a confidence score as of this window",
    MODEL_ACCURACY_LOW: f"fewer than {MIN_VALIDATIONS_FOR_ACCURACY} validations in the last 7 days",
    TRADE_SUCCESS_RATE_LOW: f"fewer than {MIN_SCORED_TRADES} trades scored in the last 30 days",
    STALE_DATA: "always judged",
}


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ALERT_ROW_COLUMNS)
    for column in ("as_of_window", "created_at", "resolved_at", "acknowledged_at", "escalated_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True) if len(frame) else frame[column]
    return frame


def open_alerts_by_level(alerts: pd.DataFrame) -> dict[str, int]:
    """How many alerts are open, per level (every level listed, most severe first)."""
    opened = with_levels(alerts[alerts["resolved_at"].isna()]) if len(alerts) else alerts
    counts = opened["level"].value_counts() if len(opened) else pd.Series(dtype=np.int64)
    return {level: int(counts.get(level, 0)) for level in reversed(LEVELS)}


RUN_FAILED = "run_failed"
RUN_CANCELED = "run_canceled"
RUN_ALERT_KINDS: tuple[str, ...] = (RUN_FAILED, RUN_CANCELED)
"""Run alerts a later successful run of the same job resolves."""
ALL_SYMBOLS = "*"
"""``alerts.symbol`` of a run alert: a run covers many symbols (its message lists them)."""


def first_sentence(text: str, limit: int = 300) -> str:
    """The first sentence of an error message, without the exception's class name, at most ``limit`` characters."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    head, sep, rest = line.partition(": ")
    if sep and head.replace(".", "").replace("_", "").isalnum() and " " not in head:
        line = rest  # "ValueError: Model for MSFT ..." -> "Model for MSFT ..."
    end = line.find(". ")
    sentence = line if end < 0 else line[: end + 1]
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def _run_alert(
    kind: str,
    level: str,
    outcome: str,
    job_name: str,
    run_id: str,
    detail: str,
    at: pd.Timestamp,
    open_alerts: pd.DataFrame,
    symbols: list[str] | None,
    window: pd.Timestamp | None,
) -> pd.DataFrame:
    key = alert_key(kind, job_name)
    at = pd.Timestamp(at)
    scope = f" for {', '.join(symbols)}" if symbols else ""
    message = f"Run {run_id[:8]} of {job_name}{scope} {outcome}: {first_sentence(detail) or 'no error message'}"
    current = open_alerts[
        (open_alerts["source"] == RUNS_SOURCE) & (open_alerts["alert_key"] == key) & open_alerts["resolved_at"].isna()
    ]
    if len(current):
        first_raised, created = current["as_of_window"].iloc[0], current["created_at"].iloc[0]
        state = carried(current.iloc[0], level)
    else:
        state = carried(None, level)
        first_raised = window if window is not None else at.tz_convert(NEW_YORK).floor(WINDOW)
        created = at
    return _frame([{
        "source": RUNS_SOURCE, "symbol": ALL_SYMBOLS, "as_of_window": first_raised, "kind": kind,
        "severity": level.lower(), "message": message, "run_id": run_id, "created_at": created, "level": level,
        "alert_key": key, "resolved_at": pd.NaT, **state,
    }])


def run_failure_alert(
    job_name: str,
    run_id: str,
    error: str,
    failed_at: pd.Timestamp,
    open_alerts: pd.DataFrame,
    symbols: list[str] | None = None,
    window: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The ``alerts`` row (ERROR, ``alert_key`` ``run_failed:<job>``) for a failed run of ``job_name``.

    While a failure of the job is open, another failure updates that row (same first-raised window and created
    time, new message and run id) instead of adding one. ``window`` is the last window the run was for (its
    partitions), else the window the failure happened in; ``symbols`` its symbols, listed in the message."""
    return _run_alert(RUN_FAILED, "ERROR", "failed", job_name, run_id, error, failed_at, open_alerts, symbols, window)


def run_canceled_alert(
    job_name: str,
    run_id: str,
    reason: str,
    canceled_at: pd.Timestamp,
    open_alerts: pd.DataFrame,
    symbols: list[str] | None = None,
    window: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The ``alerts`` row (WARNING, ``alert_key`` ``run_canceled:<job>``) for a canceled run of ``job_name``: its
    windows were not computed. Deduplicated like ``run_failure_alert``; ``reason`` is the cancel message."""
    return _run_alert(
        RUN_CANCELED, "WARNING", "was canceled", job_name, run_id, reason, canceled_at, open_alerts, symbols, window
    )


def run_success_resolution(job_name: str, run_id: str, succeeded_at: pd.Timestamp, open_alerts: pd.DataFrame
                           ) -> pd.DataFrame:
    """The open ``run_failed:<job>`` and ``run_canceled:<job>`` alerts, resolved because a later run of the job
    succeeded (empty if none)."""
    keys = {alert_key(kind, job_name) for kind in RUN_ALERT_KINDS}
    current = open_alerts[
        (open_alerts["source"] == RUNS_SOURCE) & open_alerts["alert_key"].isin(keys) & open_alerts["resolved_at"].isna()
    ]
    resolved = current.reindex(columns=ALERT_ROW_COLUMNS).copy()
    resolved["resolved_at"] = pd.Timestamp(succeeded_at)
    resolved["message"] = resolved["message"] + f" Resolved: run {run_id[:8]} of {job_name} succeeded."
    return _frame(resolved.to_dict("records"))


CHECKS_SOURCE = "checks"
"""``alerts.source`` of the rows written for asset checks that did not pass."""
CHECK_FAILED = "check_failed"
CHECK_LEVEL = {"WARN": "WARNING", "ERROR": "ERROR"}
"""Alert level of a failed check, by the check's severity."""
CHECK_EVALUATION_COLUMNS: list[str] = ["asset", "check_name", "passed", "severity", "description"]


def check_name(asset: str, check: str) -> str:
    """How an alert names an asset check: ``<asset>.<check>`` (e.g. ``predictions.every_symbol_predicted``)."""
    return f"{asset}.{check}"


def check_alerts(
    evaluations: pd.DataFrame,
    open_alerts: pd.DataFrame,
    now: pd.Timestamp,
    run_id: str,
    window: pd.Timestamp | None = None,
    symbols: list[str] | None = None,
) -> AlertEvaluation:
    """Failed asset checks of one finished run as alerts; passed ones resolve the open alert of the same check.

    ``evaluations`` holds the run's check evaluations (``CHECK_EVALUATION_COLUMNS``; severity ``WARN`` or
    ``ERROR``); ``open_alerts`` the unresolved ``source='checks'`` rows. A check evaluated several times in the run
    (once per partition) failed if any evaluation failed, at the highest failing severity, with the failing
    descriptions as message. One alert per check: ``alert_key`` ``check_failed:<asset>.<check>``, ``symbol`` the
    check's name ``<asset>.<check>`` (a check covers every symbol of its run, which the message lists; the table's
    key needs the check there), ``as_of_window`` the window it was first raised at (the run's last window, else
    the window ``now`` falls in). A check still failing updates its open row (same first-raised window and created
    time, new level, message and run id); one that passes resolves it (``resolved_at`` = ``now``); a check the run
    did not evaluate leaves its alert as it is."""
    now = pd.Timestamp(now)
    empty = AlertEvaluation(_empty_rows(), _empty_rows(), pd.DataFrame(columns=["symbol", "kind", "reason"]))
    if evaluations.empty:
        return empty
    opened = open_alerts[(open_alerts["source"] == CHECKS_SOURCE) & open_alerts["resolved_at"].isna()]
    open_by_key = {row.alert_key: row for row in opened.itertuples(index=False)}
    scope = f" (run {run_id[:8]} for {', '.join(symbols)})" if symbols else f" (run {run_id[:8]})"
    first_window = window if window is not None else now.tz_convert(NEW_YORK).floor(WINDOW)

    upserts, resolutions, raised = [], [], set()
    for (asset, check), group in evaluations.groupby(["asset", "check_name"], sort=True):
        name = check_name(asset, check)
        key = alert_key(CHECK_FAILED, name)
        current = open_by_key.get(key)
        failed = group[~group["passed"].astype(bool)]
        if failed.empty:
            if current is not None:
                row = current._asdict()
                row.update(resolved_at=now, message=f"{current.message} Resolved: {name} passed{scope}.")
                resolutions.append(row)
            continue
        level = "ERROR" if (failed["severity"] == "ERROR").any() else "WARNING"
        descriptions = [str(text) for text in failed["description"].dropna().unique() if str(text).strip()]
        message = " ".join(descriptions) if descriptions else f"{name} did not pass."
        if current is None:
            raised.add(key)
        upserts.append({
            "source": CHECKS_SOURCE, "symbol": name,
            "as_of_window": first_window if current is None else current.as_of_window, "kind": CHECK_FAILED,
            "severity": level.lower(), "message": f"{message}{scope}", "run_id": run_id,
            "created_at": now if current is None else current.created_at, "level": level, "alert_key": key,
            "resolved_at": pd.NaT, **carried(current, level),
        })
    return AlertEvaluation(
        upserts=_frame(upserts), resolutions=_frame(resolutions), not_evaluated=empty.not_evaluated,
        raised_keys=frozenset(raised),
    )
