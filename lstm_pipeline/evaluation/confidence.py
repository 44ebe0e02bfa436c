"""The confidence of a forecast: the spec's ten factors, each in [0, 1] from real inputs, weighted into one score.

``confidence_scores`` takes a whole batch of forecasts at once (one row per symbol and as-of window) and returns
one row per forecast with ``confidence``, ``confidence_level`` and every ``factor_<name>`` of
``storage.tables.CONFIDENCE_FACTORS``. It is pure (no Dagster, no storage): the ``predictions`` asset feeds it the
bars it already read, the recent ``validations`` and ``predictions`` rows (one store read each), and stores the
result on every horizon step of the forecast; a walk-forward replay can call it over any history.

Nothing here looks ahead: a forecast as of window W uses bars up to W, validations of target windows before W and
forecasts as of windows before W. (Validations of W itself do not exist yet when W's forecast is made: the chain
validates W's bar after forecasting from it, in the same run; a replay counts exactly what the chain had.) A factor
whose inputs are missing (too few bars for a rolling statistic, no earlier forecast, no validation yet) scores 0.5:
neither rewarded nor punished. Each factor's formula is in its function's docstring; ``confidence_scores`` lists
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from lstm_pipeline.evaluation.keys import as_floats, run_heads
from lstm_pipeline.evaluation.stamps import as_datetimes
from lstm_pipeline.market.calendar import NEW_YORK, session_windows
from lstm_pipeline.storage.tables import CONFIDENCE_FACTORS

NEUTRAL = 0.5
"""A factor's score when its inputs are missing."""
SESSION_STEPS = 26
"""Windows of the 'recent' span of the bar statistics: one session."""
WEEK_STEPS = 130
"""Windows of the 'longer history' the recent span is compared with: one week."""
MASE_GOOD = 0.9
"""At or below this MASE (model error / naive last-price error) ``model_performance`` is 1."""
MASE_BAD = 1.05
"""At or above this MASE ``model_performance`` is 0. Linear between: a model no better than naive (MASE 1) scores
0.33, one 5% better 0.67. (1.2 would give a naive-equal model 0.67, a "good" score it has not earned.)"""
RECENT_VALIDATION_DAYS = 5
"""Validations of target windows in the last 5 calendar days before the as-of window are 'recent' (at least two
sessions, whatever the weekday)."""
MIN_RECENT_VALIDATIONS = 26
"""Fewer recent validations than this and the recent record is ignored (too few to say anything)."""
STABILITY_FORECASTS = 4
"""How many earlier forecasts (the last as-of windows before this one) ``prediction_stability`` compares with."""
PAST_END = np.iinfo(np.int64).min
"""The target of a table cell past the end of a forecast's path (no window has it)."""
TABLE_CELLS = 131_072
"""About how many cells of each table ``_forecast_shifts`` lays at a time: a block of forecasts small enough for the
processor's caches (and for memory the process already has), large enough that each numpy call does much."""
LEVELS: tuple[tuple[float, str], ...] = ((0.85, "Very High"), (0.7, "High"), (0.5, "Medium"), (0.3, "Low"))
"""The spec's levels: Very Low < 0.3 <= Low < 0.5 <= Medium < 0.7 <= High < 0.85 <= Very High."""

FORECAST_COLUMNS = ("symbol", "as_of_window", "model_version", "last_close", "predicted_change", "test_mase",
                    "lookback_steps")
"""What ``confidence_scores`` needs of each forecast (``forecast_summaries`` builds it from prediction rows)."""
SCORE_COLUMNS = ("symbol", "as_of_window", "confidence", "confidence_level",
                 *(f"factor_{name}" for name in CONFIDENCE_FACTORS))
"""The columns ``confidence_scores`` returns (the ``predictions`` table's confidence columns plus the key)."""


# ------------------------------------------------------------------------------------------------ inputs


def model_test_mase(record: Mapping[str, Any]) -> float:
    """The model's MASE on its held-out test span: the mean over the horizons its training recorded
    (``metrics.horizons.<1_step|1_day|1_week>.mase``, see ``forecasting.training``); NaN when it recorded none."""
    horizons = (record.get("metrics") or {}).get("horizons") or {}
    values = [float(entry["mase"]) for entry in horizons.values() if isinstance(entry, Mapping) and "mase" in entry]
    values = [value for value in values if np.isfinite(value)]
    return float(np.mean(values)) if values else float("nan")


def forecast_summaries(
    rows: pd.DataFrame, test_mase: Mapping[str, float], lookback_steps: Mapping[str, int]
) -> pd.DataFrame:
    """One row per forecast (``FORECAST_COLUMNS``) from prediction rows (one per horizon step).

    ``predicted_change`` is the mean of the predicted path over the last close, minus 1: the direction the whole
    forecast leans (its sign) and how far. ``test_mase`` and ``lookback_steps`` are per symbol (from each model's
    config: ``model_test_mase(model.config.record)``, ``model.config.lookback_steps``).
    """
    if rows.empty:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in FORECAST_COLUMNS})
    grouped = _per_forecast(rows)
    if grouped is None:
        grouped = rows.groupby(["symbol", "as_of_window"], sort=True).agg(
            model_version=("model_version", "first"),
            last_close=("last_close", "first"),
            mean_predicted=("predicted_close", "mean"),
        ).reset_index()
    grouped["predicted_change"] = grouped["mean_predicted"] / grouped["last_close"] - 1.0
    symbols = pd.unique(grouped["symbol"])  # a few: each looked up once
    grouped["test_mase"] = grouped["symbol"].map(
        {symbol: test_mase.get(symbol, float("nan")) for symbol in symbols}).astype(float)
    grouped["lookback_steps"] = grouped["symbol"].map(
        {symbol: int(lookback_steps.get(symbol, 1)) for symbol in symbols}).astype(int)
    return grouped[list(FORECAST_COLUMNS)]


