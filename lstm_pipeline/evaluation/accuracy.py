"""Rolling accuracy of a symbol's forecasts as of a window, per span and horizon bucket, against the naive forecast.

``accuracy_metrics`` takes every stored validation of a run's symbols (and the predictions' intervals, and the
scored trades) and computes, for every (symbol, as-of window) of the batch at once, one row per span x horizon
bucket. No Python loop runs per validation or per as-of window: validations are summed per (symbol, bucket, target
window), cumulated, and each span is the difference of two cumulative sums found by binary search.

Definitions (the README repeats them):

- **Spans** count session windows, not clock time, so a weekend or a holiday never empties a span: ``day`` holds the
  validations whose target is one of the last 26 session windows up to and including the as-of window, ``week``
  the last 130, ``month`` the last 546 (21 sessions). The *previous* span is the same number of session windows
  immediately before; ``mase_trend`` is this span's MASE minus the previous one's (negative: improving).
- **Horizon buckets**: ``1_step`` = horizon step 1, ``1_hour`` = step 4, ``1_day`` = step 26, ``1_week`` = the last
  step of the week: the target at the same New York wall-clock time seven days after the as-of window (step 130 in
  a normal week, fewer steps across a holiday; an as-of window whose wall-clock week ends outside a session, behind
  an early close, has no ``1_week`` target). Other steps feed no bucket.
- Only validations with an actual close and a status other than ``invalid`` count (a rejected bar judges nothing).
  ``rmse`` and ``mae`` are in price units; ``mape`` in percent; ``directional_accuracy`` is the share whose
  predicted move from ``last_close`` has the sign of the actual move (a zero move is its own sign), beside
  ``up_move_share``, the share whose actual close is above ``last_close`` (what always guessing "up" would score).
- ``mase`` is the model's MAE over the naive last-price forecast's MAE on the same origins and targets, both in
  price units (the naive error is ``naive_abs_error_pct / 100 * actual``): below 1 beats naive; null when the naive
  error is zero.
- ``skill_p_value``: how likely a MASE this far below 1 is by chance, when the model is in truth no better than
  naive: the one-sided p-value of a Diebold-Mariano test on the loss differential ``|model error| - |naive
  error|`` over the span's validations, in target order. Forecasts ``h`` steps ahead from neighbouring origins share
  ``h - 1`` windows of path, so their errors are strongly correlated and a plain t-test would find "skill" in one
  lucky week; the variance is the overlapping-batch-means estimate (asymptotically Newey-West's with a Bartlett
  kernel) with batches of ``b`` windows (``SKILL_BLOCK``: 1, 8, 52 and 260 for the four buckets: twice the horizon,
  as batches of one horizon underestimate the variance of overlapping errors by about a third), and the statistic
  is read against Student's t with ``n / b - 1`` degrees of freedom (the number of non-overlapping batches less
  one). On simulated differentials with the overlap of each horizon and no skill, it rejects at the 5% level 5-6%
  of the time over a ``month`` span (1.6% at ``1_week``, where it is conservative); ``tests/workflow`` checks it.
  Null with fewer than two batches' worth of validations (a ``week`` span at ``1_week`` never has them) or a
  differential that never varies; 0 or 1 when the differential is constant and negative or positive.
- Coverage is the share of ``inside_80`` / ``inside_95``; the interval (Winkler) score of ``[lower, upper]`` at
  level ``1 - alpha`` is ``upper - lower`` plus ``2 / alpha`` times the distance by which the actual falls outside
  (price units; lower is better; needs the intervals from ``predictions``).
- ``reprediction_rate``: share of the counted validations with status ``needs_reprediction``.
- ``trade_success_rate`` and ``mean_trade_return_pct``: the hits and the mean realized return (after costs) of the
  trades (action other than ``none``) scored in the span's windows; the same for every bucket of a span.

This module imports no Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm_pipeline.evaluation.keys import as_floats, factorize_runs, rows_at
from lstm_pipeline.evaluation.stamps import as_new_york
from lstm_pipeline.market.calendar import NEW_YORK, SLOTS_PER_SESSION, WINDOW, session_windows

SPAN_WINDOWS: dict[str, int] = {"day": 26, "week": 130, "month": 546}
"""Each span's length in session windows, ending at (and including) the as-of window."""

HORIZON_BUCKETS: tuple[str, ...] = ("1_step", "1_hour", "1_day", "1_week")
BUCKET_STEPS: dict[str, int] = {"1_step": 1, "1_hour": 4, "1_day": 26}
"""The buckets that are one fixed horizon step; ``1_week`` is the week's last step (see the module docstring)."""

WEEK = pd.Timedelta(days=7)
_HOUR_NS = pd.Timedelta(hours=1).value
HOURS_1_WEEK_MIN, HOURS_1_WEEK_MAX = 167, 169

