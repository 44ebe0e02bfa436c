"""Scoring past recommendations against the bars that followed. Pure, batched, no Dagster.

A ``buy`` or ``short`` is scored once its exit window has a (checked) bar: it is entered at the actual close of
its entry window and closed at the actual close of its exit window, and the realized return is taken net of the
same round-trip costs as the prediction. When the entry window's bar is missing, the trade is entered at the next
bar at or after it (and before the exit window), as an order left working would be; when there is none, the row
is still written (the exit came) with no entry price, no return and no hit, so it is never counted as a hit or a
miss. ``hit`` is a realized return above zero (after costs). A recommendation whose exit bar never arrives is
never scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm_pipeline.evaluation.stamps import as_new_york, as_utc
from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage.tables import TRADE_OUTCOMES
from lstm_pipeline.trading.recommendations import BUY, SHORT, round_trip_cost_pct

OUTCOME_COLUMNS = TRADE_OUTCOMES.written_columns


def _utc(values: pd.Series) -> pd.Series:
    return as_new_york(values).dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def score_recommendations(recommendations: pd.DataFrame, bars: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """``trade_outcomes`` rows (``scored_window`` = the exit window) for every buy/short of ``recommendations`` whose
    exit window has a bar in ``bars`` (symbol, window_start, close)."""
    trades = recommendations[recommendations["action"].isin([BUY, SHORT]) & recommendations["exit_window"].notna()]
    if trades.empty or bars.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in OUTCOME_COLUMNS}).pipe(_typed)
    trades = trades[["symbol", "as_of_window", "action", "entry_window", "exit_window"]].copy()
    trades["symbol"] = trades["symbol"].astype(str)
    for name in ("as_of_window", "entry_window", "exit_window"):
        trades[name] = _utc(trades[name])
    closes = bars[["symbol", "window_start", "close"]].dropna().copy()
    closes["symbol"] = closes["symbol"].astype(str)
    closes["window_start"] = _utc(closes["window_start"])

    exits = trades.merge(
        closes.rename(columns={"window_start": "exit_window", "close": "exit_price_actual"}),
        on=["symbol", "exit_window"],
        how="inner",
    )
    if exits.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in OUTCOME_COLUMNS}).pipe(_typed)
    entries = pd.merge_asof(
        exits.sort_values("entry_window"),
        closes.rename(columns={"window_start": "entry_bar", "close": "entry_price_actual"}).sort_values("entry_bar"),
        left_on="entry_window",
        right_on="entry_bar",
        by="symbol",
        direction="forward",
    )
    entered = entries["entry_bar"].notna() & (entries["entry_bar"] < entries["exit_window"])
    entry = entries["entry_price_actual"].where(entered).to_numpy(dtype=float)
    exit_ = entries["exit_price_actual"].to_numpy(dtype=float)
    gross = np.where(entries["action"].eq(SHORT), 1.0 - exit_ / entry, exit_ / entry - 1.0)
    realized = 100.0 * gross - round_trip_cost_pct(settings)
    out = pd.DataFrame({
        "symbol": entries["symbol"],
        "as_of_window": entries["as_of_window"],
        "scored_window": entries["exit_window"],
        "action": entries["action"],
        "entry_price_actual": entry,
        "exit_price_actual": exit_,
        "realized_return_pct": realized,
        "hit": pd.array([None if np.isnan(value) else bool(value > 0) for value in realized], dtype="boolean"),
    })
    return _typed(out).sort_values(["symbol", "scored_window", "as_of_window"]).reset_index(drop=True)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[OUTCOME_COLUMNS].copy()
    for name in ("as_of_window", "scored_window"):
        out[name] = as_utc(out[name]).dt.tz_convert(NEW_YORK)
    for name in ("entry_price_actual", "exit_price_actual", "realized_return_pct"):
        out[name] = out[name].astype("float64")
    out["hit"] = out["hit"].astype("boolean")
    return out