def _per_forecast(rows: pd.DataFrame) -> pd.DataFrame | None:
    """``rows.groupby(["symbol", "as_of_window"], sort=True).agg(model_version="first", last_close="first",
    mean_predicted=mean of predicted_close).reset_index()`` on arrays: a stable sort by integer group codes (none
    when the rows are in that order already) and one vectorized step per horizon position over a table of the
    paths (a year of paths is ~10^6 rows in ~6,500 forecasts). The mean is pandas' own compensated (Kahan) sum in
    row order, so the figures are the same to the last bit. None (the caller groups with pandas) for inputs outside
    the plain case: other dtypes, null keys, or a forecast with no model version or last close."""
    as_of = rows["as_of_window"]
    plain = (
        as_of.dtype.kind == "M" and rows["symbol"].dtype == object and rows["model_version"].dtype == object
        and rows["last_close"].dtype == np.float64 and rows["predicted_close"].dtype == np.float64
    )
    if not plain:
        return None
    symbols = rows["symbol"].to_numpy(dtype=object)
    instants = pd.DatetimeIndex(as_of).asi8
    if as_of.isna().any():
        return None
    symbol_code, distinct = _key_runs(symbols)
    if len(distinct) > 1:  # numbered in sorted order of the symbols (``keys.sorted_codes``)
        try:
            rank = pd.factorize(distinct, sort=True)[0]
        except TypeError:  # symbols that do not sort together
            return None
        symbol_code = np.where(symbol_code >= 0, rank[symbol_code], -1)
    if (symbol_code < 0).any():
        return None
    same_symbol = symbol_code[1:] == symbol_code[:-1]
    if np.all((symbol_code[1:] > symbol_code[:-1]) | (same_symbol & (instants[1:] >= instants[:-1]))):
        order = None  # already in (symbol, as-of) order: each forecast's rows are a run
        changed = ~same_symbol | (instants[1:] != instants[:-1])
    else:
        instant_code = pd.factorize(instants, sort=True)[0].astype(np.int64)
        group = pd.factorize(symbol_code.astype(np.int64) * (instant_code.max() + 1) + instant_code, sort=True)[0]
        order = np.argsort(group, kind="stable")  # each forecast's rows together, in their original order
        changed = group[order][1:] != group[order][:-1]
    starts = np.flatnonzero(np.concatenate([[True], changed]))
    lengths = np.diff(np.append(starts, len(rows)))

    def ordered(values: np.ndarray) -> np.ndarray:
        return values if order is None else values[order]

    def first(values: np.ndarray) -> np.ndarray | None:
        """The first non-null value of each forecast (as ``first`` skips nulls); None when one has none."""
        heads = values[starts]
        if not pd.isna(heads).any():
            return heads
        present = np.flatnonzero(pd.notna(values))
        firsts = np.searchsorted(present, starts)
        if (firsts >= len(present)).any() or (present[np.minimum(firsts, len(present) - 1)] >= starts + lengths).any():
            return None
        return values[present[firsts]]

    version = first(ordered(rows["model_version"].to_numpy(dtype=object)))
    last_close = first(ordered(rows["last_close"].to_numpy(dtype=np.float64)))
    if version is None or last_close is None:
        return None
    # Kahan summation as pandas' group_mean runs it, one horizon position at a time across all forecasts: a table
    # with one row per position and one column per forecast (NaN past a path's end, skipped as a NaN close is).
    forecasts, positions = len(starts), int(lengths.max())
    cell = _cells(starts, lengths)
    table = np.full(positions * forecasts, np.nan)
    table[cell] = ordered(rows["predicted_close"].to_numpy(dtype=np.float64))
    table = table.reshape(positions, forecasts)
    counted = ~np.isnan(table)
    total = np.zeros(forecasts)
    compensation = np.zeros(forecasts)
    y, t, fixed, nan = np.empty(forecasts), np.empty(forecasts), np.empty(forecasts), np.empty(forecasts, dtype=bool)
    for value, live in zip(table, counted, strict=True):  # each step into the same few arrays, none fresh
        np.subtract(value, compensation, out=y)
        np.add(total, y, out=t)
        np.subtract(t, total, out=fixed)
        fixed -= y
        np.copyto(fixed, 0.0, where=np.isnan(fixed, out=nan))
        np.copyto(compensation, fixed, where=live)
        np.copyto(total, t, where=live)
    seen = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(seen > 0, total / seen, np.nan)
    heads = starts if order is None else order[starts]
    return pd.DataFrame({
        "symbol": symbols[heads],
        "as_of_window": as_of.iloc[heads].reset_index(drop=True),
        "model_version": version,
        "last_close": last_close,
        "mean_predicted": mean,
    })


