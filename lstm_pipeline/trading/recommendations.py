"""Trade recommendations from week-ahead forecasts: one row per (symbol, as_of_window), a trade or the rule that
held it back. Pure (frames and settings in, rows out), batched over every origin of a run. No Dagster.

The trade is the best single round trip the forecast path offers, exiting at most
``workflow.max_holding_windows`` windows ahead. The path starts at the as-of window's own close
(a known price: buying or shorting now is allowed) followed by the predicted closes of the target windows. A long
buys at the lowest point before the highest point after it: for every exit window the entry is the lowest price
before it, and the exit is the one with the largest gain (ties: the earliest exit, the latest entry, the
shortest holding). A short, only when ``workflow.allow_short``, is the mirror image; with both allowed the larger
predicted return wins. The predicted return is taken net of ``workflow.round_trip_cost_bps``.

The rules, in the order they are applied (the first that fails is ``held_back_by``):

1. ``no_skill_evidence`` / ``skill`` / ``skill_not_significant``: the model's recent MASE **at the horizon the
   trade exits** must exist and be below ``workflow.skill_mase_max`` by more than float rounding (a naive-equal
   forecast's MASE comes out as 0.9999999999 as often as 1.0), and its skill p-value (``skill_p_value`` of
   ``accuracy_metrics``: a Diebold-Mariano test that accounts for overlapping horizons) must be below
   ``workflow.skill_significance``: a MASE of 0.9 over a few weeks of week-ahead errors is what a model no better
   than naive shows by chance, and it must not open the gate. A model that does not beat the naive last-price
   forecast there, or not clearly, never recommends (the row says so, with its MASE and p-value). The horizon is
   the first bucket at or beyond the exit step (``1_step``, ``1_hour`` up to 4 steps, ``1_day`` up to 26,
   ``1_week`` beyond): a model that beats naive one day ahead but not one week ahead (a recursive model
   extrapolating a short trend, say) gets no trade that exits days later.
2. ``flat_path``: the path must rise after some point (or fall, with shorts); a path that never does offers no
   trade at all. Checked before the profit rule, otherwise it could never show at a positive minimum profit.
3. ``min_profit``: the net predicted return must be at least ``min_profit_percent`` (percent).
4. ``confidence_unknown`` / ``confidence``: the trade's confidence (the lower of its entry and exit predictions';
   the as-of close is known and does not lower it) must be scored and at least ``confidence_threshold``.

An origin the caller expected (``origins``) with no forecast rows gets a ``no_forecast`` row.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from lstm_pipeline.evaluation.keys import factorize_runs
from lstm_pipeline.evaluation.stamps import as_utc
from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage.tables import TRADE_RECOMMENDATIONS

BUY, SHORT, NO_TRADE = "buy", "short", "none"
NO_FORECAST = "no_forecast"
NO_SKILL_EVIDENCE = "no_skill_evidence"
NO_SKILL = "skill"
NOT_SIGNIFICANT = "skill_not_significant"
FLAT_PATH = "flat_path"
MIN_PROFIT = "min_profit"
CONFIDENCE_UNKNOWN = "confidence_unknown"
LOW_CONFIDENCE = "confidence"
HELD_BACK_RULES = (NO_FORECAST, NO_SKILL_EVIDENCE, NO_SKILL, NOT_SIGNIFICANT, FLAT_PATH, MIN_PROFIT,
                   CONFIDENCE_UNKNOWN, LOW_CONFIDENCE)
"""Every value ``held_back_by`` takes, in rule order."""

RECOMMENDATION_COLUMNS = TRADE_RECOMMENDATIONS.written_columns
FORECAST_COLUMNS = ("symbol", "as_of_window", "target_window", "predicted_close", "last_close", "model_version")
_EPSILON = 1e-9
"""Float slack at the rule boundaries, so 2.0000000000001% clears a 2% minimum that it equals, and a MASE of
0.9999999999 (naive-equal up to rounding) does not pass a skill gate of 1."""


def round_trip_cost_pct(settings: Settings) -> float:
    """Round-trip costs in percent (10 bps = 0.10%)."""
    return settings.workflow.round_trip_cost_bps / 100.0


def _when(stamp: pd.Timestamp) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M")


SKILL_SPAN = "month"
"""The ``accuracy_metrics`` span the skill gate reads (the asset and the backtest alike): the last 546 validated
target windows, about four independent week-ahead errors and twenty day-ahead ones; a ``week`` span holds one
week-ahead error's worth of evidence and cannot tell skill from chance there."""

