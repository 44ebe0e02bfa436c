"""Split-conformal prediction intervals per horizon step, from the model's own residuals on the validation span.

For each step ``h`` ahead, the residuals are ``|log(actual price) - log(forecast price)|`` over the validation
origins; the interval's half-width in log price is their conformal quantile at the nominal coverage (the
``ceil((n + 1) * coverage)``-th smallest of ``n``), so the interval is ``forecast * exp(+-halfwidth)``. Under
exchangeability this covers the truth with probability at least the nominal coverage; market residuals are not
exchangeable (volatility clusters), which is why the training record also reports the coverage reached on the test
span. Steps beyond the calibrated horizon (a recursive model asked for 672 steps after calibration on 130) grow as
``sqrt(h / H)`` from the last calibrated step, the random-walk rate; the config says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_COVERAGE: tuple[float, ...] = (0.8, 0.95)
METHOD = "split conformal on validation-span residuals of log price, per horizon step"
EXTRAPOLATION = "beyond the calibrated steps the half-width grows as sqrt(h / H) from step H"


def coverage_key(coverage: float) -> str:
    """The JSON key of a coverage level ("0.8", "0.95")."""
    return f"{coverage:g}"


def conformal_halfwidths(
    abs_residuals: np.ndarray, coverage: Sequence[float] = DEFAULT_COVERAGE
) -> dict[str, list[float]]:
    """Half-width in log price per horizon step for each coverage level, from ``|residuals|`` [origins, steps]."""
    residuals = np.asarray(abs_residuals, dtype=np.float64)
    if residuals.ndim != 2 or residuals.shape[0] < 1:
        raise ValueError(f"need residuals of shape [origins, steps], got {residuals.shape}")
    n = residuals.shape[0]
    ordered = np.sort(residuals, axis=0)
    widths: dict[str, list[float]] = {}
    for level in coverage:
        if not 0 < level < 1:
            raise ValueError(f"coverage must lie in (0, 1), got {level}")
        rank = min(math.ceil((n + 1) * level), n)  # with too few origins the largest residual is the best bound
        widths[coverage_key(level)] = [float(value) for value in ordered[rank - 1]]
    return widths


def extend_halfwidths(halfwidths: Sequence[float], horizon_steps: int) -> np.ndarray:
    """Half-widths for ``horizon_steps`` steps: calibrated ones first, then ``sqrt(h / H)`` growth."""
    calibrated = np.asarray(halfwidths, dtype=np.float64)
    if horizon_steps <= len(calibrated):
        return calibrated[:horizon_steps]
    steps = np.arange(len(calibrated) + 1, horizon_steps + 1, dtype=np.float64)
    grown = calibrated[-1] * np.sqrt(steps / len(calibrated))
    return np.concatenate([calibrated, grown])


def price_intervals(
    price_path: np.ndarray, intervals: Mapping[str, object]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(lower, upper) price bounds per coverage key for a forecast path, from a config's interval record."""
    widths = intervals.get("halfwidth_log_price") if intervals else None
    if not widths:
        return {}
    path = np.asarray(price_path, dtype=np.float64)
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, values in dict(widths).items():
        width = extend_halfwidths(values, path.shape[-1])
        bounds[key] = (path * np.exp(-width), path * np.exp(width))
    return bounds


def empirical_coverage(
    abs_residuals: np.ndarray, halfwidths: Mapping[str, Sequence[float]], steps: Sequence[int]
) -> dict[str, dict[int, float]]:
    """Share of origins whose actual price fell inside the interval, per coverage key and horizon step (1-based)."""
    residuals = np.asarray(abs_residuals, dtype=np.float64)
    out: dict[str, dict[int, float]] = {}
    for key, widths in halfwidths.items():
        width = extend_halfwidths(widths, residuals.shape[1])
        out[key] = {step: float(np.mean(residuals[:, step - 1] <= width[step - 1])) for step in steps}
    return out
