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

Quantiles: the realized standardized errors of each step enter a log-spaced histogram (``QUANTILE_BINS`` bins,
interpolated inside a bin) refreshed every ``CHECKPOINT_WINDOWS`` windows; an origin reads the last refresh at or
before it. One numpy pass over a [refreshes, steps, bins] array of running counts, no expanding quantile per origin.

**Adapted intervals** (``adapt_intervals``, what the ``predictions`` asset publishes and the backtest scores): the
time-of-day band's machinery applied to the model's own errors, with three additions, all walk-forward:

- *centre*: the forecast's log move from the last close times ``lambda``: the least-squares slope of the realized
  moves on the forecast moves at that step, over the forecasts already realized, less ``SKILL_STANDARD_ERRORS``
  standard errors (overlapping targets counted as n / step independent ones), clipped to [0, 1]; 0 until
  ``min_errors`` are realized. A forecast without established skill is centred on the last close (on real bars the
  unshrunk LSTM forecast made the 1-week interval score about 10% worse than the time-of-day band's); one with
  skill keeps its move;
- *width*: ``sigma`` blends toward a slow volatility (half-life ``DEFAULT_LONG_HALFLIFE_WINDOWS``) as the step grows
  (``_Scale.widths``): volatility reverts, so a week ahead is judged mostly by the slow level. The base quantile
  reads the model's standardized errors where it forecast and, before its first forecasts (the training span, or
  bars older than the stored forecasts), the last close's, so the band is defined from the first origin;
- *adaptive conformal* (ACI) multiplier per step and level: ``exp(theta)``, theta moved by ``gamma * (miss -
  alpha)`` at every realized target of the model's own band (``_adaptive_multipliers``), with ``gamma =
  DEFAULT_ACI_GAMMA * sqrt(min(step / 130, 1))``. Over n realized targets the miss rate is ``alpha + (theta_end -
  theta_start) / (gamma n)``: bounded theta means nominal coverage in the long run, whatever the drift. Long steps,
  whose overlapping errors let the expanding quantile lag (real 1-week bands covered 74-76% of 80% without it),
  get the full step; 1-step errors are many and independent and need almost none.

Speed (``benchmarks/bench_bands.py``): the three bands of a symbol over two years (11,000 origins x 130 steps) in
about 1-2 s on a loaded 2-core machine. Everything is numpy over arrays: those over (step, origin) are step-major
(a row per step, ``_ahead``), so that running sums over origins and a step's shift to the window where its target
is realized (``_by_realization``) are contiguous rows and strided views; no pandas copy of the prediction frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK, SLOTS_PER_SESSION, WINDOW, session_windows

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
DEFAULT_LONG_HALFLIFE_WINDOWS = 1300.0
"""Half-life of the slow volatility the adapted intervals blend toward at far steps (ten weeks of bars)."""
DEFAULT_REVERSION_HALFLIFE_WINDOWS = 26.0
"""How fast the fast volatility's deviation from the slow one is assumed to fade (a session): step 1 reads the
fast ``sigma`` alone, step 26 weighs it 72%, a week ahead 28%."""
SKILL_STANDARD_ERRORS = 2.0
"""The centre keeps ``max(0, slope - 2 standard errors)`` of the forecast move (at most all of it): a skill not yet
established at about two standard errors moves the band nothing."""
ACI_FULL_STEP = 130
DEFAULT_ACI_GAMMA = 0.002
"""Adaptive conformal step: each realized miss widens that step's band by 0.2% x (1 - alpha), each cover narrows it
by 0.2% x alpha. Small on purpose: on two years of real bars a faster one (0.01-0.05) fixed coverage as well but
made the 1-day and 1-week interval scores 2-8% worse (it chases last week's surprise)."""


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


def _new_york_ns(stamps: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch of each stamp (a naive one read as New York): integers compare and index faster
    than timestamps, and a tz-aware column needs no conversion at all."""
    return _as_new_york(stamps).as_unit("ns").asi8


def _bar_stamps(bars: pd.DataFrame) -> pd.DatetimeIndex:
    """The bars' window starts in New York."""
    return _as_new_york(bars["window_start"]) if len(bars) else pd.DatetimeIndex([], tz=NEW_YORK)


def _grid(
    bars: pd.DataFrame,
    stamps: pd.DatetimeIndex,
    first: pd.Timestamp,
    last: pd.Timestamp,
    horizon_steps: int,
    calendar: pd.DatetimeIndex | None = None,
) -> _Grid:
    """The grid from ``first`` to ``horizon_steps`` windows past ``last`` (both New York timestamps spanning the
    bars and the windows the caller reads); ``stamps`` are the bars' window starts. ``calendar``: session windows
    from ``first`` on, already listed (the grid is its first windows when it reaches far enough)."""
    days = 7 * (horizon_steps // (3 * SLOTS_PER_SESSION) + 1) + 7
    end = None
    if calendar is not None:
        end = int(calendar.searchsorted(last, side="right")) + horizon_steps
    if calendar is None or end > len(calendar):
        calendar = session_windows(first, last + pd.Timedelta(days=days))
        end = int(calendar.searchsorted(last, side="right")) + horizon_steps
    windows = calendar[:end]
    close = np.full(len(windows), np.nan)
    if len(bars):
        values = pd.to_numeric(bars["close"], errors="coerce").to_numpy(dtype=np.float64)
        position = windows.get_indexer(stamps)
        usable = (position >= 0) & np.isfinite(values) & (values > 0)
        close[position[usable]] = values[usable]
    # A session's windows are one window apart and sessions are a night apart: a wider gap starts a session.
    opens = np.diff(windows.asi8) != WINDOW.value
    session = np.concatenate([[0], np.cumsum(opens)]) if len(windows) else np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], opens])) if len(windows) else np.zeros(0, dtype=np.int64)
    counts = np.diff(np.append(starts, len(session)))
    slot = np.arange(len(windows)) - starts[session]
    # The last window of a short session (an early close) is its closing auction: count it as the closing slot.
    last_of_short = (counts[session] < SLOTS_PER_SESSION) & (slot == counts[session] - 1)
    slot = np.where(last_of_short, SLOTS_PER_SESSION - 1, np.minimum(slot, SLOTS_PER_SESSION - 1))
    return _Grid(windows, close, session.astype(np.int64), slot.astype(np.int64), len(starts))


_WIDTH_CHUNK = 16
"""Steps whose blended variance is summed together (``_Scale.widths``)."""