def _cells(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Where each row of a run goes in a table with one column per run and one row per position in it (flat
    index of a C-ordered table ``len(starts)`` wide); the runs start at ``starts`` and are ``lengths`` long, one
    after the other. Row i of run c goes to (i - starts[c]) * width + c: i * width plus a term per run, repeated
    along it (no running count over the rows, no lookup of each row's run)."""
    width = len(starts)
    cell = np.arange(int(lengths.sum()), dtype=np.int64)
    cell *= width
    cell += np.repeat(np.arange(width, dtype=np.int64) - starts * width, lengths)
    return cell


def factor_weights(weights: Any) -> dict[str, float]:
    """The ten weights as a dict from ``settings.confidence_factor_weights`` (or any mapping of the ten names)."""
    values = weights.model_dump() if hasattr(weights, "model_dump") else dict(weights)
    missing = [name for name in CONFIDENCE_FACTORS if name not in values]
    unknown = [name for name in values if name not in CONFIDENCE_FACTORS]
    if missing or unknown:
        raise ValueError(
            f"confidence_factor_weights must name exactly the ten factors {list(CONFIDENCE_FACTORS)}; "
            f"missing {missing}, unknown {unknown}: fix the names in the configuration."
        )
    total = sum(float(values[name]) for name in CONFIDENCE_FACTORS)
    if not np.isclose(total, 1.0, atol=1e-6) or any(float(values[name]) < 0 for name in CONFIDENCE_FACTORS):
        raise ValueError(f"confidence_factor_weights sum to {total:g}; make them non-negative and sum to 1.")
    return {name: float(values[name]) for name in CONFIDENCE_FACTORS}


def confidence_level(confidence: np.ndarray | pd.Series | float) -> np.ndarray:
    """The spec's level of each score: Very Low < 0.3 <= Low < 0.5 <= Medium < 0.7 <= High < 0.85 <= Very High."""
    values = np.atleast_1d(np.asarray(confidence, dtype=np.float64))
    return np.select([values >= bound for bound, _ in LEVELS], [name for _, name in LEVELS], default="Very Low")


# ----------------------------------------------------------------------------------------------- factors


def _clip(values: np.ndarray) -> np.ndarray:
    """Clip to [0, 1]; NaN (inputs missing) becomes the neutral 0.5."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), np.clip(values, 0.0, 1.0), NEUTRAL)


def mase_score(mase: np.ndarray) -> np.ndarray:
    """1 at MASE <= 0.9, 0 at MASE >= 1.05, linear between (MASE 1.0, no better than naive, scores 0.33); NaN
    stays NaN."""
    mase = np.asarray(mase, dtype=np.float64)
    return np.clip((MASE_BAD - mase) / (MASE_BAD - MASE_GOOD), 0.0, 1.0)


def model_performance(test_mase: np.ndarray, recent_mase: np.ndarray) -> np.ndarray:
    """Mean of ``mase_score`` of the model's test-span MASE (its config) and of its recent MASE (validations of the
    same model version: sum of absolute errors over the naive forecast's, last ``RECENT_VALIDATION_DAYS``, at least
    ``MIN_RECENT_VALIDATIONS``); either alone when the other is missing, 0.5 when both are."""
    scores = np.vstack([mase_score(test_mase), mase_score(recent_mase)])
    known = np.isfinite(scores)
    total = np.where(known, scores, 0.0).sum(axis=0)
    count = known.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _clip(np.where(count > 0, total / np.maximum(count, 1), np.nan))


def data_quality(present_share: np.ndarray) -> np.ndarray:
    """Share of the model's lookback session windows (up to the as-of window) that have a usable stored bar: a
    missing window (filled flat by the features) or one a blocking check rejected counts against it."""
    return _clip(present_share)


def market_volatility(recent_volatility: np.ndarray, long_volatility: np.ndarray) -> np.ndarray:
    """``1.5 - ratio`` clipped to [0, 1], ratio = realized volatility (std of log returns) over the last session
    over that of the last week: calm (ratio <= 0.5) scores 1, usual (1) 0.5, turbulent (>= 1.5) 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _clip(1.5 - np.asarray(recent_volatility) / np.asarray(long_volatility))


def trend_consistency(predicted_change: np.ndarray, trend: np.ndarray, volatility: np.ndarray) -> np.ndarray:
    """``0.5 + 0.5 * d * t``: d = the predicted direction (sign of ``predicted_change``), t = the last session's
    log return over the move one session's volatility would give (``volatility * sqrt(26)``), clipped to [-1, 1].
    A forecast with the strong recent trend scores 1, against it 0; a flat forecast or no trend 0.5."""
    with np.errstate(invalid="ignore", divide="ignore"):
        strength = np.clip(np.asarray(trend) / (np.asarray(volatility) * np.sqrt(SESSION_STEPS)), -1.0, 1.0)
    return _clip(0.5 + 0.5 * np.sign(predicted_change) * strength)


def volume_analysis(volume_ratio: np.ndarray) -> np.ndarray:
    """``1 - |log2(ratio)| / 2``, ratio = volume of the last 4 windows over the mean volume of the same session
    slots in the previous 5 sessions (so the intraday U-shape does not count): usual volume scores 1, half or
    double 0.5, a quarter or four times (thin market, news spike) 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _clip(1.0 - np.abs(np.log2(np.asarray(volume_ratio, dtype=np.float64))) / 2.0)


def technical_indicators(predicted_change: np.ndarray, sma_fast: np.ndarray, sma_slow: np.ndarray,
                         rsi: np.ndarray) -> np.ndarray:
    """``0.5 + 0.25 * d * sign(SMA5 - SMA20) + 0.25 * d * clip((RSI14 - 50) / 20, -1, 1)``, d the predicted
    direction: moving-average crossover and RSI momentum both with the forecast score 1, both against it 0."""
    direction = np.sign(np.asarray(predicted_change, dtype=np.float64))
    crossover = np.sign(np.asarray(sma_fast) - np.asarray(sma_slow))
    momentum = np.clip((np.asarray(rsi) - 50.0) / 20.0, -1.0, 1.0)
    return _clip(0.5 + 0.25 * direction * crossover + 0.25 * direction * momentum)


def time_of_day(slots_from_open: np.ndarray, slots_to_close: np.ndarray) -> np.ndarray:
    """By the as-of window's place in its session: the first and last windows (the open's auction noise, or the
    next step across the overnight gap) 0.5, the second and second-to-last 0.75, the rest 1. Early closes count
    from their own close."""
    edge = np.minimum(np.asarray(slots_from_open, dtype=np.float64), np.asarray(slots_to_close, dtype=np.float64))
    score = np.select([edge <= 0, edge == 1, edge >= 2], [0.5, 0.75, 1.0], default=np.nan)
    return _clip(score)


def market_regime(recent_volatility: np.ndarray, long_volatility: np.ndarray, session_trend: np.ndarray,
                  week_trend: np.ndarray) -> np.ndarray:
    """Mean of volatility stability ``1 - |ln(session vol / week vol)| / ln 2`` (a doubling or halving of
    volatility is a regime change, 0) and trend stability (the last session's and the last week's returns have the
    same sign: 1, opposite: 0, either flat: 0.5)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.asarray(recent_volatility) / np.asarray(long_volatility)
        volatility_stability = _clip(1.0 - np.abs(np.log(ratio)) / np.log(2.0))
    agreement = np.sign(session_trend) * np.sign(week_trend)
    trend_stability = _clip(0.5 + 0.5 * agreement)
    return _clip((volatility_stability + trend_stability) / 2.0)


def prediction_stability(mean_shift_over_halfwidth: np.ndarray) -> np.ndarray:
    """``1 - mean |new - earlier| / half-width``: over the target windows this forecast shares with the last
    ``STABILITY_FORECASTS`` forecasts of the symbol, the mean absolute change of the predicted close over the new
    forecast's 80% half-width (1% of the predicted close where it has no interval). Forecasts that barely move
    score 1; ones that jump by a whole interval 0; no earlier forecast 0.5."""
    return _clip(1.0 - np.asarray(mean_shift_over_halfwidth, dtype=np.float64))


def historical_accuracy(valid_share: np.ndarray, inside_80_share: np.ndarray) -> np.ndarray:
    """Mean of the share of recent validations of the symbol (any model version) that were ``valid`` (not
    ``needs_reprediction``; ``invalid`` ones, a bad bar, are not counted) and the share inside their 80% interval;
    0.5 with fewer than ``MIN_RECENT_VALIDATIONS``."""
    return _clip((np.asarray(valid_share) + np.asarray(inside_80_share)) / 2.0)


# ------------------------------------------------------------------------------------------ the batch


def confidence_scores(
    forecasts: pd.DataFrame,
    bars: pd.DataFrame,
    recent_validations: pd.DataFrame | None,
    recent_predictions: pd.DataFrame | None,
    weights: Any,
) -> pd.DataFrame:
    """Confidence of every forecast of a batch: ``SCORE_COLUMNS``, one row per row of ``forecasts``.

    ``forecasts``: ``FORECAST_COLUMNS`` (see ``forecast_summaries``). ``bars``: the symbols' usable stored bars
    (``symbol``, ``window_start``, ``close``, ``volume``) reaching back a week and a lookback before the first
    as-of window. ``recent_validations``: ``validations`` rows of target windows in the days before (None: none).
    ``recent_predictions``: ``predictions`` rows (``symbol``, ``as_of_window``, ``target_window``,
    ``predicted_close``, ``lower_80``, ``upper_80``) of the batch's forecasts and of the few as-of windows before
    them (None: none). ``weights``: ``settings.confidence_factor_weights`` or a mapping of the ten names (sum 1).

    The factors (each in [0, 1], 0.5 when its inputs are missing; details in each function's docstring):

    - ``model_performance``: MASE 0.9 -> 1, 1.05 -> 0, linear; mean of the test-span and recent MASE scores.
    - ``data_quality``: share of the lookback's session windows with a usable bar.
    - ``market_volatility``: 1.5 - (session volatility / week volatility).
    - ``trend_consistency``: 0.5 + 0.5 * direction * (session return / session volatility move).
    - ``volume_analysis``: 1 - |log2(recent volume / same-slot norm)| / 2.
    - ``technical_indicators``: 0.5 + 0.25 * direction * SMA5/SMA20 crossover + 0.25 * direction * RSI14 momentum.
    - ``time_of_day``: first/last window of the session 0.5, second/second-to-last 0.75, else 1.
    - ``market_regime``: mean of volatility stability and session/week trend agreement.
    - ``prediction_stability``: 1 - mean shift from the last forecasts for the same targets / 80% half-width.
    - ``historical_accuracy``: mean of the recent share ``valid`` and share inside the 80% interval.

    ``confidence`` is the weighted sum, ``confidence_level`` its spec level (``confidence_level``).
    """
    factor_weights(weights)  # bad weights are refused before any work
    return scores_with_validations(prepare_confidence(forecasts, bars, recent_predictions), recent_validations,
                                   weights)


