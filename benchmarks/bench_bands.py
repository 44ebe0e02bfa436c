"""Walk-forward coverage and interval score of the baseline bands on real bars (issue #14, "Honest intervals").

For every symbol of ``../shared/data/real_bars_1m_2y/`` (1-minute bars, naive UTC stamps, aggregated to the
15-minute session windows by the file source) and ``../shared/data/real_bars_15m/``, every window with a bar is an
origin (no subsampling) with a 130-step horizon. Three bands, all walk-forward (at each origin only errors realized
by its close are used; see ``lstm_pipeline/forecasting/bands.py``):

- ``naive``: last close x exp(+-q sigma sqrt(h));
- ``tod``: the same with returns divided by a trailing time-of-day profile, the profile summed over the targets;
- ``adapted(last)``: ``adapt_intervals`` with its defaults (what the ``predictions`` asset publishes and the backtest
  scores: tod scaling, sigma blended toward a slow one at far steps, adaptive conformal multipliers) around the
  naive "last close" point forecast, a STAND-IN for the model: it shows what the adaptation does to a forecast with
  no skill, not the LSTM (``python -m lstm_pipeline.backtest`` scores the LSTM's).

Compared on the same rows: origins where all three bands are defined (after each warm-up) and the target has a
bar. Printed per symbol and pooled per folder, at 1_step (step 1), 1_hour (4), 1_day (26) and 1_week (130, the
last step of a full week ahead): coverage of the 80% and 95% bands and the mean Winkler score in percent of the
as-of close. Overlapping horizons share the same market moves: a 1-week coverage over a year rests on about 50
independent weeks, so a few points off nominal there is within chance. A folder that is absent is skipped.

    python benchmarks/bench_bands.py
"""

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lstm_pipeline.forecasting.bands import (  # noqa: E402
    adapt_intervals,
    baseline_bands,
    walk_forward_origins,
    winkler_score,
)
from lstm_pipeline.market.file_source import load_recorded_bars  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDERS = ("real_bars_1m_2y", "real_bars_15m")
HORIZON_STEPS = 130
BUCKETS = {"1_step": 1, "1_hour": 4, "1_day": 26, "1_week": 130}
BANDS = ("naive", "tod", "adapted(last)")


def symbol_rows(folder: Path, symbol: str) -> tuple[pd.DataFrame, float, int]:
    """Rows at the bucket steps with actual and the three bands' bounds; seconds for the bands; origins."""
    bars = load_recorded_bars(
        folder, symbol, pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC"), timezone="UTC"
    )
    origins = walk_forward_origins(bars)
    started = time.perf_counter()
    naive = baseline_bands(bars, origins, HORIZON_STEPS, kind="naive")
    tod = baseline_bands(bars, origins, HORIZON_STEPS, kind="tod")
    stand_in = naive[["as_of_window", "horizon_step", "target_window", "last_close"]].assign(
        symbol=symbol, predicted_close=naive["last_close"]
    )
    adapted = adapt_intervals(stand_in, bars, kind="tod", warmup="nan")
    seconds = time.perf_counter() - started
    close = bars.set_index("window_start")["close"]
    rows = naive[["as_of_window", "horizon_step", "last_close"]].copy()
    rows["actual"] = close.reindex(naive["target_window"]).to_numpy()
    for name, frame in zip(BANDS, (naive, tod, adapted), strict=True):
        for column in ("lower_80", "upper_80", "lower_95", "upper_95"):
            rows[f"{name}:{column}"] = frame[column].to_numpy()
    rows = rows[rows["horizon_step"].isin(BUCKETS.values())]
    rows = rows[np.isfinite(rows.drop(columns=["as_of_window"]).to_numpy(dtype=np.float64)).all(axis=1)]
    return rows.assign(symbol=symbol), seconds, len(origins)


def summary(rows: pd.DataFrame) -> list[str]:
    lines = []
    for bucket, step in BUCKETS.items():
        at = rows[rows["horizon_step"] == step]
        cells = [f"{bucket:<7}", f"{len(at):>6}"]
        for name in BANDS:
            for level, alpha in (("80", 0.2), ("95", 0.05)):
                lower, upper = at[f"{name}:lower_{level}"], at[f"{name}:upper_{level}"]
                inside = ((at["actual"] >= lower) & (at["actual"] <= upper)).mean() * 100
                score = (winkler_score(lower, upper, at["actual"], alpha) / at["last_close"] * 100).mean()
                cells.append(f"{inside:5.1f}% {score:6.3f}")
        lines.append(" | ".join(cells))
    return lines


def main() -> None:
    header = "bucket  |   rows | " + " | ".join(
        f"{name + ' ' + level:^14}" for name in BANDS for level in ("80", "95")
    )
    print(f"Walk-forward bands, horizon {HORIZON_STEPS} steps, every origin; cells: coverage, mean Winkler % of close")
    for folder_name in FOLDERS:
        folder = DATA / folder_name
        if not folder.is_dir():
            print(f"{folder_name}: absent at {folder}, skipped.")
            continue
        symbols = sorted({path.stem.split("_")[0].upper() for path in folder.glob("*.csv")})
        pooled = []
        for symbol in symbols:
            rows, seconds, origins = symbol_rows(folder, symbol)
            pooled.append(rows)
            print(f"\n{folder_name} {symbol}: {origins} origins, three bands in {seconds:.1f} s")
            print(header)
            print("\n".join(summary(rows)))
        print(f"\n{folder_name} pooled ({', '.join(symbols)})")
        print(header)
        print("\n".join(summary(pd.concat(pooled, ignore_index=True))))


if __name__ == "__main__":
    main()
