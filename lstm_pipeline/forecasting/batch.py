"""A run's forecasts in as few compiled calls as possible, and the (symbol, as-of window) pairs it could not forecast.

``forecast_windows`` is the whole forecasting step of the ``predictions`` asset, without Dagster: given the run's
wanted ``{symbol: [as-of windows]}``, the loaded models and each symbol's bars, it returns the prediction rows
(the columns of the ``predictions`` table, ``PREDICTION_COLUMNS``) and, for every pair it did not forecast, a kind
and a one-sentence reason. One symbol's problem never stops another symbol: a pair is skipped when

- ``model_unavailable``: the symbol's model did not load (the store's sentence);
- ``missing_as_of_bar``: the as-of window has no usable stored bar (a forecast as of W starts from W's close);
- ``bad_bars``: the symbol's bars cannot be turned into features (``FeatureError``);
- ``insufficient_bars``: fewer session windows up to W than the model's lookback;
- ``horizon_too_long``: a direct model trained for fewer steps than the horizon asks, or a calendar too short;
- ``forecast_out_of_bounds``: the path is non-finite or leaves the sane band (``sane_band``), so it is never
  published.

Batching: every pair of the run goes through the compiled loop's window axis (``compiled_outputs`` takes history
[symbols, windows, lookback, features]) together, one call per architecture (networks stacked on the symbol axis,
each symbol's as-of windows on the window axis, padded to the longest), split only when one call would hold more
than ``max_chains_per_call`` LSTM chains (memory). A recursive group's horizon is padded to its longest pair's: the
loop is causal, so a step's output does not depend on how many steps follow it, and the padding is cut off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lstm_pipeline.forecasting.features import FeatureError, bar_features, future_windows
from lstm_pipeline.forecasting.intervals import price_intervals
from lstm_pipeline.market.calendar import NEW_YORK, SLOTS_PER_SESSION, to_new_york, week_ahead_spans

if TYPE_CHECKING:
    from lstm_pipeline.forecasting.store import LoadedModel

PREDICTION_COLUMNS: tuple[str, ...] = (
    "symbol",
    "as_of_window",
    "horizon_step",
    "target_window",
    "predicted_close",
    "lower_80",
    "upper_80",
    "lower_95",
    "upper_95",
    "last_close",
    "forecast_mode",
    "model_version",
)
"""Columns of a prediction row (the ``predictions`` table without ``created_at``)."""
PRICE_COLUMNS: tuple[str, ...] = PREDICTION_COLUMNS[4:10]
"""The float columns of a prediction row, in order: the predicted close, its bounds, and the last close."""

WEEK_STEPS = 5 * SLOTS_PER_SESSION
"""Session windows in a full trading week (130): the unit the sane band grows in."""
SANE_BAND_PER_WEEK = 0.5
"""Largest relative move from the last close a published forecast may show within one week ahead (+-50%)."""

MODEL_UNAVAILABLE = "model_unavailable"
MISSING_AS_OF_BAR = "missing_as_of_bar"
BAD_BARS = "bad_bars"
INSUFFICIENT_BARS = "insufficient_bars"
HORIZON_TOO_LONG = "horizon_too_long"
FORECAST_OUT_OF_BOUNDS = "forecast_out_of_bounds"
SKIP_SEVERITY: dict[str, str] = {
    MODEL_UNAVAILABLE: "error",
    FORECAST_OUT_OF_BOUNDS: "error",
    BAD_BARS: "warning",
    MISSING_AS_OF_BAR: "warning",
    INSUFFICIENT_BARS: "warning",
    HORIZON_TOO_LONG: "warning",
}
"""Alert severity of each skip kind: a model that cannot serve or serves nonsense is an error, missing data a
warning (it heals when the bars arrive)."""

MAX_CHAINS_PER_CALL = 400_000
"""Upper bound of symbols x windows x lookback per compiled call (~50 MB per LSTM state tensor at 32 units)."""


def history_start(first_as_of: pd.Timestamp, lookback_steps: int) -> pd.Timestamp:
    """How far back to read bars so the first as-of window has a full lookback: any 7 calendar days hold at least
    3 sessions, plus a week for a long weekend or a holiday."""
    return pd.Timestamp(first_as_of) - pd.Timedelta(days=7 * (lookback_steps // (3 * SLOTS_PER_SESSION) + 1) + 7)


def alert_rows(skipped: Mapping[tuple[str, pd.Timestamp], tuple[str, str]], source: str, run_id: str) -> pd.DataFrame:
    """One ``alerts`` row per skipped pair (without ``created_at``)."""
    return pd.DataFrame(
        [
            {
                "source": source,
                "symbol": symbol,
                "as_of_window": window,
                "kind": kind,
                "severity": SKIP_SEVERITY.get(kind, "warning"),
                "message": reason,
                "run_id": run_id,
                "level": SKIP_SEVERITY.get(kind, "warning").upper(),
                "alert_key": f"{kind}:{symbol}",
            }
            for (symbol, window), (kind, reason) in skipped.items()
        ],
        columns=["source", "symbol", "as_of_window", "kind", "severity", "message", "run_id", "level", "alert_key"],
    )


def skip_summary(skipped: Mapping[tuple[str, pd.Timestamp], tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str]]:
    """(symbol, kind) -> (windows skipped, the first one's reason): one line per symbol and kind, not per window."""
    summary: dict[tuple[str, str], tuple[int, str]] = {}
    for (symbol, _), (kind, reason) in sorted(skipped.items()):
        count, first = summary.get((symbol, kind), (0, reason))
        summary[(symbol, kind)] = (count + 1, first)
    return summary


@dataclass(frozen=True)
class WindowForecasts:
    """What ``forecast_windows`` produced: rows, skipped pairs with (kind, reason), and how many compiled calls."""

    rows: pd.DataFrame
    skipped: dict[tuple[str, pd.Timestamp], tuple[str, str]] = field(default_factory=dict)
    compiled_calls: int = 0

    @property
    def predicted(self) -> set[tuple[str, pd.Timestamp]]:
        """The (symbol, as-of window) pairs that have rows."""
        if self.rows.empty:
            return set()
        pairs = self.rows[["symbol", "as_of_window"]].drop_duplicates()
        return set(zip(pairs["symbol"], pairs["as_of_window"], strict=True))


def sane_band(steps: np.ndarray | int) -> np.ndarray:
    """Largest allowed ``|predicted close / last close - 1|`` at each horizon step (1-based).

    +-50% anywhere within the first week (130 steps); beyond it the band widens as ``sqrt(weeks)``, the
    random-walk rate, so a recursive 672-step forecast is held to +-114% at its fifth week, not to one week's band.
    """
    weeks = np.maximum(1.0, np.asarray(steps, dtype=np.float64) / WEEK_STEPS)
    return SANE_BAND_PER_WEEK * np.sqrt(weeks)


@dataclass(frozen=True)
class _Origins:
    """One symbol's as-of windows ready for the compiled loop, as arrays over the origins (ascending).

    Arrays, not an object per origin: a year of origins is ~6,500 and ~840,000 target windows, and a Timestamp, a
    window slice and a target index per origin cost more than the forward pass. Target windows (and, recursive,
    the known part of the future rows) are laid end to end, origin by origin; ``lengths`` cuts them apart.
    """

    symbol: str
    as_of: pd.DatetimeIndex  # [N] New York
    history: np.ndarray  # [N, lookback, F] float32 scaled: the rows up to and including each as-of window
    last_close: np.ndarray  # [N] float64
    lengths: np.ndarray  # [N] int64: target windows (horizon) of each origin
    targets: np.ndarray  # [sum(lengths)] int64 UTC nanoseconds
    exogenous: np.ndarray | None  # [sum(lengths), F] scaled known part of the future rows (recursive)

    def __len__(self) -> int:
        return len(self.as_of)

    def part(self, start: int, stop: int) -> _Origins:
        """Origins ``start:stop`` (views, not copies)."""
        offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        first, last = offsets[start], offsets[min(stop, len(self))]
        return _Origins(
            symbol=self.symbol,
            as_of=self.as_of[start:stop],
            history=self.history[start:stop],
            last_close=self.last_close[start:stop],
            lengths=self.lengths[start:stop],
            targets=self.targets[first:last],
            exogenous=None if self.exogenous is None else self.exogenous[first:last],
        )


def forecast_windows(
    wanted: Mapping[str, Sequence[pd.Timestamp]],
    models: Mapping[str, LoadedModel],
    bars: Mapping[str, pd.DataFrame],
    horizon_steps: int | None = None,
    unavailable: Mapping[str, str] | None = None,
    max_chains_per_call: int = MAX_CHAINS_PER_CALL,
) -> WindowForecasts:
    """Forecast every wanted (symbol, as-of window) pair that can be, in one compiled call per architecture.

    ``wanted`` maps each symbol to its as-of windows; ``models`` holds the symbols whose model loaded and
    ``unavailable`` the store's sentence for those whose did not; ``bars`` holds each symbol's usable stored bars
    (at least the model's lookback before its first as-of window). The horizon of a pair is the week ahead of its
    as-of window (``market.calendar.week_ahead_windows``), or ``horizon_steps`` windows.
    """
    skipped: dict[tuple[str, pd.Timestamp], tuple[str, str]] = {}
    groups: dict[tuple[Any, ...], dict[str, _Origins]] = {}
    for symbol in sorted(wanted):
        windows = _as_of_windows(wanted[symbol])
        model = models.get(symbol)
        if model is None:
            reason = (unavailable or {}).get(symbol) or (
                f"No model was loaded for {symbol}; train it (materialize lstm_model for partition {symbol})."
            )
            skipped.update({(symbol, window): (MODEL_UNAVAILABLE, reason) for window in windows})
            continue
        origins, problems = _prepare(symbol, windows, model, bars.get(symbol), horizon_steps)
        skipped.update(problems)
        if origins is not None:
            groups.setdefault(model.config.architecture_key, {})[symbol] = origins

    frames: list[tuple[str, int, pd.DataFrame]] = []
    calls = 0
    for members in groups.values():
        for chunk in _chunks(members, max_chains_per_call):
            outputs = _run(chunk, models)
            calls += 1
            for symbol, symbol_outputs in zip(chunk, outputs, strict=True):
                origins = chunk[symbol]
                frame, refused = _priced(models[symbol], origins, symbol_outputs)
                frames.append((symbol, int(origins.as_of.asi8[0]), frame))
                skipped.update(refused)

    # Each frame holds one symbol's consecutive as-of windows in (as-of, step) order, so frames in (symbol, first
    # as-of) order are the rows sorted by symbol, as-of window and step, without sorting a million rows.
    ordered = [frame for _, _, frame in sorted(frames, key=lambda entry: entry[:2])]
    if len(ordered) == 1:  # a backtest block: one symbol, one frame (concat would copy a million rows)
        rows = ordered[0]
    else:
        rows = pd.concat(ordered, ignore_index=True) if ordered else _empty_rows()
    return WindowForecasts(rows=rows, skipped=dict(sorted(skipped.items())), compiled_calls=calls)


def _as_of_windows(values: Sequence[pd.Timestamp]) -> pd.DatetimeIndex:
    """The distinct as-of windows in New York, ascending (naive stamps are New York), converted as one index."""
    try:
        stamps = pd.DatetimeIndex(values)
    except (TypeError, ValueError):  # a mix of zones: one stamp at a time
        return pd.DatetimeIndex(sorted({to_new_york(window) for window in values}), tz=NEW_YORK)
    stamps = stamps.tz_localize(NEW_YORK) if stamps.tz is None else stamps.tz_convert(NEW_YORK)
    return stamps.unique().sort_values()


def _prepare(
    symbol: str,
    windows: pd.DatetimeIndex,
    model: LoadedModel,
    symbol_bars: pd.DataFrame | None,
    horizon_steps: int | None,
) -> tuple[_Origins | None, dict[tuple[str, pd.Timestamp], tuple[str, str]]]:
    """The symbol's origins ready to run (None when none is), and the reason for each as-of window that is not.

    Whole-array work over the origins: a window of history is a row range of the scaled features (taken with
    stride tricks, not a slice per origin), and the week ahead of every origin is a span of one calendar lookup.
    Only the skipped windows, usually none, are visited one by one (each gets its own sentence)."""
    from lstm_pipeline.forecasting.forecaster import future_rows

    config, scaler = model.config, model.scaler
    skipped: dict[tuple[str, pd.Timestamp], tuple[str, str]] = {}
    stored = np.isin(windows.asi8, _bar_windows(symbol_bars))
    present = windows[stored]
    for window in windows[~stored]:
        skipped[(symbol, window)] = (
            MISSING_AS_OF_BAR,
            f"{symbol} has no usable stored bar for {window:%Y-%m-%d %H:%M}, the window this forecast is made "
            f"as of; materialize market_bars for {symbol} over that window (or repair its bar) and re-run.",
        )
    if not len(present):
        return None, skipped
    try:
        features = bar_features(symbol_bars, config.features, symbol=symbol)
    except (FeatureError, ValueError) as exc:
        skipped.update({(symbol, window): (BAD_BARS, _sentence(exc)) for window in present})
        return None, skipped
    scaled = scaler.transform(features[list(config.features)].to_numpy())
    closes = features["close"].to_numpy(dtype=np.float64)
    lookback = config.lookback_steps
    positions = features.index.get_indexer(present)
    available = np.where(positions >= 0, positions + 1, 0)
    short = available < lookback
    for window, count in zip(present[short], available[short], strict=True):
        skipped[(symbol, window)] = (
            INSUFFICIENT_BARS,
            f"{symbol} has {count} session windows of returns up to {window:%Y-%m-%d %H:%M} but its model "
            f"reads the last {lookback}; backfill market_bars for {symbol} before this window.",
        )
    present, positions = present[~short], positions[~short]

    if horizon_steps is None:
        # The week ahead of every as-of window in one calendar lookup (a lookup per window dominated long
        # backfills), laid end to end: origin i's targets are calendar[first[i]:end[i]].
        calendar, firsts, ends = week_ahead_spans(present)
        lengths = ends - firsts
        starts = np.cumsum(lengths) - lengths  # where each origin's targets begin, laid end to end
        targets = calendar.asi8[np.repeat(firsts - starts, lengths) + np.arange(int(lengths.sum()))]
    else:
        present, positions, lengths, targets = _fixed_horizons(symbol, present, positions, horizon_steps, skipped)
    if config.forecast_mode == "direct":
        too_long = lengths > config.horizon_steps
        for window, length in zip(present[too_long], lengths[too_long], strict=True):
            skipped[(symbol, window)] = (
                HORIZON_TOO_LONG,
                f"The model for {symbol} is direct with a {config.horizon_steps}-step horizon and cannot forecast "
                f"the {length} steps after {window:%Y-%m-%d %H:%M}; ask for at most {config.horizon_steps} "
                "or use a recursive model.",
            )
        if too_long.any():
            kept_targets = np.repeat(~too_long, lengths)
            present, positions, lengths, targets = (
                present[~too_long], positions[~too_long], lengths[~too_long], targets[kept_targets]
            )
    if not len(present):
        return None, skipped

    # Window k of the view is rows k .. k + lookback - 1, so the window ending at an as-of row p is p - lookback + 1.
    rows = np.lib.stride_tricks.sliding_window_view(scaled.astype(np.float32), lookback, axis=0)
    history = rows.transpose(0, 2, 1)[positions - lookback + 1]
    exogenous = None
    if config.forecast_mode == "recursive":
        # A future row depends on its own window and (held features) its origin's last row: every origin in one call.
        exogenous = future_rows(
            config,
            scaler,
            np.repeat(scaled[positions], lengths, axis=0),
            pd.DatetimeIndex(targets, tz="UTC").tz_convert(NEW_YORK),
        )
    origins = _Origins(
        symbol=symbol,
        as_of=present,
        history=history,
        last_close=closes[positions],
        lengths=lengths.astype(np.int64),
        targets=targets,
        exogenous=exogenous,
    )
    return origins, skipped


def _fixed_horizons(
    symbol: str,
    present: pd.DatetimeIndex,
    positions: np.ndarray,
    horizon_steps: int,
    skipped: dict[tuple[str, pd.Timestamp], tuple[str, str]],
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray]:
    """The next ``horizon_steps`` windows of each origin (a caller's fixed horizon, usually one origin): the
    origins the calendar can serve, their positions, lengths and targets end to end; the others go to ``skipped``."""
    kept: list[int] = []
    targets: list[np.ndarray] = []
    for index, window in enumerate(present):
        try:
            targets.append(future_windows(window, horizon_steps).asi8)
        except ValueError as exc:
            skipped[(symbol, window)] = (HORIZON_TOO_LONG, _sentence(exc))
            continue
        kept.append(index)
    chosen = np.asarray(kept, dtype=np.int64)
    lengths = np.array([len(values) for values in targets], dtype=np.int64)
    flat = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)
    return present[chosen], positions[chosen], lengths, flat