@dataclass(frozen=True)
class _Scale:
    """Per origin position: ``sigma`` and the variance units of each step ahead, known at the origin's close."""

    sigma: np.ndarray  # [windows]
    units: np.ndarray  # [horizon, windows - horizon]: one row per step ahead (step-major, see ``_ahead``)
    sigma_long: np.ndarray | None = None  # [windows], the slow volatility (adapted intervals only)

    def widths(self, reversion_halflife_windows: float | None = None, overwrite_units: bool = False) -> np.ndarray:
        """[steps, origins] ``sigma * sqrt(units)``; with a slow ``sigma_long``, the variance per unit blends from
        ``sigma`` (the next step) toward ``sigma_long`` (far steps): ``w_h sigma^2 + (1 - w_h) sigma_long^2`` with
        ``w_h`` the mean over the h steps of a decay of half-life ``reversion_halflife_windows`` (volatility
        reverts to its slow level, so a week ahead is judged mostly by the slow one). ``overwrite_units``: the
        caller reads ``units`` no more, so the widths are written over them (when writable) instead of into a
        fresh [steps, origins] array."""
        steps, origins = self.units.shape
        fast = self.sigma[None, :origins] ** 2
        if self.sigma_long is None or not reversion_halflife_windows:
            return np.sqrt(fast * self.units)
        rate = np.log(2.0) / float(reversion_halflife_windows)
        h = np.arange(1, steps + 1, dtype=np.float64)[:, None]
        weight = (1.0 - np.exp(-rate * h)) / (rate * h)
        slow = self.sigma_long[None, :origins] ** 2
        if overwrite_units and self.units.flags.writeable:
            for rows in range(0, steps, _WIDTH_CHUNK):  # a few steps at a time: the temporaries stay in the cache
                part = slice(rows, rows + _WIDTH_CHUNK)
                blended = weight[part] * fast
                blended += (1.0 - weight[part]) * slow
                self.units[part] *= blended
            return np.sqrt(self.units, out=self.units)
        blended = weight * fast
        for rows in range(0, steps, _WIDTH_CHUNK):  # a few steps at a time: the temporary stays in the cache
            part = slice(rows, rows + _WIDTH_CHUNK)
            blended[part] += (1.0 - weight[part]) * slow
        blended *= self.units
        return np.sqrt(blended, out=blended)


def _ahead(values: np.ndarray, steps: int) -> np.ndarray:
    """[steps, len(values) - steps] read-only view: row j holds, for each origin position o, ``values[o + j + 1]``
    (the window j + 1 steps ahead). Arrays over (step, origin) are kept step-major: a row per step, contiguous
    over origins, so running sums over origins and the per-step shifts below are plain strided views."""
    return np.lib.stride_tricks.sliding_window_view(values[1:], len(values) - steps)[:steps]


def _by_realization(buffer: np.ndarray, steps: int | None = None, first_step: int = 0) -> np.ndarray:
    """Read-only view of a ``[..., rows, steps + origins]`` buffer whose rows hold ``steps`` filler entries and then
    one value per origin: entry ``[..., j, p]`` is the value of origin ``p - j - 1``, the one whose step-(j + 1)
    target is window p (the filler where there is none). A row per step shifted by its step, without a copy.
    ``steps`` defaults to the rows; row j may instead hold step ``first_step + j + 1`` (a chunk of the steps), with
    at least ``first_step + rows`` filler entries."""
    rows = buffer.shape[-2]
    steps = rows if steps is None else steps
    origins = buffer.shape[-1] - steps
    item = buffer.strides[-1]
    strides = (*buffer.strides[:-2], buffer.strides[-2] - item, item)
    return np.lib.stride_tricks.as_strided(
        buffer[..., steps - 1 - first_step :], shape=(*buffer.shape[:-1], origins), strides=strides, writeable=False
    )


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


def _scale(
    grid: _Grid,
    kind: str,
    horizon_steps: int,
    halflife_windows: float,
    profile_halflife_sessions: float,
    long_halflife_windows: float | None = None,
) -> _Scale:
    if kind not in BAND_KINDS:
        raise ValueError(f"Band kind {kind!r} is unknown; use one of {list(BAND_KINDS)}.")
    profile = _profile(grid, kind, profile_halflife_sessions)
    units_at = profile[grid.session, grid.slot]  # each window's variance units, known when its session opened
    # Returns between consecutive bars, each divided by the variance units of the windows it spans.
    present = np.flatnonzero(np.isfinite(grid.close))
    before, after = present[:-1], present[1:]
    if len(present) > 1:
        known_units = np.isfinite(units_at)
        cum_units = np.concatenate([[0.0], np.cumsum(np.where(known_units, units_at, 0.0))])
        cum_unknown = np.concatenate([[0], np.cumsum(~known_units)])
        spanned = cum_units[after + 1] - cum_units[before + 1]
        complete = (cum_unknown[after + 1] - cum_unknown[before + 1]) == 0
        returns = np.log(grid.close[after] / grid.close[before])
        with np.errstate(invalid="ignore", divide="ignore"):
            squared = np.where(complete & (spanned > 0), returns**2 / spanned, np.nan)
    sigmas = []
    for halflife in (halflife_windows, long_halflife_windows):
        if halflife is None:
            sigmas.append(None)
            continue
        sigma = np.full(len(grid.windows), np.nan)
        if len(present) > 1:
            variance = pd.Series(squared).ewm(halflife=halflife, min_periods=MIN_RETURNS).mean().to_numpy()
            sigma[after] = np.sqrt(variance)
            sigma = pd.Series(sigma).ffill().to_numpy()
        sigmas.append(sigma)
    origins = len(grid.windows) - horizon_steps
    if kind == "naive":
        steps = np.arange(1, horizon_steps + 1, dtype=np.float64)[:, None]
        units = np.broadcast_to(steps, (horizon_steps, origins))
    else:
        # The origin's profile (through the session before it) applied to the slots of the windows ahead, summed
        # step after step (one vector add per step), a step at a time: no [steps, origins] index array.
        flat = profile.ravel()
        slots_ahead = _ahead(grid.slot, horizon_steps)
        first_cell = grid.session[:origins] * SLOTS_PER_SESSION
        units = np.empty((horizon_steps, origins))
        cell = np.empty(origins, dtype=np.int64)
        for step in range(horizon_steps):
            flat.take(np.add(slots_ahead[step], first_cell, out=cell), out=units[step], mode="clip")  # in range
            if step:
                units[step] += units[step - 1]
    return _Scale(sigma=sigmas[0], units=units, sigma_long=sigmas[1])


