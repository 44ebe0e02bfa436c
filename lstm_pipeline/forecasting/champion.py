"""Champion/challenger: a retrained model serves only if it beats the serving one on the same recent span.

The span is the candidate's own held-out **test span** (the newest ~15% of the bars it was given): the candidate
never trained, early-stopped or calibrated on it. The serving ("current") model is evaluated on the same forecast
origins, except those whose targets reach back into the current model's own training or validation span (read from
its ``model_config.json``: ``training.spans.validation``): a model is never judged on bars it learned from. If fewer
than ``min_origins`` origins are left after that cut, the comparison cannot be fair and the candidate serves (the
retrain was asked for a reason and the candidate saw the newer bars); the decision says so.

The score is MASE over the whole path: the mean absolute price error over every origin and every step 1..H (H = the
shorter horizon of the two models), divided by the naive forecast's (last close held flat) on the same origins and
steps. The candidate serves when its MASE is strictly lower. This module imports no Dagster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lstm_pipeline.forecasting.features import bar_features

if TYPE_CHECKING:
    import keras

    from lstm_pipeline.forecasting.config import ModelConfig
    from lstm_pipeline.forecasting.scaler import FeatureScaler

SERVE = "serve"
"""The candidate replaces the serving model."""
REJECT = "reject"
"""The candidate is kept aside; the serving model stays."""
MIN_COMPARISON_ORIGINS = 20


@dataclass(frozen=True)
class Contender:
    """One model as the comparison needs it (a freshly trained candidate or the loaded serving model)."""

    config: ModelConfig
    network: keras.Model
    scaler: FeatureScaler
    version: str | None = None


@dataclass(frozen=True)
class ChallengeResult:
    """Both models' MASE on the same origins and what was decided, with why (shown in ``lstm_model``'s metadata)."""

    decision: str
    reason: str
    candidate_mase: float | None
    current_mase: float | None
    origins: int
    horizon_steps: int
    span: tuple[str, str] | None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["span"] = list(self.span) if self.span else None
        return data


def path_mase(predicted_log: np.ndarray, actual_log: np.ndarray, last_close: np.ndarray) -> float:
    """MAE of the price path over every origin and step, over the naive (last close held flat) MAE on the same."""
    actual = np.exp(actual_log)
    model_mae = float(np.mean(np.abs(np.exp(predicted_log) - actual)))
    naive_mae = float(np.mean(np.abs(last_close[:, None] - actual)))
    return model_mae / naive_mae if naive_mae > 0 else float("nan")


def _span_end(record: dict[str, Any], name: str) -> pd.Timestamp | None:
    spans = (record.get("training") or {}).get("spans") or {}
    bounds = spans.get(name)
    if not bounds or len(bounds) != 2:
        return None
    return pd.Timestamp(bounds[1])


def challenge(
    symbol: str,
    bars: pd.DataFrame,
    candidate: Contender,
    current: Contender | None,
    min_origins: int = MIN_COMPARISON_ORIGINS,
) -> ChallengeResult:
    """Decide whether ``candidate`` serves instead of ``current`` (see the module docstring).

    ``bars`` are the bars the candidate was trained on (its test span is their newest part, per its config's
    ``training.spans.test``); no current model means the candidate serves.
    """
    from lstm_pipeline.forecasting.training import forecast_origins

    horizon = candidate.config.horizon_steps
    if current is None:
        return ChallengeResult(SERVE, f"no model serves {symbol} yet", None, None, 0, horizon, None)
    horizon = min(horizon, current.config.horizon_steps)
    names = tuple(dict.fromkeys((*candidate.config.features, *current.config.features)))
    features = bar_features(bars, names, symbol=symbol)
    index = features.index
    test_bounds = ((candidate.config.record.get("training") or {}).get("spans") or {}).get("test")
    if not test_bounds:
        return ChallengeResult(SERVE, "the candidate records no test span to compare on", None, None, 0, horizon, None)
    first_target = pd.Timestamp(test_bounds[0])
    current_seen = _span_end(current.config.record, "validation")
    if current_seen is not None and current_seen >= first_target:
        first_target = index[index > current_seen][0] if (index > current_seen).any() else index[-1] + pd.Timedelta(1)
    first_row = int(index.searchsorted(first_target))
    lookback = max(candidate.config.lookback_steps, current.config.lookback_steps)
    origins = np.arange(max(first_row - 1, lookback - 1), len(index) - horizon, dtype=np.int64)
    if len(origins) < min_origins:
        return ChallengeResult(
            SERVE,
            f"only {len(origins)} forecast origin(s) lie after both models' training and validation spans "
            f"(at least {min_origins} are needed for a fair comparison); the candidate, trained on newer bars, serves",
            None, None, int(len(origins)), horizon, None,
        )
    scores = {}
    for name, contender in (("candidate", candidate), ("current", current)):
        result = forecast_origins(contender.config, contender.network, contender.scaler, features, origins, horizon)
        scores[name] = path_mase(result.predicted_log, result.actual_log, result.last_close)
    span = (index[origins[0] + 1].isoformat(), index[origins[-1] + horizon].isoformat())
    wins = bool(np.isfinite(scores["candidate"]) and scores["candidate"] < scores["current"])
    verdict = "beats" if wins else "does not beat"
    reason = (
        f"the candidate's MASE {scores['candidate']:.4f} {verdict} the serving model's {scores['current']:.4f} "
        f"({current.version or 'unversioned'}) over {len(origins)} origin(s) x {horizon} step(s) from "
        f"{span[0]} to {span[1]}"
    )
    return ChallengeResult(
        SERVE if wins else REJECT, reason, scores["candidate"], scores["current"], int(len(origins)), horizon, span
    )


MODELS_SOURCE = "models"
"""``alerts.source`` of the rows ``lstm_model`` writes."""
CHALLENGER_REJECTED = "challenger_rejected"
_ALERT_COLUMNS = [
    "source", "symbol", "as_of_window", "kind", "severity", "message", "run_id", "created_at", "level", "alert_key",
    "resolved_at",
]


def challenger_alert_rows(
    symbol: str,
    result: ChallengeResult,
    candidate_version: str,
    kept_at: str,
    serving_version: str | None,
    as_of_window: pd.Timestamp,
    open_alerts: pd.DataFrame,
    now: pd.Timestamp,
    run_id: str | None = None,
) -> pd.DataFrame:
    """The ``alerts`` rows a champion/challenger decision writes (possibly none).

    A rejection raises (or, while one is open, updates: same first-raised window and created time) the WARNING
    ``challenger_rejected:<SYMBOL>``; a candidate that serves resolves the open one. ``open_alerts`` are the
    symbol's unresolved ``source='models'`` rows."""
    key = f"{CHALLENGER_REJECTED}:{symbol}"
    now = pd.Timestamp(now)
    current = open_alerts[(open_alerts["alert_key"] == key) & open_alerts["resolved_at"].isna()] if len(
        open_alerts) else open_alerts
    rows: list[dict[str, Any]] = []
    if result.decision == REJECT:
        first_raised = current["as_of_window"].iloc[0] if len(current) else as_of_window
        created = current["created_at"].iloc[0] if len(current) else now
        rows.append({
            "source": MODELS_SOURCE, "symbol": symbol, "as_of_window": first_raised, "kind": CHALLENGER_REJECTED,
            "severity": "warning",
            "message": f"Retrained {symbol} model {candidate_version} was kept aside at {kept_at}, and "
            f"{serving_version} still serves: {result.reason}.",
            "run_id": run_id, "created_at": created, "level": "WARNING", "alert_key": key, "resolved_at": pd.NaT,
        })
    else:
        for row in current.to_dict("records"):
            row.update(
                resolved_at=now,
                message=f"{row['message']} Resolved: retrained model {candidate_version} serves ({result.reason}).",
            )
            rows.append({column: row.get(column) for column in _ALERT_COLUMNS})
    frame = pd.DataFrame(rows, columns=_ALERT_COLUMNS)
    for column in ("as_of_window", "created_at", "resolved_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame
