"""The ``accuracy_metrics`` plot: the latest week of one symbol, forecast against actual, and MASE over time.

Matplotlib is imported inside the function (Agg canvas, no display), so importing this module costs nothing.
This module imports no Dagster.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from lstm_pipeline.evaluation.accuracy import HORIZON_BUCKETS


def accuracy_plot(
    symbol: str,
    actual: pd.Series,
    week_path: pd.DataFrame | None,
    one_step: pd.DataFrame,
    mase_history: pd.DataFrame,
) -> bytes:
    """PNG of two panels.

    Top: the actual close of the latest week (``actual``: close by window start), the week-ahead forecast made a
    week before (``week_path``: ``target_window``, ``predicted_close``, ``lower_80``, ``upper_80``; may be None)
    with its 80% band, and the 1-step-ahead forecasts of the same windows (``one_step``, same columns) with theirs.
    Bottom: the week span's MASE by horizon bucket over the as-of windows (``mase_history``: ``window_start``,
    ``horizon_bucket``, ``mase``), with the naive forecast's level 1 drawn.
    The x axes count session windows (no overnight gaps) and are labelled with New York dates.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 6.5), dpi=80)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})

    windows = pd.DatetimeIndex(sorted(set(actual.index)))
    place = pd.Series(np.arange(len(windows)), index=windows)

    def drawn(frame: pd.DataFrame | None) -> pd.DataFrame:
        if frame is None or frame.empty:
            return pd.DataFrame(columns=["x", "predicted_close", "lower_80", "upper_80"])
        kept = frame[frame["target_window"].isin(windows)].sort_values("target_window")
        return kept.assign(x=place.reindex(pd.DatetimeIndex(kept["target_window"])).to_numpy())

    top.plot(place.to_numpy(), actual.reindex(windows).to_numpy(), color="black", linewidth=1.0, label="actual close")
    path = drawn(week_path)
    if len(path):
        top.plot(path["x"], path["predicted_close"], color="tab:orange", linewidth=1.2,
                 label="week-ahead forecast made a week before")
        top.fill_between(path["x"].to_numpy(dtype=float), path["lower_80"].to_numpy(dtype=float),
                         path["upper_80"].to_numpy(dtype=float), color="tab:orange", alpha=0.18, linewidth=0,
                         label="its 80% interval")
    steps = drawn(one_step)
    if len(steps):
        top.plot(steps["x"], steps["predicted_close"], color="tab:blue", linewidth=0.8, marker=".", markersize=3,
                 label="1-step-ahead forecasts")
        top.fill_between(steps["x"].to_numpy(dtype=float), steps["lower_80"].to_numpy(dtype=float),
                         steps["upper_80"].to_numpy(dtype=float), color="tab:blue", alpha=0.15, linewidth=0,
                         label="their 80% intervals")
    top.set_title(f"{symbol}: forecast vs actual over the latest week")
    _date_ticks(top, windows)
    top.set_ylabel("close")
    top.legend(loc="best", fontsize=7)

    history = mase_history.dropna(subset=["mase"]).sort_values("window_start")
    as_of = pd.DatetimeIndex(sorted(set(history["window_start"])))
    as_of_place = pd.Series(np.arange(len(as_of)), index=as_of)
    buckets = sorted(set(history["horizon_bucket"]), key=_bucket_order)
    for bucket in buckets:
        rows = history[history["horizon_bucket"] == bucket]
        bottom.plot(as_of_place.reindex(pd.DatetimeIndex(rows["window_start"])).to_numpy(), rows["mase"].to_numpy(),
                    linewidth=1.0, marker="." if len(rows) < 30 else None, label=str(bucket))
    bottom.axhline(1.0, color="grey", linestyle="--", linewidth=0.8, label="naive forecast")
    bottom.set_title("MASE over the trailing week, by horizon (below 1 beats the naive last-price forecast)")
    _date_ticks(bottom, as_of)
    bottom.set_ylabel("MASE")
    bottom.legend(loc="best", fontsize=7, ncol=5)
    figure.tight_layout()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _date_ticks(axis, windows: pd.DatetimeIndex) -> None:
    if not len(windows):
        return
    ticks = np.unique(np.linspace(0, len(windows) - 1, min(6, len(windows))).round().astype(int))
    axis.set_xticks(ticks, [f"{stamp:%b %d %H:%M}" for stamp in windows[ticks]], fontsize=7)
    axis.set_xlabel("session window (New York; the axis counts 15-minute session windows)")


def _bucket_order(name: str) -> tuple[int, str]:
    return (HORIZON_BUCKETS.index(name) if name in HORIZON_BUCKETS else len(HORIZON_BUCKETS), name)
