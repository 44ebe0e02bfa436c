"""A walk-forward backtest over any bar history, through the same domain code the assets run. No Dagster.

``run_backtest`` replays one or more symbols' bars: per symbol it trains on the first ``train_sessions`` sessions
(``forecasting.training.train_symbol``, saved and loaded back through the model store exactly as ``lstm_model``
does), forecasts the week ahead from every as-of window after that span (``forecasting.batch.forecast_windows``, all
the origins of a retraining block in one call), and retrains every ``retrain_every`` sessions (0: never) on every
bar before the block, and also after any session at whose end the retraining sensor's rule fires
(``evaluation.lifecycle.first_retrain``; ``retrain_rule=False`` turns that off). Then, over all the forecasts at
once, the live chain runs as it would have window by window: interval adaptation
(``forecasting.bands.adapt_intervals``), validation (``validate_predictions``), confidence (``confidence_scores``),
the skill gate's evidence (``accuracy_metrics``' MASE and skill p-value, span ``month``, every bucket, as the
``trade_recommendations`` asset reads it), recommendations (``recommend_trades``) and their scoring
(``score_recommendations``). Every step is vectorized over all origins (integer-key joins, no per-origin pandas
work), and the bucketed figures read only the rows that can fall in a horizon bucket (``bucket_candidates``).
``tests/backtest/test_agreement.py`` runs the same bars through the Dagster chain window by window and checks
forecasts, intervals, confidence, validations and recommendations agree to 1e-9.

Why one pass per step is honest: each of those functions is walk-forward by timestamps (a forecast as of W reads
bars up to W, validations of targets up to W (before W for confidence, which the chain computes before it
validates W) and forecasts made before W), so running them once over the whole
replay gives each origin exactly what it would have known at its close. The forecasts themselves only ever see
bars up to their block's last origin, and the models only bars before their block. ``tests/backtest`` checks it:
perturbing the bars after an origin leaves that origin's forecast and validations unchanged.

The two baseline bands of the issue (``forecasting.bands.baseline_bands``: naive and time-of-day) are scored on the
same origins and targets, so the report's interval scores compare like with like.

Two cores: the steps that need none of the main line's results yet run on a worker thread beside it
(``_second_core``): the baseline bands (from the bars, during adaptation), confidence's bar statistics and forecast
shifts (``prepare_confidence``, during validation), then, while the main line reads the skill gate's evidence and
applies the trade rules, the confidence scores and the scored validations. numpy releases the interpreter lock in
its array loops, so the two lines overlap; the results are the same as all in line (``second_core=False``;
``tests/backtest`` checks it). The validations' sentences, which no figure reads, are written when
``BacktestResult.validations`` is first read (``judge_predictions``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lstm_pipeline.evaluation.accuracy import (
    HORIZON_BUCKETS,
    SPAN_WINDOWS,
    accuracy_metrics,
    confidence_separates,
    error_by_confidence,
    horizon_buckets,
)
from lstm_pipeline.evaluation.confidence import (
    forecast_summaries,
    model_test_mase,
    prepare_confidence,
    scores_with_validations,
)
from lstm_pipeline.evaluation.keys import as_floats, as_text, factorize_runs, rows_at
from lstm_pipeline.evaluation.lifecycle import first_retrain
from lstm_pipeline.evaluation.stamps import as_new_york
from lstm_pipeline.evaluation.validation import (
    INVALID,
    NEEDS_REPREDICTION,
    judge_predictions,
    validate_predictions,
)
from lstm_pipeline.forecasting.batch import forecast_windows
from lstm_pipeline.forecasting.training import TrainingDataError, TrainingSettings
from lstm_pipeline.market.calendar import NEW_YORK, WINDOW
from lstm_pipeline.settings import Settings
from lstm_pipeline.trading.recommendations import (
    HELD_BACK_RULES,
    NO_TRADE,
    SKILL_SPAN,
    recommend_trades,
)
from lstm_pipeline.trading.scoring import score_recommendations

if TYPE_CHECKING:
    from lstm_pipeline.forecasting.store import LoadedModel

WEEK_SESSIONS = 5
"""Sessions after the training span the history must still hold: one week to forecast and validate."""
HORIZONS = ("week",)
BAND_KINDS = ("naive", "tod")
COVERAGES = (80, 95)
_BOUNDS = ("lower_80", "upper_80", "lower_95", "upper_95")

ModelFactory = Callable[[str, pd.DataFrame], "LoadedModel"]
"""(symbol, the bars to train on) -> a model ready to forecast; the default trains with ``train_symbol``."""


class BacktestDataError(ValueError):
    """The bars cannot support the backtest asked for; the message is one sentence naming the symbol and the fix."""


@dataclass
class BacktestResult:
    """What ``run_backtest`` produced: the report and every row behind it (the tables the assets would store)."""

    report: dict[str, Any]
    forecasts: pd.DataFrame
    """Every forecast row (intervals adapted when adaptation is on), without the confidence columns."""
    scores: pd.DataFrame
    """One row per origin (symbol, as_of_window): confidence, its level, factors and reason."""
    validation_rows: pd.DataFrame
    """Every validation but its sentence (``validations`` has all the columns)."""
    recommendations: pd.DataFrame
    outcomes: pd.DataFrame
    scored: pd.DataFrame
    """One row per counted validation (its columns but ``status_reason``) with its bucket, interval scores and both
    bands' scores (report input)."""
    models: pd.DataFrame
    """One row per trained model: symbol, first and last origin it served, version, mode, training seconds."""
    skipped: dict[tuple[str, pd.Timestamp], tuple[str, str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage of the main line (``after_training_s``: all of it after training, wall clock), and
    ``beside_s``: the steps handed beside it (baseline bands, confidence, scored validations), on the second core or,
    without one, in line between the stages. With the worker, ``confidence_s`` and ``bands_s`` are mostly the main
    line waiting for its results."""
    bands_available: bool = True
    intervals: str = "conformal (as trained)"
    """Which intervals were scored: the model's conformal ones, or those adapted as the validations arrived."""
    sentences: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    """What writes ``validation_rows``' ``status_reason`` (``judge_predictions``); None: they have it."""

    @functools.cached_property
    def validations(self) -> pd.DataFrame:
        """The ``validations`` rows the assets would store. Their ``status_reason`` sentences are written on first use:
        the report reads none of the ~10^6 of a symbol-year, and writing them costs as much as judging."""
        if self.sentences is None:
            return self.validation_rows
        rows = self.validation_rows.copy(deep=False)
        rows["status_reason"] = self.sentences()
        self.sentences = None  # written: the arrays it kept are freed
        return rows

    @functools.cached_property
    def predictions(self) -> pd.DataFrame:
        """The ``predictions`` rows the assets would store: every forecast row with its origin's confidence columns
        (joined on first use: the report does not need the ~840k-row join of a symbol-year)."""
        return _with_scores(self.forecasts, self.scores)

    @property
    def origins(self) -> int:
        return int(len(self.scores))

    @property
    def origins_per_second(self) -> float:
        """Origins replayed per second after training (forecasting, adaptation, validation, confidence, skill
        gate, recommendations, scoring, baseline bands and the report)."""
        seconds = self.timings.get("after_training_s", 0.0)
        return self.origins / seconds if seconds > 0 else float("nan")


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the array work of the replay, as it was before afterwards. A full
    collection walks every live object, TensorFlow's model graphs included (up to 250 ms on this 2-core machine,
    landing at random in a stage), and the replay's millions of array elements create no reference cycles to
    collect; reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _SecondCore:
    """A worker thread for the replay's steps whose inputs are ready while the main line is still busy: numpy
    releases the interpreter lock in its array loops, so on two cores the two lines overlap (a thread, not a
    process: no copy of the ~10^6-row frames). Work runs in the order it is submitted; ``busy_s`` is its own time.
    Without a pool (one core, or asked for) each step runs in line when submitted, with the same results."""

    def __init__(self, pool: ThreadPoolExecutor | None) -> None:
        self._pool = pool
        self.busy_s = 0.0

    def submit(self, function: Callable[..., Any], *args: Any) -> Future:
        def timed() -> Any:
            started = time.perf_counter()
            try:
                return function(*args)
            finally:
                self.busy_s += time.perf_counter() - started

        if self._pool is not None:
            return self._pool.submit(timed)
        done: Future = Future()
        try:
            done.set_result(timed())
        except Exception as exc:  # raised where the main line asks for the result, as from the thread
            done.set_exception(exc)
        return done


def _cores() -> int:
    """The processors this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _second_core(enabled: bool | None = None) -> Iterator[_SecondCore]:
    """A ``_SecondCore`` for the block (``enabled`` None: when the process may use two processors or more); on the
    way out its work is waited for, or dropped where not started yet after an error on the main line."""
    if not (_cores() >= 2 if enabled is None else enabled):
        yield _SecondCore(None)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backtest")
    try:
        yield _SecondCore(pool)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _bands_module() -> Any | None:
    """``lstm_pipeline.forecasting.bands`` when it is importable (None: the band fields stay null)."""
    try:
        from lstm_pipeline.forecasting import bands
    except ImportError:
        return None
    return bands


def train_loaded_model(symbol: str, bars: pd.DataFrame, training: TrainingSettings | None = None) -> LoadedModel:
    """Train like ``lstm_model`` does, save to a temporary model folder and load it back through the store, so
    the backtest forecasts with exactly the weights, scaler and version the assets would serve."""
    from lstm_pipeline.forecasting.store import load_model, save_model
    from lstm_pipeline.forecasting.training import train_symbol

    trained = train_symbol(symbol, bars, training, trained_on="backtest")
    with tempfile.TemporaryDirectory(prefix="backtest-model-") as folder:
        saved, _ = save_model(Path(folder), trained.config, trained.network, trained.scaler)
        return load_model(saved, symbol)


def _symbol_bars(bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if bars is None or bars.empty or "symbol" not in bars.columns:
        raise BacktestDataError("The backtest got no bars; pass a bar history with symbol, window_start and OHLCV.")
    frame = bars.assign(window_start=as_new_york(bars["window_start"]), symbol=bars["symbol"].astype(str))
    return {
        symbol: rows.sort_values("window_start", kind="stable").reset_index(drop=True)
        for symbol, rows in frame.groupby("symbol", sort=True)
    }


def _blocks(symbol: str, rows: pd.DataFrame, train_sessions: int, retrain_every: int) -> list[pd.DatetimeIndex]:
    """The as-of windows after the training span, split at every ``retrain_every`` sessions (one block for 0)."""
    stamps = pd.DatetimeIndex(rows["window_start"])
    days = pd.Index(stamps.date)
    sessions = days.unique()
    needed = train_sessions + WEEK_SESSIONS
    if len(sessions) < needed:
        raise BacktestDataError(
            f"{symbol} has {len(sessions)} sessions of bars but training on {train_sessions} sessions and "
            f"forecasting a week after them needs at least {needed}; pass a longer history or lower "
            "--train-sessions."
        )
    forecast_sessions = sessions[train_sessions:]
    step = retrain_every if retrain_every > 0 else len(forecast_sessions)
    blocks = []
    for start in range(0, len(forecast_sessions), step):
        chosen = days.isin(forecast_sessions[start : start + step])
        blocks.append(stamps[chosen])
    return blocks


def run_backtest(
    bars: pd.DataFrame,
    train_sessions: int,
    retrain_every: int,
    settings: Settings,
    training: TrainingSettings | None = None,
    model_factory: ModelFactory | None = None,
    horizon: str = "week",
    adapt: bool = True,
    retrain_rule: bool = True,
    second_core: bool | None = None,
) -> BacktestResult:
    """Walk forward over ``bars`` (bar schema, one or more symbols); see the module docstring.

    ``training`` sets how each model is trained (``TrainingSettings``: small ones keep tests fast);
    ``model_factory`` replaces training altogether (symbol, bars before the block) -> ``LoadedModel``.
    ``adapt`` recalibrates the intervals with ``forecasting.bands.adapt_intervals`` as the validations arrive.
    ``retrain_rule`` also retrains when the retraining sensor's rule fires (``evaluation.lifecycle.first_retrain``:
    accuracy below ``alert_thresholds.model_accuracy_low`` over ``workflow.retrain_min_validations`` validations of
    the serving model, or a model older than ``workflow.retrain_max_model_age_days``), checked after each session's
    last window; the new model, trained on every bar before the next session, serves from that session on (the
    replay has no champion to beat: the retrained model serves).
    ``second_core`` runs the steps that need none of the main line's results yet (the baseline bands, the confidence
    scores, the scored validations) on a worker thread beside it: None (the default) when the process may use two
    processors or more, False all in line (the same results).
    Raises ``BacktestDataError`` (one sentence) when a symbol's history is too short for the request.
    """
    if horizon not in HORIZONS:
        raise ValueError(f"horizon {horizon!r} is not supported; the backtest forecasts the 'week' ahead.")
    if train_sessions < 1 or retrain_every < 0:
        raise BacktestDataError(
            f"train_sessions must be at least 1 and retrain_every at least 0 (got {train_sessions} and "
            f"{retrain_every}); fix --train-sessions / --retrain-every."
        )
    factory = model_factory or (lambda symbol, rows: train_loaded_model(symbol, rows, training))
    per_symbol = _symbol_bars(bars)
    plans = {symbol: _blocks(symbol, rows, train_sessions, retrain_every) for symbol, rows in per_symbol.items()}
    bands = _bands_module()

    timings = {"training_s": 0.0, "forecasting_s": 0.0, "retrain_rule_s": 0.0}
    frames: list[pd.DataFrame] = []
    summaries: list[pd.DataFrame] = []
    models: list[dict[str, Any]] = []
    skipped: dict[tuple[str, pd.Timestamp], tuple[str, str]] = {}
    summaries_s = 0.0
    for symbol, blocks in plans.items():
        rows = per_symbol[symbol]
        queue = list(blocks)
        cause = "initial"
        symbol_frames: list[pd.DataFrame] = []
        while queue:
            block = queue.pop(0)
            started = time.perf_counter()
            history = rows[rows["window_start"] < block[0]]
            try:
                model = factory(symbol, history)
            except TrainingDataError as exc:
                raise BacktestDataError(str(exc)) from None
            trained_s = time.perf_counter() - started
            timings["training_s"] += trained_s
            started = time.perf_counter()
            known = rows[rows["window_start"] <= block[-1]]
            with _collection_paused():
                forecasts = forecast_windows({symbol: block}, {symbol: model}, {symbol: known})
            timings["forecasting_s"] += time.perf_counter() - started
            block_rows, block_skipped = forecasts.rows, forecasts.skipped
            started = time.perf_counter()
            fired = _rule_fires(
                bands if adapt else None, symbol_frames, block_rows, block, rows, model, settings
            ) if retrain_rule else None
            timings["retrain_rule_s"] += time.perf_counter() - started
            if fired is not None:
                cut, causes = fired
                rest = block[block > cut]
                block = block[block <= cut]
                queue.insert(0, rest)
                as_of = pd.DatetimeIndex(block_rows["as_of_window"]) if len(block_rows) else pd.DatetimeIndex([])
                block_rows = block_rows[(as_of <= cut)].reset_index(drop=True) if len(block_rows) else block_rows
                block_skipped = {key: value for key, value in block_skipped.items() if key[1] <= cut}
            skipped.update(block_skipped)
            frames.append(block_rows)
            symbol_frames.append(block_rows)
            started = time.perf_counter()
            summaries.append(
                forecast_summaries(
                    block_rows,
                    {symbol: model_test_mase(model.config.record)},
                    {symbol: model.config.lookback_steps},
                )
            )
            summaries_s += time.perf_counter() - started  # confidence's input: counted with it
            models.append({
                "symbol": symbol, "first_origin": block[0], "last_origin": block[-1], "model_version": model.version,
                "forecast_mode": model.config.forecast_mode, "trained_on_bars": len(history),
                "training_seconds": round(trained_s, 2), "trained_because": cause,
            })
            cause = "; ".join(causes.values()) if fired is not None else f"every {retrain_every} sessions"

    # The main line (adaptation, validation, skill evidence, trade rules, report) runs here; what needs none of its
    # results yet runs beside it on the second core (see the module docstring). Each stage's timing is the main
    # line's.
    with _collection_paused(), _second_core(second_core) as beside:  # see _collection_paused
        started = time.perf_counter()
        all_bars = pd.concat(list(per_symbol.values()), ignore_index=True)
        if len(frames) == 1 and frames[0].index.equals(pd.RangeIndex(len(frames[0]))):  # one block: its rows as is
            predictions = frames[0]
        else:
            predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if predictions.empty:
            first = next(iter(skipped.values()), ("", "no origin could be forecast"))[1]
            raise BacktestDataError(f"The backtest produced no forecast: {first}")
        step = time.perf_counter()
        filled = [frame for frame in summaries if len(frame)] or summaries[:1]  # blocks with no forecast add nothing
        summary = pd.concat(filled, ignore_index=True)
        origins = pd.DataFrame({  # one row per forecast (symbol, as-of window), as the confidence scores list them
            "symbol": summary["symbol"].to_numpy(),
            "as_of_window": as_new_york(summary["as_of_window"]).array,
        })
        confidence_s = time.perf_counter() - step
        # Each frame handed to the worker is its alone or a shallow copy, so neither line's pandas bookkeeping touches
        # the other's frames. Beside adaptation: the baseline bands at every forecast origin and every step a bucket
        # can read (a superset of those scored).
        worker_bars = {symbol: rows.copy(deep=False) for symbol, rows in per_symbol.items()}
        baseline = None
        if bands is not None:
            baseline = beside.submit(
                _baseline_band_frames, bands, worker_bars, _by_symbol(origins), predictions["horizon_step"].to_numpy(),
                _instants(predictions["as_of_window"]), _instants(predictions["target_window"]),
            )
        adapted = bands is not None and adapt and hasattr(bands, "adapt_intervals")
        step = time.perf_counter()
        if adapted:
            predictions = _adapted(bands, predictions, per_symbol)
        timings["adapt_s"] = time.perf_counter() - step
        # Beside validation: what confidence reads of the bars and paths.
        prepared = beside.submit(prepare_confidence, summary, all_bars.copy(deep=False), predictions.copy(deep=False))
        step = time.perf_counter()
        judged, writing = judge_predictions(predictions, all_bars, None, settings.validation_threshold)
        validations = judged.rows  # without status_reason: BacktestResult.validations writes it on first use
        bucketed = rows_at(validations, np.flatnonzero(bucket_candidates(validations)))
        timings["validation_s"] = time.perf_counter() - step
        # Beside the skill gate's evidence (here): the confidence scores, then the scored validations.
        scoring_confidence = beside.submit(_confidence_beside, prepared, validations.copy(deep=False),
                                           settings.confidence_factor_weights)
        scoring = beside.submit(_scored_beside, bucketed.copy(deep=False), predictions.copy(deep=False), worker_bars,
                                bands, baseline)
        step = time.perf_counter()
        recent_mase = skill_mase(bucketed, origins)
        expected = pd.DataFrame({  # every origin the plan asked for: those without a forecast get a no_forecast row
            "symbol": np.concatenate([np.full(len(block), symbol, dtype=object)
                                      for symbol, blocks in plans.items() for block in blocks]),
            "as_of_window": pd.DatetimeIndex(
                np.concatenate([block.asi8 for blocks in plans.values() for block in blocks])
            ).tz_localize("UTC").tz_convert(NEW_YORK),
        })
        timings["skill_s"] = time.perf_counter() - step
        step = time.perf_counter()
        scores = scoring_confidence.result()
        timings["confidence_s"] = summaries_s + confidence_s + time.perf_counter() - step
        step = time.perf_counter()
        # The trade rules read each path and its origin's confidence (the full join of every score column onto every
        # row is ``BacktestResult.predictions``, built only when asked for).
        recommendations = recommend_trades(predictions, recent_mase, settings, origins=expected,
                                           scores=scores[["symbol", "as_of_window", "confidence", "confidence_level"]])
        outcomes = score_recommendations(recommendations, all_bars, settings)
        timings["recommendations_s"] = time.perf_counter() - step
        step = time.perf_counter()
        # Each scored validation's intervals were read at its forecast row (found from the paths' layout); its
        # confidence level is its origin's score's: no selection or join of the ~10^6 forecast rows.
        scored = _with_levels(scoring.result(), scores)
        timings["bands_s"] = time.perf_counter() - step
        step = time.perf_counter()
        report = backtest_report(scored, validations, scored[["symbol", "as_of_window", "target_window"]],
                                 recommendations, outcomes)
        timings["report_s"] = time.perf_counter() - step
        timings["after_training_s"] = (timings["forecasting_s"] + timings["retrain_rule_s"] + summaries_s
                                       + time.perf_counter() - started)
        timings["beside_s"] = beside.busy_s
    return BacktestResult(
        report=report,
        forecasts=predictions,
        scores=scores,
        validation_rows=validations,
        sentences=writing,
        recommendations=recommendations,
        outcomes=outcomes,
        scored=scored,
        models=pd.DataFrame(models),
        skipped=skipped,
        timings={name: round(value, 4) for name, value in timings.items()},
        bands_available=bands is not None,
        intervals="adapted (forecasting.bands.adapt_intervals)" if adapted else "conformal (as trained)",
    )


def _rule_fires(
    bands: Any | None,
    earlier: list[pd.DataFrame],
    block_rows: pd.DataFrame,
    block: pd.DatetimeIndex,
    bars: pd.DataFrame,
    model: LoadedModel,
    settings: Settings,
) -> tuple[pd.Timestamp, dict[str, str]] | None:
    """(the last as-of window the model serves, causes) when the retraining rule fires after one of the block's
    sessions but its last (the schedule retrains there anyway), else None. The rule reads this model's validations
    known at each session's end, from the intervals the live chain would store (adapted when adaptation is on)."""
    if block_rows.empty:
        return None
    days = pd.Index(block.date)
    ends = block[np.r_[days[1:] != days[:-1], False]]  # last window of every session but the block's last
    if len(ends) == 0:
        return None
    rows = block_rows
    if bands is not None and hasattr(bands, "adapt_intervals"):
        both = pd.concat([*earlier, block_rows], ignore_index=True)
        symbol = str(block_rows["symbol"].iloc[0])
        rows = _adapted(bands, both, {symbol: bars})
        rows = rows[pd.DatetimeIndex(rows["as_of_window"]) >= block[0]]
    validations = validate_predictions(rows, bars[bars["window_start"] <= ends[-1]], None,
                                       settings.validation_threshold).rows
    fired = first_retrain(
        validations, model.version, block[0], ends + WINDOW,
        settings.workflow.retrain_min_validations, settings.alert_thresholds.model_accuracy_low,
        settings.workflow.retrain_max_model_age_days,
    )
    if fired is None:
        return None
    return ends[fired[0]], fired[1]


