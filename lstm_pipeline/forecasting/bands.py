"""Honest prediction intervals: walk-forward baseline bands, the Winkler score, and the model's intervals adapted.

Market volatility drifts, so an interval calibrated once (``intervals.py``: split conformal on the validation
span) covers far less than nominal a few months later. The bands here are recalibrated at every as-of window
(origin) from information available at its close only:

- ``sigma``: an exponentially weighted volatility of 15-minute log returns up to and including the origin's own
  return (half-life ``halflife_windows`` bars). A return across missing windows (thin trading, a data hole) is
  divided by the variance units it spans, so it counts as one observation of the per-window volatility.
- **variance units** of the future: ``h`` for the ``naive`` band (a random walk); for the ``tod`` band the sum over
  the target windows of a trailing **time-of-day profile**, the relative variance of each session slot (the open,
  which carries the overnight gap, and the close move far more than midday). The profile is an exponentially
  weighted mean of single-window ``|return|`` per slot across sessions (half-life ``profile_halflife_sessions``),
  squared and normalized to mean 1 over the slots, computed through the session before the origin's. Returns are
  divided by it before ``sigma`` is estimated. A session's slot is its position from the open
  (``SLOTS_PER_SESSION`` = 26), except that the last window of an early close counts as the closing slot (its
  close auction), so a half day neither corrupts the midday slots nor misses the close.
- ``q``: per horizon step, the empirical quantile of past **standardized errors** ``log(actual / forecast) /
  (sigma * sqrt(variance units))`` realized at or before the origin's close (the target window is the origin or
  earlier), over every earlier origin with a bar, not only the requested ones, so an origin's band does not depend
  on which other origins were asked for. The band is ``forecast * exp(+-q * sigma * sqrt(units))``.

Warm-up: a band is NaN while its inputs lack history: fewer than ``MIN_RETURNS`` returns for ``sigma``, fewer than
``MIN_PROFILE_SESSIONS`` sessions per slot for the profile (``tod``), or fewer than ``min_errors`` realized errors at
that horizon step (the first 1-week errors are realized a week after the first origin). An origin without its own
bar has no last close and gets NaN bounds. ``adapt_intervals`` instead keeps the model's own bounds during warm-up
unless ``warmup="nan"``.

Everything is numpy over [windows, steps] arrays (quantiles with pandas' expanding windows): two years of one
symbol at a 130-step horizon take about a second. No Dagster import, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK, SLOTS_PER_SESSION, session_windows

BandKind = Literal["naive", "tod"]
BAND_KINDS: tuple[str, ...] = ("naive", "tod")
DEFAULT_COVERAGES: tuple[float, ...] = (0.8, 0.95)
DEFAULT_HALFLIFE_WINDOWS = 130.0
"""Half-life of the volatility estimate in bars (a week): on two years of real 1-minute ETF bars, 26 to 390 gave
the same 1-step score and coverage, and the longer ones a 3-8% better 1-week score (``benchmarks/bench_bands.py``)."""
DEFAULT_PROFILE_HALFLIFE_SESSIONS = 40.0
"""Half-life of the time-of-day profile in sessions: each slot sees one return a day, so it needs a long memory."""
MIN_RETURNS = 26
"""Returns needed before ``sigma`` is defined (one session)."""
MIN_PROFILE_SESSIONS = 5
"""Sessions with a return in a slot before the profile defines that slot."""
DEFAULT_MIN_ERRORS = 50
"""Realized standardized errors needed at a horizon step before its quantile is used."""


def bound_columns(coverage: float) -> tuple[str, str]:
    """The (lower, upper) column names of a coverage level: ``lower_80``/``upper_80`` for 0.8."""
    if not 0 < coverage < 1:
        raise ValueError(f"A coverage level must lie strictly between 0 and 1, got {coverage!r}.")
    percent = f"{coverage * 100:g}"
    return f"lower_{percent}", f"upper_{percent}"


def band_columns(coverages: Sequence[float] = DEFAULT_COVERAGES) -> list[str]:
    """Columns of ``baseline_bands``' frame."""
    bounds = [name for level in coverages for name in bound_columns(level)]
    return ["as_of_window", "horizon_step", "target_window", "last_close", *bounds]


