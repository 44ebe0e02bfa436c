"""Where each stored forecast stands at a given time: ``active``, ``superseded`` (by which) or ``expired``.

The ``predictions`` table is an audit trail: nothing overwrites a row except a re-materialization of the same
partition (a reprediction of that symbol-window), so the status is not stored there. It depends only on the rows
and on the time asked about, so it is derived when read:

- ``expired``: the forecast's last target window has passed (``now`` is at or after its end);
- ``active``: the newest unexpired forecast of its symbol (latest as-of window);
- ``superseded``: an older unexpired one; ``superseded_by`` is the as-of window of the next newer forecast of the
  same symbol.

Forecasts are ordered by their as-of window, not ``created_at``: a backfill or a reprediction rewrites an old
partition today, and that does not make it newer than the forecast as of a later window. A forecast as of a window
after ``now`` did not exist yet at ``now`` and is left out, so the same function answers "what was active then" in
a replay.

Usage, with no store involved (any frame of prediction rows, e.g. ``store.read_predictions()`` or
``store.read_rows("predictions", ["symbol = ?"], ["AAPL"])``)::

    from lstm_pipeline.evaluation.lifecycle import active_forecasts, prediction_lifecycle

    status = prediction_lifecycle(rows, now=pd.Timestamp.now(tz="America/New_York"))
    latest = active_forecasts(rows, now)  # the rows of each symbol's active forecast
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK, WINDOW

ACTIVE = "active"
SUPERSEDED = "superseded"
EXPIRED = "expired"
LIFECYCLE_COLUMNS = ("symbol", "as_of_window", "status", "superseded_by", "expires_at")
"""One row per forecast: its status at ``now``, the as-of window of the forecast that superseded it (NaT unless
superseded) and when its horizon ends (its last target window's end)."""


def prediction_lifecycle(predictions: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Status of every forecast (symbol, as-of window) in ``predictions`` at ``now``: ``LIFECYCLE_COLUMNS``.

    ``predictions`` needs ``symbol``, ``as_of_window`` and ``target_window`` (one row per horizon step or just
    the last one); other columns (``created_at``, ...) are ignored. ``now`` is timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError(f"now ({now}) has no time zone; pass an aware timestamp, e.g. pd.Timestamp.now(tz='UTC').")
    missing = [name for name in ("symbol", "as_of_window", "target_window") if name not in predictions.columns]
    if missing:
        raise ValueError(f"The prediction rows lack {missing}; pass rows of the predictions table.")
    now = now.tz_convert(NEW_YORK)
    if predictions.empty:
        return _empty()
    rows = predictions[["symbol", "as_of_window", "target_window"]].copy()
    rows["as_of_window"] = pd.DatetimeIndex(pd.to_datetime(rows["as_of_window"])).tz_convert(NEW_YORK)
    rows["target_window"] = pd.DatetimeIndex(pd.to_datetime(rows["target_window"])).tz_convert(NEW_YORK)
    rows = rows[rows["as_of_window"] <= now]
    if rows.empty:
        return _empty()
    forecasts = (
        rows.groupby(["symbol", "as_of_window"], sort=True)["target_window"].max().rename("last_target").reset_index()
    )
    forecasts["expires_at"] = forecasts["last_target"] + WINDOW
    expired = (forecasts["expires_at"] <= now).to_numpy()
    newer = forecasts.groupby("symbol", sort=False)["as_of_window"].shift(-1)
    status = np.where(expired, EXPIRED, np.where(newer.isna(), ACTIVE, SUPERSEDED))
    forecasts["status"] = status
    forecasts["superseded_by"] = newer.where(status == SUPERSEDED)
    forecasts["superseded_by"] = pd.DatetimeIndex(forecasts["superseded_by"]).tz_convert(NEW_YORK)
    return forecasts[list(LIFECYCLE_COLUMNS)].reset_index(drop=True)


def active_forecasts(predictions: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """The rows of ``predictions`` that belong to each symbol's active forecast at ``now`` (at most one per
    symbol)."""
    status = prediction_lifecycle(predictions, now)
    active = status.loc[status["status"] == ACTIVE, ["symbol", "as_of_window"]]
    keys = predictions.assign(as_of_window=pd.DatetimeIndex(pd.to_datetime(predictions["as_of_window"]))
                              .tz_convert(NEW_YORK))
    return keys.merge(active, on=["symbol", "as_of_window"]).reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series(dtype="object"),
            "as_of_window": pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]"),
            "status": pd.Series(dtype="object"),
            "superseded_by": pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]"),
            "expires_at": pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]"),
        }
    )


