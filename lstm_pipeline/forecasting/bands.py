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
before it. One numpy pass over [refreshes, bins, steps] arrays, no expanding quantile per origin.

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
about 1-2 s on a loaded 2-core machine.
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
    sigma_long: np.ndarray | None = None  # [windows], the slow volatility (adapted intervals only)

    def widths(self, reversion_halflife_windows: float | None = None) -> np.ndarray:
        """[origins, steps] ``sigma * sqrt(units)``; with a slow ``sigma_long``, the variance per unit blends from
        ``sigma`` (the next step) toward ``sigma_long`` (far steps): ``w_h sigma^2 + (1 - w_h) sigma_long^2`` with
        ``w_h`` the mean over the h steps of a decay of half-life ``reversion_halflife_windows`` (volatility
        reverts to its slow level, so a week ahead is judged mostly by the slow one)."""
        origins, steps = self.units.shape
        fast = self.sigma[:origins, None] ** 2
        if self.sigma_long is None or not reversion_halflife_windows:
            return np.sqrt(fast * self.units)
        rate = np.log(2.0) / float(reversion_halflife_windows)
        h = np.arange(1, steps + 1, dtype=np.float64)
        weight = (1.0 - np.exp(-rate * h)) / (rate * h)
        slow = self.sigma_long[:origins, None] ** 2
        return np.sqrt((weight * fast + (1.0 - weight) * slow) * self.units)


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
    sigmas = []
    for halflife in (halflife_windows, long_halflife_windows):
        if halflife is None:
            sigmas.append(None)
            continue
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
            variance = pd.Series(squared).ewm(halflife=halflife, min_periods=MIN_RETURNS).mean().to_numpy()
            sigma[after] = np.sqrt(variance)
            sigma = pd.Series(sigma).ffill().to_numpy()
        sigmas.append(sigma)
    origins = len(grid.windows) - horizon_steps
    ahead = np.arange(origins)[:, None] + np.arange(1, horizon_steps + 1)[None, :]
    if kind == "naive":
        units = np.broadcast_to(np.arange(1, horizon_steps + 1, dtype=np.float64), (origins, horizon_steps))
    else:
        # The origin's profile (through the session before it) applied to the slots of the windows ahead.
        units = np.cumsum(profile[grid.session[:origins, None], grid.slot[ahead]], axis=1)
    return _Scale(sigma=sigmas[0], units=units, sigma_long=sigmas[1])


QUANTILE_BINS = 96
"""Bins of the standardized-error histograms: log-spaced from ``QUANTILE_LOW`` to ``QUANTILE_HIGH`` (6.4% apart),
with linear interpolation inside a bin; an error outside that range counts in the first or last bin."""
QUANTILE_LOW, QUANTILE_HIGH = 0.05, 20.0
CHECKPOINT_WINDOWS = 26
"""The quantiles are refreshed every 26 session windows (a session): an origin uses the errors realized by the
last refresh at or before it, never later ones."""
_STEP_CHUNK = 64