QUANTILE_BINS = 96
"""Bins of the standardized-error histograms: log-spaced from ``QUANTILE_LOW`` to ``QUANTILE_HIGH`` (6.4% apart),
with linear interpolation inside a bin; an error outside that range counts in the first or last bin."""
QUANTILE_LOW, QUANTILE_HIGH = 0.05, 20.0
_QUANTILE_CHUNK = 16
"""Steps whose histograms are counted together (``_quantile_tables``)."""
CHECKPOINT_WINDOWS = 26
"""The quantiles are refreshed every 26 session windows (a session): an origin uses the errors realized by the
last refresh at or before it, never later ones."""


def _quantile_bins(errors: np.ndarray, edges_log: np.ndarray) -> np.ndarray:
    """The histogram bin (0..QUANTILE_BINS-1) of each error of a contiguous array, ``QUANTILE_BINS`` where it does
    not count (NaN, infinite, negative): ``(log(error) - edges_log[0]) // bin width`` clipped, an error of 0 in the
    first bin.

    numpy's floor division of floats runs an order of magnitude slower than a division and a floor, which differ
    from it only where the rounded quotient is a whole number (the exact one may lie just below it): those few are
    divided again the slow way, so every bin is exactly the floor division's."""
    bin_width = edges_log[1] - edges_log[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        shifted = np.log(errors)
        counted = shifted < np.inf  # NaN and +inf do not count; -inf (an error of 0) counts in the first bin
        np.subtract(shifted, edges_log[0], out=shifted)
        quotient = shifted / bin_width
    bins = np.floor(quotient)
    whole = np.flatnonzero(bins == quotient)
    whole = whole[np.isfinite(quotient.ravel()[whole])]
    bins.ravel()[whole] = shifted.ravel()[whole] // bin_width
    np.clip(bins, 0, QUANTILE_BINS - 1, out=bins)
    np.copyto(bins, QUANTILE_BINS, where=~counted)
    return bins.astype(np.int64)


def _quantile_tables(
    errors: np.ndarray,
    levels: Sequence[float],
    min_errors: int,
    checkpoint: int = CHECKPOINT_WINDOWS,
    step_numbers: np.ndarray | None = None,
    first_origin: int = 0,
) -> list[np.ndarray]:
    """Per level, a [steps, refreshes] table: column k is the quantile that the origins p with
    ``p // checkpoint == k`` read (column 0, before any refresh: NaN), NaN if too few errors were realized.

    ``errors`` is step-major and contiguous: ``errors[j, o] >= 0`` is the error of origin o at step j+1 (or
    ``step_numbers[j]``), realized at position r = o + step. Every ``checkpoint`` positions the realized errors
    enter a log-spaced histogram per step; column k holds the histogram of the errors with ``r < k * checkpoint``
    (all realized before its origins' close). One pass of numpy over a [slots, steps, bins] array of running
    counts per ``_QUANTILE_CHUNK`` steps: no expanding quantile per origin. Only the columns read from
    ``first_origin`` on are filled (earlier ones NaN): the slots before them count as one.
    """
    steps, origins = errors.shape
    ahead = np.arange(1, steps + 1) if step_numbers is None else np.asarray(step_numbers, dtype=np.int64)
    if origins == 0:
        return [np.full((steps, 1), np.nan) for _ in levels]
    edges_log = np.linspace(np.log(QUANTILE_LOW), np.log(QUANTILE_HIGH), QUANTILE_BINS + 1)
    slots = (origins + int(ahead.max())) // checkpoint + 2
    merged = max(first_origin // checkpoint - 1, 0)  # slots 0..merged count as one: no origin reads them apart
    kept = slots - merged
    cell_bins = QUANTILE_BINS + 1  # and a last one for the errors that do not count
    # Each error's slot = (origin + step) // checkpoint; row r of ``by_position``: origin o's at position o + r.
    slot = np.maximum(np.arange(origins + int(ahead.max())) // checkpoint - merged, 0)
    by_position = np.lib.stride_tricks.sliding_window_view(slot, origins)
    tables = [np.full((steps, slots + 1), np.nan) for _ in levels]  # column 0: no slot read yet; merged: none
    # A few steps at a time: their [slot, step, bin] counts and the temporaries stay in the cache, where a
    # [slots, steps, bins] array of every step would be tens of MB faulted in.
    for first in range(0, steps, _QUANTILE_CHUNK):
        part = slice(first, first + _QUANTILE_CHUNK)
        rows = len(ahead[part])
        # Each error's cell in [slot, step, bin]; the order of the counts is free.
        cell = _quantile_bins(errors[part], edges_log)
        cell += (np.arange(rows) * cell_bins)[:, None]
        cell += by_position[ahead[part]] * (rows * cell_bins)
        counts = np.bincount(cell.ravel(), minlength=kept * rows * cell_bins).reshape(kept, rows, cell_bins)
        # Running sums over slots, one vector add per slot (numpy's cumsum along a leading axis runs several times
        # slower; integers: the same counts either way), then over the bins of each (slot, step).
        for index in range(1, kept):
            np.add(counts[index - 1], counts[index], out=counts[index])  # realized in slots <= slot
        below = np.cumsum(counts, axis=-1, out=counts)  # of those, errors in bins <= b (the last: every error)
        total = below[..., QUANTILE_BINS - 1]
        flat = below.reshape(-1)
        row = np.arange(0, flat.size, cell_bins).reshape(total.shape)  # flat index of each (slot, step)'s first bin
        for level, table in zip(levels, tables, strict=True):
            target = level * total
            bin_at = _bins_below(flat, row, target)
            upto = flat.take(row + bin_at)
            before = np.where(bin_at > 0, flat.take(row + np.maximum(bin_at - 1, 0)), 0)
            in_bin = upto - before
            frac = np.clip((target - before) / np.maximum(in_bin, 1), 0.0, 1.0)
            quantile = np.exp(edges_log[bin_at] + frac * (edges_log[1] - edges_log[0]))
            quantile[total < max(int(min_errors), 1)] = np.nan
            table[part, merged + 1 :] = quantile.T
    return tables


def _bins_below(below: np.ndarray, row: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each (slot, step): the first bin whose running count ``below[row + b]`` reaches ``target`` (the number
    of bins below it, at most the last bin), by a binary search over the ordered running counts."""
    low = np.zeros(target.shape, dtype=np.int64)
    high = np.full(target.shape, QUANTILE_BINS - 1, dtype=np.int64)  # the last bin if no earlier one reaches it
    for _ in range((QUANTILE_BINS - 1).bit_length()):
        middle = (low + high) >> 1
        short = below.take(row + middle) < target
        low = np.where(short, middle + 1, low)
        high = np.where(short, high, middle)
    return low


def _walk_forward_quantiles(
    errors: np.ndarray,
    levels: Sequence[float],
    min_errors: int,
    checkpoint: int = CHECKPOINT_WINDOWS,
    step_numbers: np.ndarray | None = None,
) -> list[np.ndarray]:
    """For each level, q[p, j] = quantile of the finite errors[o, j] (origin-major) realized by origin p, NaN if
    too few: ``_quantile_tables`` read at every origin."""
    origins, steps = errors.shape
    tables = _quantile_tables(np.ascontiguousarray(errors.T), levels, min_errors, checkpoint, step_numbers)
    read = np.minimum(np.arange(origins) // checkpoint, tables[0].shape[1] - 1) if tables else None
    return [table[:, read].T for table in tables]


ACI_BLOCK = 32
"""Positions whose ACI multipliers are solved together (``_aci_thetas``): a longer block takes more rounds."""


def _adaptive_multipliers(
    deviation: np.ndarray, valid: np.ndarray, present: np.ndarray, alphas: np.ndarray, gamma: np.ndarray
) -> np.ndarray:
    """Adaptive conformal (ACI) log-multipliers theta[p, c] of each column's base quantile, known at origin p.

    ``deviation[o, c] = log(error / (base quantile * ...))`` of origin o in column c (level ``c // steps``, step
    ``c % steps`` + 1); a miss is ``deviation > theta[o, c]`` (the actual fell outside the band origin o published).
    At each position p with a bar, the errors of the origins whose target is p are realized and every column moves
    by ``gamma * (miss - alpha)``: wider after misses, narrower while covered. Over any span the realized miss rate
    is ``alpha + (theta_end - theta_start) / (gamma * n)``, so a bounded theta means the nominal coverage in the
    long run, whatever the drift. See ``_aci_thetas``.
    """
    origins, columns = deviation.shape
    levels = len(alphas)
    steps = columns // levels if levels else columns
    if origins == 0 or columns == 0 or levels == 0:
        return np.zeros((origins, columns))
    # An origin's error counts when it is valid and its target window, o + step, has a bar before the last origin.
    with_bar = np.concatenate([present[:origins].astype(bool), np.zeros(steps + 1, dtype=bool)])
    counted = valid.T.reshape(levels, steps, origins) & _ahead(with_bar, steps)[None, :, :origins]
    # A counted deviation that is not finite still counts (NaN: covered, +inf: missed); NaN in the buffer does not.
    finite = np.nan_to_num(deviation, nan=-np.inf).clip(-1e300, 1e300)
    by_step = np.full((levels, steps, steps + origins), np.nan)
    np.copyto(by_step[..., steps:], finite.T.reshape(levels, steps, origins), where=counted)
    alpha = np.asarray(alphas, dtype=np.float64)[:, None]
    step_gamma = np.asarray(gamma, dtype=np.float64).reshape(levels, steps)
    theta = _aci_thetas(_by_realization(by_step), step_gamma * (1.0 - alpha), step_gamma * (0.0 - alpha))
    return theta.reshape(levels * steps, origins).T


def _aci_thetas(realized: np.ndarray, widen: np.ndarray, narrow: np.ndarray) -> np.ndarray:
    """[levels, steps, origins] ACI log-multipliers theta (see ``_adaptive_multipliers``) from the deviations
    ``realized[l, j, p]`` of the origins p - j - 1 whose step-(j + 1) target is window p (``_by_realization``),
    NaN where none counts: theta[l, j, p] = theta[l, j, p - 1] + ``widen[l, j]`` if the deviation exceeds
    theta[l, j, p - j - 1] (a miss of the band that origin published), else ``narrow[l, j]``.

    A recurrence over positions, solved ``ACI_BLOCK`` positions at a time. A step of at least ``ACI_BLOCK`` windows
    reads only multipliers from before the block, so its increments are known at once. A shorter step reads
    multipliers inside the block: they start as a guess (the multiplier before the block) and the increments are
    recomputed from the multipliers they give until they no longer change. That fixed point is the sequential
    solution: each increment depends only on earlier multipliers, so by induction on the position no other one
    exists, and round k settles at least the first k positions (on real bars 2-3 rounds settle a block). The
    multipliers are running sums of the increments in position order (np.cumsum): the same float additions, in
    the same order, as one position at a time.
    """
    levels, steps, origins = realized.shape
    buffer = np.zeros((levels, steps, steps + 1 + origins))  # the multipliers before the first origin are 0
    theta = buffer[..., steps + 1 :]
    published = _by_realization(buffer[..., 1:])  # [l, j, p]: the multiplier of origin p - j - 1
    short = slice(0, ACI_BLOCK - 1)  # the steps that read multipliers inside their block
    widen, narrow = widen[:, :, None], narrow[:, :, None]

    def settle(block: np.ndarray, chosen: np.ndarray, counted: np.ndarray, which: slice) -> None:
        # block[..., 0] is the multiplier before the block: the running sum starts from it, increment by increment.
        increment = np.where(chosen, widen[:, which], narrow[:, which])
        increment *= counted  # x 1 or x 0: exact
        increment[..., 0] += block[..., 0]
        # Summed down the leading axis of a view with positions first: numpy then adds whole [levels, steps] slices
        # at a time (twice as fast as a 32-element loop per row), each sum still in position order.
        np.cumsum(np.moveaxis(increment, -1, 0), axis=0, out=np.moveaxis(block[..., 1:], -1, 0))

    for start in range(0, origins, ACI_BLOCK):
        cols = slice(start, min(start + ACI_BLOCK, origins))
        block = buffer[..., steps + start : steps + 1 + cols.stop]  # the multiplier before the block, then its own
        block[:, short, 1:] = block[:, short, :1]  # the guess
        deviation = realized[..., cols]
        counted = np.isfinite(deviation)
        chosen = deviation > published[..., cols]  # missed
        settle(block, chosen, counted, slice(None))
        used = chosen[:, short]
        deviation, reference, counted = deviation[:, short], published[:, short, cols], counted[:, short]
        while not np.array_equal(chosen := deviation > reference, used):
            settle(block[:, short], chosen, counted, short)
            used = chosen
    return theta


def baseline_bands(
    bars: pd.DataFrame,
    origins: pd.DatetimeIndex | Sequence,
    horizon_steps: int,
    kind: BandKind = "naive",
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    halflife_windows: float = DEFAULT_HALFLIFE_WINDOWS,
    profile_halflife_sessions: float = DEFAULT_PROFILE_HALFLIFE_SESSIONS,
    min_errors: int = DEFAULT_MIN_ERRORS,
    steps: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Walk-forward ``naive`` or ``tod`` band around the last close for each origin and step 1..``horizon_steps``
    (or only the given ``steps``, each between 1 and ``horizon_steps``: a scorer that reads a few steps pays for
    those only).

    ``bars`` are one symbol's bars (bar schema; ``window_start`` and ``close`` are read); ``origins`` are session
    windows (naive stamps are New York). One row per origin and step, columns ``band_columns(coverages)``; see the
    module docstring for the method and for when bounds are NaN.
    """
    return baseline_band_kinds(bars, origins, horizon_steps, (kind,), coverages, halflife_windows,
                               profile_halflife_sessions, min_errors, steps)[kind]


def baseline_band_kinds(
    bars: pd.DataFrame,
    origins: pd.DatetimeIndex | Sequence,
    horizon_steps: int,
    kinds: Sequence[BandKind] = ("naive", "tod"),
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    halflife_windows: float = DEFAULT_HALFLIFE_WINDOWS,
    profile_halflife_sessions: float = DEFAULT_PROFILE_HALFLIFE_SESSIONS,
    min_errors: int = DEFAULT_MIN_ERRORS,
    steps: Sequence[int] | None = None,
) -> dict[str, pd.DataFrame]:
    """``baseline_bands`` of each of ``kinds`` (the same rows, in the same order, for each): the grid of bars, the
    origins' places in it and the rows' origin, step and target are found once for all of them."""
    if int(horizon_steps) < 1:
        raise ValueError(f"horizon_steps must be at least 1, got {horizon_steps!r}.")
    horizon = int(horizon_steps)
    chosen = np.arange(1, horizon + 1) if steps is None else np.unique(np.asarray(steps, dtype=np.int64))
    if len(chosen) == 0 or chosen.min() < 1 or chosen.max() > horizon:
        raise ValueError(f"steps must lie between 1 and horizon_steps ({horizon}), got {list(chosen)}.")
    wanted = _as_new_york(origins)
    stamps = _bar_stamps(bars)
    known = stamps.append(wanted) if len(wanted) else stamps
    if len(known) == 0:
        raise ValueError("There are neither bars nor origins to build bands from; pass a symbol's bars.")
    grid = _grid(bars, stamps, known.min(), known.max(), horizon)
    position = grid.windows.get_indexer(wanted)
    if (position < 0).any():
        bad = wanted[position < 0][0]
        raise ValueError(f"Origin {bad} is not the start of a session window; pass session windows as origins.")
    origins_all = len(grid.windows) - horizon
    target_close = grid.close[chosen[:, None] + np.arange(origins_all)[None, :]]
    with np.errstate(invalid="ignore", divide="ignore"):
        moves = np.abs(np.log(target_close / grid.close[None, :origins_all]))
    last_close = grid.close[position]
    keys = {
        "as_of_window": pd.DatetimeIndex(np.repeat(grid.windows[position], len(chosen))).tz_convert(NEW_YORK),
        "horizon_step": np.tile(chosen, len(position)),
        "target_window": pd.DatetimeIndex(grid.windows[(position[:, None] + chosen[None, :]).ravel()]).tz_convert(
            NEW_YORK),
        "last_close": np.repeat(last_close, len(chosen)),
    }
    out: dict[str, pd.DataFrame] = {}
    for kind in kinds:
        scale = _scale(grid, kind, horizon, halflife_windows, profile_halflife_sessions)
        width = scale.sigma[None, :origins_all] * np.sqrt(scale.units[chosen - 1])  # [chosen steps, origins]
        with np.errstate(invalid="ignore", divide="ignore"):
            errors = moves / width
        tables = _quantile_tables(errors, coverages, min_errors, step_numbers=chosen,
                                  first_origin=int(position.min()))
        frame = dict(keys)
        read = np.minimum(position // CHECKPOINT_WINDOWS, tables[0].shape[1] - 1)
        for level, table in zip(coverages, tables, strict=True):
            lower, upper = bound_columns(level)
            half = (table[:, read] * width[:, position]).T.ravel()  # origin by origin, its steps in order
            frame[lower] = frame["last_close"] * np.exp(-half)
            frame[upper] = frame["last_close"] * np.exp(half)
        out[kind] = pd.DataFrame(frame)[band_columns(coverages)]
    return out


def adapt_intervals(
    predictions: pd.DataFrame,
    bars: pd.DataFrame,
    kind: BandKind = "tod",
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    warmup: Literal["keep", "nan"] = "keep",
    halflife_windows: float = DEFAULT_HALFLIFE_WINDOWS,
    profile_halflife_sessions: float = DEFAULT_PROFILE_HALFLIFE_SESSIONS,
    min_errors: int = DEFAULT_MIN_ERRORS,
    long_halflife_windows: float | None = DEFAULT_LONG_HALFLIFE_WINDOWS,
    reversion_halflife_windows: float = DEFAULT_REVERSION_HALFLIFE_WINDOWS,
    aci_gamma: float = DEFAULT_ACI_GAMMA,
    shrink: bool = True,
) -> pd.DataFrame:
    """The same prediction rows with ``lower_*``/``upper_*`` recalibrated walk-forward (see the module docstring,
    "Adapted intervals"): centred on the forecast shrunk toward the last close by its realized skill
    (``shrink``), half-width = base quantile x ACI multiplier x volatility (``kind`` scaling, fast ``sigma``
    blended toward a slow one of half-life ``long_halflife_windows`` for far steps; None: fast only).

    ``bars`` holds the bars of every symbol in ``predictions`` (``symbol``, ``window_start``, ``close``); the
    horizon step is counted in session windows from the as-of window to the target. Everything a row uses was
    realized by the close of its as-of window: bars up to it, and the errors of earlier predictions (of ``predictions``
    itself, so pass the earlier forecasts with the new ones) and of the last close at earlier origins. Rows without
    enough history keep the model's bounds (``warmup="keep"``) or get NaN (``"nan"``). Duplicate (symbol, as-of
    window, step) rows calibrate once (the last).
    """
    required = ("symbol", "as_of_window", "target_window", "predicted_close")
    missing = [name for name in required if name not in predictions.columns]
    if missing:
        raise ValueError(f"Predictions lack the column(s) {missing}; pass rows of the predictions table.")
    if warmup not in ("keep", "nan"):
        raise ValueError(f"warmup must be 'keep' or 'nan', got {warmup!r}.")
    bounds = [name for level in coverages for name in bound_columns(level)]
    if predictions.empty:
        out = predictions.copy()
        for name in bounds:
            out[name] = out[name].astype(np.float64) if name in out.columns else np.nan
        return out
    as_of = _new_york_ns(predictions["as_of_window"])
    target = _new_york_ns(predictions["target_window"])
    predicted = pd.to_numeric(predictions["predicted_close"], errors="coerce").to_numpy(dtype=np.float64)
    step_hint = predictions["horizon_step"].to_numpy() if "horizon_step" in predictions.columns else None
    if step_hint is not None and step_hint.dtype.kind not in "iu":
        step_hint = None
    bar_symbols = bars["symbol"].astype(str).to_numpy(dtype=object) if len(bars) else np.zeros(0, dtype=object)
    settings = _AdaptSettings(
        kind, tuple(coverages), halflife_windows, profile_halflife_sessions, min_errors, long_halflife_windows,
        reversion_halflife_windows, aci_gamma, shrink,
    )
    groups = _symbol_rows(predictions["symbol"])
    model_bounds = {name: _model_bounds(predictions, name) for name in bounds} if warmup == "keep" else {}
    # The new bound columns, symbol by symbol (one symbol: its arrays as they come). The frame returned is a
    # shallow copy whose bound columns are replaced whole: a year of paths is ~10^6 rows, the rest is not copied.
    merged = {name: np.empty(len(predictions)) for name in bounds}
    for symbol, rows in groups:
        bar_rows = bar_symbols == symbol
        adapted = _adapt_symbol(
            symbol, as_of[rows], target[rows], predicted[rows], None if step_hint is None else step_hint[rows],
            bars if bar_rows.all() else bars[bar_rows], settings,
        )
        for name, values in adapted.items():
            if warmup == "keep":  # the arrays are this call's own: fill them in place
                np.copyto(values, model_bounds[name][rows], where=~np.isfinite(values))
            if isinstance(rows, slice):
                merged[name] = values
            else:
                merged[name][rows] = values
    out = predictions.copy(deep=False)
    for name in bounds:
        out[name] = merged[name]
    return out


def _model_bounds(predictions: pd.DataFrame, name: str) -> np.ndarray:
    """The model's own bound column as floats (NaN if absent), without a copy when it already is one."""
    if name not in predictions.columns:
        return np.full(len(predictions), np.nan)
    column = predictions[name]
    return column.to_numpy() if column.dtype == np.float64 else column.astype(np.float64).to_numpy()


def _symbol_rows(symbols: pd.Series) -> list[tuple[str, slice | np.ndarray]]:
    """(symbol, its rows) in symbol order; one symbol (the common case) takes every row, found by counting the
    first symbol (identical strings compare by identity, several times faster than hashing every row)."""
    values = symbols.to_numpy()
    first = values[0]
    if isinstance(first, str) and values.tolist().count(first) == len(values):
        return [(str(first), slice(None))]
    names = symbols.astype(str).to_numpy(dtype=object)
    unique = sorted(pd.unique(names))
    if len(unique) == 1:
        return [(unique[0], slice(None))]
    return [(symbol, np.flatnonzero(names == symbol)) for symbol in unique]


@dataclass(frozen=True)
class _AdaptSettings:
    kind: str
    coverages: tuple[float, ...]
    halflife_windows: float
    profile_halflife_sessions: float
    min_errors: int
    long_halflife_windows: float | None
    reversion_halflife_windows: float
    aci_gamma: float
    shrink: bool


def _window_positions(windows: np.ndarray, stamps: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray:
    """Index of each stamp (ns) in the ascending ``windows`` (ns), -1 where it is none. A run of equal stamps (the
    rows of one path share its as-of window) is looked up once; ``guess`` (an index per stamp, e.g. the as-of
    window's plus the horizon step) is checked and only the stamps it misses are looked up."""
    if len(windows) == 0 or len(stamps) == 0:
        return np.full(len(stamps), -1, dtype=np.int64)
    if guess is not None:
        candidate = guess if 0 <= guess.min() and guess.max() < len(windows) else np.clip(guess, 0, len(windows) - 1)
        hit = windows.take(candidate) == stamps
        if hit.all():
            return candidate
        found = np.full(len(stamps), -1, dtype=np.int64)
        found[hit] = candidate[hit]
        rest = np.flatnonzero(~hit)
        found[rest] = _window_positions(windows, stamps[rest])
        return found
    starts = np.flatnonzero(np.concatenate([[True], stamps[1:] != stamps[:-1]]))
    at = pd.Index(windows).get_indexer(stamps[starts])
    return np.repeat(at, np.diff(np.append(starts, len(stamps))))


def _adapt_symbol(
    symbol: str,
    as_of_ns: np.ndarray,
    target_ns: np.ndarray,
    predicted: np.ndarray,
    step_hint: np.ndarray | None,
    bars: pd.DataFrame,
    settings: _AdaptSettings,
) -> dict[str, np.ndarray]:
    """The adapted bounds of one symbol's rows (NaN during warm-up), from its as-of and target windows (ns),
    forecasts and bars. Arrays over (step, origin) are step-major (``_ahead``), from the model's first origin on
    where only its forecasts matter."""
    stamps = _bar_stamps(bars)
    first = min(as_of_ns.min(), target_ns.min(), *([stamps.asi8.min()] if len(stamps) else []))
    last = max(as_of_ns.max(), target_ns.max(), *([stamps.asi8.max()] if len(stamps) else []))
    first, last = (pd.Timestamp(value, tz="UTC").tz_convert(NEW_YORK) for value in (first, last))
    calendar = session_windows(first, last + pd.Timedelta(days=14))
    calendar_ns = calendar.asi8
    origin_pos = _window_positions(calendar_ns, as_of_ns)
    guess = None if step_hint is None else origin_pos + step_hint
    target_pos = _window_positions(calendar_ns, target_ns, guess)
    if (origin_pos < 0).any() or (target_pos < 0).any():
        raise ValueError(
            f"A prediction of {symbol} names a window that is not a session window; "
            "as-of and target windows must be session window starts."
        )
    # A fresh [steps x origins] array costs more in page faults than the arithmetic on it: the arrays below are
    # computed in place where their inputs are not read again.
    step = np.subtract(target_pos, origin_pos, out=target_pos)
    if (step < 1).any():
        raise ValueError(f"A prediction of {symbol} targets a window at or before its as-of window.")
    horizon = int(step.max())
    grid = _grid(bars, stamps, first, last, horizon, calendar)
    scale = _scale(
        grid, settings.kind, horizon, settings.halflife_windows, settings.profile_halflife_sessions,
        settings.long_halflife_windows,
    )
    width = scale.widths(settings.reversion_halflife_windows, overwrite_units=True)  # [steps, origins]
    origins = width.shape[1]
    close = grid.close
    # Every forecast is the model's own from its first origin on: the shrink, the centre and the ACI read only
    # those origins (``region``: arrays [steps, region origins]); before, the errors are the last close's.
    first_model = int(origin_pos.min())
    region = slice(first_model, None)
    count = origins - first_model
    cell = step  # each row's (step, origin) in a flattened region array: (step - 1) * count + origin - first_model
    cell -= 1
    cell *= count
    cell += origin_pos
    cell -= first_model
    last_close = close.take(origin_pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        moved = np.divide(_ahead(close, horizon), close[:origins])
        np.log(moved, out=moved)  # realized log move from each origin's close
        forecast_move = np.divide(predicted, last_close)
        np.log(forecast_move, out=forecast_move)
    forecast_move[~np.isfinite(forecast_move)] = np.nan
    forecast = np.full((horizon, count), np.nan)
    # ``cell`` is in range by construction; mode="clip" spares the copy that mode="raise" makes to check it.
    np.put(forecast, cell, forecast_move, mode="clip")  # duplicates: the last wins
    is_model = np.isfinite(forecast)
    not_model = ~is_model

    # Centre: the forecast move shrunk by its realized least-squares weight on the actual move, in [0, 1].
    if settings.shrink:
        centre = _skill_weights(forecast, moved[:, region], is_model, settings.min_errors)
        centre *= forecast
    else:
        centre = np.multiply(forecast, 1.0, out=forecast)
    np.copyto(centre, 0.0, where=not_model)
    errors = moved  # the model's own where it forecast, the last close's elsewhere (the moves are not read again)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.abs(errors[:, :first_model], out=errors[:, :first_model])
        np.abs(np.subtract(errors[:, region], centre, out=errors[:, region]), out=errors[:, region])
        errors /= width
    levels = list(settings.coverages)
    tables = _quantile_tables(errors, levels, settings.min_errors, first_origin=first_model)
    read = np.minimum(np.arange(first_model, origins) // CHECKPOINT_WINDOWS, tables[0].shape[1] - 1)
    base = [table.take(read, axis=1) for table in tables]  # [steps, region origins] per level

    # The ACI multipliers move only at the model's own realized forecasts.
    deviation = np.empty((len(levels), horizon, horizon + count))
    deviation[..., :horizon] = np.nan  # no origin: nothing realized
    with np.errstate(invalid="ignore", divide="ignore"):
        for index, quantile in enumerate(base):
            by_origin = deviation[index, :, horizon:]
            np.log(np.divide(errors[:, region], quantile, out=by_origin), out=by_origin)
            np.copyto(by_origin, np.nan, where=not_model)
    alphas = np.array([1.0 - level for level in levels])[:, None]
    gamma = settings.aci_gamma * np.sqrt(np.minimum(np.arange(1, horizon + 1) / ACI_FULL_STEP, 1.0))
    theta = _aci_thetas(_by_realization(deviation), gamma * (1.0 - alphas), gamma * (0.0 - alphas))

    # Each row's bounds: its centre, and per level the half-width base quantile x ACI multiplier x volatility.
    rows_centre = centre.ravel().take(cell, out=forecast_move, mode="clip")  # a buffer: the forecasts are in place
    np.exp(rows_centre, out=rows_centre)
    rows_centre *= last_close
    region_width = width[:, region]
    adapted: dict[str, np.ndarray] = {}
    h = last_close  # a buffer: the last close is in ``rows_centre``
    outputs = iter(_spare_rows((deviation, errors, forecast), len(cell), 2 * len(levels)))
    for index, level in enumerate(levels):
        lower, upper = bound_columns(level)
        half = np.exp(theta[index], out=theta[index])
        half = np.multiply(base[index], half, out=base[index])
        half *= region_width
        half.ravel().take(cell, out=h, mode="clip")
        low, high = next(outputs), next(outputs)
        adapted[lower] = np.exp(np.negative(h, out=low), out=low)
        adapted[lower] *= rows_centre
        adapted[upper] = np.exp(h, out=high)
        adapted[upper] *= rows_centre
    return adapted


def _spare_rows(buffers: Sequence[np.ndarray], rows: int, count: int) -> list[np.ndarray]:
    """``count`` float arrays of ``rows`` values, carved from the given contiguous buffers (no longer read) while
    they last, then fresh: the buffers' pages are in memory already, where a fresh array of a million rows costs
    more in page faults than the arithmetic that fills it. The arrays are views: copy what outlives the buffers."""
    carved = []
    for buffer in buffers:
        if buffer.dtype == np.float64 and buffer.flags.c_contiguous:
            flat = buffer.reshape(-1)
            starts = range(0, flat.size - rows + 1, max(rows, 1))[: count - len(carved)]
            carved += [flat[start : start + rows] for start in starts]
        if len(carved) >= count:
            return carved[:count]
    return carved + [np.empty(rows) for _ in range(count - len(carved))]


_SKILL_CHUNK = 8
"""Steps whose skill weights are fitted together (``_fit_skill``)."""


def _skill_weights(forecast: np.ndarray, moved: np.ndarray, is_model: np.ndarray, min_errors: int) -> np.ndarray:
    """[steps, origins] the centre's weight on the forecast move: the least-squares slope of the realized moves on
    the forecast moves at that step over the forecasts realized by the origin's close (the target window is the
    origin or earlier), less ``SKILL_STANDARD_ERRORS`` standard errors, clipped to [0, 1]; 0 until ``min_errors``.

    The running sums run over origins along each step's row (``_ahead`` layout) and are read shifted by the step
    (``_by_realization``): the sum at origin p holds the origins o <= p - j - 1.
    """
    steps, origins = forecast.shape
    weight = np.zeros((steps, origins))
    both = is_model & np.isfinite(moved)
    realized_any = both.any(axis=0)
    if not realized_any.any():
        return weight
    # Before the first realized forecast every sum is zero and so is the weight: sum from the origin before it
    # (a zero column, so each running sum starts from the same +0.0 as over the whole span) and leave the rest 0.
    first = max(int(np.argmax(realized_any)) - 1, 0)
    rows = slice(first, None)
    count = origins - first
    # The running sums of (x y, x x) and of (y y, count) as the two halves of complex numbers: numpy adds the halves
    # apart (the same float additions as four separate sums) at twice the speed of one float at a time. Where no
    # forecast is realized every term is 0. A few steps at a time, in one buffer: the sums and the temporaries of
    # the fit stay in the cache and no [steps, origins] buffer is faulted in.
    sums = np.empty((2, _SKILL_CHUNK, steps + count), dtype=np.complex128)
    numbers = np.arange(1, steps + 1)[:, None]
    for chunk in range(0, steps, _SKILL_CHUNK):
        part = slice(chunk, chunk + _SKILL_CHUNK)
        x, y, counted = forecast[part, rows], moved[part, rows], both[part, rows]
        buffer = sums[:, : len(x)]
        buffer.fill(0.0)
        np.multiply(x, y, out=buffer[0, :, steps:].real, where=counted)
        np.multiply(x, x, out=buffer[0, :, steps:].imag, where=counted)
        np.multiply(y, y, out=buffer[1, :, steps:].real, where=counted)
        buffer[1, :, steps:].imag = counted
        np.cumsum(buffer, axis=2, out=buffer)
        xy, xx = (_by_realization(half, steps, chunk) for half in (buffer[0].real, buffer[0].imag))
        yy, seen = (_by_realization(half, steps, chunk) for half in (buffer[1].real, buffer[1].imag))
        _fit_skill(xy, xx, yy, seen, numbers[part], min_errors, weight[part, rows])
    return weight


def _fit_skill(
    xy: np.ndarray, xx: np.ndarray, yy: np.ndarray, seen: np.ndarray, step: np.ndarray, min_errors: int,
    weight: np.ndarray,
) -> None:
    """``_skill_weights`` from the running sums of some steps (``step``: their numbers, a column), into ``weight``
    (zeros) where at least ``min_errors`` forecasts are realized; every operation as one expression would do it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = xy / xx
        # residual = max(yy - 2 slope xy + slope^2 xx, 0) / max(seen, 1)
        residual = 2.0 * slope
        residual *= xy
        np.subtract(yy, residual, out=residual)
        squared = np.square(slope)
        squared *= xx
        residual += squared
        np.maximum(residual, 0.0, out=residual)
        residual /= np.maximum(seen, 1.0)
        # Overlapping targets: the errors of step j share j - 1 windows, so n of them weigh about n / j.
        error = np.divide(residual, xx, out=residual)
        error *= step
        np.sqrt(error, out=error)
        fitted = np.multiply(error, SKILL_STANDARD_ERRORS, out=error)
        np.subtract(slope, fitted, out=fitted)
        np.clip(fitted, 0.0, 1.0, out=fitted)
    np.copyto(weight, fitted, where=(seen >= min_errors) & (xx > 0))


def walk_forward_origins(bars: pd.DataFrame) -> pd.DatetimeIndex:
    """Every window with a usable bar: the origins of a walk-forward evaluation over ``bars``."""
    close = pd.to_numeric(bars["close"], errors="coerce")
    usable = np.isfinite(close.to_numpy(dtype=np.float64)) & (close.to_numpy(dtype=np.float64) > 0)
    return _as_new_york(bars["window_start"][usable]).unique().sort_values()



ADAPT_HISTORY_SESSIONS = 60
"""Sessions of stored forecasts and bars before a live run's first as-of window that ``adapt_new_forecasts`` reads:
the live intervals equal the backtest's when the backtest's span since its first origin is at most this long (older
errors only refine the histogram and the ACI state a little)."""


def adapt_history_start(first_as_of: pd.Timestamp) -> pd.Timestamp:
    """The first session window a live adaptation as of ``first_as_of`` reads (bars and stored forecasts)."""
    as_of = _as_new_york(pd.DatetimeIndex([first_as_of]))[0]
    calendar = session_windows(as_of - pd.Timedelta(days=2 * ADAPT_HISTORY_SESSIONS + 14), as_of)
    days = calendar.tz_localize(None).normalize().unique()
    first_day = days[max(len(days) - 1 - ADAPT_HISTORY_SESSIONS, 0)]
    return calendar[calendar.tz_localize(None).normalize() >= first_day][0]


def adapt_new_forecasts(new_rows: pd.DataFrame, earlier_rows: pd.DataFrame | None, bars: pd.DataFrame) -> pd.DataFrame:
    """``new_rows`` (prediction rows just forecast) with their intervals adapted as ``adapt_intervals`` does in the
    backtest: calibrated on the realized errors of ``earlier_rows`` (stored predictions of the same symbols made
    before; rows of a (symbol, as-of window) in ``new_rows`` are replaced by the new ones) and of the last close over
    ``bars``. Every other column of ``new_rows`` is unchanged."""
    if new_rows.empty:
        return new_rows.copy()
    columns = ["symbol", "as_of_window", "target_window", "predicted_close"]
    fresh = new_rows[columns].assign(as_of_window=_as_new_york(new_rows["as_of_window"]),
                                     target_window=_as_new_york(new_rows["target_window"]))
    parts = []
    if earlier_rows is not None and len(earlier_rows):
        old = earlier_rows[columns].assign(as_of_window=_as_new_york(earlier_rows["as_of_window"]),
                                           target_window=_as_new_york(earlier_rows["target_window"]))
        replaced = pd.MultiIndex.from_frame(old[["symbol", "as_of_window"]]).isin(
            pd.MultiIndex.from_frame(fresh[["symbol", "as_of_window"]])
        )
        parts.append(old[~replaced])
    parts.append(fresh)
    combined = pd.concat(parts, ignore_index=True)
    marker = np.zeros(len(combined), dtype=bool)
    marker[len(combined) - len(fresh):] = True
    bounds = [name for level in DEFAULT_COVERAGES for name in bound_columns(level)]
    combined = combined.assign(**{name: np.nan for name in bounds})
    adapted = adapt_intervals(combined, bars, warmup="nan")
    out = new_rows.copy()
    for name in bounds:
        values = adapted[name].to_numpy(dtype=np.float64)[marker]
        current = out[name].to_numpy(dtype=np.float64) if name in out.columns else np.full(len(out), np.nan)
        out[name] = np.where(np.isfinite(values), values, current)  # warm-up: the model's own bounds
    return out