def _adapted(bands: Any, predictions: pd.DataFrame, per_symbol: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Each symbol's rows with their intervals recalibrated walk-forward by ``bands.adapt_intervals``, symbol by
    symbol in name order (one call: it adapts each symbol on its own bars)."""
    codes, names = factorize_runs(as_text(predictions["symbol"]))  # rows come in long runs of one symbol
    rank = np.argsort(np.argsort(np.asarray(names, dtype=object)))  # each code's place in name order
    ordered = rank[codes]
    if len(ordered) > 1 and (np.diff(ordered) < 0).any():
        predictions = predictions.take(np.argsort(ordered, kind="stable"))
    if not isinstance(predictions.index, pd.RangeIndex) or predictions.index.start != 0 or predictions.index.step != 1:
        predictions = predictions.reset_index(drop=True)
    names = sorted(str(name) for name in names)
    bars = per_symbol[names[0]] if len(names) == 1 else pd.concat([per_symbol[name] for name in names])
    return bands.adapt_intervals(predictions, bars)


def bucket_candidates(rows: pd.DataFrame) -> np.ndarray:
    """Rows (validations or predictions) that can fall in a horizon bucket: steps 1, 4 and 26, or a target about
    a week after its origin (``horizon_buckets`` decides exactly). Every bucketed figure reads only these, so the
    backtest hands them a few percent of the rows instead of every step of every path (same results)."""
    if rows.empty:
        return np.zeros(0, dtype=bool)
    return _candidates(rows["horizon_step"].to_numpy(dtype=np.int64), pd.DatetimeIndex(rows["as_of_window"]).asi8,
                       pd.DatetimeIndex(rows["target_window"]).asi8)


def _candidates(steps: np.ndarray, as_of_ns: np.ndarray, target_ns: np.ndarray) -> np.ndarray:
    """``bucket_candidates`` of rows given as their horizon steps and as-of and target instants (ns)."""
    week = pd.Timedelta(days=7).value
    return np.isin(steps, [1, 4, 26]) | (np.abs(target_ns - as_of_ns - week) <= pd.Timedelta(hours=2).value)


def _by_symbol(origins: pd.DataFrame) -> dict[str, pd.DatetimeIndex]:
    """Each symbol's as-of windows among ``origins`` (symbol, as_of_window), in their order."""
    codes, names = factorize_runs(as_text(origins["symbol"]))
    stamps = pd.DatetimeIndex(origins["as_of_window"])
    return {str(name): stamps[codes == code] for code, name in enumerate(names)}


def _baseline_band_frames(
    bands: Any,
    per_symbol: Mapping[str, pd.DataFrame],
    origins: Mapping[str, pd.DatetimeIndex],
    steps: np.ndarray,
    as_of_ns: np.ndarray,
    target_ns: np.ndarray,
) -> dict[str, pd.DataFrame]:
    """Both baseline bands (``BAND_KINDS``) of every symbol at ``origins`` (each symbol's, in order) and at every
    horizon step among ``steps`` that a bucket can read (``_candidates`` of the forecast rows given as their steps
    and instants): per kind one frame of symbol, as_of_window, target_window and bounds. Each band is walk-forward
    per origin and step, so a superset of the scored (origin, step) pairs gives those the same values."""
    wanted = np.unique(steps[_candidates(steps, as_of_ns, target_ns)]).astype(np.int64)
    return _band_frames(bands, per_symbol, {symbol: (stamps, wanted) for symbol, stamps in origins.items()})


def _band_frames(
    bands: Any, per_symbol: Mapping[str, pd.DataFrame], wanted: Mapping[str, tuple[pd.DatetimeIndex, np.ndarray]]
) -> dict[str, pd.DataFrame]:
    """Both baseline bands of each symbol of ``wanted`` at its (origins, steps), in symbol order: per kind one frame
    of as_of_window, target_window, the bounds and symbol."""
    frames: dict[str, list[pd.DataFrame]] = {kind: [] for kind in BAND_KINDS}
    for symbol in sorted(wanted):
        origins, steps = wanted[symbol]
        if not len(origins) or not len(steps):
            continue
        by_kind = bands.baseline_band_kinds(per_symbol[symbol], origins, int(steps.max()), BAND_KINDS, steps=steps)
        for kind, band in by_kind.items():
            frames[kind].append(band[["as_of_window", "target_window", *_BOUNDS]].assign(symbol=symbol))
    empty = pd.DataFrame({"as_of_window": pd.DatetimeIndex([], tz=NEW_YORK), "target_window":
                          pd.DatetimeIndex([], tz=NEW_YORK), **{name: np.zeros(0) for name in _BOUNDS},
                          "symbol": np.zeros(0, dtype=object)})
    return {kind: (parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)) if parts else empty
            for kind, parts in frames.items()}