def _walk_forward_quantiles(
    errors: np.ndarray,
    levels: Sequence[float],
    min_errors: int,
    checkpoint: int = CHECKPOINT_WINDOWS,
    step_numbers: np.ndarray | None = None,
) -> list[np.ndarray]:
    """For each level, q[p, j] = quantile of the finite errors[o, j] realized by origin p, NaN if too few.

    ``errors[o, j] >= 0`` is the error of origin o at step j+1 (or ``step_numbers[j]``), realized at position
    r = o + step. Every
    ``checkpoint`` positions the realized errors enter a log-spaced histogram per step; origin p reads the
    histogram of the errors with ``r < (p // checkpoint) * checkpoint`` (all realized before p's close). One pass of
    numpy over [checkpoints, steps, bins] arrays (steps in chunks): no expanding quantile per origin.
    """
    origins, steps = errors.shape
    ahead = np.arange(1, steps + 1) if step_numbers is None else np.asarray(step_numbers, dtype=np.int64)
    out = [np.full((origins, steps), np.nan) for _ in levels]
    if origins == 0:
        return out
    edges_log = np.linspace(np.log(QUANTILE_LOW), np.log(QUANTILE_HIGH), QUANTILE_BINS + 1)
    bin_width = edges_log[1] - edges_log[0]
    slots = (origins + int(ahead.max())) // checkpoint + 2
    chunk = max(1, min(_STEP_CHUNK, steps))
    read_slot = np.arange(origins) // checkpoint  # origin p reads slots < read_slot[p]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(errors)
    for first in range(0, steps, chunk):
        cols = np.arange(first, min(first + chunk, steps))
        block = logs[:, cols]
        finite = np.isfinite(block)
        counted = finite | (errors[:, cols] == 0)  # an error of 0: the first bin
        value = np.where(finite, block, edges_log[0])
        bins = np.clip(((value - edges_log[0]) // bin_width), 0, QUANTILE_BINS - 1).astype(np.int64)
        slot = (np.arange(origins)[:, None] + ahead[cols][None, :]) // checkpoint
        flat = (slot * QUANTILE_BINS + bins) * len(cols) + np.arange(len(cols))[None, :]  # [slot, bin, step]
        counts = np.bincount(flat[counted], minlength=slots * QUANTILE_BINS * len(cols)).astype(np.int32).reshape(
            slots, QUANTILE_BINS, len(cols)
        )
        # Running sums along the short axes, one vector add per slot or bin: numpy's cumsum along a leading axis of
        # a 3-d array runs an order of magnitude slower (integers: the same counts either way).
        for index in range(1, slots):
            np.add(counts[index - 1], counts[index], out=counts[index])  # realized in slots <= slot
        below = counts.copy()
        for index in range(1, QUANTILE_BINS):
            np.add(below[:, index - 1], below[:, index], out=below[:, index])  # of those, errors in bins <= b
        total = below[:, -1, :]
        for index, level in enumerate(levels):
            target = level * total
            bin_at = np.zeros(total.shape, dtype=np.int64)
            for plane in range(QUANTILE_BINS):
                bin_at += below[:, plane, :] < target
            bin_at = np.minimum(bin_at, QUANTILE_BINS - 1)
            in_bin = np.take_along_axis(counts, bin_at[:, None, :], axis=1)[:, 0, :]
            before = np.take_along_axis(below, bin_at[:, None, :], axis=1)[:, 0, :] - in_bin
            frac = np.clip((target - before) / np.maximum(in_bin, 1), 0.0, 1.0)
            quantile = np.exp(edges_log[bin_at] + frac * bin_width)
            quantile[total < max(int(min_errors), 1)] = np.nan
            table = np.vstack([np.full((1, len(cols)), np.nan), quantile])  # row 0: no slot read yet
            out[index][:, cols] = table[np.minimum(read_slot, slots)]
    return out


def _adaptive_multipliers(
    deviation: np.ndarray, valid: np.ndarray, present: np.ndarray, alphas: np.ndarray, gamma: np.ndarray
) -> np.ndarray:
    """Adaptive conformal (ACI) log-multipliers theta[p, c] of each column's base quantile, known at origin p.

    ``deviation[o, c] = log(error / (base quantile * ...))`` of origin o in column c (step ``c % steps`` + 1); a miss
    is ``deviation > theta[o, c]`` (the actual fell outside the band origin o published). At each position p with a
    bar, the errors of the origins whose target is p are realized and every column moves by
    ``gamma * (miss - alpha)``: wider after misses, narrower while covered. Over any span the realized miss rate is
    ``alpha + (theta_end - theta_start) / (gamma * n)``, so a bounded theta means the nominal coverage in the long
    run, whatever the drift. One vectorized update per position (over steps and levels), no per-origin quantile.
    """
    origins, columns = deviation.shape
    steps = columns // len(alphas) if len(alphas) else columns
    theta = np.zeros((origins + steps, columns))
    if origins == 0 or columns == 0:
        return theta[steps:]
    step_of = np.arange(columns) % steps
    alpha = np.repeat(alphas, steps)
    padded_dev = np.vstack([np.full((steps, columns), np.nan), deviation]).ravel()
    padded_ok = np.vstack([np.zeros((steps, columns), dtype=bool), valid]).ravel()
    flat_theta = theta.ravel()
    base = (steps - 1 - step_of) * columns + np.arange(columns)  # origin p - 1 - j at position p, padded rows
    current = np.zeros(columns)
    previous = 0
    # theta stays 0 until the first valid origin is realized: start at the first position after it.
    has_valid = valid.any(axis=1)
    first_valid = int(np.argmax(has_valid)) if has_valid.any() else origins
    widen, narrow = gamma * (1.0 - alpha), gamma * (0.0 - alpha)  # gamma * (missed - alpha), either case
    positions = np.flatnonzero(present[:origins])
    for p in positions[positions > first_valid]:
        if p > previous:
            theta[previous + steps : p + steps] = current
        index = base + p * columns
        ok = padded_ok[index]
        if ok.any():
            missed = padded_dev[index] > flat_theta[index]
            current = current + np.where(ok, np.where(missed, widen, narrow), 0.0)
        theta[p + steps] = current
        previous = p + 1
    theta[previous + steps :] = current
    return theta[steps:]


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
    if int(horizon_steps) < 1:
        raise ValueError(f"horizon_steps must be at least 1, got {horizon_steps!r}.")
    horizon = int(horizon_steps)
    chosen = np.arange(1, horizon + 1) if steps is None else np.unique(np.asarray(steps, dtype=np.int64))
    if len(chosen) == 0 or chosen.min() < 1 or chosen.max() > horizon:
        raise ValueError(f"steps must lie between 1 and horizon_steps ({horizon}), got {list(chosen)}.")
    wanted = _as_new_york(origins)
    grid = _grid(bars, wanted, horizon)
    position = grid.windows.get_indexer(wanted)
    if (position < 0).any():
        bad = wanted[position < 0][0]
        raise ValueError(f"Origin {bad} is not the start of a session window; pass session windows as origins.")
    scale = _scale(grid, kind, horizon, halflife_windows, profile_halflife_sessions)
    origins_all = len(grid.windows) - horizon
    ahead = np.arange(origins_all)[:, None] + chosen[None, :]
    width = scale.sigma[:origins_all, None] * np.sqrt(scale.units[:, chosen - 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = np.abs(np.log(grid.close[ahead] / grid.close[:origins_all, None]) / width)
    quantiles = _walk_forward_quantiles(errors, coverages, min_errors, step_numbers=chosen)

    last_close = grid.close[position]
    frame = {
        "as_of_window": np.repeat(grid.windows[position], len(chosen)),
        "horizon_step": np.tile(chosen, len(position)),
        "target_window": grid.windows[(position[:, None] + chosen[None, :]).ravel()],
        "last_close": np.repeat(last_close, len(chosen)),
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
    out = predictions.copy()
    for level in coverages:
        for name in bound_columns(level):
            if name not in out.columns:
                out[name] = np.nan
            out[name] = out[name].astype(np.float64)
    if out.empty:
        return out
    symbols = out["symbol"].astype(str).to_numpy(dtype=object)
    bar_symbols = bars["symbol"].astype(str).to_numpy(dtype=object) if len(bars) else np.zeros(0, dtype=object)
    settings = _AdaptSettings(
        kind, tuple(coverages), halflife_windows, profile_halflife_sessions, min_errors, long_halflife_windows,
        reversion_halflife_windows, aci_gamma, shrink,
    )
    read = out[["symbol", "as_of_window", "target_window", "predicted_close"]]
    for symbol in sorted(pd.unique(symbols)):
        mine = symbols == symbol
        every = bool(mine.all())  # one symbol: whole columns, no row selection (a year of paths is ~10^6 rows)
        rows = slice(None) if every else np.flatnonzero(mine)
        bar_rows = bar_symbols == symbol
        adapted = _adapt_symbol(
            read if every else read.iloc[rows], bars if bar_rows.all() else bars[bar_rows], settings
        )
        for name, values in adapted.items():
            column = out.columns.get_loc(name)
            current = out[name].to_numpy(dtype=np.float64)[rows]
            keep = ~np.isfinite(values) & (warmup == "keep")
            if every:
                out[name] = np.where(keep, current, values)
            else:
                out.iloc[rows, column] = np.where(keep, current, values)
    return out


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


def _shifted_cumsum(values: np.ndarray) -> np.ndarray:
    """[k, origins, steps] -> at origin p, the sum of ``values[:, o, j]`` over the origins whose step-j target is
    realized by p (o <= p - j - 1); NaN counts as 0. The running sums run along the last axis of a step-major copy
    (numpy accumulates a contiguous axis several times faster; the additions are the same, in the same order)."""
    origins, steps = values.shape[1:]
    by_step = np.ascontiguousarray(np.nan_to_num(values, nan=0.0).transpose(0, 2, 1))  # [k, steps, origins]
    np.cumsum(by_step, axis=2, out=by_step)
    out = np.zeros_like(by_step)
    for j in range(steps):  # a loop over steps, not origins
        out[:, j, j + 1 :] = by_step[:, j, : origins - j - 1]
    return out.transpose(0, 2, 1)


def _adapt_symbol(rows: pd.DataFrame, bars: pd.DataFrame, settings: _AdaptSettings) -> dict[str, np.ndarray]:
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
    scale = _scale(
        grid, settings.kind, horizon, settings.halflife_windows, settings.profile_halflife_sessions,
        settings.long_halflife_windows,
    )
    width = scale.widths(settings.reversion_halflife_windows)  # [origins, steps]
    origins = width.shape[0]
    ahead = np.arange(origins)[:, None] + np.arange(1, horizon + 1)[None, :]
    last = grid.close[:origins, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        moved = np.log(grid.close[ahead] / last)  # realized log move from each origin's close (NaN: no bar)
        predicted = pd.to_numeric(rows["predicted_close"], errors="coerce").to_numpy(dtype=np.float64)
        forecast = np.full((origins, horizon), np.nan)
        forecast[origin_pos, step - 1] = np.log(predicted / grid.close[origin_pos])  # duplicates: the last wins
    forecast[~np.isfinite(forecast)] = np.nan
    is_model = np.isfinite(forecast)

    # Centre: the forecast move shrunk by its realized least-squares weight on the actual move, in [0, 1].
    weight = np.ones((origins, horizon))
    if settings.shrink:
        both = is_model & np.isfinite(moved)
        # Before the first realized forecast every sum is zero and so is the weight: sum from the origin before it
        # (a zero row, so each running sum starts from the same +0.0 as over the whole span) and leave the rest 0.
        first = int(np.argmax(both.any(axis=1))) if both.any() else origins
        rows = slice(max(first - 1, 0), None)
        weight = np.zeros((origins, horizon))
        x, y = np.where(both[rows], forecast[rows], 0.0), np.where(both[rows], moved[rows], 0.0)
        xy, xx, yy, seen = _shifted_cumsum(np.stack([x * y, x * x, y * y, both[rows].astype(np.float64)]))
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = xy / xx
            residual = np.maximum(yy - 2.0 * slope * xy + slope**2 * xx, 0.0) / np.maximum(seen, 1.0)
            # Overlapping targets: the errors of step j share j - 1 windows, so n of them weigh about n / j.
            error = np.sqrt(residual / xx * np.arange(1, horizon + 1)[None, :])
            fitted = np.clip(slope - SKILL_STANDARD_ERRORS * error, 0.0, 1.0)
        weight[rows] = np.where((seen >= settings.min_errors) & (xx > 0), fitted, 0.0)
    centre = np.where(is_model, weight * forecast, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = np.abs(moved - centre) / width  # the model's own where it forecast, the last close's elsewhere
    levels = list(settings.coverages)
    base = _walk_forward_quantiles(errors, levels, settings.min_errors)
    # The ACI multipliers move only at the model's own realized forecasts: from its first origin on (rows before
    # it could only read origins without a forecast, so theta stays 0 there).
    first_model = min(int(np.argmax(is_model.any(axis=1))) if is_model.any() else origins, int(origin_pos.min()))
    model_rows = slice(first_model, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = np.hstack([np.log(errors[model_rows] / q[model_rows]) for q in base])
    valid = np.isfinite(deviation) & np.tile(is_model[model_rows], (1, len(levels)))
    alphas = np.array([1.0 - level for level in levels])
    gamma = settings.aci_gamma * np.sqrt(np.minimum(np.arange(1, horizon + 1) / ACI_FULL_STEP, 1.0))
    theta = _adaptive_multipliers(
        deviation, valid, np.isfinite(grid.close[model_rows]), alphas, np.tile(gamma, len(levels))
    ).ravel()
    cell = origin_pos * horizon + step - 1  # each row's (origin, step) in the flattened [origins, steps] arrays
    theta_cell = (origin_pos - first_model) * (len(levels) * horizon) + step - 1
    rows_centre = grid.close[origin_pos] * np.exp(centre.ravel()[cell])
    rows_width = width.ravel()[cell]
    adapted: dict[str, np.ndarray] = {}
    for index, level in enumerate(levels):
        lower, upper = bound_columns(level)
        h = base[index].ravel()[cell] * np.exp(theta[theta_cell + index * horizon]) * rows_width
        adapted[lower] = rows_centre * np.exp(-h)
        adapted[upper] = rows_centre * np.exp(h)
    return adapted


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
