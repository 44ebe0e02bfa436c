"""An embedded simulated market, so the whole pipeline runs offline out of the box.

Each symbol follows one fixed path from ``SIMULATION_EPOCH``: 15-minute log returns with stochastic volatility
(an AR(1) log-volatility gives volatility clustering), Student-t shocks (fat tails), an intraday U-shape in
volatility and volume, an overnight gap at each session's first window, and per-symbol drift and volatility.
The path is a pure function of (symbol, seed, predictability), so a window's bar is the same whichever range it
is asked in, and bars exist only in NYSE regular-session windows.

Optional predictable component (``predictability`` = φ, setting ``market_data.simulation_predictability``,
0 ≤ φ ≤ 0.5, default 0). Without it the returns are a martingale apart from a tiny drift: no forecast beats the
naive last-price forecast in expectation, so the skill gate should withhold recommendations. With φ > 0 the 15-minute
close-to-close log returns r_t (a session's first window includes its overnight gap) carry a persistent trend a_t
around their drift μ_t::

    r_t − μ_t = a_t + √(1 − s) · u_t,        a_t = ρ · a_{t−1} + √(s · (1 − ρ²)) · σ_t · ζ_t,        s = φ / ρ

where u_t is the return the path would have without the component (gap plus the stochastic-volatility,
Student-t shock), σ_t that return's standard deviation (the window's volatility, and the gap's at a session's
first window), ζ_t independent standard normal draws (their own random stream, so
the other draws are the same at every φ) and ρ = ``TREND_PERSISTENCE`` = exp(−1/26): the trend forgets with a
time constant of one session (half-life about 18 windows) and runs across session boundaries. The trend carries a
share s of each window's return variance, so that φ is the lag-1 autocorrelation of the 15-minute returns (a
unitless correlation, not a percent) and each window's unconditional variance is about unchanged.

Why a persistent trend and not a one-step effect: the skill gate judges the model one day ahead (the
``accuracy_metrics`` MASE at 26 steps that the ``trade_recommendations`` asset reads), and a trade has to clear
``min_profit_percent`` after costs over up to a week. A one-step autocorrelation gives a model an edge only at the
next window (φ·|r| ≈ 0.05% at φ = 0.3, less than the round-trip costs), so every demo trade would be withheld. The
trend's expected move over the next h windows is a_t · ρ(1 − ρ^h)/(1 − ρ) (about 16 a_t one day ahead, 25 a_t a
week ahead), so a model that estimates a_t from the recent returns beats naive at 1 hour and 1 day and can predict
moves of a few percent over the week (a trend follower fitted on past bars reaches a one-day MASE of about 0.9
at φ = 0.1-0.3). The price of it: the trend adds variance at long horizons (at φ = 0.1 a day's return spread is
about 1.7 times the martingale's and a week's 2.2 times; at φ = 0.3 2.6 and 3.4 times), which a real market does
not have; keep φ small (about 0.1) for a demo that looks like a market. The trend moves the price after the open, so a
bar's open is still the previous close (gaps apart). φ = 0 takes exactly the path of earlier versions, bit for bit.
"""

from __future__ import annotations

import functools
import numbers
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm_pipeline.market.bars import conform_bars, empty_bars
from lstm_pipeline.market.calendar import NEW_YORK, session_windows

SIMULATION_EPOCH = pd.Timestamp("2020-01-02", tz=NEW_YORK)
"""First window of every simulated path; earlier windows have no bars."""
SIMULATION_END = pd.Timestamp("2027-11-01", tz=NEW_YORK)
"""Paths are generated up to here (the exchange calendar's published horizon)."""

TREND_PERSISTENCE = float(np.exp(-1.0 / 26.0))
"""ρ of the predictable trend: it forgets with a time constant of one session (26 windows)."""
MAX_PREDICTABILITY = 0.5
"""Largest allowed ``predictability``: a lag-1 return autocorrelation beyond it is no longer a weak effect."""

_STEPS_PER_YEAR = 252 * 26
_SESSION_MINUTES = 390.0


