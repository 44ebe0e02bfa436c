"""Trade recommendations from week-ahead forecasts: one row per (symbol, as_of_window), a trade or the rule that
held it back. Pure (frames and settings in, rows out), batched over every origin of a run. No Dagster.

The trade is the best single round trip the forecast path offers. The path starts at the as-of window's own close
(a known price: buying or shorting now is allowed) followed by the predicted closes of the target windows. A long
buys at the lowest point before the highest point after it: for every exit window the entry is the lowest price
before it, and the exit is the one with the largest gain (ties: the earliest exit, the latest entry, the
shortest holding). A short, only when ``workflow.allow_short``, is the mirror image; with both allowed the larger
predicted return wins. The predicted return is taken net of ``workflow.round_trip_cost_bps``.

The rules, in the order they are applied (the first that fails is ``held_back_by``):

1. ``no_skill_evidence`` / ``skill``: the model's recent MASE must exist and be below ``workflow.skill_mase_max``;
   a model that does not beat the naive last-price forecast never recommends (the row says so, with its MASE).
2. ``flat_path``: the path must rise after some point (or fall, with shorts); a path that never does offers no
   trade at all. Checked before the profit rule, otherwise it could never show at a positive minimum profit.
3. ``min_profit``: the net predicted return must be at least ``min_profit_percent`` (percent).
4. ``confidence_unknown`` / ``confidence``: the trade's confidence (the lower of its entry and exit predictions';
   the as-of close is known and does not lower it) must be scored and at least ``confidence_threshold``.

An origin the caller expected (``origins``) with no forecast rows gets a ``no_forecast`` row.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage.tables import TRADE_RECOMMENDATIONS

BUY, SHORT, NO_TRADE = "buy", "short", "none"
NO_FORECAST = "no_forecast"
NO_SKILL_EVIDENCE = "no_skill_evidence"
NO_SKILL = "skill"
FLAT_PATH = "flat_path"
MIN_PROFIT = "min_profit"
CONFIDENCE_UNKNOWN = "confidence_unknown"
LOW_CONFIDENCE = "confidence"
HELD_BACK_RULES = (NO_FORECAST, NO_SKILL_EVIDENCE, NO_SKILL, FLAT_PATH, MIN_PROFIT, CONFIDENCE_UNKNOWN, LOW_CONFIDENCE)
"""Every value ``held_back_by`` takes, in rule order."""

RECOMMENDATION_COLUMNS = TRADE_RECOMMENDATIONS.written_columns
FORECAST_COLUMNS = ("symbol", "as_of_window", "target_window", "predicted_close", "last_close", "model_version")
_EPSILON = 1e-9
"""Float slack at the rule boundaries, so 2.0000000000001% clears a 2% minimum that it equals."""


def round_trip_cost_pct(settings: Settings) -> float:
    """Round-trip costs in percent (10 bps = 0.10%)."""
    return settings.workflow.round_trip_cost_bps / 100.0


def _when(stamp: pd.Timestamp) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M")


def _mase_of(recent_mase: Mapping[Hashable, float | None], symbol: str, as_of: pd.Timestamp) -> float | None:
    """Per (symbol, as_of_window) when given (a backfill: each origin sees only what was known as of it), else per
    symbol; a missing or non-finite value is no evidence."""
    value = recent_mase.get((symbol, as_of), recent_mase.get(symbol))
    if value is None or pd.isna(value) or not np.isfinite(float(value)):
        return None
    return float(value)


def _best_round_trips(prices: np.ndarray, rising: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gross return, entry index, exit index) of the best long (``rising``) or short round trip per row of
    ``prices`` (origins x path positions, NaN-padded at the end; position 0 is the as-of close)."""
    positions = np.arange(prices.shape[1])
    accumulate = np.fmin.accumulate if rising else np.fmax.accumulate
    extreme = accumulate(prices, axis=1)
    at_extreme = prices <= extreme if rising else prices >= extreme
    extreme_at = np.maximum.accumulate(np.where(at_extreme, positions, -1), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gains = prices[:, 1:] / extreme[:, :-1] - 1.0 if rising else 1.0 - prices[:, 1:] / extreme[:, :-1]
    gains = np.where(np.isnan(gains), -np.inf, gains)
    exit_index = np.argmax(gains, axis=1) + 1
    rows = np.arange(prices.shape[0])
    return gains[rows, exit_index - 1], extreme_at[rows, exit_index - 1], exit_index


def _padded(column: pd.Series, group: np.ndarray, position: np.ndarray, shape: tuple[int, int], fill) -> np.ndarray:
    out = np.full(shape, fill, dtype=object if fill is None else float)
    out[group, position + 1] = column.to_numpy(dtype=object if fill is None else float, na_value=fill)
    return out


def recommend_trades(
    forecasts: pd.DataFrame,
    recent_mase: Mapping[Hashable, float | None],
    settings: Settings,
    origins: Iterable[tuple[str, pd.Timestamp]] | None = None,
) -> pd.DataFrame:
    """One ``trade_recommendations`` row per (symbol, as_of_window) of ``forecasts`` (prediction rows: target_window,
    predicted_close, last_close, confidence, confidence_level, model_version) and of ``origins``.

    ``recent_mase`` maps a symbol, or a (symbol, as_of_window), to the model's recent MASE (None: not known yet).
    Held-back rows still carry the best trade the path offered (entry, exit, predicted return) where there is one,
    so a reader sees how far it was from the rules.
    """
    missing = [name for name in FORECAST_COLUMNS if name not in forecasts.columns]
    if missing:
        raise ValueError(f"The forecasts are missing the column(s) {missing}; pass prediction rows with "
                         f"{list(FORECAST_COLUMNS)}.")
    frame = forecasts[forecasts["predicted_close"].notna()].copy()
    for name in ("confidence", "confidence_level"):
        if name not in frame.columns:
            frame[name] = None
    frame = frame.sort_values(["symbol", "as_of_window", "target_window"], kind="stable").reset_index(drop=True)
    keys = frame.groupby(["symbol", "as_of_window"], sort=False)
    group = keys.ngroup().to_numpy()
    position = keys.cumcount().to_numpy()
    firsts = frame.drop_duplicates(["symbol", "as_of_window"]).reset_index(drop=True)
    shape = (len(firsts), int(position.max()) + 2 if len(frame) else 2)

    prices = _padded(frame["predicted_close"], group, position, shape, np.nan)
    prices[:, 0] = firsts["last_close"].to_numpy(dtype=float)
    confidence = _padded(frame["confidence"].astype("float64"), group, position, shape, np.nan)
    confidence[:, 0] = np.inf  # the as-of close is known: it never lowers a trade's confidence
    levels = _padded(frame["confidence_level"], group, position, shape, None)
    windows = _padded(frame["target_window"], group, position, shape, None)
    windows[:, 0] = firsts["as_of_window"].to_numpy(dtype=object)

    gross, entry, exit_ = _best_round_trips(prices, rising=True)
    is_short = np.zeros(len(firsts), dtype=bool)
    if settings.workflow.allow_short:
        short_gross, short_entry, short_exit = _best_round_trips(prices, rising=False)
        is_short = short_gross > gross
        gross = np.where(is_short, short_gross, gross)
        entry = np.where(is_short, short_entry, entry)
        exit_ = np.where(is_short, short_exit, exit_)
    rows_index = np.arange(len(firsts))
    cost_pct = round_trip_cost_pct(settings)
    net_pct = 100.0 * gross - cost_pct
    entry_conf, exit_conf = confidence[rows_index, entry], confidence[rows_index, exit_]
    trade_conf = np.minimum(entry_conf, exit_conf)  # NaN (not scored) wins
    trade_level = np.where(exit_conf <= entry_conf, levels[rows_index, exit_], levels[rows_index, entry])

    records = []
    for i, first in firsts.iterrows():
        symbol, as_of = str(first["symbol"]), pd.Timestamp(first["as_of_window"])
        mase = _mase_of(recent_mase, symbol, as_of)
        flat = not gross[i] > _EPSILON
        conf = None if np.isnan(trade_conf[i]) else float(trade_conf[i])
        level = trade_level[i] if conf is not None and not pd.isna(trade_level[i]) else None
        side = SHORT if is_short[i] else BUY
        record = {
            "symbol": symbol,
            "as_of_window": as_of,
            "model_version": first["model_version"],
            "entry_window": None if flat else windows[i, entry[i]],
            "entry_price": None if flat else float(prices[i, entry[i]]),
            "exit_window": None if flat else windows[i, exit_[i]],
            "exit_price": None if flat else float(prices[i, exit_[i]]),
            "predicted_return_pct": None if flat else float(net_pct[i]),
            "confidence": conf,
            "confidence_level": level,
            "recent_mase": mase,
        }
        trade = (
            f"{'short' if is_short[i] else 'buy'} at {prices[i, entry[i]]:.2f} ({_when(windows[i, entry[i]])}), "
            f"{'cover' if is_short[i] else 'sell'} at {prices[i, exit_[i]]:.2f} ({_when(windows[i, exit_[i]])}) "
            f"for {net_pct[i]:.2f}% after {cost_pct:.2f}% round-trip costs"
        )
        limit = settings.workflow.skill_mase_max
        if mase is None:
            held, reason = NO_SKILL_EVIDENCE, (
                f"No recent MASE for {symbol}'s model yet, so nothing shows it beats the naive last-price forecast: "
                "no trade until its forecasts have been validated."
            )
        elif not mase < limit:
            held, reason = NO_SKILL, (
                f"{symbol}'s model does not beat the naive last-price forecast (recent MASE {mase:.2f} >= "
                f"{limit:.2f}): no trade."
            )
        elif flat:
            direction = "rises or falls" if settings.workflow.allow_short else "rises (shorting is disabled)"
            held, reason = FLAT_PATH, (
                f"{symbol}'s predicted path never {direction} after any point of the week from "
                f"{prices[i, 0]:.2f}: no trade."
            )
        elif net_pct[i] < settings.min_profit_percent - _EPSILON:
            held, reason = MIN_PROFIT, (
                f"The best trade ({trade}) is below the {settings.min_profit_percent:.2f}% minimum profit."
            )
        elif conf is None:
            held, reason = CONFIDENCE_UNKNOWN, (
                f"The best trade ({trade}) has no confidence score yet, so it cannot clear the "
                f"{settings.confidence_threshold:.2f} threshold."
            )
        elif conf < settings.confidence_threshold - _EPSILON:
            held, reason = LOW_CONFIDENCE, (
                f"The best trade ({trade}) has confidence {conf:.2f}"
                f"{f' ({level})' if level else ''}, below the {settings.confidence_threshold:.2f} threshold."
            )
        else:
            held, reason = None, (
                f"{symbol}: {trade}; confidence {conf:.2f}{f' ({level})' if level else ''}, "
                f"recent MASE {mase:.2f}."
            )
        records.append({**record, "action": NO_TRADE if held else side, "held_back_by": held, "reason": reason})

    seen = {(str(s), pd.Timestamp(w)) for s, w in zip(firsts["symbol"], firsts["as_of_window"], strict=True)}
    for symbol, as_of in dict.fromkeys((str(s), pd.Timestamp(w)) for s, w in (origins or ())):
        if (symbol, as_of) in seen:
            continue
        records.append({
            "symbol": symbol,
            "as_of_window": as_of,
            "action": NO_TRADE,
            "recent_mase": _mase_of(recent_mase, symbol, as_of),
            "held_back_by": NO_FORECAST,
            "reason": f"No stored forecast for {symbol} as of {_when(as_of)} (not forecast yet, or skipped: see "
            "alerts): no trade.",
        })
    out = pd.DataFrame.from_records(records, columns=RECOMMENDATION_COLUMNS)
    for name in ("entry_window", "exit_window", "as_of_window"):
        out[name] = pd.to_datetime(out[name], utc=True).dt.tz_convert(NEW_YORK)
    for name in ("entry_price", "exit_price", "predicted_return_pct", "confidence", "recent_mase"):
        out[name] = out[name].astype("float64")
    return out.sort_values(["symbol", "as_of_window"], kind="stable").reset_index(drop=True)