def winkler_score(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, alpha: float) -> np.ndarray:
    """Interval (Winkler) score of each interval, in price units: its width plus ``2 / alpha`` times the distance
    by which the actual falls outside it (``alpha`` = 1 - coverage, 0.2 for an 80% interval). Lower is better; a
    calibrated interval that is narrower scores lower. NaN where any input is NaN."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha is 1 - coverage and must lie strictly between 0 and 1, got {alpha!r}.")
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64)
    below = np.where(y < lo, lo - y, 0.0)
    above = np.where(y > hi, y - hi, 0.0)
    return (hi - lo) + (2.0 / alpha) * (below + above)


@dataclass(frozen=True)
class _Grid:
    """Every session window from the first bar or origin to ``horizon_steps`` past the last, with its close."""

    windows: pd.DatetimeIndex
    close: np.ndarray  # NaN where the window has no bar
    session: np.ndarray  # session index per window
    slot: np.ndarray  # session slot per window (0..SLOTS_PER_SESSION-1)
    sessions: int


def _as_new_york(stamps: pd.DatetimeIndex | pd.Series | Sequence) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(stamps)
    if index.tz is None:
        return index.tz_localize(NEW_YORK)
    return index.tz_convert(NEW_YORK)


def _grid(bars: pd.DataFrame, extra: pd.DatetimeIndex, horizon_steps: int) -> _Grid:
    stamps = _as_new_york(bars["window_start"]) if len(bars) else pd.DatetimeIndex([], tz=NEW_YORK)
    known = stamps.append(extra) if len(extra) else stamps
    if len(known) == 0:
        raise ValueError("There are neither bars nor origins to build bands from; pass a symbol's bars.")
    first, last = known.min(), known.max()
    days = 7 * (horizon_steps // (3 * SLOTS_PER_SESSION) + 1) + 7
    windows = session_windows(first, last + pd.Timedelta(days=days))
    end = int(windows.searchsorted(last, side="right")) + horizon_steps
    windows = windows[:end]
    close = np.full(len(windows), np.nan)
    if len(bars):
        values = pd.to_numeric(bars["close"], errors="coerce").to_numpy(dtype=np.float64)
        position = windows.get_indexer(stamps)
        usable = (position >= 0) & np.isfinite(values) & (values > 0)
        close[position[usable]] = values[usable]
    day = windows.tz_localize(None).normalize()
    session, first_of = pd.factorize(day)
    starts = np.searchsorted(session, np.arange(len(first_of)))
    counts = np.diff(np.append(starts, len(session)))
    slot = np.arange(len(windows)) - starts[session]
    # The last window of a short session (an early close) is its closing auction: count it as the closing slot.
    last_of_short = (counts[session] < SLOTS_PER_SESSION) & (slot == counts[session] - 1)
    slot = np.where(last_of_short, SLOTS_PER_SESSION - 1, np.minimum(slot, SLOTS_PER_SESSION - 1))
    return _Grid(windows, close, session.astype(np.int64), slot.astype(np.int64), len(first_of))


@dataclass(frozen=True)
class _Scale:
    """Per origin position: ``sigma`` and the variance units of each step ahead, known at the origin's close."""

    sigma: np.ndarray  # [windows]
    units: np.ndarray  # [windows - horizon, horizon]