# ------------------------------------------------------------------------------------------- the retraining rule

ACCURACY_LOW = "accuracy_low"
MODEL_AGE = "model_age"
VALIDATION_LOOKBACK = pd.Timedelta(days=7)
"""The retraining sensor reads validations of target windows in the last 7 days (the alerts' ``week`` span)."""


def first_retrain(
    validations: pd.DataFrame,
    version: str,
    trained_at: pd.Timestamp,
    check_times: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    min_validations: int,
    accuracy_low: float,
    max_age_days: int,
) -> tuple[int, dict[str, str]] | None:
    """The first of ``check_times`` (ascending) at which the retraining sensor's rule fires for model ``version``,
    with its causes (cause -> sentence), or None. The walk-forward form of ``sensors.retraining.retrain_causes``
    over a replay that never repredicts (so ``repredictions_not_helping`` cannot fire):

    - ``accuracy_low``: of the latest ``min_validations`` judged validations (``valid`` / ``needs_reprediction``)
      of this version known at the check (target window at or before it, within the last 7 days), the share
      ``valid`` is below ``accuracy_low``; fewer: not judged.
    - ``model_age``: more than ``max_age_days`` days since ``trained_at``.
    """
    times = pd.DatetimeIndex(check_times)
    if len(times) == 0:
        return None
    mine = validations[(validations["model_version"].astype(str) == str(version))
                       & validations["status"].isin(["valid", "needs_reprediction"])]
    target = pd.DatetimeIndex(mine["target_window"]).asi8
    as_of = pd.DatetimeIndex(mine["as_of_window"]).asi8
    order = np.lexsort((as_of, target))
    target = target[order]
    valid = np.concatenate([[0], np.cumsum(mine["status"].to_numpy(dtype=object)[order] == "valid")])
    checks = times.asi8
    known = np.searchsorted(target, checks, side="right")
    recent = known - np.searchsorted(target, checks - VALIDATION_LOOKBACK.value, side="right")
    enough = recent >= min_validations
    start = np.maximum(known - min_validations, 0)
    share = np.where(enough, (valid[known] - valid[start]) / max(min_validations, 1), np.nan)
    with np.errstate(invalid="ignore"):
        low = enough & (share < accuracy_low)
    age = checks - pd.Timestamp(trained_at).value
    old = age > pd.Timedelta(days=max_age_days).value
    fired = np.flatnonzero(low | old)
    if len(fired) == 0:
        return None
    at = int(fired[0])
    causes: dict[str, str] = {}
    if low[at]:
        causes[ACCURACY_LOW] = (
            f"{share[at]:.1%} of the latest {min_validations} validations of model {version} were valid "
            f"(retrain below {accuracy_low:.1%})"
        )
    if old[at]:
        causes[MODEL_AGE] = (
            f"model {version} was trained {pd.Timedelta(int(age[at]), unit='ns').days} days ago "
            f"(retrain after {max_age_days})"
        )
    return at, causes


__all__ = [
    "ACCURACY_LOW",
    "ACTIVE",
    "EXPIRED",
    "LIFECYCLE_COLUMNS",
    "MODEL_AGE",
    "SUPERSEDED",
    "active_forecasts",
    "first_retrain",
    "prediction_lifecycle",
]