@dataclass(frozen=True)
class SymbolProfile:
    """Statistical character of one simulated symbol."""

    start_price: float
    annual_drift: float
    annual_volatility: float
    overnight_gap_vol: float
    base_volume: float


KNOWN_PROFILES: dict[str, SymbolProfile] = {
    "AAPL": SymbolProfile(75.0, 0.18, 0.28, 0.010, 2_500_000),
    "MSFT": SymbolProfile(160.0, 0.17, 0.26, 0.009, 1_400_000),
    "GOOGL": SymbolProfile(68.0, 0.16, 0.30, 0.011, 1_600_000),
    "AMZN": SymbolProfile(95.0, 0.12, 0.34, 0.012, 2_200_000),
    "TSLA": SymbolProfile(28.0, 0.30, 0.62, 0.025, 4_500_000),
    "SPY": SymbolProfile(320.0, 0.10, 0.17, 0.006, 3_500_000),
    "QQQ": SymbolProfile(210.0, 0.13, 0.22, 0.007, 2_800_000),
}


def profile_for(symbol: str) -> SymbolProfile:
    """The profile of a known symbol, or a stable one derived from the ticker for any other."""
    if symbol in KNOWN_PROFILES:
        return KNOWN_PROFILES[symbol]
    draw = np.random.default_rng(zlib.crc32(symbol.encode()))
    return SymbolProfile(
        start_price=float(draw.uniform(15, 400)),
        annual_drift=float(draw.uniform(-0.05, 0.2)),
        annual_volatility=float(draw.uniform(0.18, 0.55)),
        overnight_gap_vol=float(draw.uniform(0.005, 0.02)),
        base_volume=float(draw.uniform(3e5, 3e6)),
    )


@functools.lru_cache(maxsize=1)
def _timeline() -> pd.DatetimeIndex:
    return session_windows(SIMULATION_EPOCH, SIMULATION_END)


def predictability_problem(predictability: object) -> str | None:
    """Why ``predictability`` is not a usable strength (one clause), or None."""
    if isinstance(predictability, bool) or not isinstance(predictability, numbers.Real):
        return f"it must be a number, not {type(predictability).__name__}"
    if not (np.isfinite(predictability) and 0.0 <= predictability <= MAX_PREDICTABILITY):
        return (
            f"it is the lag-1 autocorrelation of the simulated 15-minute returns, a number from 0 (off) to "
            f"{MAX_PREDICTABILITY:g}, not {predictability!r}"
        )
    return None


def simulation_source(seed: int, predictability: float = 0.0) -> str:
    """The ``source`` stored with simulated bars: names the seed and, when on, the predictable component."""
    if predictability == 0.0:
        return f"simulated(seed={int(seed)})"
    return f"simulated(seed={int(seed)}, predictability={float(predictability):g})"


def _trend(symbol: str, seed: int, sigma: np.ndarray, predictability: float) -> np.ndarray:
    """The persistent trend ``a_t = ρ a_{t-1} + √(s(1-ρ²)) σ_t ζ_t`` of the module docstring, started stationary,
    written as an exponential filter like the log-volatility (vectorised, no loop). Its draws come from their own
    stream, so every other draw of the path is the same at every strength."""
    rho = TREND_PERSISTENCE
    share = float(predictability) / rho
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode()), 1])
    innovations = rng.standard_normal(len(sigma)) * sigma * np.sqrt(share * (1.0 - rho**2))
    scaled = innovations / (1.0 - rho)
    scaled[0] = innovations[0] / np.sqrt(1.0 - rho**2)
    return pd.Series(scaled).ewm(alpha=1.0 - rho, adjust=False).mean().to_numpy()


