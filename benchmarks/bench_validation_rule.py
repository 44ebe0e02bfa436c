"""How many forecasts the validation rule flags, beside the spec's flat 2% threshold, on the simulated market.

The workload: the shipped models (``models/``, trained on the simulated market seed 0 up to 2026-11-23, intervals
calibrated on their validation span) forecast the week ahead from one origin per hour (every 4th session window)
over ``SESSIONS`` sessions starting 2026-12-01, after every bar they were trained, selected or calibrated on, so
nothing here is tuned on the span it is measured on. Each symbol's bars come from ``simulate_bars(seed=0)``. The
forecasts go through ``forecast_windows`` (what the ``predictions`` asset runs) and every step whose target has a
bar through ``validate_predictions`` (what the ``validations`` asset runs) in one call.

Printed per horizon bucket (the project's vocabulary: step 1, step 4, step 26, steps 126+), and over all steps:
predictions judged, the share outside the 80% and the 95% interval (nominal 20% and 5% for calibrated intervals),
the share whose absolute error exceeds the flat threshold (the spec's rule alone), the share the rule flags
(``needs_reprediction``: beyond the threshold AND outside the 95% interval), and the model's and the naive
forecast's mean absolute error in percent. The same table follows for a calibrated reference that isolates the
rule from the models' calibration: the naive last-price forecast with split-conformal intervals per horizon step
taken from the ``CALIBRATION_SESSIONS`` sessions before the first origin. Neighbouring origins share most of their
target windows, so one market move lands in many rows: the shares are averages over ``SESSIONS`` sessions of one
path per symbol, not thousands of independent draws.

    python benchmarks/bench_validation_rule.py [sessions]
"""

import logging
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.disable(logging.WARNING)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lstm_pipeline.evaluation.validation import (  # noqa: E402
    HORIZON_BUCKETS,
    NEEDS_REPREDICTION,
    horizon_bucket,
    validate_predictions,
)
from lstm_pipeline.forecasting.batch import forecast_windows  # noqa: E402
from lstm_pipeline.market.calendar import session_windows  # noqa: E402
from lstm_pipeline.market.simulated import simulate_bars  # noqa: E402
from lstm_pipeline.resources.model_store import LocalModelStore  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]
MODELS = Path(__file__).resolve().parents[1] / "models"
FIRST_SESSION = "2026-12-01"
SESSIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 120
ORIGIN_STRIDE = 4  # one origin per hour
THRESHOLD = 0.02  # the spec's validation_threshold
CALIBRATION_SESSIONS = 250  # the naive reference's intervals: the year before the first origin


def main() -> None:
    started = time.perf_counter()
    models, failed = LocalModelStore(models_dir=str(MODELS)).load_available(SYMBOLS)
    if failed:
        raise SystemExit(f"Shipped models failed to load: {failed}")
    calendar = session_windows("2025-11-01", "2027-09-01")
    first = calendar.searchsorted(pd.Timestamp(FIRST_SESSION, tz=calendar.tz))
    origins = calendar[first : first + SESSIONS * 26 : ORIGIN_STRIDE]
    bars_span = calendar[calendar < origins[-1] + pd.Timedelta(days=10)]
    bars = {symbol: simulate_bars(symbol, bars_span, seed=0) for symbol in SYMBOLS}

    forecast_started = time.perf_counter()
    result = forecast_windows({symbol: list(origins) for symbol in SYMBOLS}, models, bars)
    forecast_seconds = time.perf_counter() - forecast_started
    if result.skipped:
        print(f"skipped pairs: {len(result.skipped)} (first: {next(iter(result.skipped.values()))})")

    actual = pd.concat(bars.values(), ignore_index=True)
    validate_started = time.perf_counter()
    rows, not_validated = validate_predictions(result.rows, actual, None, THRESHOLD)
    validate_seconds = time.perf_counter() - validate_started

    print(
        f"{len(origins)} origins x {len(SYMBOLS)} symbols ({origins[0]:%Y-%m-%d} .. {origins[-1]:%Y-%m-%d}, one per "
        f"hour over {SESSIONS} sessions), {len(rows):,} predictions judged, {len(not_validated):,} without a bar"
    )
    print(f"forecast {forecast_seconds:.1f} s ({result.compiled_calls} compiled calls); validate_predictions "
          f"{validate_seconds:.2f} s for {len(rows):,} rows (one call); total {time.perf_counter() - started:.0f} s")
    print(f"threshold {THRESHOLD:.0%}; rule: needs_reprediction = |error| > threshold AND actual outside the 95% band")
    print()
    header = (f"{'bucket':<10}{'symbol':<7}{'n':>8}{'outside 80%':>13}{'outside 95%':>13}{'|err|>2%':>10}"
              f"{'rule flags':>12}{'model MAE%':>12}{'naive MAE%':>12}")
    print("the shipped models (their own split-conformal intervals, calibrated on their validation span):")
    _table(header, rows)
    reference = naive_reference(calendar, first, origins, bars)
    reference_rows, _ = validate_predictions(reference, actual, None, THRESHOLD)
    print()
    print(f"a calibrated reference: the naive last-price forecast with split-conformal intervals per step from the "
          f"{CALIBRATION_SESSIONS} sessions before the first origin (same origins, same targets):")
    _table(header, reference_rows)
    print()
    print("nominal for calibrated intervals: outside 80% = 20%, outside 95% = 5%; the rule flags at most the 95% "
          "miss share")