BUCKET_SQL = (
    "(horizon_step IN (1, 4, 26) OR extract(epoch FROM target_window) - extract(epoch FROM as_of_window) "
    f"BETWEEN {HOURS_1_WEEK_MIN * 3600} AND {HOURS_1_WEEK_MAX * 3600})"
)
"""A SQL filter (on ``validations`` or ``predictions``) keeping every row a bucket can use and few others (a week is
167 to 169 hours across a daylight-saving change); ``horizon_buckets`` decides exactly."""

NAIVE_ERROR_FLOOR = 1e-9
"""A span's summed naive error (price units) at or below this is zero: MASE is then unknown. Span sums are
differences of running sums, so an exact zero can come back as rounding noise (about 1e-11 over 10^5 rows)."""

SKILL_BLOCK: dict[str, int] = {"1_step": 1, "1_hour": 8, "1_day": 52, "1_week": 260}
"""Batch length (session windows) of ``skill_p_value``'s variance per bucket: twice the horizon (the week's last step
is 130 steps ahead in a normal week), so that a batch holds the correlation of errors whose paths overlap."""

NEEDS_REPREDICTION = "needs_reprediction"
INVALID = "invalid"
NO_TRADE = "none"

CONFIDENCE_LEVELS: tuple[str, ...] = ("very low", "low", "medium", "high", "very high")
UNSCORED = "unscored"

METRIC_COLUMNS: tuple[str, ...] = (
    "n",
    "rmse",
    "mae",
    "mape",
    "directional_accuracy",
    "up_move_share",
    "mase",
    "skill_p_value",
    "coverage_80",
    "coverage_95",
    "winkler_80",
    "winkler_95",
    "reprediction_rate",
    "trade_success_rate",
    "mean_trade_return_pct",
    "mase_trend",
    "naive_band_coverage_80",
    "naive_band_coverage_95",
    "naive_band_winkler_80",
    "naive_band_winkler_95",
    "tod_band_coverage_80",
    "tod_band_coverage_95",
    "tod_band_winkler_80",
    "tod_band_winkler_95",
)
ROW_COLUMNS: tuple[str, ...] = ("symbol", "window_start", "span", "horizon_bucket", *METRIC_COLUMNS)
"""The ``accuracy_metrics`` columns the function fills (``computed_at`` is the table's default)."""

INTERVAL_COLUMNS: tuple[str, ...] = ("lower_80", "upper_80", "lower_95", "upper_95")
BAND_KINDS: tuple[str, ...] = ("naive", "tod")
BAND_COLUMNS: tuple[str, ...] = tuple(f"{kind}_{bound}" for kind in BAND_KINDS for bound in INTERVAL_COLUMNS)
"""The baseline bands' bounds ``baseline_band_rows`` returns (``naive_lower_80`` .. ``tod_upper_95``)."""

# Per-(symbol, bucket, target window) sums that every metric is a ratio of.
_SUMS = (
    "n", "sq_err", "abs_err", "ape", "direction_hit", "up", "naive_abs_err",
    "in80_n", "in80", "in95_n", "in95", "w80_n", "w80", "w95_n", "w95", "repredict",
    *(f"{kind}_{name}{level}" for kind in BAND_KINDS for level in (80, 95) for name in ("in_n", "in", "w_n", "w")),
)
_TRADE_SUMS = ("trades", "hits", "returns_n", "returns")
_SKILL_SUMS = ("n", "abs_err", "naive_abs_err")
_SKILL_INPUTS = ("symbol", "as_of_window", "target_window", "horizon_step", "status", "actual_close",
                 "predicted_close", "last_close", "naive_abs_error_pct")
"""The validation columns ``_SKILL_SUMS`` and their buckets read."""
_LEVEL_SUMS = ("n", "ape", "abs_err", "naive_abs_err", "in95_n", "in95")
_LEVEL_INPUTS = ("inside_80", "inside_95", "confidence_level")
"""What ``error_by_confidence`` sums, and the validation columns it reads beyond ``_SKILL_INPUTS``."""


@dataclass(frozen=True)
class AccuracyResult:
    """Rows to store in ``accuracy_metrics`` and the (symbol, window_start) pairs that got none, with why."""

    rows: pd.DataFrame
    skipped: pd.DataFrame


def history_windows(spans: Mapping[str, int] = SPAN_WINDOWS) -> int:
    """How many session windows before the first as-of window the metrics read: the longest span and the one
    before it (for the trend)."""
    return 2 * max(spans.values())