class PreparedConfidence(NamedTuple):
    """What ``confidence_scores`` reads of the forecasts, the bars and the earlier paths (``prepare_confidence``):
    everything but the validations."""

    frame: pd.DataFrame
    """The forecasts (``FORECAST_COLUMNS``), as-of windows in New York, on a fresh index."""
    stats: dict[str, np.ndarray]
    shifts: np.ndarray


def prepare_confidence(
    forecasts: pd.DataFrame, bars: pd.DataFrame, recent_predictions: pd.DataFrame | None
) -> PreparedConfidence:
    """The first half of ``confidence_scores``: the bar statistics and forecast shifts of ``forecasts`` (arguments
    as there). A caller whose validations arrive later (the walk-forward backtest validates while this runs) finishes
    with ``scores_with_validations``."""
    if forecasts.empty:
        return PreparedConfidence(forecasts, {}, np.zeros(0))
    frame = forecasts.reset_index(drop=True).copy()
    frame["as_of_window"] = pd.DatetimeIndex(as_datetimes(frame["as_of_window"])).tz_convert(NEW_YORK)
    return PreparedConfidence(frame, _bar_statistics(frame, bars), _forecast_shifts(frame, recent_predictions))


def scores_with_validations(
    prepared: PreparedConfidence, recent_validations: pd.DataFrame | None, weights: Any
) -> pd.DataFrame:
    """The second half of ``confidence_scores``: the validation record and the weighted score (``SCORE_COLUMNS``)."""
    share = factor_weights(weights)
    frame, stats, shifts = prepared
    if frame.empty:
        return _empty_scores()
    recent_mase, valid_share, inside_share = _validation_record(frame, recent_validations)
    change = frame["predicted_change"].to_numpy(dtype=np.float64)

    factors = {
        "model_performance": model_performance(frame["test_mase"].to_numpy(dtype=np.float64), recent_mase),
        "data_quality": data_quality(stats["present_share"]),
        "market_volatility": market_volatility(stats["session_volatility"], stats["week_volatility"]),
        "trend_consistency": trend_consistency(change, stats["session_trend"], stats["session_volatility"]),
        "volume_analysis": volume_analysis(stats["volume_ratio"]),
        "technical_indicators": technical_indicators(change, stats["sma_fast"], stats["sma_slow"], stats["rsi"]),
        "time_of_day": time_of_day(stats["slots_from_open"], stats["slots_to_close"]),
        "market_regime": market_regime(
            stats["session_volatility"], stats["week_volatility"], stats["session_trend"], stats["week_trend"]
        ),
        "prediction_stability": prediction_stability(shifts),
        "historical_accuracy": historical_accuracy(valid_share, inside_share),
    }
    confidence = np.sum([share[name] * factors[name] for name in CONFIDENCE_FACTORS], axis=0)
    result = pd.DataFrame(
        {
            "symbol": frame["symbol"].to_numpy(),
            "as_of_window": frame["as_of_window"].array,  # the aware stamps as they are, not boxed one by one
            "confidence": confidence,
            "confidence_level": confidence_level(confidence),
            **{f"factor_{name}": factors[name] for name in CONFIDENCE_FACTORS},
        }
    )
    return result[list(SCORE_COLUMNS)]


def _empty_scores() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype="float64") for name in SCORE_COLUMNS})
    frame["symbol"] = frame["symbol"].astype(object)
    frame["confidence_level"] = frame["confidence_level"].astype(object)
    frame["as_of_window"] = pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]")
    return frame