def _table(header: str, rows: pd.DataFrame) -> None:
    print(header)
    print("-" * len(header))
    buckets = horizon_bucket(rows["horizon_step"])
    for name in [*HORIZON_BUCKETS, "all steps"]:
        in_bucket = buckets == name if name != "all steps" else pd.Series(True, index=rows.index)
        for symbol in ["all", *SYMBOLS] if name in ("1_week", "all steps") else ["all"]:
            chosen = in_bucket & ((rows["symbol"] == symbol) if symbol != "all" else True)
            print(_line(name, symbol, rows[chosen]))


def naive_reference(
    calendar: pd.DatetimeIndex, first: int, origins: pd.DatetimeIndex, bars: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Prediction rows of the naive forecast (the last close at every step) with 80%/95% intervals whose half-width
    at step h is that quantile of |log(close[t+h] / close[t])| over every origin of the ``CALIBRATION_SESSIONS``
    sessions before the first evaluated origin (split conformal on data before the span, so nothing is tuned on it)."""
    steps = np.arange(1, 131)
    frames = []
    for symbol, symbol_bars in bars.items():
        closes = symbol_bars.set_index("window_start")["close"].reindex(calendar[: len(symbol_bars)])
        log_close = np.log(closes.to_numpy(dtype=np.float64))
        calibration = np.arange(max(0, first - CALIBRATION_SESSIONS * 26), first - steps[-1])
        residuals = np.abs(log_close[calibration[:, None] + steps] - log_close[calibration[:, None]])
        half = {level: np.nanquantile(residuals, level, axis=0) for level in (0.8, 0.95)}
        at = calendar.get_indexer(origins)
        last = np.exp(log_close[at])[:, None] * np.ones(len(steps))
        frame = pd.DataFrame(
            {
                "symbol": symbol,
                "as_of_window": np.repeat(origins, len(steps)),
                "horizon_step": np.tile(steps, len(origins)),
                "target_window": calendar[(at[:, None] + steps).ravel()],
                "predicted_close": last.ravel(),
                "last_close": last.ravel(),
                "model_version": "naive",
            }
        )
        for level, name in ((0.8, "80"), (0.95, "95")):
            frame[f"lower_{name}"] = (last * np.exp(-half[level])).ravel()
            frame[f"upper_{name}"] = (last * np.exp(half[level])).ravel()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _line(bucket: str, symbol: str, rows: pd.DataFrame) -> str:
    count = len(rows)
    outside_80 = 1.0 - rows["inside_80"].astype(float).mean()
    outside_95 = 1.0 - rows["inside_95"].astype(float).mean()
    flat = float((rows["abs_error_pct"] > THRESHOLD * 100).mean())
    flagged = float((rows["status"] == NEEDS_REPREDICTION).mean())
    return (
        f"{bucket:<10}{symbol:<7}{count:>8,}{outside_80:>13.1%}{outside_95:>13.1%}{flat:>10.1%}{flagged:>12.1%}"
        f"{rows['abs_error_pct'].mean():>12.3f}{rows['naive_abs_error_pct'].mean():>12.3f}"
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