SKILL_BUCKET_DEFAULT = "1_day"
"""The horizon bucket whose MASE a row without a trade (a flat path, no forecast) reports."""


_EXIT_BUCKETS = ((1, "1_step"), (4, "1_hour"), (26, "1_day"))
"""(last step, bucket) of the fixed-step buckets; a later exit is judged at ``1_week``."""


def exit_bucket(step: int) -> str:
    """The horizon bucket a trade exiting ``step`` windows ahead is judged by: the first at or beyond the step."""
    return next((bucket for last, bucket in _EXIT_BUCKETS if step <= last), "1_week")


class SkillEvidence(NamedTuple):
    """What the skill gate reads at one horizon: the recent MASE and its p-value (None or NaN: not known)."""

    mase: float | None
    p_value: float | None = None


SKILL_COLUMNS = ("symbol", "as_of_window", "horizon_bucket", "mase", "skill_p_value")
"""The columns of a skill table (``recommend_trades``' ``recent_mase`` as a frame): one row per origin and bucket."""


def _float_or_nan(value: Any) -> float:
    if value is None or pd.isna(value):
        return float("nan")
    value = float(value)
    return value if np.isfinite(value) else float("nan")


def _evidence_of(recent_mase: Mapping[Hashable, Any], symbol: str, as_of: pd.Timestamp,
                 bucket: str = SKILL_BUCKET_DEFAULT) -> tuple[float, float]:
    """(MASE, p-value) from a mapping, NaN where unknown: per (symbol, as_of_window) when given (a backfill: each
    origin sees only what was known as of it), else per symbol; a value is one ``SkillEvidence`` (or bare MASE) for
    every horizon or a mapping of horizon bucket to one. A bare MASE has no p-value."""
    value = recent_mase.get((symbol, as_of), recent_mase.get(symbol))
    if isinstance(value, Mapping):
        value = value.get(bucket)
    if isinstance(value, tuple):
        return _float_or_nan(value[0]), _float_or_nan(value[1] if len(value) > 1 else None)
    return _float_or_nan(value), float("nan")