def _scored_beside(
    validations: pd.DataFrame,
    predictions: pd.DataFrame,
    per_symbol: Mapping[str, pd.DataFrame],
    bands: Any | None,
    baseline: Future | None,
) -> pd.DataFrame:
    """``scored_validations`` without the confidence levels (``_with_levels`` adds them), on the second core, with
    the baseline bands it computed first."""
    return scored_validations(validations, predictions, per_symbol, bands,
                              baseline=None if baseline is None else baseline.result())


def _confidence_beside(prepared: Future, validations: pd.DataFrame, weights: Any) -> pd.DataFrame:
    """``scores_with_validations`` of what ``prepare_confidence`` gave, on the second core (after it, in order)."""
    return scores_with_validations(prepared.result(), validations, weights)


def _with_levels(scored: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """``scored`` with each row's origin's ``confidence_level`` after its interval bounds, where
    ``scored_validations(..., scores)`` puts it."""
    if "confidence_level" in scored.columns or "confidence_level" not in scores.columns:
        return scored
    taken = pd.DataFrame(index=scored.index)
    _take_columns(taken, scores, _score_rows(scored, scores), ["confidence_level"])
    scored.insert(scored.columns.get_loc("upper_95") + 1, "confidence_level", taken["confidence_level"].to_numpy())
    return scored


def _score_rows(predictions: pd.DataFrame, scores: pd.DataFrame) -> np.ndarray:
    """For each row of ``predictions``, the position of its origin's row in ``scores`` (-1: not scored), found with
    integer keys: symbol codes, then a binary search of the as-of instants within each symbol."""
    symbol_code, symbols = factorize_runs(np.concatenate([as_text(scores["symbol"]), as_text(predictions["symbol"])]))
    score_symbol, row_symbol = symbol_code[: len(scores)], symbol_code[len(scores):]
    score_at = pd.DatetimeIndex(scores["as_of_window"]).asi8
    row_at = pd.DatetimeIndex(predictions["as_of_window"]).asi8
    where = np.full(len(predictions), -1, dtype=np.int64)
    for code in range(len(symbols)):
        mine = np.flatnonzero(score_symbol == code)
        order = mine[np.argsort(score_at[mine], kind="stable")]
        if (np.diff(score_at[order]) == 0).any():
            raise ValueError("confidence_scores returned more than one row for an origin.")
        rows = np.flatnonzero(row_symbol == code)
        if not len(order) or not len(rows):
            continue
        found = np.minimum(np.searchsorted(score_at[order], row_at[rows]), len(order) - 1)
        hit = score_at[order][found] == row_at[rows]
        where[rows[hit]] = order[found[hit]]
    return where


def _with_scores(predictions: pd.DataFrame, scores: pd.DataFrame, where: np.ndarray | None = None) -> pd.DataFrame:
    """``predictions`` with each origin's columns of ``scores`` beside it (a left many-to-one join on symbol and
    as-of window; ``where`` is ``_score_rows``' answer when already known)."""
    keys = ["symbol", "as_of_window"]
    where = _score_rows(predictions, scores) if where is None else where
    found = where >= 0
    values = scores.drop(columns=keys)
    if len(values) and found.all():  # every origin scored: one take of the score columns, beside the rows
        taken = values.take(where)
        taken.index = predictions.index
        return pd.concat([predictions, taken], axis=1)
    out = predictions.copy()
    for name in values.columns:
        column = values[name].to_numpy()
        column = column.take(np.where(found, where, 0)) if len(column) else np.full(len(out), np.nan, dtype=object)
        if not found.all():
            column = np.where(found, column, None if column.dtype == object else np.nan)
        out[name] = column
    return out


def skill_mase(validations: pd.DataFrame, origins: pd.DataFrame) -> pd.DataFrame:
    """The skill table the gate reads at every origin (``trading.recommendations.SKILL_COLUMNS``: symbol,
    as_of_window, horizon_bucket, mase, skill_p_value): ``accuracy_metrics`` over the validations whose targets are
    the last ``SKILL_SPAN`` session windows up to the origin, as the ``trade_recommendations`` asset reads it."""
    wanted = origins.rename(columns={"as_of_window": "window_start"})[["symbol", "window_start"]]
    metrics = accuracy_metrics(validations, wanted, spans={SKILL_SPAN: SPAN_WINDOWS[SKILL_SPAN]},
                               skill_only=True).rows
    chosen = metrics[metrics["mase"].notna()]
    return pd.DataFrame({
        "symbol": chosen["symbol"].to_numpy(dtype=object),
        "as_of_window": chosen["window_start"].array,  # tz-aware, not an object array of Timestamps
        "horizon_bucket": chosen["horizon_bucket"].to_numpy(dtype=object),
        "mase": chosen["mase"].to_numpy(dtype=np.float64),
        "skill_p_value": chosen["skill_p_value"].to_numpy(dtype=np.float64),
    })


def _winkler(bands: Any | None, lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, alpha: float) -> np.ndarray:
    if bands is not None:
        return np.asarray(bands.winkler_score(lower, upper, actual, alpha), dtype=np.float64)
    below = np.clip(lower - actual, 0.0, None)
    above = np.clip(actual - upper, 0.0, None)
    return (upper - lower) + 2.0 / alpha * (below + above)


def scored_validations(
    validations: pd.DataFrame,
    predictions: pd.DataFrame,
    per_symbol: Mapping[str, pd.DataFrame],
    bands: Any | None,
    scores: pd.DataFrame | None = None,
    baseline: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The counted validations (not ``invalid``, in a horizon bucket) with their intervals, interval scores in % of
    the as-of close, and both baseline bands' bounds and scores on the same (origin, target). ``scores`` (one row
    per origin, as ``confidence_scores`` gives them): each row's ``confidence_level`` is its origin's, read there
    instead of in ``predictions``. ``baseline``: the bands already computed (``_baseline_band_frames``) at these
    rows' origins and steps or more."""
    counted = (validations["status"] != INVALID).to_numpy() & np.isfinite(
        validations["actual_close"].to_numpy(dtype=np.float64))
    frame = rows_at(validations, np.flatnonzero(counted))
    frame["as_of_window"] = as_new_york(frame["as_of_window"])
    frame["target_window"] = as_new_york(frame["target_window"])
    bucket = horizon_buckets(frame).to_numpy() if len(frame) else np.zeros(0, dtype=object)
    in_bucket = np.flatnonzero(pd.notna(bucket))
    if len(in_bucket) < len(frame):
        frame, bucket = rows_at(frame, in_bucket), bucket[in_bucket]
    frame["horizon_bucket"] = bucket
    levels = ["confidence_level"] if scores is None and "confidence_level" in predictions.columns else []
    _take_columns(frame, predictions, _forecast_rows(frame, predictions),
                  ["lower_80", "upper_80", "lower_95", "upper_95", *levels])
    if scores is not None and "confidence_level" in scores.columns:
        where = _score_rows(frame, scores)
        _take_columns(frame, scores, where, ["confidence_level"])
    actual = frame["actual_close"].to_numpy(dtype=np.float64)
    last = frame["last_close"].to_numpy(dtype=np.float64)
    for level in COVERAGES:
        alpha = 1.0 - level / 100.0
        lower = frame[f"lower_{level}"].to_numpy(dtype=np.float64)
        upper = frame[f"upper_{level}"].to_numpy(dtype=np.float64)
        frame[f"interval_score_{level}"] = 100.0 * _winkler(bands, lower, upper, actual, alpha) / last
    for kind in BAND_KINDS:
        for level in COVERAGES:
            frame[f"{kind}_band_inside_{level}"] = np.nan
            frame[f"{kind}_band_interval_score_{level}"] = np.nan
    if bands is None or frame.empty:
        return frame
    if baseline is None:
        baseline = _scored_bands(frame, per_symbol, bands)
    positions = None  # both kinds give the same (origin, target) rows in the same order: join them once
    for kind in BAND_KINDS:
        mine = baseline[kind]
        positions = _row_positions(frame, mine) if positions is None else positions
        joined = pd.DataFrame(index=frame.index)
        _take_columns(joined, mine, positions, ["lower_80", "upper_80", "lower_95", "upper_95"])
        for level in COVERAGES:
            lower = joined[f"lower_{level}"].to_numpy(dtype=np.float64)
            upper = joined[f"upper_{level}"].to_numpy(dtype=np.float64)
            known = np.isfinite(lower) & np.isfinite(upper)
            inside = np.where(known, (lower <= actual) & (actual <= upper), np.nan)
            frame[f"{kind}_band_inside_{level}"] = inside
            alpha = 1.0 - level / 100.0
            with np.errstate(invalid="ignore"):
                score = _winkler(bands, lower, upper, actual, alpha)
            frame[f"{kind}_band_interval_score_{level}"] = 100.0 * score / last
    return frame


def _scored_bands(frame: pd.DataFrame, per_symbol: Mapping[str, pd.DataFrame], bands: Any) -> dict[str, pd.DataFrame]:
    """Both baseline bands of each symbol at exactly the origins and steps of its rows of ``frame`` (per kind one
    frame of symbol, as_of_window, target_window and bounds)."""
    wanted = {
        str(symbol): (pd.DatetimeIndex(rows["as_of_window"].unique()).sort_values(),
                      np.unique(rows["horizon_step"].to_numpy(dtype=np.int64)))
        for symbol, rows in frame.groupby("symbol", sort=True)
    }
    return _band_frames(bands, per_symbol, wanted)


def _instants(values: pd.Series) -> np.ndarray:
    """UTC nanoseconds of a column of windows (naive stamps read as New York wall-clock time, as ``as_new_york``
    reads them)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(values).asi8
    return pd.DatetimeIndex(as_new_york(values)).asi8


def _forecast_rows(frame: pd.DataFrame, predictions: pd.DataFrame) -> np.ndarray:
    """``_row_positions(frame, predictions)`` for prediction rows laid out path by path, step by step (as the
    forecaster writes them): each row is guessed at its path's first row plus its horizon step less one, the guesses
    are checked (symbol, origin and target equal), and only the rows they miss are joined. A year of paths is ~10^6
    rows: no hash of every one of them."""
    if frame.empty or predictions.empty or "horizon_step" not in frame.columns:
        return _row_positions(frame, predictions)
    symbols = np.concatenate([as_text(predictions["symbol"]), as_text(frame["symbol"])])
    codes = factorize_runs(symbols)[0]
    code, frame_code = codes[: len(predictions)], codes[len(predictions):]
    as_of, frame_as_of = _instants(predictions["as_of_window"]), _instants(frame["as_of_window"])
    first = np.flatnonzero(np.concatenate([[True], (code[1:] != code[:-1]) | (as_of[1:] != as_of[:-1])]))
    path = pd.MultiIndex.from_arrays([code[first], as_of[first]])
    if not path.is_unique:  # an origin's rows apart: no layout to guess from
        return _row_positions(frame, predictions)
    found = path.get_indexer(pd.MultiIndex.from_arrays([frame_code, frame_as_of]))
    guess = first[np.maximum(found, 0)] + frame["horizon_step"].to_numpy(dtype=np.int64) - 1
    guess = np.clip(guess, 0, len(predictions) - 1)
    hit = ((found >= 0) & (code[guess] == frame_code) & (as_of[guess] == frame_as_of)
           & (_instants(predictions["target_window"])[guess] == _instants(frame["target_window"])))
    if hit.all():
        return guess
    missed = np.flatnonzero(~hit)
    positions = np.where(hit, guess, -1)
    positions[missed] = _row_positions(rows_at(frame, missed), predictions)
    return positions


def _row_positions(left: pd.DataFrame, right: pd.DataFrame) -> np.ndarray:
    """For each row of ``left``, the position in ``right`` of the row with the same (symbol, as_of_window,
    target_window), -1 where there is none (the last one where ``right`` repeats a key, as a merge after
    ``drop_duplicates(keep="last")`` would): a hash join on one integer key instead of a merge on stamps."""
    codes, _ = factorize_runs(np.concatenate([as_text(right["symbol"]), as_text(left["symbol"])]))
    as_of = np.concatenate([_instants(right["as_of_window"]), _instants(left["as_of_window"])])
    ahead = np.concatenate([_instants(right["target_window"]), _instants(left["target_window"])]) - as_of
    parts = [codes.astype(np.int64)]
    whole = True
    for values in (as_of, ahead):  # windows start on whole minutes: number them from the smallest
        minutes, rest = np.divmod(values, 60_000_000_000)
        whole &= not rest.any()
        parts.append(minutes - minutes.min() if len(minutes) else minutes)
    sizes = [int(part.max()) + 1 if len(part) else 1 for part in parts]
    if (not whole or len(codes) == 0 or float(sizes[0]) * sizes[1] * sizes[2] >= 2.0**62
            or (parts[0] < 0).any()):
        combined = pd.MultiIndex.from_arrays([codes, as_of, ahead])  # no one-int64 key: three levels
    else:
        combined = pd.Index((parts[0] * sizes[1] + parts[1]) * sizes[2] + parts[2])
    keys, wanted = combined[: len(right)], combined[len(right):]
    kept = ~keys.duplicated(keep="last")
    if kept.all():
        return keys.get_indexer(wanted)
    found = keys[kept].get_indexer(wanted)
    return np.where(found >= 0, np.flatnonzero(kept)[np.maximum(found, 0)], -1)


def _take_columns(frame: pd.DataFrame, source: pd.DataFrame, positions: np.ndarray, names: list[str]) -> None:
    """Set ``frame[name]`` to ``source[name]`` at ``positions`` (-1: missing, NaN or None) for each of ``names``."""
    missing = positions < 0
    for name in names:
        values = source[name].to_numpy()
        taken = values.take(np.maximum(positions, 0)) if len(values) else np.full(len(positions), np.nan)
        if missing.any():
            taken = np.where(missing, None if taken.dtype == object else np.nan, taken)
        frame[name] = taken


def _mean(values: pd.Series | np.ndarray) -> float | None:
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    return float(array.mean()) if len(array) else None


def _bucket_columns(scored: pd.DataFrame) -> dict[str, np.ndarray]:
    """What ``_bucket_report`` reads of the scored validations, each column once as floats (NaN: unknown)."""
    names = ["actual_close", "predicted_close", "last_close",
             *(f"{prefix}_{level}" for prefix in ("inside", "interval_score") for level in COVERAGES),
             *(f"{kind}_band_{what}_{level}" for kind in BAND_KINDS for what in ("interval_score", "inside")
               for level in COVERAGES)]
    return {name: as_floats(scored[name]) for name in names}


def _bucket_report(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, Any]:
    """The figures of one horizon bucket from ``_bucket_columns`` at ``rows``."""
    def at(name: str) -> np.ndarray:
        return columns[name][rows]

    actual, predicted, last = at("actual_close"), at("predicted_close"), at("last_close")
    naive = np.abs(last - actual).sum()
    entry: dict[str, Any] = {
        "n": int(len(rows)),
        "mase": float(np.abs(predicted - actual).sum() / naive) if naive > 0 else None,
        "directional_accuracy": _mean(np.sign(predicted - last) == np.sign(actual - last)),
        "up_share": _mean(actual > last),
    }
    for level in COVERAGES:
        entry[f"coverage_{level}"] = _mean(at(f"inside_{level}"))
    for level in COVERAGES:
        entry[f"interval_score_{level}"] = _mean(at(f"interval_score_{level}"))
    for kind in BAND_KINDS:
        for level in COVERAGES:
            entry[f"{kind}_band_interval_score_{level}"] = _mean(at(f"{kind}_band_interval_score_{level}"))
    for kind in BAND_KINDS:
        for level in COVERAGES:
            entry[f"{kind}_band_coverage_{level}"] = _mean(at(f"{kind}_band_inside_{level}"))
    return entry


def _recommendation_report(recommendations: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, Any]:
    trades = recommendations[recommendations["action"] != NO_TRADE]
    realized = outcomes["realized_return_pct"].to_numpy(dtype=np.float64) if len(outcomes) else np.array([])
    hits = outcomes["hit"].dropna() if len(outcomes) else pd.Series(dtype="boolean")
    held = recommendations["held_back_by"].dropna().value_counts()
    return {
        "count": int(len(trades)),
        "scored": int(len(hits)),
        "hit_rate": float(hits.astype(bool).mean()) if len(hits) else None,
        "mean_net_return_pct": _mean(realized),
        "withheld_by_rule": {rule: int(held.get(rule, 0)) for rule in HELD_BACK_RULES},
    }


def _confidence_report(scored: pd.DataFrame, validations: pd.DataFrame, forecasts: pd.DataFrame) -> dict[str, Any]:
    # accuracy._counted aligns its converted stamps on a fresh index: hand it frames with one.
    if "confidence_level" in scored.columns:  # the bucketed validations, already joined with their forecasts
        fresh = isinstance(scored.index, pd.RangeIndex) and scored.index.start == 0 and scored.index.step == 1
        table = error_by_confidence(scored if fresh else scored.reset_index(drop=True), None)
    else:
        table = error_by_confidence(validations[bucket_candidates(validations)].reset_index(drop=True),
                                    forecasts[bucket_candidates(forecasts)].reset_index(drop=True))
    levels = {
        str(row.confidence_level): {
            "n": int(row.n),
            "mean_abs_error_pct": None if pd.isna(row.mean_abs_error_pct) else float(row.mean_abs_error_pct),
            "mase": None if pd.isna(row.mase) else float(row.mase),
            "coverage_95": None if pd.isna(row.coverage_95) else float(row.coverage_95),
        }
        for row in table.itertuples()
    }
    return {"levels": levels, "separates": confidence_separates(table)}


def _report(
    scored: pd.DataFrame, validations: pd.DataFrame, forecasts: pd.DataFrame, recommendations: pd.DataFrame,
    outcomes: pd.DataFrame,
) -> dict[str, Any]:
    status_code, statuses = factorize_runs(validations["status"].to_numpy(dtype=object))  # few, in long runs
    tally = dict(zip(statuses, np.bincount(status_code[status_code >= 0], minlength=len(statuses)).tolist(),
                     strict=True))
    counted = len(status_code) - tally.get(INVALID, 0)
    rate = float(tally.get(NEEDS_REPREDICTION, 0) / counted) if counted else None
    columns = _bucket_columns(scored)
    bucket_code, buckets = factorize_runs(scored["horizon_bucket"].to_numpy(dtype=object))
    code_of = {bucket: code for code, bucket in enumerate(buckets)}
    return {
        "horizons": {
            bucket: _bucket_report(columns, np.flatnonzero(bucket_code == code_of.get(bucket, -2)))
            for bucket in HORIZON_BUCKETS
        },
        "reprediction_rate": rate,
        "recommendations": _recommendation_report(recommendations, outcomes),
        "error_by_confidence": _confidence_report(scored, validations, forecasts),
    }


def backtest_report(
    scored: pd.DataFrame,
    validations: pd.DataFrame,
    forecasts: pd.DataFrame,
    recommendations: pd.DataFrame,
    outcomes: pd.DataFrame,
    symbols: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``{"symbols": {SYMBOL: REPORT}, "pooled": REPORT}``: per horizon bucket MASE, direction, coverage and
    interval scores (mean Winkler in % of the as-of close) beside both baseline bands'; the reprediction rate;
    the recommendations' count, hit rate, mean return after costs and how many each rule withheld; and error by
    confidence level. A figure with nothing to count is None (null in JSON)."""
    def present(frame: pd.DataFrame) -> set[str]:
        return {str(symbol) for symbol in factorize_runs(frame["symbol"].to_numpy(dtype=object))[1]}

    names = sorted(present(validations) | present(recommendations)) if symbols is None else list(symbols)

    def only(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
        return frame[frame["symbol"].astype(str) == symbol] if len(frame) else frame

    pooled = _report(scored, validations, forecasts, recommendations, outcomes)
    frames = (scored, validations, forecasts, recommendations, outcomes)
    alone = [present(frame) for frame in frames if len(frame)]
    if len(names) == 1 and all(found <= set(names) for found in alone):
        return {"symbols": {names[0]: copy.deepcopy(pooled)}, "pooled": pooled}  # one symbol: the pooled report
    return {
        "symbols": {symbol: _report(*(only(frame, symbol) for frame in frames)) for symbol in names},
        "pooled": pooled,
    }


__all__ = [
    "BacktestDataError",
    "BacktestResult",
    "ModelFactory",
    "backtest_report",
    "bucket_candidates",
    "run_backtest",
    "scored_validations",
    "skill_mase",
    "train_loaded_model",
]