def history_start(first_as_of: pd.Timestamp, spans: Mapping[str, int] = SPAN_WINDOWS) -> pd.Timestamp:
    """The earliest target window any metric as of ``first_as_of`` (or later) can count."""
    wanted = history_windows(spans)
    as_of = pd.Timestamp(first_as_of)
    # A full session holds 26 windows; two calendar days per session plus two weeks covers weekends and holidays.
    calendar = session_windows(as_of - pd.Timedelta(days=14 + 2 * (wanted // SLOTS_PER_SESSION + 1)), as_of + WINDOW)
    return calendar[max(len(calendar) - wanted, 0)]


def horizon_buckets(frame: pd.DataFrame) -> pd.Series:
    """The bucket of each row with ``horizon_step``, ``as_of_window`` and ``target_window`` (null: no bucket)."""
    bucket = np.full(len(frame), None, dtype=object)
    steps = frame["horizon_step"].to_numpy(dtype=np.int64)
    for name, step in BUCKET_STEPS.items():
        bucket[steps == step] = name
    as_of = pd.DatetimeIndex(_new_york(frame["as_of_window"]))
    target = pd.DatetimeIndex(_new_york(frame["target_window"]))
    # A week on the wall clock is a week +-1 hour of elapsed time (a daylight-saving change in between): only the
    # rows that close to a week apart are converted to wall-clock time and compared.
    known = ~(as_of.isna() | target.isna())
    near = np.flatnonzero(known)
    near = near[np.abs(target.asi8[near] - as_of.asi8[near] - WEEK.value) <= 2 * _HOUR_NS]
    if len(near):
        week = (target[near].tz_localize(None) - as_of[near].tz_localize(None)) == WEEK
        bucket[near[np.asarray(week)]] = "1_week"
    return pd.Series(bucket, index=frame.index, dtype=object)


def accuracy_metrics(
    validations: pd.DataFrame,
    as_of_windows: pd.DataFrame,
    forecasts: pd.DataFrame | None = None,
    trade_outcomes: pd.DataFrame | None = None,
    spans: Mapping[str, int] = SPAN_WINDOWS,
    bands: pd.DataFrame | None = None,
    skill_only: bool = False,
) -> AccuracyResult:
    """Accuracy of every (symbol, window_start) of ``as_of_windows`` over each span and horizon bucket.

    ``validations`` are ``validations`` rows (any subset of history; rows outside a span are ignored);
    ``forecasts`` the matching ``predictions`` rows for the intervals (``symbol``, ``as_of_window``,
    ``target_window`` and ``lower_80`` .. ``upper_95``; without them the Winkler scores are null);
    ``trade_outcomes`` the ``trade_outcomes`` rows (may be empty or None); ``bands`` the baseline bands on the
    validated (origin, target) pairs (``baseline_band_rows``; without them the ``*_band_*`` columns are null).
    A (symbol, span, bucket) with no counted
    validation gets no row; a (symbol, window_start) with no row at all is in ``skipped`` with the reason.
    ``skill_only`` fills only n, mase and skill_p_value (what the skill gate reads; the same numbers)
    and sums nothing else: the backtest asks it at every origin of a symbol-year.
    """
    wanted = _as_of_frame(as_of_windows)
    if wanted.empty:
        return AccuracyResult(_empty_rows(), _empty_skipped())
    sum_names = _SKILL_SUMS if skill_only else _SUMS
    counted = _counted(validations, None if skill_only else forecasts, None if skill_only else bands, sum_names)
    trades = _trades(None if skill_only else trade_outcomes)

    stamps = [_new_york(s) for s in (wanted["window_start"], counted["target_window"], trades["scored_window"])
              if len(s)]
    calendar = _calendar(min(s.min() for s in stamps), max(s.max() for s in stamps))
    as_of_position = _positions(calendar, wanted["window_start"])
    target_position = _positions(calendar, counted["target_window"])
    scored_position = _positions(calendar, trades["scored_window"])

    span_names = list(spans)
    buckets = list(HORIZON_BUCKETS)
    # One query per (as-of, span, bucket): a flat grid, every array the same length.
    n_asof, n_span, n_bucket = len(wanted), len(span_names), len(buckets)
    grid_asof = np.repeat(np.arange(n_asof), n_span * n_bucket)
    grid_span = np.tile(np.repeat(np.arange(n_span), n_bucket), n_asof)
    grid_bucket = np.tile(np.arange(n_bucket), n_asof * n_span)
    span_length = np.array([spans[name] for name in span_names], dtype=np.int64)[grid_span]
    hi = as_of_position[grid_asof]
    symbols = wanted["symbol"].to_numpy(dtype=object)[grid_asof]
    as_of_stamps = wanted["window_start"].take(grid_asof).reset_index(drop=True)
    bucket_names = np.array(buckets, dtype=object)[grid_bucket]

    values = counted[list(sum_names)].to_numpy(dtype=float)
    # Both spans of the validations group rows and queries alike: number the groups once.
    groups = _group_codes([counted["symbol"].to_numpy(dtype=object), counted["horizon_bucket"].to_numpy(dtype=object)],
                          [symbols, bucket_names])
    current = _range_sums(groups, target_position, values, hi - span_length, hi)
    s = {name: current[:, i] for i, name in enumerate(sum_names)}
    mase = _ratio(s["abs_err"], s["naive_abs_err"], floor=NAIVE_ERROR_FLOOR)
    block = np.array([SKILL_BLOCK[name] for name in buckets], dtype=np.int64)[grid_bucket]
    batches = _batch_sums(counted, target_position)
    batched = _range_sums(
        _group_codes([batches["symbol"], batches["horizon_bucket"]], [symbols, bucket_names]), batches["position"],
        batches["sums"], hi - span_length + block - 1, hi,
    )
    skill_p_value = _skill_p_value(s["n"], s["abs_err"] - s["naive_abs_err"], batched, block)
    keys = {
        "symbol": symbols,
        "window_start": as_of_stamps,
        "span": np.array(span_names, dtype=object)[grid_span],
        "horizon_bucket": bucket_names,
        "n": np.rint(s["n"]).astype(np.int64),
    }
    counted_any = keys["n"] > 0
    skipped = _skipped(wanted, np.bincount(grid_asof[counted_any], minlength=len(wanted)) == 0, spans)
    if skill_only:
        rows = pd.DataFrame({**keys, "mase": mase, "skill_p_value": skill_p_value})
        return AccuracyResult(rows_at(rows, np.flatnonzero(counted_any)), skipped)
    previous = _range_sums(
        groups, target_position, values[:, [_SUMS.index("abs_err"), _SUMS.index("naive_abs_err")]],
        hi - 2 * span_length, hi - span_length,
    )
    traded = _range_sums(
        _group_codes([trades["symbol"].to_numpy(dtype=object)], [symbols]), scored_position,
        trades[list(_TRADE_SUMS)].to_numpy(dtype=float), hi - span_length, hi,
    )
    t = {name: traded[:, i] for i, name in enumerate(_TRADE_SUMS)}
    rows = pd.DataFrame(
        {
            **keys,
            "rmse": np.sqrt(np.clip(_ratio(s["sq_err"], s["n"]), 0.0, None)),
            "mae": _ratio(s["abs_err"], s["n"]),
            "mape": _ratio(s["ape"], s["n"]),
            "directional_accuracy": _ratio(s["direction_hit"], s["n"]),
            "up_move_share": _ratio(s["up"], s["n"]),
            "mase": mase,
            "skill_p_value": skill_p_value,
            "coverage_80": _ratio(s["in80"], s["in80_n"]),
            "coverage_95": _ratio(s["in95"], s["in95_n"]),
            "winkler_80": _ratio(s["w80"], s["w80_n"]),
            "winkler_95": _ratio(s["w95"], s["w95_n"]),
            "reprediction_rate": _ratio(s["repredict"], s["n"]),
            "trade_success_rate": _ratio(t["hits"], t["trades"]),
            "mean_trade_return_pct": _ratio(t["returns"], t["returns_n"]),
            "mase_trend": mase - _ratio(previous[:, 0], previous[:, 1], floor=NAIVE_ERROR_FLOOR),
            **{
                f"{kind}_band_{metric}_{level}": _ratio(s[f"{kind}_{name}{level}"], s[f"{kind}_{name}_n{level}"])
                for kind in BAND_KINDS
                for metric, name in (("coverage", "in"), ("winkler", "w"))
                for level in (80, 95)
            },
        }
    )
    rows = rows[counted_any].reset_index(drop=True)
    return AccuracyResult(rows[list(ROW_COLUMNS)], skipped)


def _skipped(wanted: pd.DataFrame, without_rows: np.ndarray, spans: Mapping[str, int]) -> pd.DataFrame:
    """The (symbol, window_start) pairs of ``wanted`` that got no row (``without_rows``, per pair), and why."""
    longest = max(spans.values())
    missing = rows_at(wanted[["symbol", "window_start"]], np.flatnonzero(without_rows))
    missing["reason"] = (
        "no validated forecast of " + missing["symbol"].astype(str) + f" has a target in the {longest} session "
        "windows up to this window (validations have not run, or no prediction reached that far)"
    )
    return missing


def error_by_confidence(validations: pd.DataFrame, forecasts: pd.DataFrame | None) -> pd.DataFrame:
    """Whether confidence separates good from bad forecasts: per confidence level (``unscored`` where the prediction
    has none), the counted validations, their mean absolute error %, MASE and 95% coverage, lowest level first.

    MASE is the fairer column: a level that gathers long horizons has larger errors whatever its skill."""
    counted = _counted(validations, forecasts, names=_LEVEL_SUMS)
    if "confidence_level" not in counted:
        counted["confidence_level"] = None
    level = counted["confidence_level"].astype("object")
    counted["level"] = level.where(level.notna(), UNSCORED).astype(str)  # its own frame: no copy
    grouped = counted.groupby("level", sort=False)
    table = pd.DataFrame(
        {
            "n": grouped["n"].sum().astype(np.int64),
            "mean_abs_error_pct": grouped["ape"].mean(),
            "mase": grouped["abs_err"].sum() / grouped["naive_abs_err"].sum().replace(0.0, np.nan),
            "coverage_95": grouped["in95"].sum() / grouped["in95_n"].sum().replace(0.0, np.nan),
        }
    ).reset_index().rename(columns={"level": "confidence_level"})
    order = {name: i for i, name in enumerate(CONFIDENCE_LEVELS)}
    rank = table["confidence_level"].map(lambda name: order.get(name.lower().replace("_", " "), len(order)))
    return table.assign(_rank=rank).sort_values(["_rank", "confidence_level"]).drop(columns="_rank").reset_index(
        drop=True
    )


def confidence_separates(table: pd.DataFrame) -> bool | None:
    """Whether the highest scored confidence level's MASE is below the lowest one's (``error_by_confidence``'s
    table); None with fewer than two scored levels holding a MASE."""
    scored = table[(table["confidence_level"] != UNSCORED) & table["mase"].notna()]
    if len(scored) < 2:
        return None
    return bool(scored["mase"].iloc[-1] < scored["mase"].iloc[0])


# --------------------------------------------------------------------------------------------------- internals


def _new_york(stamps: pd.Series | pd.Index) -> pd.Series:
    """The stamps in New York time (naive ones are New York); a Series keeps its index, so assigning the result
    back to a filtered frame aligns row by row."""
    return as_new_york(stamps if isinstance(stamps, pd.Series) else pd.Series(stamps))


def _as_of_frame(as_of_windows: pd.DataFrame) -> pd.DataFrame:
    if as_of_windows is None or as_of_windows.empty:
        return _empty_skipped().drop(columns="reason")
    frame = as_of_windows[["symbol", "window_start"]].reset_index(drop=True)
    frame["window_start"] = _new_york(frame["window_start"])
    codes, symbols = factorize_runs(frame["symbol"].to_numpy(dtype=object))
    if len(frame) > 1 and isinstance(frame["window_start"].dtype, pd.DatetimeTZDtype) and pd.api.types.infer_dtype(
            symbols, skipna=False) == "string":
        rank = pd.factorize(symbols, sort=True)[0][codes]  # each row's symbol's place in sorted order
        at = pd.DatetimeIndex(frame["window_start"]).asi8
        if ((rank[1:] > rank[:-1]) | ((rank[1:] == rank[:-1]) & (at[1:] > at[:-1]))).all():
            return frame  # sorted by symbol and time with each pair once already (the backtest's origins)
    return frame.drop_duplicates().sort_values(["symbol", "window_start"]).reset_index(drop=True)


def baseline_band_rows(bars: pd.DataFrame, validations: pd.DataFrame) -> pd.DataFrame:
    """The naive and time-of-day bands (``forecasting.bands.baseline_bands``, walk-forward over ``bars``) on every
    (symbol, as_of_window, target_window) of ``validations`` that a horizon bucket counts: columns ``symbol``,
    ``as_of_window``, ``target_window`` and ``BAND_COLUMNS`` (NaN while a band warms up). ``bars`` hold the symbols'
    bars from well before the first origin (the bands need a few sessions and 50 realized errors per step)."""
    from lstm_pipeline.forecasting.bands import baseline_band_kinds

    keys = ["symbol", "as_of_window", "target_window"]
    empty = pd.DataFrame({name: pd.Series(dtype=object) for name in keys}).assign(
        **{name: pd.Series(dtype=float) for name in BAND_COLUMNS}
    )
    if validations is None or validations.empty or bars is None or bars.empty:
        return empty
    frame = validations[[*keys, "horizon_step"]].assign(
        as_of_window=_new_york(validations["as_of_window"]), target_window=_new_york(validations["target_window"])
    )
    frame = frame[horizon_buckets(frame).notna().to_numpy()].drop_duplicates(keys)
    out = []
    bar_symbols = bars["symbol"].astype(str)
    for symbol, rows in frame.groupby(frame["symbol"].astype(str), sort=True):
        mine = bars[(bar_symbols == symbol).to_numpy()]
        if mine.empty:
            continue
        origins = pd.DatetimeIndex(rows["as_of_window"].unique()).sort_values()
        steps = np.unique(rows["horizon_step"].to_numpy(dtype=np.int64))
        joined = rows[keys].reset_index(drop=True)
        for kind, band in baseline_band_kinds(mine, origins, int(steps.max()), BAND_KINDS, steps=steps).items():
            band = band.rename(columns={name: f"{kind}_{name}" for name in INTERVAL_COLUMNS})
            band = band.assign(as_of_window=_new_york(band["as_of_window"]),
                               target_window=_new_york(band["target_window"]))
            joined = joined.merge(band[["as_of_window", "target_window", *(f"{kind}_{n}" for n in INTERVAL_COLUMNS)]],
                                  on=["as_of_window", "target_window"], how="left")
        out.append(joined)
    return pd.concat(out, ignore_index=True)[[*keys, *BAND_COLUMNS]] if out else empty


def _counted(
    validations: pd.DataFrame | None, forecasts: pd.DataFrame | None, bands: pd.DataFrame | None = None,
    names: tuple[str, ...] = _SUMS,
) -> pd.DataFrame:
    """The validations a metric counts, in a bucket, with the per-row quantities of ``names`` (``_SUMS``, or only
    ``_SKILL_SUMS``) that the metrics add up."""
    if validations is None or validations.empty:
        frame = pd.DataFrame(
            {
                "symbol": pd.Series(dtype=object),
                "target_window": pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]"),
                "horizon_bucket": pd.Series(dtype=object),
                "confidence_level": pd.Series(dtype=object),
            }
        )
        for name in names:
            frame[name] = pd.Series(dtype=float)
        return frame
    frame = validations
    if names != _SUMS:  # a few sums read a few columns: copy only those through the filters below
        inputs = _SKILL_INPUTS if names == _SKILL_SUMS else (*_SKILL_INPUTS, *_LEVEL_INPUTS)
        frame = frame[[name for name in inputs if name in frame.columns]]
    finite = np.ones(len(frame), dtype=bool)
    for name in ("actual_close", "predicted_close", "last_close"):
        finite &= np.isfinite(as_floats(frame[name]))
    codes, statuses = factorize_runs(frame["status"].to_numpy(dtype=object))  # a few statuses in long runs
    usable = finite & ~np.isin(codes, [code for code, status in enumerate(statuses) if str(status) == INVALID])
    frame = rows_at(frame, np.flatnonzero(usable))
    frame["target_window"] = _new_york(frame["target_window"])
    frame["as_of_window"] = _new_york(frame["as_of_window"])
    bucket = horizon_buckets(frame).to_numpy() if len(frame) else np.zeros(0, dtype=object)
    in_bucket = np.flatnonzero(pd.notna(bucket))
    if len(in_bucket) < len(frame):
        frame, bucket = rows_at(frame, in_bucket), bucket[in_bucket]
    frame["horizon_bucket"] = bucket
    if forecasts is not None and len(forecasts) and len(frame):
        wanted = [c for c in (*INTERVAL_COLUMNS, "confidence_level") if c in forecasts.columns]
        right = forecasts[["symbol", "as_of_window", "target_window", *wanted]].copy()
        right["as_of_window"] = _new_york(right["as_of_window"])
        right["target_window"] = _new_york(right["target_window"])
        right = right.drop_duplicates(["symbol", "as_of_window", "target_window"], keep="last")
        frame = frame.drop(columns=[c for c in wanted if c in frame.columns]).merge(
            right, on=["symbol", "as_of_window", "target_window"], how="left"
        )
    if bands is not None and len(bands) and len(frame):
        right = bands[["symbol", "as_of_window", "target_window", *BAND_COLUMNS]].assign(
            as_of_window=_new_york(bands["as_of_window"]), target_window=_new_york(bands["target_window"])
        ).drop_duplicates(["symbol", "as_of_window", "target_window"], keep="last")
        frame = frame.drop(columns=[c for c in BAND_COLUMNS if c in frame.columns]).merge(
            right, on=["symbol", "as_of_window", "target_window"], how="left"
        )

    def column(name: str) -> np.ndarray:
        if name not in frame.columns:
            return np.full(len(frame), np.nan)
        return as_floats(frame[name])

    actual = column("actual_close")
    predicted = column("predicted_close")
    last = column("last_close")
    error = predicted - actual
    naive_pct = column("naive_abs_error_pct")
    naive = np.where(np.isfinite(naive_pct), naive_pct / 100.0 * np.abs(actual), np.abs(last - actual))
    if names == _SKILL_SUMS:
        for name, value in (("n", np.ones(len(frame))), ("abs_err", np.abs(error)), ("naive_abs_err", naive)):
            frame[name] = value
        return frame
    sums = {
        "n": np.ones(len(frame)),
        "sq_err": error**2,
        "abs_err": np.abs(error),
        "ape": 100.0 * np.abs(error) / np.abs(actual),
        "direction_hit": (np.sign(predicted - last) == np.sign(actual - last)).astype(float),
        "up": (actual > last).astype(float),
        "naive_abs_err": naive,
        "repredict": (frame["status"].astype(str) == NEEDS_REPREDICTION).to_numpy(dtype=float),
    }
    for level in (80, 95):
        inside = column(f"inside_{level}")
        sums[f"in{level}_n"] = np.isfinite(inside).astype(float)
        sums[f"in{level}"] = np.nan_to_num(inside)
        score = _winkler(column(f"lower_{level}"), column(f"upper_{level}"), actual, 1.0 - level / 100.0)
        sums[f"w{level}_n"] = np.isfinite(score).astype(float)
        sums[f"w{level}"] = np.nan_to_num(score)
        for kind in BAND_KINDS:
            lower, upper = column(f"{kind}_lower_{level}"), column(f"{kind}_upper_{level}")
            known = np.isfinite(lower) & np.isfinite(upper)
            sums[f"{kind}_in_n{level}"] = known.astype(float)
            sums[f"{kind}_in{level}"] = (known & (lower <= actual) & (actual <= upper)).astype(float)
            score = _winkler(lower, upper, actual, 1.0 - level / 100.0)
            sums[f"{kind}_w_n{level}"] = np.isfinite(score).astype(float)
            sums[f"{kind}_w{level}"] = np.nan_to_num(score)
    for name in names:
        frame[name] = sums[name]
    return frame


def _batch_sums(counted: pd.DataFrame, target_position: np.ndarray) -> dict[str, np.ndarray]:
    """Per (symbol, bucket) and every batch of ``SKILL_BLOCK`` consecutive target windows (named by its last window):
    the sums ``_skill_p_value`` needs of the batch's loss differential ``B`` (summed ``|model| - |naive|`` error)
    and of its count ``c``: ``B**2``, ``B * c``, ``c**2`` and ``c``. Batches with no validation are left out.
    A few groups (symbols x 4 buckets), each a dense array over its target windows: no loop per validation."""
    differential = (counted["abs_err"] - counted["naive_abs_err"]).to_numpy(dtype=np.float64)
    symbol = counted["symbol"].to_numpy(dtype=object)
    bucket = counted["horizon_bucket"].to_numpy(dtype=object)
    codes = _tuple_codes([symbol, bucket]) if len(counted) else np.zeros(0, dtype=np.int64)
    parts: dict[str, list[np.ndarray]] = {"symbol": [], "horizon_bucket": [], "position": [], "sums": []}
    for code in range(int(codes.max()) + 1 if len(codes) else 0):
        rows = np.flatnonzero(codes == code)
        length = SKILL_BLOCK[str(bucket[rows[0]])]
        first = int(target_position[rows].min())
        offset = target_position[rows] - first + length - 1  # room for the batches that start before the first
        size = int(offset.max()) + 1
        total = np.concatenate([[0.0], np.cumsum(np.bincount(offset, weights=differential[rows], minlength=size))])
        count = np.concatenate([[0.0], np.cumsum(np.bincount(offset, minlength=size).astype(np.float64))])
        ends = np.arange(length - 1, size)
        batch_total = total[ends + 1] - total[ends + 1 - length]
        batch_count = count[ends + 1] - count[ends + 1 - length]
        kept = batch_count > 0
        batch_total, batch_count = batch_total[kept], batch_count[kept]
        parts["symbol"].append(np.full(int(kept.sum()), symbol[rows[0]], dtype=object))
        parts["horizon_bucket"].append(np.full(int(kept.sum()), bucket[rows[0]], dtype=object))
        parts["position"].append(ends[kept] + first - (length - 1))
        parts["sums"].append(np.column_stack([batch_total**2, batch_total * batch_count, batch_count**2, batch_count]))
    if not parts["sums"]:
        return {"symbol": np.zeros(0, dtype=object), "horizon_bucket": np.zeros(0, dtype=object),
                "position": np.zeros(0, dtype=np.int64), "sums": np.zeros((0, 4))}
    return {name: np.concatenate(values) for name, values in parts.items()}


def _skill_p_value(n: np.ndarray, differential: np.ndarray, batched: np.ndarray, block: np.ndarray) -> np.ndarray:
    """The one-sided Diebold-Mariano p-value of each span (see the module docstring): ``differential`` is the span's
    summed loss differential over its ``n`` validations, ``batched`` the span's ``_batch_sums`` (B**2, B*c, c**2, c)
    and ``block`` the batch length. The overlapping-batch-means variance of the mean differential is
    ``sum((B - c * mean)**2) / sum(c) / (n - block)`` (for complete data, Meketon and Schmeiser's estimate)."""
    from scipy.special import stdtr  # scipy's import is kept off the code Dagster loads

    with np.errstate(invalid="ignore", divide="ignore"):
        mean = differential / n
        squares = batched[:, 0] - 2.0 * mean * batched[:, 1] + mean**2 * batched[:, 2]
        variance_of_mean = squares / batched[:, 3] / (n - block)
        freedom = n / block - 1.0
        usable = (freedom >= 1.0) & (batched[:, 3] > 0)
        # Differences of running sums leave rounding noise where the differential never varies: below this share of
        # the batches' own squares it is zero variance.
        constant = usable & (squares <= 1e-10 * np.maximum(batched[:, 0], np.finfo(np.float64).tiny))
        statistic = mean / np.sqrt(np.where(constant | ~usable, 1.0, variance_of_mean))
        p_value = np.where(usable & ~constant, stdtr(np.where(usable, freedom, 1.0), statistic), np.nan)
        p_value = np.where(constant & (mean < 0), 0.0, np.where(constant & (mean > 0), 1.0, p_value))
    return p_value


def _winkler(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, alpha: float) -> np.ndarray:
    """Interval score: the width plus ``2 / alpha`` times the miss distance (NaN without an interval)."""
    below = np.clip(lower - actual, 0.0, None)
    above = np.clip(actual - upper, 0.0, None)
    return (upper - lower) + 2.0 / alpha * (below + above)


def _trades(trade_outcomes: pd.DataFrame | None) -> pd.DataFrame:
    empty = pd.DataFrame(
        {"symbol": pd.Series(dtype=object), "scored_window": pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]")}
        | {name: pd.Series(dtype=float) for name in _TRADE_SUMS}
    )
    if trade_outcomes is None or trade_outcomes.empty:
        return empty
    frame = trade_outcomes[trade_outcomes["action"].astype(str) != NO_TRADE].reset_index(drop=True)
    if frame.empty:
        return empty
    hit = frame["hit"].astype("boolean").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    realized = frame["realized_return_pct"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return pd.DataFrame(
        {
            "symbol": frame["symbol"].to_numpy(dtype=object),
            "scored_window": _new_york(frame["scored_window"]),
            "trades": np.isfinite(hit).astype(float),
            "hits": np.nan_to_num(hit),
            "returns_n": np.isfinite(realized).astype(float),
            "returns": np.nan_to_num(realized),
        }
    )


def _calendar(first: pd.Timestamp, last: pd.Timestamp) -> np.ndarray:
    """Session window starts (UTC nanoseconds) from ``first`` to ``last`` (New York stamps)."""
    windows = session_windows(first, last + WINDOW)
    return windows.asi8


def _positions(calendar: np.ndarray, stamps: pd.Series) -> np.ndarray:
    """Ordinal of each stamp's session window (the last session window starting at or before it)."""
    if not len(stamps):
        return np.zeros(0, dtype=np.int64)
    nanos = pd.DatetimeIndex(_new_york(stamps)).asi8
    return np.searchsorted(calendar, nanos, side="right").astype(np.int64) - 1


def _group_codes(group: list[np.ndarray], query_group: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(each row's group code, each query's) for ``_range_sums``: the distinct tuples of the parallel key arrays,
    rows and queries numbered together."""
    n_rows = len(group[0])
    codes = _tuple_codes([np.concatenate([g, q]) for g, q in zip(group, query_group, strict=True)])
    return codes[:n_rows].astype(np.int64), codes[n_rows:].astype(np.int64)


def _range_sums(
    groups: tuple[np.ndarray, np.ndarray],
    position: np.ndarray,
    values: np.ndarray,
    query_lo: np.ndarray,
    query_hi: np.ndarray,
) -> np.ndarray:
    """For each query, the sum of ``values`` over the rows of its group with ``lo < position <= hi`` (``groups``:
    ``_group_codes`` of the rows and the queries).

    Rows and queries are laid on one line (group code x stride + position), cumulated once, and each query is two
    binary searches: O((rows + queries) log rows), whatever the number of groups or windows.
    """
    row_code, query_code = groups
    n_rows, n_queries = len(position), len(query_lo)
    if n_rows == 0:
        return np.zeros((n_queries, values.shape[1] if values.ndim == 2 else 0))
    stride = int(max(position.max(), query_hi.max() if n_queries else 0)) + 2
    line = row_code * stride + position
    order = np.argsort(line, kind="stable")
    line = line[order]
    cumulative = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values[order], axis=0)])

    def at(bound: np.ndarray) -> np.ndarray:
        clipped = np.clip(bound, -1, stride - 2)
        return cumulative[np.searchsorted(line, query_code * stride + clipped, side="right")]

    return at(query_hi) - at(query_lo)


def _tuple_codes(keys: list[np.ndarray]) -> np.ndarray:
    """One code per distinct tuple of ``keys`` (parallel arrays), numbered in order of first appearance as
    ``pd.MultiIndex.from_arrays(keys).factorize()`` numbers them (the order fixes how ``_range_sums`` lays groups
    on its line, and so the rounding of its sums), without building a tuple per row; each key hashes one value per
    run of equal neighbours (``factorize_runs``: symbols come in long runs)."""
    if len(keys) == 1:
        return factorize_runs(keys[0])[0]
    combined = np.zeros(len(keys[0]), dtype=np.int64)
    for key in keys:
        codes, uniques = factorize_runs(key)
        combined = combined * (len(uniques) + 1) + codes + 1  # a null (-1) is a value of its own
    return pd.factorize(combined)[0]


def _ratio(numerator: np.ndarray, denominator: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is not above ``floor``."""
    usable = denominator > floor
    return np.where(usable, numerator / np.where(usable, denominator, 1.0), np.nan)


def _empty_rows() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=float) for name in ROW_COLUMNS})
    frame["symbol"] = frame["symbol"].astype(object)
    frame["span"] = frame["span"].astype(object)
    frame["horizon_bucket"] = frame["horizon_bucket"].astype(object)
    frame["window_start"] = pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]")
    frame["n"] = frame["n"].astype(np.int64)
    return frame


def _empty_skipped() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series(dtype=object),
            "window_start": pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]"),
            "reason": pd.Series(dtype=object),
        }
    )