def _bar_windows(symbol_bars: pd.DataFrame | None) -> np.ndarray:
    """The instants (UTC nanoseconds) of the windows that have a stored bar."""
    if symbol_bars is None or symbol_bars.empty:
        return np.zeros(0, dtype=np.int64)
    column = symbol_bars["window_start"]
    stamps = pd.DatetimeIndex(column if column.dtype.kind == "M" else pd.to_datetime(column))
    stamps = stamps.tz_localize(NEW_YORK) if stamps.tz is None else stamps.tz_convert(NEW_YORK)
    return stamps.asi8


def _chunks(members: dict[str, _Origins], max_chains: int) -> list[dict[str, _Origins]]:
    """Split one architecture's origins so that no call holds more than ``max_chains`` LSTM chains."""
    lookback = next(iter(members.values())).history.shape[1]
    per_symbol = max(1, max_chains // (len(members) * lookback))
    longest = max(len(origins) for origins in members.values())
    if longest <= per_symbol:
        return [members]
    return [
        {symbol: origins.part(start, start + per_symbol) for symbol, origins in members.items() if len(origins) > start}
        for start in range(0, longest, per_symbol)
    ]


def _run(chunk: dict[str, _Origins], models: Mapping[str, LoadedModel]) -> list[np.ndarray]:
    """One compiled call for the chunk: [symbols, windows (padded), ...] in, each symbol's unpadded outputs out."""
    from lstm_pipeline.forecasting.forecaster import compiled_outputs

    symbols = list(chunk)
    config = models[symbols[0]].config
    width = max(len(origins) for origins in chunk.values())
    _, lookback, n_features = chunk[symbols[0]].history.shape
    history = np.zeros((len(symbols), width, lookback, n_features), dtype=np.float32)
    exogenous = None
    if config.forecast_mode == "recursive":
        steps = max(int(origins.lengths.max()) for origins in chunk.values())
        exogenous = np.zeros((len(symbols), width, steps, n_features), dtype=np.float32)
    for row, origins in enumerate(chunk.values()):
        history[row, : len(origins)] = origins.history
        if exogenous is not None:
            # Row-major order of the mask is origin by origin, step by step: the order the rows are laid in.
            exogenous[row, : len(origins)][np.arange(steps) < origins.lengths[:, None]] = origins.exogenous
    outputs = compiled_outputs(config, [models[symbol].weights for symbol in symbols], history, exogenous)
    return [outputs[row, : len(chunk[symbol])] for row, symbol in enumerate(symbols)]


def _priced(
    model: LoadedModel, origins: _Origins, outputs: np.ndarray
) -> tuple[pd.DataFrame, dict[tuple[str, pd.Timestamp], tuple[str, str]]]:
    """Prices, intervals and rows of one symbol's origins (in as-of order); paths outside the sane band are
    refused, not published.

    All origins at once on [origins, longest horizon] arrays: a path's prices and bounds at a step depend only on
    the steps up to it, so a shorter horizon (a holiday week) reads the prefix of its row and ignores the padding."""
    from lstm_pipeline.forecasting.forecaster import log_price_paths

    refused: dict[tuple[str, pd.Timestamp], tuple[str, str]] = {}
    lengths = origins.lengths
    longest = int(lengths.max())
    steps = np.arange(1, longest + 1, dtype=np.int64)
    valid = steps[None, :] <= lengths[:, None]
    last_close = origins.last_close
    with np.errstate(over="ignore", invalid="ignore"):  # the padding past a short horizon may overflow
        path = np.exp(log_price_paths(model.config, model.scaler, outputs[:, :longest], last_close))
    bounds = price_intervals(path, model.config.intervals)
    values = {"predicted_close": path}
    for key, (lower, upper) in bounds.items():
        percent = round(float(key) * 100)
        values[f"lower_{percent}"] = lower
        values[f"upper_{percent}"] = upper
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.all([(np.isfinite(array) | ~valid).all(axis=1) for array in values.values()], axis=0)
        moves = np.abs(path / last_close[:, None] - 1.0)
        outside = (moves > sane_band(steps)) & valid
    keep = finite & ~outside.any(axis=1)
    for slot in np.flatnonzero(~keep):
        length = lengths[slot]
        refused[(origins.symbol, origins.as_of[slot])] = (
            FORECAST_OUT_OF_BOUNDS,
            _out_of_bounds(model, origins, slot, path[slot, :length], finite[slot], outside[slot, :length]),
        )
    if not keep.any():
        return _empty_rows(), refused
    published = valid & keep[:, None]  # row-major: origin by origin (as-of order), step by step
    return _rows(model, origins, keep, values, published, steps), refused


def _out_of_bounds(
    model: LoadedModel, origins: _Origins, slot: int, path: np.ndarray, finite: bool, outside: np.ndarray
) -> str:
    symbol, as_of, last_close = origins.symbol, origins.as_of[slot], float(origins.last_close[slot])
    when = f"as of {as_of:%Y-%m-%d %H:%M}"
    fix = f"check the model (retrain it: materialize lstm_model for partition {symbol}) and the recent bars"
    if not finite:
        return f"The forecast for {symbol} {when} is not finite (NaN or inf), so it was not published; {fix}."
    step = int(np.flatnonzero(outside)[0])
    band = float(sane_band(step + 1))
    first_target = int(origins.lengths[:slot].sum())  # the origin's targets begin there, laid end to end
    target = pd.Timestamp(origins.targets[first_target + step], tz="UTC").tz_convert(NEW_YORK)
    return (
        f"The forecast for {symbol} {when} reaches {path[step]:.4g} at step {step + 1} "
        f"({target:%Y-%m-%d %H:%M}), {path[step] / last_close:.2f}x the last close "
        f"{last_close:.4g}, outside the sane band of +-{band:.0%}, so it was not published (model "
        f"{model.version}); {fix}."
    )


def _rows(
    model: LoadedModel,
    origins: _Origins,
    keep: np.ndarray,
    values: dict[str, np.ndarray],
    published: np.ndarray,
    steps: np.ndarray,
) -> pd.DataFrame:
    """Rows of the kept origins, origin by origin and step by step: ``values`` ([origins, longest horizon] each) read
    where ``published``.

    The price columns are gathered straight into the frame's one float block (pandas stores it as [columns, rows]),
    so a million rows are written once instead of gathered and then stacked again by the DataFrame constructor."""
    lengths = origins.lengths[keep]
    prices = np.empty((len(PRICE_COLUMNS), int(lengths.sum())), dtype=np.float64)
    for index, name in enumerate(PRICE_COLUMNS[:-1]):  # a boolean mask reads these faster than a flat index
        prices[index] = values[name][published] if name in values else np.nan
    prices[-1] = np.repeat(origins.last_close[keep], lengths)
    targets = origins.targets if bool(keep.all()) else origins.targets[np.repeat(keep, origins.lengths)]
    as_of = np.repeat(origins.as_of.asi8[keep], lengths)  # an aware index's asi8 is UTC
    frame = pd.DataFrame(prices.T, columns=list(PRICE_COLUMNS), copy=False)
    frame.insert(0, "symbol", origins.symbol)
    frame.insert(1, "as_of_window", pd.DatetimeIndex(as_of, tz="UTC").tz_convert(NEW_YORK))
    frame.insert(2, "horizon_step", np.broadcast_to(steps, published.shape)[published])
    frame.insert(3, "target_window", pd.DatetimeIndex(targets, tz="UTC").tz_convert(NEW_YORK))
    frame["forecast_mode"] = model.config.forecast_mode
    frame["model_version"] = model.version
    return frame


def _empty_rows() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype="float64") for name in PREDICTION_COLUMNS})
    frame["symbol"] = frame["symbol"].astype(object)
    frame["forecast_mode"] = frame["forecast_mode"].astype(object)
    frame["model_version"] = frame["model_version"].astype(object)
    frame["horizon_step"] = frame["horizon_step"].astype("int64")
    for name in ("as_of_window", "target_window"):
        frame[name] = pd.Series(dtype=f"datetime64[ns, {NEW_YORK}]")
    return frame


def _sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if text.endswith(".") else text + "."


__all__ = [
    "FORECAST_OUT_OF_BOUNDS",
    "MAX_CHAINS_PER_CALL",
    "PREDICTION_COLUMNS",
    "SANE_BAND_PER_WEEK",
    "SKIP_SEVERITY",
    "WindowForecasts",
    "alert_rows",
    "forecast_windows",
    "history_start",
    "skip_summary",
    "sane_band",
]