def _evidence(recent_mase: Mapping[Hashable, Any] | pd.DataFrame, symbols: np.ndarray, origin_ns: np.ndarray,
              buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MASE, p-value) per origin (symbol, UTC nanoseconds of its as-of window, bucket), NaN where unknown. A skill
    table (``SKILL_COLUMNS``) is joined on integer keys, every origin at once; a mapping is read origin by origin."""
    if not isinstance(recent_mase, pd.DataFrame):
        stamps = _new_york_stamps(origin_ns)
        pairs = [_evidence_of(recent_mase, symbol, stamp, bucket)
                 for symbol, stamp, bucket in zip(symbols.tolist(), stamps, buckets.tolist(), strict=True)]
        values = np.array(pairs, dtype=np.float64).reshape(-1, 2)
        return values[:, 0], values[:, 1]
    mase = np.full(len(symbols), np.nan)
    p_value = np.full(len(symbols), np.nan)
    table = recent_mase
    if table.empty or not len(symbols):
        return mase, p_value
    names, table_symbol = _symbol_codes(table["symbol"].to_numpy(dtype=object))
    mine = np.searchsorted(names, np.asarray(symbols, dtype=object).astype(str))
    mine = np.where((mine < len(names)) & (names[np.minimum(mine, len(names) - 1)] == symbols.astype(str)), mine, -1)
    bucket_names = np.array([bucket for _, bucket in _EXIT_BUCKETS] + ["1_week"], dtype=object)
    table_bucket = pd.Index(bucket_names).get_indexer(table["horizon_bucket"].to_numpy(dtype=object))
    wanted_bucket = pd.Index(bucket_names).get_indexer(buckets)
    instants, inverse = np.unique(np.concatenate([_utc_ns(table["as_of_window"]), origin_ns]), return_inverse=True)
    table_at, wanted_at = inverse[: len(table)], inverse[len(table):]
    width = len(instants) * len(bucket_names)
    table_key = table_symbol * width + table_bucket * len(instants) + table_at
    table_key = np.where(table_bucket >= 0, table_key, -1)
    order = np.argsort(table_key, kind="stable")
    sorted_key = table_key[order]
    if (np.diff(sorted_key[sorted_key >= 0]) == 0).any():
        raise ValueError("The skill table has more than one row for a (symbol, as_of_window, horizon_bucket).")
    wanted_key = mine * width + wanted_bucket * len(instants) + wanted_at
    found = np.minimum(np.searchsorted(sorted_key, wanted_key), len(sorted_key) - 1)
    hit = (sorted_key[found] == wanted_key) & (mine >= 0) & (wanted_bucket >= 0)
    rows = order[found[hit]]
    mase[hit] = pd.to_numeric(table["mase"], errors="coerce").to_numpy(dtype=np.float64)[rows]
    p_value[hit] = pd.to_numeric(table["skill_p_value"], errors="coerce").to_numpy(dtype=np.float64)[rows]
    return np.where(np.isfinite(mase), mase, np.nan), np.where(np.isfinite(p_value), p_value, np.nan)


def _best_round_trips(by_position: np.ndarray, rising: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gross return, entry index, exit index) of the best long (``rising``) or short round trip per column of
    ``by_position`` (path positions x origins, NaN-padded at the end; position 0 is the as-of close).

    The running extremes run down the path positions, each a contiguous row: numpy accumulates along the first axis
    with whole rows at a time, along the last one element by element."""
    accumulate = np.fmin.accumulate if rising else np.fmax.accumulate
    extreme = accumulate(by_position, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gains = np.divide(by_position[1:], extreme[:-1])
        if rising:
            gains -= 1.0
        else:
            np.subtract(1.0, gains, out=gains)
    gains[np.isnan(gains)] = -np.inf
    exit_index = np.argmax(gains, axis=0) + 1
    columns = np.arange(by_position.shape[1])
    # The entry: the last position before the exit at the running extreme there (the price equal to it is the
    # extreme at its own position too, and no later one before the exit is), -1 where there is none (all NaN).
    lowest = extreme[exit_index - 1, columns]
    before = np.arange(by_position.shape[0])[:, None] < exit_index
    at_extreme = (by_position == lowest) & before
    last = by_position.shape[0] - 1 - np.argmax(at_extreme[::-1], axis=0)
    entry_index = np.where(at_extreme.any(axis=0), last, -1)
    return gains[exit_index - 1, columns], entry_index, exit_index


def _utc_ns(values: pd.Series) -> np.ndarray:
    """Instants as int64 UTC nanoseconds (NaT: ``_NAT``); naive stamps are read as UTC, as the output's
    ``pd.to_datetime(..., utc=True)`` always read them."""
    stamps = as_utc(values)
    if not isinstance(stamps, pd.Series):
        stamps = pd.Series(stamps)
    return stamps.astype("datetime64[ns, UTC]").to_numpy(dtype="datetime64[ns]").view(np.int64)


def _new_york_stamps(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]")).tz_localize("UTC").tz_convert(
        NEW_YORK
    )