def _profile(grid: _Grid, kind: str, profile_halflife_sessions: float) -> np.ndarray:
    """[sessions, slots] relative variance per slot, known at the start of each session (through the one before)."""
    if kind == "naive":
        return np.ones((grid.sessions, SLOTS_PER_SESSION))
    log_close = np.log(grid.close)
    single = np.abs(np.diff(log_close))  # NaN unless both windows have a bar
    table = np.full((grid.sessions, SLOTS_PER_SESSION), np.nan)
    finite = np.isfinite(single)
    table[grid.session[1:][finite], grid.slot[1:][finite]] = single[finite]
    mean_abs = (
        pd.DataFrame(table)
        .ewm(halflife=profile_halflife_sessions, min_periods=MIN_PROFILE_SESSIONS)
        .mean()
        .to_numpy()
    )
    variance = mean_abs**2
    finite = np.isfinite(variance)
    counted = finite.sum(axis=1, keepdims=True)
    level = np.where(finite, variance, 0.0).sum(axis=1, keepdims=True) / np.maximum(counted, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(finite & (counted > 0), variance / level, np.nan)
    relative[~(relative > 0)] = np.nan
    return np.vstack([np.full((1, SLOTS_PER_SESSION), np.nan), relative[:-1]])


def _scale(grid: _Grid, kind: str, horizon_steps: int, halflife_windows: float, profile_halflife_sessions: float
           ) -> _Scale:
    if kind not in BAND_KINDS:
        raise ValueError(f"Band kind {kind!r} is unknown; use one of {list(BAND_KINDS)}.")
    profile = _profile(grid, kind, profile_halflife_sessions)
    units_at = profile[grid.session, grid.slot]  # each window's variance units, known when its session opened
    # Returns between consecutive bars, each divided by the variance units of the windows it spans.
    present = np.flatnonzero(np.isfinite(grid.close))
    sigma = np.full(len(grid.windows), np.nan)
    if len(present) > 1:
        known_units = np.isfinite(units_at)
        cum_units = np.concatenate([[0.0], np.cumsum(np.where(known_units, units_at, 0.0))])
        cum_unknown = np.concatenate([[0], np.cumsum(~known_units)])
        before, after = present[:-1], present[1:]
        spanned = cum_units[after + 1] - cum_units[before + 1]
        complete = (cum_unknown[after + 1] - cum_unknown[before + 1]) == 0
        returns = np.log(grid.close[after] / grid.close[before])
        with np.errstate(invalid="ignore", divide="ignore"):
            squared = np.where(complete & (spanned > 0), returns**2 / spanned, np.nan)
        variance = pd.Series(squared).ewm(halflife=halflife_windows, min_periods=MIN_RETURNS).mean().to_numpy()
        sigma[after] = np.sqrt(variance)
        sigma = pd.Series(sigma).ffill().to_numpy()
    origins = len(grid.windows) - horizon_steps
    ahead = np.arange(origins)[:, None] + np.arange(1, horizon_steps + 1)[None, :]
    if kind == "naive":
        units = np.broadcast_to(np.arange(1, horizon_steps + 1, dtype=np.float64), (origins, horizon_steps))
    else:
        # The origin's profile (through the session before it) applied to the slots of the windows ahead.
        units = np.cumsum(profile[grid.session[:origins, None], grid.slot[ahead]], axis=1)
    return _Scale(sigma=sigma, units=units)


def _walk_forward_quantiles(errors: np.ndarray, levels: Sequence[float], min_errors: int) -> list[np.ndarray]:
    """For each level, q[p, j] = quantile of errors[:p - j + 1, j] (those realized by position p), NaN if too few.

    ``errors[p, j]`` is the error of origin p at step j+1, realized at position p + j + 1; for a fixed step the
    realization order is the origin order, so the realized set at p is a prefix and one expanding quantile per
    step serves every origin.
    """
    frame = pd.DataFrame(errors)
    steps = errors.shape[1]
    out = []
    for level in levels:
        expanding = frame.expanding(min_periods=min_errors).quantile(level).to_numpy()
        shifted = np.full_like(expanding, np.nan)
        for j in range(steps):  # shift column j down by j + 1 rows (a loop over steps, not origins)
            shifted[j + 1:, j] = expanding[: len(expanding) - j - 1, j]
        out.append(shifted)
    return out


def baseline_bands(
    bars: pd.DataFrame,
    origins: pd.DatetimeIndex | Sequence,
    horizon_steps: int,
    kind: BandKind = "naive",
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    halflife_windows: float = DEFAULT_HALFLIFE_WINDOWS,
    profile_halflife_sessions: float = DEFAULT_PROFILE_HALFLIFE_SESSIONS,
    min_errors: int = DEFAULT_MIN_ERRORS,
) -> pd.DataFrame:
    """Walk-forward ``naive`` or ``tod`` band around the last close for each origin and step 1..``horizon_steps``.

    ``bars`` are one symbol's bars (bar schema; ``window_start`` and ``close`` are read); ``origins`` are session
    windows (naive stamps are New York). One row per origin and step, columns ``band_columns(coverages)``; see the
    module docstring for the method and for when bounds are NaN.
    """
    if int(horizon_steps) < 1:
        raise ValueError(f"horizon_steps must be at least 1, got {horizon_steps!r}.")
    horizon = int(horizon_steps)
    wanted = _as_new_york(origins)
    grid = _grid(bars, wanted, horizon)
    position = grid.windows.get_indexer(wanted)
    if (position < 0).any():
        bad = wanted[position < 0][0]
        raise ValueError(f"Origin {bad} is not the start of a session window; pass session windows as origins.")
    scale = _scale(grid, kind, horizon, halflife_windows, profile_halflife_sessions)
    origins_all = len(grid.windows) - horizon
    ahead = np.arange(origins_all)[:, None] + np.arange(1, horizon + 1)[None, :]
    width = scale.sigma[:origins_all, None] * np.sqrt(scale.units)
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = np.abs(np.log(grid.close[ahead] / grid.close[:origins_all, None]) / width)
    quantiles = _walk_forward_quantiles(errors, coverages, min_errors)

    last_close = grid.close[position]
    steps = np.arange(1, horizon + 1)
    frame = {
        "as_of_window": np.repeat(grid.windows[position], horizon),
        "horizon_step": np.tile(steps, len(position)),
        "target_window": grid.windows[(position[:, None] + steps[None, :]).ravel()],
        "last_close": np.repeat(last_close, horizon),
    }
    for level, q in zip(coverages, quantiles, strict=True):
        lower, upper = bound_columns(level)
        half = (q[position] * width[position]).ravel()
        frame[lower] = frame["last_close"] * np.exp(-half)
        frame[upper] = frame["last_close"] * np.exp(half)
    out = pd.DataFrame(frame)
    out["as_of_window"] = pd.DatetimeIndex(out["as_of_window"]).tz_convert(NEW_YORK)
    out["target_window"] = pd.DatetimeIndex(out["target_window"]).tz_convert(NEW_YORK)
    return out[band_columns(coverages)]


def adapt_intervals(
    predictions: pd.DataFrame,
    bars: pd.DataFrame,
    kind: BandKind = "tod",
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    symmetric: bool = True,
    warmup: Literal["keep", "nan"] = "keep",
    halflife_windows: float = DEFAULT_HALFLIFE_WINDOWS,
    profile_halflife_sessions: float = DEFAULT_PROFILE_HALFLIFE_SESSIONS,
    min_errors: int = DEFAULT_MIN_ERRORS,
) -> pd.DataFrame:
    """The same prediction rows with ``lower_*``/``upper_*`` recalibrated walk-forward around ``predicted_close``.

    For each row the half-widths are the quantiles of the model's **own** standardized errors
    ``log(actual / predicted_close) / (sigma * sqrt(units))`` at the same horizon step, over the predictions whose
    target closed at or before the row's as-of window (walk-forward), scaled by the current ``sigma`` and the
    variance units of ``kind`` (see the module docstring): by default the ``c`` quantile of ``|error|`` on both
    sides; ``symmetric=False`` uses the ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles of the signed errors (an
    asymmetric band for a biased model; on real bars it chased past drifts and covered less at 1 day and 1 week).
    Around the "last close" forecast with ``kind`` and the defaults it equals ``baseline_bands`` of that kind.
    ``bars`` holds the bars of every symbol in ``predictions`` (``symbol``, ``window_start``, ``close``); the
    horizon step is counted in session windows from the as-of window to the target. Rows without enough history
    keep the model's bounds (``warmup="keep"``) or get NaN (``"nan"``). Duplicate (symbol, as-of window, step)
    rows calibrate once (the last).
    """
    required = ("symbol", "as_of_window", "target_window", "predicted_close")
    missing = [name for name in required if name not in predictions.columns]
    if missing:
        raise ValueError(f"Predictions lack the column(s) {missing}; pass rows of the predictions table.")
    if warmup not in ("keep", "nan"):
        raise ValueError(f"warmup must be 'keep' or 'nan', got {warmup!r}.")
    out = predictions.copy()
    for level in coverages:
        for name in bound_columns(level):
            if name not in out.columns:
                out[name] = np.nan
            out[name] = out[name].astype(np.float64)
    if out.empty:
        return out
    symbols = out["symbol"].astype(str)
    bar_symbols = bars["symbol"].astype(str) if len(bars) else pd.Series([], dtype=str)
    for symbol in sorted(symbols.unique()):
        rows = np.flatnonzero((symbols == symbol).to_numpy())
        adapted = _adapt_symbol(
            out.iloc[rows], bars[(bar_symbols == symbol).to_numpy()] if len(bars) else bars, kind, coverages,
            symmetric, halflife_windows, profile_halflife_sessions, min_errors,
        )
        for name, values in adapted.items():
            column = out.columns.get_loc(name)
            current = out.iloc[rows, column].to_numpy(dtype=np.float64)
            keep = ~np.isfinite(values) & (warmup == "keep")
            out.iloc[rows, column] = np.where(keep, current, values)
    return out


def _adapt_symbol(
    rows: pd.DataFrame,
    bars: pd.DataFrame,
    kind: str,
    coverages: Sequence[float],
    symmetric: bool,
    halflife_windows: float,
    profile_halflife_sessions: float,
    min_errors: int,
) -> dict[str, np.ndarray]:
    as_of = _as_new_york(rows["as_of_window"])
    target = _as_new_york(rows["target_window"])
    probe = _grid(bars, as_of.append(target), 1)
    origin_pos = probe.windows.get_indexer(as_of)
    target_pos = probe.windows.get_indexer(target)
    if (origin_pos < 0).any() or (target_pos < 0).any():
        raise ValueError(
            f"A prediction of {rows['symbol'].iloc[0]} names a window that is not a session window; "
            "as-of and target windows must be session window starts."
        )
    step = target_pos - origin_pos
    if (step < 1).any():
        raise ValueError(f"A prediction of {rows['symbol'].iloc[0]} targets a window at or before its as-of window.")
    horizon = int(step.max())
    grid = _grid(bars, as_of.append(target), horizon)
    origin_pos = grid.windows.get_indexer(as_of)
    scale = _scale(grid, kind, horizon, halflife_windows, profile_halflife_sessions)
    width_rows = scale.sigma[origin_pos] * np.sqrt(scale.units[origin_pos, step - 1])

    predicted = pd.to_numeric(rows["predicted_close"], errors="coerce").to_numpy(dtype=np.float64)
    actual = grid.close[origin_pos + step]
    with np.errstate(invalid="ignore", divide="ignore"):
        error_rows = np.log(actual / predicted) / width_rows
    errors = np.full((len(grid.windows) - horizon, horizon), np.nan)
    errors[origin_pos, step - 1] = error_rows  # duplicates: the last row wins
    levels: list[float] = []
    for level in coverages:
        levels.extend([level] if symmetric else [(1 - level) / 2, (1 + level) / 2])
    quantiles = _walk_forward_quantiles(np.abs(errors) if symmetric else errors, levels, min_errors)
    adapted: dict[str, np.ndarray] = {}
    for index, level in enumerate(coverages):
        lower, upper = bound_columns(level)
        if symmetric:
            q = quantiles[index][origin_pos, step - 1]
            q_low, q_high = -q, q
        else:
            q_low = quantiles[2 * index][origin_pos, step - 1]
            q_high = quantiles[2 * index + 1][origin_pos, step - 1]
        adapted[lower] = predicted * np.exp(q_low * width_rows)
        adapted[upper] = predicted * np.exp(q_high * width_rows)
    return adapted


def walk_forward_origins(bars: pd.DataFrame) -> pd.DatetimeIndex:
    """Every window with a usable bar: the origins of a walk-forward evaluation over ``bars``."""
    close = pd.to_numeric(bars["close"], errors="coerce")
    usable = np.isfinite(close.to_numpy(dtype=np.float64)) & (close.to_numpy(dtype=np.float64) > 0)
    return _as_new_york(bars["window_start"][usable]).unique().sort_values()