def _bar_statistics(frame: pd.DataFrame, bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per forecast: the bar statistics the bar-based factors read, taken at its as-of window.

    Bars are laid on the session calendar (a missing window is NaN, not filled), one symbol at a time, each
    statistic a rolling window over that symbol's whole span (vectorized over the as-of windows).
    """
    names = ("present_share", "session_volatility", "week_volatility", "session_trend", "week_trend", "sma_fast",
             "sma_slow", "rsi", "volume_ratio", "slots_from_open", "slots_to_close")
    out = {name: np.full(len(frame), np.nan) for name in names}
    as_of = pd.DatetimeIndex(frame["as_of_window"])
    lookback = frame["lookback_steps"].to_numpy(dtype=np.int64)
    first = as_of.min()
    if bars is not None and not bars.empty:
        stamps = pd.DatetimeIndex(as_datetimes(bars["window_start"]))
        stamps = stamps.tz_localize(NEW_YORK) if stamps.tz is None else stamps.tz_convert(NEW_YORK)
        first = min(first, stamps.min())
    # Whole sessions to the last as-of window's day: its windows' distance to the close needs the full session.
    calendar = session_windows(first, (as_of.max() + pd.Timedelta(days=1)).date())
    # Each window's slot in its session and the slots left to its close: the calendar is in time order, so each
    # New York day's windows are one run (days counted on the wall-clock stamps).
    day = calendar.tz_localize(None).asi8 // pd.Timedelta(days=1).value
    day_start = np.flatnonzero(np.concatenate([[True], day[1:] != day[:-1]]))
    day_length = np.diff(np.append(day_start, len(calendar)))
    slot = np.arange(len(calendar)) - np.repeat(day_start, day_length)
    to_close = np.repeat(day_length, day_length) - slot - 1
    by_slot = np.argsort(slot, kind="stable")  # the calendar's windows slot by slot, in time order within each
    positions = calendar.get_indexer(as_of)
    on_calendar = positions >= 0
    out["slots_from_open"][on_calendar] = slot[positions[on_calendar]]
    out["slots_to_close"][on_calendar] = to_close[positions[on_calendar]]
    if bars is None or bars.empty:
        out["present_share"][:] = 0.0
        return out

    by_symbol = {symbol: rows for symbol, rows in bars.assign(_stamp=stamps).groupby("symbol", sort=False)}
    for symbol, members in frame.groupby("symbol", sort=False).groups.items():
        index = np.asarray(members)
        where = positions[index]
        ok = where >= 0
        rows = by_symbol.get(symbol)
        if rows is None:
            out["present_share"][index] = 0.0
            continue
        rows = rows.drop_duplicates("_stamp", keep="last")
        close = pd.Series(rows["close"].to_numpy(dtype=np.float64), index=rows["_stamp"]).reindex(calendar)
        volume = pd.Series(rows["volume"].to_numpy(dtype=np.float64), index=rows["_stamp"]).reindex(calendar)
        close = close.where(close > 0)
        present = close.notna().to_numpy()
        counted = np.concatenate([[0], np.cumsum(present)])
        ends = np.where(ok, where + 1, 0)
        starts = np.maximum(ends - lookback[index], 0)
        out["present_share"][index] = np.where(ok, (counted[ends] - counted[starts]) / lookback[index], 0.0)

        log_close = np.log(close)
        returns = log_close.diff()
        held = log_close.ffill()
        gains, losses = returns.clip(lower=0.0), (-returns).clip(lower=0.0)
        mean_gain = gains.rolling(14, min_periods=7).mean()
        mean_loss = losses.rolling(14, min_periods=7).mean()
        closes = np.exp(held)
        # Per session slot: the mean volume of that slot in the previous five sessions. One grouped rolling pass
        # over the slots laid end to end (each slot's windows start afresh, as a rolling mean per slot would).
        shifted = pd.Series(volume.groupby(slot).shift(1).to_numpy()[by_slot])
        norm = np.empty(len(by_slot))
        norm[by_slot] = shifted.groupby(slot[by_slot], sort=False).rolling(5, min_periods=2).mean().to_numpy()
        slot_norm = pd.Series(norm, index=volume.index)
        with np.errstate(invalid="ignore", divide="ignore"):
            series = {
                "session_volatility": returns.rolling(SESSION_STEPS, min_periods=SESSION_STEPS // 2).std(),
                "week_volatility": returns.rolling(WEEK_STEPS, min_periods=2 * SESSION_STEPS).std(),
                "session_trend": held - held.shift(SESSION_STEPS),
                "week_trend": held - held.shift(WEEK_STEPS),
                "sma_fast": closes.rolling(5, min_periods=3).mean(),
                "sma_slow": closes.rolling(20, min_periods=10).mean(),
                "rsi": 100.0 * mean_gain / (mean_gain + mean_loss),
                "volume_ratio": volume.rolling(4, min_periods=1).sum() / slot_norm.where(volume.notna()).rolling(
                    4, min_periods=1).sum(),
            }
        for name, values in series.items():
            array = values.to_numpy(dtype=np.float64)
            out[name][index[ok]] = array[where[ok]]
    return out


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of equal neighbours of a column of keys: each run's length and code, and the distinct values the
    codes number (by first appearance; a null is -1), as ``keys.factorize_runs`` finds them (``keys.run_heads``:
    only neighbours that are different objects are compared; a value that does not compare makes each row its
    own run)."""
    values = np.ascontiguousarray(values, dtype=object)
    heads = run_heads(values)
    if heads is None:
        heads = np.arange(len(values))
    codes, distinct = pd.factorize(values[heads])
    return np.diff(np.append(heads, len(values))), codes, distinct


def _key_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys.factorize_runs(values)`` by ``_runs``: each row's code (one code for every row is a read-only broadcast of
    it, no array of a million rows) and the distinct values."""
    lengths, codes, distinct = _runs(values)
    if len(codes) == 1:
        return np.broadcast_to(codes, (len(values),)), distinct
    return np.repeat(codes, lengths), distinct


def _key_codes(events: pd.Series, queries: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """One integer per distinct key value, shared by the events and the queries: the events' codes by first
    appearance (``_key_runs``), the queries' by lookup among them. A null key is -1 among the events and -2 among
    the queries, as is a query value no event has: it matches nothing (as pandas' groupby drops null keys)."""
    codes, distinct = _key_runs(events.to_numpy(dtype=object))
    query_codes = pd.Index(distinct, dtype=object).get_indexer(queries.to_numpy(dtype=object))
    return codes, np.where(query_codes >= 0, query_codes, -2)


def _joint_codes(event_keys: list[np.ndarray], query_keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One integer per distinct tuple of key codes (each from ``_key_codes``); a tuple with a null key is -1 among
    the events and -2 among the queries. A key with one value among the events tells none apart: it only rules out
    the queries without it (and the events' codes stay one broadcast value while no key tells them apart)."""
    events_count = len(event_keys[0])
    event_code, event_null = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool)
    query_code = np.zeros(len(query_keys[0]), dtype=np.int64)
    query_null = np.zeros(len(query_code), dtype=bool)
    for events, queries in zip(event_keys, query_keys, strict=True):
        if events_count and events.min() == events.max():
            event_null = event_null | (events[0] < 0)
            query_null |= queries != events[0]
            continue
        radix = int(events.max(initial=0)) + 2
        event_code = event_code * radix + events + 1
        query_code = query_code * radix + queries + 1
        event_null = event_null | (events < 0)
        query_null |= queries < 0
    query_code[query_null] = -2
    return np.broadcast_to(np.where(event_null, -1, event_code), (events_count,)), query_code


def _trailing_sums(
    event_code: np.ndarray,
    timeline: tuple[np.ndarray, np.ndarray],
    counted: np.ndarray,
    values: Mapping[str, np.ndarray],
    query_code: np.ndarray,
    query_times: np.ndarray,
    span: pd.Timedelta,
) -> dict[str, np.ndarray]:
    """For each query (key code, as-of time in ns): ``n``, the number of ``counted`` events of the same key with time
    in (as-of - span, as-of), and the sums of ``values`` over them. ``timeline``: every event's position in time
    order (ties in row order) and its time. Per key group one running sum and two binary searches, never a scan per
    query: a float column's running sum in time order is differenced at the window's two ends, a boolean one is
    counted in integers. The as-of window itself is left out: its validations are made after its forecast."""
    sums = {name: np.zeros(len(query_times)) for name in ("n", *values)}
    in_time, times = timeline
    chosen = counted[in_time]
    order, stamps = (in_time, times) if chosen.all() else (in_time[chosen], times[chosen])
    if len(order) == 0 or len(query_times) == 0:
        return sums
    if event_code.min() == event_code.max():  # one key: the events are in time order already
        codes, bounds = event_code[:1], np.zeros(0, dtype=np.int64)
    else:  # several keys: group them, time order kept within each
        codes = event_code[order]
        grouped = np.argsort(codes, kind="stable")
        order, stamps, codes = order[grouped], stamps[grouped], codes[grouped]
        bounds = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    query_order = np.argsort(query_code, kind="stable")
    query_codes_sorted = query_code[query_order]
    for start, end in zip(np.append(0, bounds), np.append(bounds, len(order)), strict=True):
        lo_q, hi_q = np.searchsorted(query_codes_sorted, [codes[start], codes[start] + 1], side="left")
        if lo_q == hi_q:
            continue
        index = query_order[lo_q:hi_q]
        high = np.searchsorted(stamps[start:end], query_times[index], side="left")
        low = np.searchsorted(stamps[start:end], query_times[index] - span.value, side="right")
        sums["n"][index] = high - low
        rows = order[start:end]
        # One array per dtype, reused by the columns: a fresh array per column costs more (its pages are new to the
        # process). A float column's running sum is taken in place; a boolean one is counted, not summed.
        buffers: dict[np.dtype, np.ndarray] = {}
        for name, column in values.items():
            if column.dtype not in buffers:
                buffers[column.dtype] = np.empty(len(rows), dtype=column.dtype)
            in_order = np.take(column, rows, out=buffers[column.dtype])
            if in_order.dtype == bool:
                sums[name][index] = _count_before(in_order, high) - _count_before(in_order, low)
            else:
                np.cumsum(in_order, out=in_order)
                sums[name][index] = _sum_before(in_order, high) - _sum_before(in_order, low)
    return sums


def _sum_before(running: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The sums of the first ``ends`` values from their running sum (``running[k]``: the sum of the first k + 1):
    0 for none."""
    return np.where(ends > 0, running[np.maximum(ends - 1, 0)], 0)


def _count_before(flags: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many of the first ``ends`` flags are set: a binary search among the positions of the rarer value (a few
    percent of a million, usually), instead of a running count in a new array of a million integers."""
    if np.count_nonzero(flags) * 2 <= len(flags):
        return np.searchsorted(np.flatnonzero(flags), ends)
    return ends - np.searchsorted(np.flatnonzero(np.logical_not(flags)), ends)


def _validation_record(
    frame: pd.DataFrame, validations: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per forecast: recent MASE of its model version, and the symbol's recent share valid and inside 80%."""
    missing = np.full(len(frame), np.nan)
    if validations is None or validations.empty:
        return missing, missing.copy(), missing.copy()
    span = pd.Timedelta(days=RECENT_VALIDATION_DAYS)
    times = pd.DatetimeIndex(validations["target_window"]).asi8
    in_time = np.argsort(times, kind="stable")
    timeline = (in_time, times[in_time])  # every validation, oldest target first: both records count along it
    query_times = pd.DatetimeIndex(frame["as_of_window"]).asi8
    symbol, query_symbol = _key_codes(validations["symbol"], frame["symbol"])
    version, query_version = _key_codes(validations["model_version"], frame["model_version"])
    abs_error = as_floats(validations["abs_error_pct"])
    naive = as_floats(validations["naive_abs_error_pct"])
    event_code, query_code = _joint_codes([symbol, version], [query_symbol, query_version])
    by_version = _trailing_sums(event_code, timeline, ~np.isnan(abs_error) & ~np.isnan(naive),
                                {"model": abs_error, "naive": naive}, query_code, query_times, span)
    with np.errstate(invalid="ignore", divide="ignore"):
        recent_mase = np.where(by_version["n"] >= MIN_RECENT_VALIDATIONS, by_version["model"] / by_version["naive"],
                               np.nan)
    lengths, status, statuses = _runs(validations["status"].to_numpy(dtype=object))
    valid_code, needs_code = pd.Index(statuses, dtype=object).get_indexer(["valid", "needs_reprediction"])
    valid = np.repeat((status == valid_code) & (valid_code >= 0), lengths)
    judged = valid | np.repeat((status == needs_code) & (needs_code >= 0), lengths)
    inside = validations["inside_80"].astype("boolean")
    by_symbol = _trailing_sums(
        symbol, timeline, judged,
        {"valid": valid, "inside": inside.fillna(False).to_numpy(dtype=bool),
         "has_inside": inside.notna().to_numpy(dtype=bool)},
        query_symbol, query_times, span,
    )
    enough = by_symbol["n"] >= MIN_RECENT_VALIDATIONS
    with np.errstate(invalid="ignore", divide="ignore"):
        valid_share = np.where(enough, by_symbol["valid"] / by_symbol["n"], np.nan)
        inside_share = np.where(enough & (by_symbol["has_inside"] > 0), by_symbol["inside"] / by_symbol["has_inside"],
                                np.nan)
    # With a valid share but no interval (a model without intervals), the valid share stands alone.
    inside_share = np.where(np.isnan(inside_share), valid_share, inside_share)
    return recent_mase, valid_share, inside_share


def _forecast_shifts(frame: pd.DataFrame, predictions: pd.DataFrame | None) -> np.ndarray:
    """Per forecast: mean |its predicted close - an earlier forecast's| over its 80% half-width, over the target
    windows it shares with the last ``STABILITY_FORECASTS`` forecasts of its symbol; NaN when none.

    Vectorized: the prediction rows sorted by (symbol, as-of, target) are laid out as tables with one column per
    forecast (in time order per symbol) and one row per step of its path, a block of forecasts at a time. The same
    target in the forecast ``back`` columns before sits ``back`` rows further down when the as-of windows in
    between are consecutive (nearly always): one comparison of two shifted slices of the tables pairs those, and a
    column whose overlap with the earlier path pairs whole (with both closes everywhere) is summed at once. The
    others: an earlier path shifted further by a skipped origin (``_offset_shifts``), else cell by cell with binary
    searches (``_paired_shifts``). Each forecast's ratios are summed down its column, in path order, and the sums
    added up ``back`` by ``back``."""
    shifts = np.full(len(frame), np.nan)
    if predictions is None or predictions.empty:
        return shifts
    symbol_code, query_code = _key_codes(predictions["symbol"], frame["symbol"])
    as_of = pd.DatetimeIndex(as_datetimes(predictions["as_of_window"])).asi8
    target = pd.DatetimeIndex(as_datetimes(predictions["target_window"])).asi8

    def floats(name: str) -> np.ndarray:
        return as_floats(predictions[name]) if name in predictions.columns else np.full(len(predictions), np.nan)

    predicted = floats("predicted_close")
    halfwidth = np.subtract(floats("upper_80"), floats("lower_80"))
    halfwidth /= 2.0
    one_symbol = symbol_code.strides == (0,)  # ``_key_runs`` gives one code for every row as a broadcast of it
    same_as_of = as_of[1:] == as_of[:-1]
    if one_symbol:  # sorted when the as-of windows never go back and the targets of each go forward
        ordered = bool(np.all(as_of[1:] >= as_of[:-1]) and np.all(np.greater(target[1:], target[:-1]) >= same_as_of))
    else:
        same_symbol = symbol_code[1:] == symbol_code[:-1]
        same_as_of &= same_symbol
        ordered = bool(np.all((symbol_code[1:] > symbol_code[:-1]) | (same_symbol & (as_of[1:] > as_of[:-1]))
                              | (same_as_of & (target[1:] > target[:-1]))))
    if not ordered:  # not already sorted with each key once
        order = np.lexsort((target, as_of, symbol_code))
        symbol_code, as_of, target = symbol_code[order], as_of[order], target[order]
        # drop_duplicates(keep="last"): the stable sort keeps the original order within a key, so keep each run's last.
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (symbol_code[1:] != symbol_code[:-1]) | (as_of[1:] != as_of[:-1]) | (target[1:] != target[:-1])
        order, symbol_code, as_of, target = order[last], symbol_code[last], as_of[last], target[last]
        predicted, halfwidth = predicted[order], halfwidth[order]
        same_as_of = (symbol_code[1:] == symbol_code[:-1]) & (as_of[1:] == as_of[:-1])
    no_width = ~(np.isfinite(halfwidth) & (halfwidth > 0))
    halfwidth[no_width] = 0.01 * np.abs(predicted[no_width])

    new_forecast = np.ones(len(target), dtype=bool)
    np.logical_not(same_as_of, out=new_forecast[1:])
    firsts = np.flatnonzero(new_forecast)
    lengths = np.diff(np.append(firsts, len(target)))
    forecast_symbol, forecast_as_of = symbol_code[firsts], as_of[firsts]
    # The query's own forecast, found by (symbol, as-of) among the forecasts (sorted by both).
    query_as_of = pd.DatetimeIndex(frame["as_of_window"]).asi8
    if one_symbol:  # the as-of windows alone are in order
        own = np.minimum(np.searchsorted(forecast_as_of, query_as_of), len(forecast_as_of) - 1)
        queries = np.flatnonzero((forecast_as_of[own] == query_as_of) & (query_code == forecast_symbol[0]))
    else:
        unique_times = np.unique(np.concatenate([forecast_as_of, query_as_of]))
        forecast_key = forecast_symbol * len(unique_times) + np.searchsorted(unique_times, forecast_as_of)
        query_key = query_code * len(unique_times) + np.searchsorted(unique_times, query_as_of)
        own = np.minimum(np.searchsorted(forecast_key, query_key), len(forecast_key) - 1)
        queries = np.flatnonzero(forecast_key[own] == query_key)
    if len(queries) == 0:
        return shifts

    # The tables: one column per forecast, one row per step along its path; a cell past a path's end holds no
    # target (PAST_END) and NaN closes. Laid a block of columns at a time into the same few buffers (each new
    # table of a million cells costs more in fresh memory than the arithmetic on it), by one boolean mask over
    # its transpose: the sorted rows are the paths one after the other, as that mask's cells are in order.
    forecasts, steps = len(firsts), int(lengths.max())
    backs = min(STABILITY_FORECASTS, forecasts - 1)
    on_path = np.arange(steps) < lengths[:, np.newaxis]
    ends = np.append(firsts[1:], len(target))
    block = max(TABLE_CELLS // steps, 1)
    buffers = [np.empty(steps * (block + backs), dtype=dtype) for dtype in (np.int64, np.float64, np.float64)]
    ratio_buffer = np.empty(steps * block)
    flag_buffer = np.empty(len(ratio_buffer), dtype=bool)
    # Each forecast c against the one ``back`` columns before, c - back (per ``back``, item back - 1 of these lists:
    # one entry per forecast from the ``back``-th on). Is it the same symbol's? The common case, whole columns at
    # once: the earlier path holds c's first ``overlap`` targets each ``back`` steps further along, and all of them
    # have both closes. Then exactly those cells pair (c's later targets lie past the earlier path's end, so no
    # other cell of c shares a target with it): the sum of their ratios down the column, in step order, is c's.
    # The rest go apart, below.
    same = [forecast_symbol[back:] == forecast_symbol[:-back] for back in range(1, backs + 1)]
    overlap = [np.minimum(lengths[back:], lengths[:-back] - back) for back in range(1, backs + 1)]
    whole = [same[back - 1] & (overlap[back - 1] > 0) for back in range(1, backs + 1)]
    sums = np.zeros((backs, forecasts))  # each forecast's sum per ``back``, added up in that order at the end
    count = np.zeros(forecasts, dtype=np.int64)
    for start in range(0, forecasts, block):
        stop = min(start + block, forecasts)
        first = max(start - backs, 0)  # the table's first column: the ``backs`` forecasts before the block too
        width = stop - first
        laid = on_path[first:stop]
        targets, closes, halfwidths = (buffer[:steps * width].reshape(steps, width) for buffer in buffers)
        for table, values, empty in ((targets, target, PAST_END), (closes, predicted, np.nan),
                                     (halfwidths, halfwidth, np.nan)):
            table.fill(empty)
            table.T[laid] = values[firsts[first]:ends[stop - 1]]
        for back in range(1, backs + 1):
            later = max(start, back)  # the block's first forecast with one ``back`` before
            shape = (steps - back, stop - later)  # cells [:steps - back, later:] against [back:, later - back:]
            columns = np.s_[later - back:stop - back]  # of the ``back``-th per-forecast arrays
            if shape[0] <= 0 or shape[1] <= 0 or not whole[back - 1][columns].any():
                continue
            cells, partners = np.s_[:shape[0], later - first:], np.s_[back:, later - first - back:width - back]
            ratio = ratio_buffer[:shape[0] * shape[1]].reshape(shape)
            flags = flag_buffer[:ratio.size].reshape(shape)
            lengths_now, lengths_before = lengths[later:stop], lengths[later - back:stop - back]
            paired, spans = whole[back - 1][columns], overlap[back - 1][columns]
            # Past the overlap one path has ended: its target is PAST_END and its close NaN. So a column pairs
            # each cell of its overlap when the only cells that do not pair are those where one path goes on
            # alone, and has both closes there when its only NaN ratios are those past the overlap.
            np.not_equal(targets[cells], targets[partners], out=flags)
            paired &= _column_counts(flags) == np.abs(np.minimum(lengths_now, shape[0])
                                                      - np.minimum(lengths_before - back, shape[0]))
            with np.errstate(invalid="ignore", divide="ignore"):
                np.subtract(closes[cells], closes[partners], out=ratio)
                np.abs(ratio, out=ratio)
                np.divide(ratio, halfwidths[cells], out=ratio)
            np.isnan(ratio, out=flags)
            paired &= _column_counts(flags) == shape[0] - spans
            np.copyto(ratio, 0.0, where=flags)  # the cells past the overlap add 0
            summed = _column_sums(ratio)
            sums[back - 1, later:stop][paired] = summed[paired]
            count[later:stop][paired] += spans[paired]
    for back in range(1, backs + 1):
        irregular = np.flatnonzero(same[back - 1] & ~whole[back - 1]) + back
        if len(irregular):  # mostly an origin skipped in between: the earlier path holds c's targets further on
            done, summed, spans = _offset_shifts(irregular, back, target, predicted, halfwidth, firsts, lengths)
            sums[back - 1, irregular[done]] = summed
            count[irregular[done]] += spans
            irregular = irregular[~done]
        if len(irregular):
            summed, kept = _paired_shifts(irregular, back, target, predicted, halfwidth, firsts, lengths, steps)
            sums[back - 1, irregular] = summed
            count[irregular] += kept
    total = np.zeros(forecasts)
    for summed in sums:  # back by back, as they were once added
        total += summed
    own = own[queries]
    with np.errstate(invalid="ignore", divide="ignore"):
        shifts[queries] = np.where(count[own] > 0, total[own] / np.maximum(count[own], 1), np.nan)
    return shifts


def _column_sums(table: np.ndarray) -> np.ndarray:
    """The sum down each column of a C-ordered table, row after row (along each path in step order, as its rows
    were once summed). numpy sums across the rows of such a table by adding each row into the result in turn (its
    pairwise summation is only along the axis contiguous in memory), unless a single column leaves the rows as that
    axis: then row by row here."""
    if table.shape[1] >= 2:
        return np.add.reduce(table, axis=0)
    summed = np.zeros(table.shape[1])
    for row in table:
        summed += row
    return summed


def _column_counts(flags: np.ndarray) -> np.ndarray:
    """How many flags are set in each column of a boolean table: summed as bytes while a column cannot overflow one
    (a pass of a few byte additions, where a count in wider integers converts every cell first)."""
    if flags.shape[0] < 256:
        return np.add.reduce(flags.view(np.uint8), axis=0, dtype=np.uint8)
    return np.count_nonzero(flags, axis=0)


def _offset_shifts(
    later: np.ndarray, back: int, target: np.ndarray, predicted: np.ndarray, halfwidth: np.ndarray,
    firsts: np.ndarray, lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_forecast_shifts``' whole-column case for the forecasts ``later`` against the ones ``back`` before, at any
    offset: the earlier path holds c's first target (a binary search per path) and then each of c's next targets
    one step further, up to the end of either path, with both closes. Exactly those cells pair. Read from the
    sorted rows (each path a run of them), not the tables: a path's cells are neighbours there. Returns which
    forecasts are such (``done``) and, for those, the sum of the ratios along the path in step order and how many
    cells there are."""
    earlier = later - back
    held = _positions_in_runs(target, firsts[earlier], firsts[earlier] + lengths[earlier], target[firsts[later]])
    found = held >= 0
    later, earlier, held = later[found], earlier[found], held[found]
    overlap = np.minimum(lengths[later], firsts[earlier] + lengths[earlier] - held)
    # One path a row; a step past its overlap reads the overlap's last cell again (and is set to 0 below).
    step = np.minimum(np.arange(int(overlap.max(initial=1))), (overlap - 1)[:, np.newaxis])
    cell, partner = firsts[later, np.newaxis] + step, held[:, np.newaxis] + step
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(predicted[cell] - predicted[partner]) / halfwidth[cell]
    ratio[target[cell] != target[partner]] = np.nan  # a cell of the overlap that does not pair: not this case
    ratio[np.arange(ratio.shape[1]) >= overlap[:, np.newaxis]] = 0.0  # past the overlap: adds nothing
    sums = np.zeros(len(later))
    for column in ratio.T:  # along each path in step order, as its rows were once summed
        sums += column
    summed = ~np.isnan(sums)
    done = np.zeros(len(found), dtype=bool)
    done[np.flatnonzero(found)] = summed
    return done, sums[summed], overlap[summed]


def _paired_shifts(
    later: np.ndarray, back: int, target: np.ndarray, predicted: np.ndarray, halfwidth: np.ndarray,
    firsts: np.ndarray, lengths: np.ndarray, steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``_forecast_shifts``' pairing cell by cell, for the forecasts ``later`` against the forecasts ``back``
    before (the same symbol's): per forecast the sum of |close - earlier close| / half-width over the cells that
    pair and have both closes, along its path in step order, and how many such cells.

    A cell pairs with the earlier path's cell ``back`` steps on when that holds the same target; any other cell of
    the path whose target the earlier path holds (an origin skipped between the two forecasts shifts the earlier
    path further) pairs with that cell, found by a binary search in the earlier forecast's rows. The paths are
    laid as tables of their own, one row per forecast and ``steps`` cells (those past a path's end as in
    ``_forecast_shifts``)."""
    position = np.arange(steps)

    def rows(forecasts: np.ndarray, values: np.ndarray, empty: float | int) -> np.ndarray:
        on = position < lengths[forecasts, np.newaxis]
        return np.where(on, values[np.where(on, firsts[forecasts, np.newaxis] + position, 0)], empty)

    shifted = max(steps - back, 0)
    earlier = later - back
    cell_targets, cell_closes, cell_halfwidths = (
        rows(later, target, PAST_END), rows(later, predicted, np.nan), rows(later, halfwidth, np.nan))
    earlier_targets, earlier_closes = rows(earlier, target, PAST_END), rows(earlier, predicted, np.nan)
    paired = np.zeros(cell_targets.shape, dtype=bool)
    ratio = np.zeros(cell_targets.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.equal(cell_targets[:, :shifted], earlier_targets[:, back:], out=paired[:, :shifted])
        ratio[:, :shifted] = (np.abs(cell_closes[:, :shifted] - earlier_closes[:, back:])
                              / cell_halfwidths[:, :shifted])
        # The others: cells whose target lies within the earlier forecast's span. Their guess: as many steps on
        # from where the earlier path holds this path's first target (one binary search per path); a binary search
        # for the cells it misses.
        start, end = firsts[earlier], firsts[earlier] + lengths[earlier]
        first_held = _positions_in_runs(target, start, end, cell_targets[:, 0])
        others = np.flatnonzero((cell_targets != PAST_END) & ~paired)
        row, step = np.divmod(others, steps)
        wanted = cell_targets.ravel()[others]
        start, end, first_held = start[row], end[row], first_held[row]
        spanned = (wanted >= target[start]) & (wanted <= target[end - 1])
        others, step, wanted, start, end, first_held = (
            part[spanned] for part in (others, step, wanted, start, end, first_held))
        match = np.where(first_held >= 0, first_held + step, end)
        match = np.where((match < end) & (target[np.minimum(match, end - 1)] == wanted), match, -1)
        missed = np.flatnonzero(match < 0)
        match[missed] = _positions_in_runs(target, start[missed], end[missed], wanted[missed])
        others, match = others[match >= 0], match[match >= 0]
        ratio.ravel()[others] = np.abs(cell_closes.ravel()[others] - predicted[match]) / cell_halfwidths.ravel()[others]
    paired.ravel()[others] = True
    # A mean over the pairs that have both closes, as pandas' mean skips NaN: every other cell adds 0, uncounted.
    dropped = np.isnan(ratio) | ~paired
    ratio[dropped] = 0.0
    along = np.zeros(len(later))
    for column in ratio.T:  # along each path in step order, as its rows were once summed
        along += column
    return along, steps - dropped.sum(axis=1)


def _positions_in_runs(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each ``wanted`` value in its run ``values[start:end]`` (each run sorted), -1 where the run lacks
    it: one binary search, vectorized over the wanted values."""
    low, high = starts.copy(), ends.copy()
    last = len(values) - 1
    while np.any(low < high):
        active = low < high
        middle = (low + high) // 2
        below = active & (values[np.minimum(middle, last)] < wanted)
        low = np.where(below, middle + 1, low)
        high = np.where(active & ~below, middle, high)
    return np.where((low < ends) & (values[np.minimum(low, last)] == wanted), low, -1)


__all__ = [
    "FORECAST_COLUMNS",
    "LEVELS",
    "SCORE_COLUMNS",
    "PreparedConfidence",
    "confidence_level",
    "confidence_scores",
    "factor_weights",
    "forecast_summaries",
    "model_test_mase",
    "prepare_confidence",
    "scores_with_validations",
]