def _symbol_codes(symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct symbols as text, sorted; each row's index into them): ``np.unique(symbols.astype(str),
    return_inverse=True)``, with each distinct object converted and sorted once instead of every row."""
    codes, uniques = factorize_runs(symbols)
    if (codes < 0).any():  # a null symbol reads "None" or "nan", as astype(str) writes it
        codes, uniques = pd.factorize(symbols, use_na_sentinel=False)
    names, inverse = np.unique(np.asarray(uniques, dtype=object).astype(str), return_inverse=True)
    return names, inverse.reshape(-1)[codes] if len(codes) else np.zeros(0, dtype=np.int64)


def _ascending(*keys: np.ndarray) -> bool:
    """Whether the rows are already in lexicographic order of ``keys`` (first key first), ties allowed."""
    if len(keys[0]) < 2:
        return True
    decided = np.zeros(len(keys[0]) - 1, dtype=bool)  # an earlier key already orders the pair
    for key in keys:
        step = np.diff(key)
        if (step[~decided] < 0).any():
            return False
        decided |= step > 0
    return True


def _minutes(ns: np.ndarray) -> np.ndarray:
    """Each instant as its New York ``%Y-%m-%d %H:%M`` text (``strftime``'s), formatting each distinct instant once,
    in C: numpy's ISO text of the wall-clock time to the minute, with a space for the ``T``."""
    distinct, inverse = np.unique(ns, return_inverse=True)
    wall = _new_york_stamps(distinct).tz_localize(None).to_numpy(dtype="datetime64[m]")
    text = np.char.replace(np.datetime_as_string(wall, unit="m"), "T", " ")
    return text.astype(object)[inverse.reshape(-1)]


def _padded(values: np.ndarray, group: np.ndarray, position: np.ndarray, shape: tuple[int, int], fill) -> np.ndarray:
    out = np.full(shape, fill, dtype=np.asarray(values).dtype)
    out[group, position + 1] = values
    return out


def recommend_trades(
    forecasts: pd.DataFrame,
    recent_mase: Mapping[Hashable, Any] | pd.DataFrame,
    settings: Settings,
    origins: Iterable[tuple[str, pd.Timestamp]] | pd.DataFrame | None = None,
    scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One ``trade_recommendations`` row per (symbol, as_of_window) of ``forecasts`` (prediction rows: target_window,
    predicted_close, last_close, confidence, confidence_level, model_version) and of ``origins``.

    ``scores`` (optional): one row per origin (symbol, as_of_window, confidence, confidence_level), read as every
    forecast row of that origin's confidence instead of the rows' own columns (the backtest's: its ~10^6 forecast
    rows need no per-row join of the scores); an origin it lacks has no confidence.

    ``recent_mase`` is the skill evidence: a skill table (``SKILL_COLUMNS``: one row per origin and horizon bucket,
    as the asset and the backtest read it from ``accuracy_metrics``), or a mapping of a symbol, or a (symbol,
    as_of_window), to a ``SkillEvidence`` (or a bare MASE, which has no p-value), one for every horizon or a mapping
    of horizon bucket to one (the gate reads the trade's exit bucket). Missing or None: not known yet.
    Held-back rows still carry the best trade the path offered (entry, exit, predicted return) where there is one,
    so a reader sees how far it was from the rules. Vectorized over origins (one array per path position); only the
    reason sentences are written one origin at a time.
    """
    missing = [name for name in FORECAST_COLUMNS if name not in forecasts.columns]
    if missing:
        raise ValueError(f"The forecasts are missing the column(s) {missing}; pass prediction rows with "
                         f"{list(FORECAST_COLUMNS)}.")
    keep = forecasts["predicted_close"].notna().to_numpy()
    n_rows = int(keep.sum())
    kept = slice(None) if n_rows == len(keep) else keep  # every row (the usual case): no copy of every column
    as_of_all = _utc_ns(forecasts["as_of_window"])[kept]
    target_all = _utc_ns(forecasts["target_window"])[kept]
    names, symbol_code = _symbol_codes(forecasts["symbol"].to_numpy(dtype=object)[kept])
    every_row_in_order = False
    if _ascending(symbol_code, as_of_all, target_all):  # prediction rows usually come in this order already
        rows = np.flatnonzero(keep)
        every_row_in_order = n_rows == len(keep)
    else:
        order = np.lexsort((target_all, as_of_all, symbol_code))
        symbol_code, as_of_all, target_all = symbol_code[order], as_of_all[order], target_all[order]
        rows = np.flatnonzero(keep)[order]
    starts = np.ones(n_rows, dtype=bool)
    if n_rows:
        starts[1:] = (symbol_code[1:] != symbol_code[:-1]) | (as_of_all[1:] != as_of_all[:-1])
    first_rows = np.flatnonzero(starts)
    group = np.cumsum(starts) - 1
    position = np.arange(n_rows) - first_rows[group] if n_rows else np.zeros(0, dtype=np.int64)
    n_origins = len(first_rows)
    shape = (n_origins, int(position.max()) + 2 if n_rows else 2)

    def column(name: str, dtype: str | type = np.float64, at: np.ndarray | None = None) -> np.ndarray:
        """The column at the kept rows in path order (``at``: only those of them)."""
        chosen = rows if at is None else rows[at]
        if name not in forecasts.columns:
            return np.full(len(chosen), np.nan if dtype == np.float64 else None, dtype=dtype)
        values = forecasts[name]
        if dtype != np.float64:
            array = values.to_numpy(dtype=object)
        elif values.dtype == np.float64:
            array = values.to_numpy()  # read only below: no copy
        else:
            array = values.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        return array if at is None and every_row_in_order else array[chosen]

    if n_rows == 0:
        return _with_missing_origins(_empty_recommendations(), recent_mase, origins,
                                     (np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64)))
    last_close = column("last_close", at=first_rows)
    # Path position by origin (each position one contiguous row): the round trips run down the positions.
    prices = np.full(shape[::-1], np.nan)
    prices[position + 1, group] = column("predicted_close")
    prices[0] = last_close
    origin_ns = as_of_all[first_rows]
    hold = settings.workflow.max_holding_windows + 1  # position 0 is the as-of close
    if prices.shape[0] > hold:  # exits at most max_holding_windows ahead
        prices = prices[:hold]
    lengths = np.diff(np.append(first_rows, n_rows))

    def on_path(at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the position, wrapped as an index into a padded row, whether a forecast row is there, that row)."""
        wrapped = np.where(at < 0, at + prices.shape[0], at)
        present = (wrapped >= 1) & (wrapped <= lengths)
        return wrapped, present, np.minimum(first_rows + np.maximum(wrapped, 1) - 1, n_rows - 1)

    if scores is None:
        confidence = _padded(column("confidence"), group, position, shape, np.nan)[:, : prices.shape[0]]
        confidence[:, 0] = np.inf  # the as-of close is known: it never lowers a trade's confidence
        level_values = column("confidence_level", object)
    else:  # one confidence per origin: read at the positions wanted, no padded copy of it per row
        origin_confidence, origin_level = _origin_scores(scores, names, symbol_code[first_rows], origin_ns)

    def confidence_at(at: np.ndarray) -> np.ndarray:
        if scores is None:
            return confidence[np.arange(n_origins), at]
        wrapped, present, _ = on_path(at)
        return np.where(wrapped == 0, np.inf, np.where(present, origin_confidence, np.nan))

    def window_at(at: np.ndarray) -> np.ndarray:
        wrapped, present, row = on_path(at)
        return np.where(wrapped == 0, origin_ns, np.where(present, target_all[row], np.iinfo(np.int64).min))

    gross, entry, exit_ = _best_round_trips(prices, rising=True)
    is_short = np.zeros(n_origins, dtype=bool)
    if settings.workflow.allow_short:
        short_gross, short_entry, short_exit = _best_round_trips(prices, rising=False)
        is_short = short_gross > gross
        gross = np.where(is_short, short_gross, gross)
        entry = np.where(is_short, short_entry, entry)
        exit_ = np.where(is_short, short_exit, exit_)
    index = np.arange(n_origins)
    cost_pct = round_trip_cost_pct(settings)
    net_pct = 100.0 * gross - cost_pct
    entry_conf, exit_conf = confidence_at(entry), confidence_at(exit_)
    trade_conf = np.minimum(entry_conf, exit_conf)  # NaN (not scored) wins
    # The level of the lower-confidence end (the exit on a tie); position 0 (the as-of close) has no level.
    level_at = np.where(exit_conf <= entry_conf, exit_, entry)
    level_row = np.where(level_at > 0, first_rows + level_at - 1, -1)
    if scores is None:
        trade_level = np.where(level_row >= 0, level_values[np.maximum(level_row, 0)] if n_rows else None, None)
    else:  # where the level counts (a scored trade) its row is the origin's own
        trade_level = np.where(level_row >= 0, origin_level, None)
    flat = ~(gross > _EPSILON)
    scored = ~np.isnan(trade_conf)

    entry_ns, exit_ns = window_at(entry), window_at(exit_)
    entry_price, exit_price = prices[entry, index], prices[exit_, index]
    origin_stamps = _new_york_stamps(origin_ns)
    symbols = names[symbol_code[first_rows]] if n_rows else np.array([], dtype=object)
    bucket_of = np.select(  # exit_bucket of every origin at once (a flat path has no exit)
        [flat, *(exit_ <= last for last, _ in _EXIT_BUCKETS)],
        [SKILL_BUCKET_DEFAULT, *(bucket for _, bucket in _EXIT_BUCKETS)],
        default="1_week",
    ).astype(object)
    buckets = bucket_of.tolist()
    mase, p_value = _evidence(recent_mase, symbols, origin_ns, bucket_of)
    level_known = scored & pd.notna(trade_level)
    trade_level = np.where(level_known, trade_level, None)

    limit = settings.workflow.skill_mase_max
    significance = settings.workflow.skill_significance
    minimum = settings.min_profit_percent
    threshold = settings.confidence_threshold
    rules = np.array([NO_SKILL_EVIDENCE, NO_SKILL, NOT_SIGNIFICANT, FLAT_PATH, MIN_PROFIT, CONFIDENCE_UNKNOWN,
                      LOW_CONFIDENCE, None], dtype=object)
    significant = np.ones(n_origins, dtype=bool) if significance >= 1.0 else p_value < significance
    with np.errstate(invalid="ignore"):
        rule = np.select(
            [np.isnan(mase), ~(mase < limit - _EPSILON), ~significant, flat, net_pct < minimum - _EPSILON, ~scored,
             trade_conf < threshold - _EPSILON],
            [0, 1, 2, 3, 4, 5, 6],
            default=7,
        )
    held = rules[rule]
    trade_held = rule >= 4
    needs_when = np.flatnonzero(trade_held & ~flat)
    entry_when = np.full(n_origins, "", dtype=object)
    exit_when = np.full(n_origins, "", dtype=object)
    if len(needs_when):
        entry_when[needs_when] = _minutes(entry_ns[needs_when])
        exit_when[needs_when] = _minutes(exit_ns[needs_when])
    direction = "rises or falls" if settings.workflow.allow_short else "rises (shorting is disabled)"
    reasons = []
    for i, (symbol, why) in enumerate(zip(symbols.tolist(), held.tolist(), strict=True)):
        if why == NO_SKILL_EVIDENCE:
            reasons.append(
                f"No recent MASE for {symbol}'s model at the {buckets[i].replace('_', ' ')} horizon yet, so nothing "
                "shows it beats the naive last-price forecast there: no trade until its forecasts have been validated."
            )
            continue
        if why == NO_SKILL:
            reasons.append(
                f"{symbol}'s model does not beat the naive last-price forecast at the {buckets[i].replace('_', ' ')} "
                f"horizon its best trade exits at (recent MASE {mase[i]:.2f} >= {limit:.2f}): no trade."
            )
            continue
        if why == NOT_SIGNIFICANT:
            horizon = buckets[i].replace("_", " ")
            reasons.append(
                f"{symbol}'s model beats the naive last-price forecast at the {horizon} horizon its best trade "
                f"exits at (recent MASE {mase[i]:.2f}) by no more than chance would "
                + (f"(p = {p_value[i]:.3f}, needs < {significance:g}): no trade." if np.isfinite(p_value[i]) else
                   "show, as far as its validations there can tell yet (no p-value): no trade.")
            )
            continue
        if why == FLAT_PATH:
            reasons.append(
                f"{symbol}'s predicted path never {direction} after any point of the week from "
                f"{prices[0, i]:.2f}: no trade."
            )
            continue
        trade = (
            f"{'short' if is_short[i] else 'buy'} at {entry_price[i]:.2f} ({entry_when[i]}), "
            f"{'cover' if is_short[i] else 'sell'} at {exit_price[i]:.2f} ({exit_when[i]}) "
            f"for {net_pct[i]:.2f}% after {cost_pct:.2f}% round-trip costs"
        )
        level = trade_level[i]
        if why == MIN_PROFIT:
            reasons.append(f"The best trade ({trade}) is below the {minimum:.2f}% minimum profit.")
        elif why == CONFIDENCE_UNKNOWN:
            reasons.append(
                f"The best trade ({trade}) has no confidence score yet, so it cannot clear the "
                f"{threshold:.2f} threshold."
            )
        elif why == LOW_CONFIDENCE:
            reasons.append(
                f"The best trade ({trade}) has confidence {trade_conf[i]:.2f}"
                f"{f' ({level})' if level else ''}, below the {threshold:.2f} threshold."
            )
        else:
            evidence = f", p = {p_value[i]:.3f}" if np.isfinite(p_value[i]) else ""
            reasons.append(
                f"{symbol}: {trade}; confidence {trade_conf[i]:.2f}{f' ({level})' if level else ''}, "
                f"recent MASE {mase[i]:.2f}{evidence} at the {buckets[i].replace('_', ' ')} horizon."
            )

    nat = np.iinfo(np.int64).min
    traded = rule == len(rules) - 1
    out = pd.DataFrame({
        "symbol": symbols.astype(object),
        "as_of_window": origin_stamps,
        "model_version": column("model_version", object, at=first_rows),
        "action": np.where(traded, np.where(is_short, SHORT, BUY), NO_TRADE).astype(object),
        "entry_window": _new_york_stamps(np.where(flat, nat, entry_ns)),
        "entry_price": np.where(flat, np.nan, entry_price),
        "exit_window": _new_york_stamps(np.where(flat, nat, exit_ns)),
        "exit_price": np.where(flat, np.nan, exit_price),
        "predicted_return_pct": np.where(flat, np.nan, net_pct),
        "confidence": trade_conf,
        "confidence_level": trade_level,
        "recent_mase": mase,
        "skill_p_value": p_value,
        "held_back_by": held,
        "reason": np.array(reasons, dtype=object),
    }, columns=RECOMMENDATION_COLUMNS)

    return _with_missing_origins(out, recent_mase, origins, (symbols.astype(object), origin_ns))


def _origin_scores(scores: pd.DataFrame, names: np.ndarray, codes: np.ndarray, origin_ns: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, confidence level) of each origin (``codes`` into the sorted symbol ``names``, UTC nanoseconds)
    from one row per origin of ``scores`` (the last where one repeats); NaN and None where it has none."""
    missing = [name for name in ("symbol", "as_of_window", "confidence", "confidence_level")
               if name not in scores.columns]
    if missing:
        raise ValueError(f"The scores are missing the column(s) {missing}; pass one row per origin with symbol, "
                         "as_of_window, confidence and confidence_level.")
    if scores.empty:
        return np.full(len(codes), np.nan), np.full(len(codes), None, dtype=object)
    score_codes = pd.Index(names, dtype=object).get_indexer(scores["symbol"].astype(str).to_numpy(dtype=object))
    keys = pd.MultiIndex.from_arrays([score_codes, _utc_ns(scores["as_of_window"])])
    kept = ~keys.duplicated(keep="last")
    found = keys[kept].get_indexer(pd.MultiIndex.from_arrays([codes, origin_ns]))
    rows = np.flatnonzero(kept)[np.maximum(found, 0)]
    confidence = scores["confidence"].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    level = scores["confidence_level"].to_numpy(dtype=object)
    hit = found >= 0
    return np.where(hit, confidence[rows], np.nan), np.where(hit, level[rows], None)


def _empty_recommendations() -> pd.DataFrame:
    out = pd.DataFrame({name: pd.Series(dtype=object) for name in RECOMMENDATION_COLUMNS})
    return out


def _expected_origins(origins: Iterable[tuple[str, pd.Timestamp]] | pd.DataFrame | None
                      ) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """(symbols as text, as-of windows) of the expected origins, first occurrence of each, in the given order: a
    frame's ``symbol`` and ``as_of_window`` columns, or (symbol, window) pairs."""
    if origins is None:
        return np.zeros(0, dtype=object), pd.DatetimeIndex([])
    if isinstance(origins, pd.DataFrame):
        symbols, windows = origins["symbol"].astype(str).to_numpy(dtype=object), origins["as_of_window"]
    else:
        pairs = list(origins)
        symbols = np.array([str(symbol) for symbol, _ in pairs], dtype=object)
        windows = [window for _, window in pairs]
    if isinstance(windows, pd.Series) and isinstance(windows.dtype, pd.DatetimeTZDtype):
        windows = pd.DatetimeIndex(windows)  # already instants: no parsing
    else:
        windows = pd.DatetimeIndex(pd.to_datetime(pd.Series(windows, dtype=object)
                                                  if not isinstance(windows, pd.Series) else windows))
    if not len(symbols):
        return symbols, windows
    ns = windows.tz_localize("UTC").asi8 if windows.tz is None else windows.asi8
    codes = factorize_runs(symbols)[0]
    if len(codes) > 1 and ((codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (ns[1:] > ns[:-1]))).all():
        return symbols, windows  # runs of symbols in rising time (the backtest's plan): no pair repeats
    first = ~pd.MultiIndex.from_arrays([symbols, ns]).duplicated()
    return symbols[first], windows[first]


def _with_missing_origins(
    out: pd.DataFrame,
    recent_mase: Mapping[Hashable, Any] | pd.DataFrame,
    origins: Iterable[tuple[str, pd.Timestamp]] | pd.DataFrame | None,
    seen: tuple[np.ndarray, np.ndarray],
) -> pd.DataFrame:
    """``out`` plus a ``no_forecast`` row per expected origin it lacks (``seen``: the symbols and UTC nanoseconds of
    the origins it has); typed and sorted by symbol and origin."""
    symbols, windows = _expected_origins(origins)
    ns = windows.tz_localize("UTC").asi8 if windows.tz is None else windows.asi8
    missing = np.ones(len(symbols), dtype=bool)
    if len(symbols) and len(seen[0]):
        missing = ~pd.MultiIndex.from_arrays([symbols, ns]).isin(
            pd.MultiIndex.from_arrays([seen[0], np.asarray(seen[1], dtype=np.int64)])
        )
    chosen = np.flatnonzero(missing)
    mase, p_value = _evidence(recent_mase, symbols[chosen], ns[chosen],
                              np.full(len(chosen), SKILL_BUCKET_DEFAULT, dtype=object))
    extra = [
        {
            "symbol": symbols[row],
            "as_of_window": windows[row],
            "action": NO_TRADE,
            "recent_mase": mase[i],
            "skill_p_value": p_value[i],
            "held_back_by": NO_FORECAST,
            "reason": f"No stored forecast for {symbols[row]} as of {_when(windows[row])} (not forecast yet, or "
            "skipped: see alerts): no trade.",
        }
        for i, row in enumerate(chosen)
    ]
    out = _typed(out)
    if extra:
        more = _typed(pd.DataFrame.from_records(extra, columns=RECOMMENDATION_COLUMNS))
        out = pd.concat([out, more], ignore_index=True) if len(out) else more
    elif _ascending(*_symbol_codes(out["symbol"].to_numpy(dtype=object))[1:], _utc_ns(out["as_of_window"])):
        return out.reset_index(drop=True)  # in order already (the rows come sorted by symbol code and origin)
    return out.sort_values(["symbol", "as_of_window"], kind="stable").reset_index(drop=True)


_NEW_YORK_DTYPE = pd.DatetimeTZDtype("ns", NEW_YORK)


def _typed(out: pd.DataFrame) -> pd.DataFrame:
    """The output's dtypes (a column already of its type is left as it is)."""
    for name in ("entry_window", "exit_window", "as_of_window"):
        if out[name].dtype != _NEW_YORK_DTYPE:
            out[name] = as_utc(out[name]).dt.tz_convert(NEW_YORK).astype(_NEW_YORK_DTYPE)
    for name in ("entry_price", "exit_price", "predicted_return_pct", "confidence", "recent_mase", "skill_p_value"):
        if out[name].dtype != np.float64:
            out[name] = out[name].astype("float64")
    for name in ("symbol", "model_version", "action", "confidence_level", "held_back_by", "reason"):
        if out[name].dtype != object:
            out[name] = out[name].astype(object)
    return out