@functools.lru_cache(maxsize=64)
def _path(symbol: str, seed: int, predictability: float = 0.0) -> pd.DataFrame:
    """The whole simulated history of one symbol, generated once per process."""
    windows = _timeline()
    n = len(windows)
    profile = profile_for(symbol)
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])

    minutes_since_open = (windows.hour * 60 + windows.minute - 570).to_numpy(dtype=float)
    position = np.clip(minutes_since_open / _SESSION_MINUTES, 0.0, 1.0)
    u_shape = (0.75 + 1.6 * (position - 0.5) ** 2) / 0.8833  # busier at the open and close; mean 1 over a day
    first_of_session = np.r_[True, windows.date[1:] != windows.date[:-1]]

    # Stochastic volatility: AR(1) log-volatility, written as an exponential filter (vectorised, no loop).
    persistence = 0.985
    vol_of_vol = 0.12
    innovations = rng.standard_normal(n) * vol_of_vol
    scaled = innovations / (1 - persistence)
    scaled[0] = innovations[0] / np.sqrt(1 - persistence**2)  # start from the stationary distribution
    log_vol = pd.Series(scaled).ewm(alpha=1 - persistence, adjust=False).mean().to_numpy()
    log_vol -= vol_of_vol**2 / (2 * (1 - persistence**2))  # keep E[exp(log_vol)] near 1

    step_vol = profile.annual_volatility / np.sqrt(_STEPS_PER_YEAR)
    shocks = rng.standard_t(df=5, size=n) / np.sqrt(5 / 3)  # unit-variance fat tails
    sigma = step_vol * np.exp(log_vol) * u_shape
    drift = profile.annual_drift / _STEPS_PER_YEAR - 0.5 * sigma**2
    gaps = np.where(first_of_session, rng.standard_normal(n) * profile.overnight_gap_vol, 0.0)
    intrabar = drift + sigma * shocks
    if predictability > 0.0:
        # The martingale part keeps 1 - s of its variance (the gap too); the trend moves the price after the open.
        factor = np.sqrt(1.0 - predictability / TREND_PERSISTENCE)
        gaps = gaps * factor
        spread = np.sqrt(sigma**2 + np.where(first_of_session, profile.overnight_gap_vol**2, 0.0))  # sd of u_t
        intrabar = drift + _trend(symbol, seed, spread, predictability) + factor * sigma * shocks

    log_close = np.log(profile.start_price) + np.cumsum(gaps + intrabar)
    close = np.exp(log_close)
    open_ = close * np.exp(-intrabar)
    wick_scale = sigma * 0.6
    high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal(n)) * wick_scale)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal(n)) * wick_scale)
    volume_noise = np.exp(rng.standard_normal(n) * 0.35)
    volume = np.round(profile.base_volume / 26 * u_shape**2 * np.exp(0.8 * log_vol) * volume_noise).astype(np.int64)
    vwap = (open_ + high + low + close) / 4.0
    trade_size = 80 + 40 * rng.random(n)
    trade_count = np.maximum(1, np.round(volume / trade_size)).astype(np.int64)

    return pd.DataFrame(
        {
            "window_start": windows,
            "open": open_.round(4),
            "high": high.round(4),
            "low": low.round(4),
            "close": close.round(4),
            "volume": volume,
            "vwap": vwap.round(4),
            "trade_count": trade_count,
        }
    ).set_index("window_start")


def simulate_bars(
    symbol: str, windows: pd.DatetimeIndex, seed: int = 0, predictability: float = 0.0
) -> pd.DataFrame:
    """Simulated bars of ``symbol`` for the given session windows (others are ignored), in the bar schema;
    ``predictability`` is the optional AR(1) strength of the module docstring (0: none)."""
    problem = predictability_problem(predictability)
    if problem:
        raise ValueError(f"The simulated market's predictability is invalid: {problem}.")
    if len(windows) == 0:
        return empty_bars()
    path = _path(symbol, int(seed), float(predictability))
    wanted = pd.DatetimeIndex(windows).tz_convert(NEW_YORK)
    rows = path.loc[path.index.intersection(wanted)]
    if rows.empty:
        return empty_bars()
    frame = rows.rename_axis("window_start").reset_index()
    frame.insert(0, "symbol", symbol)
    return conform_bars(frame, source=simulation_source(seed, predictability))
