"""Train one symbol's model from its bars, choose the forecast mode on validation, measure it on the test span.

The numbers this module reports are meant to be believed, so the data is split by time and each span has one job:

- **train** (oldest ~70%): the scaler's statistics and the network weights come from here alone;
- **validation** (next ~15%): early stopping, the choice between recursive and direct mode, and the conformal
  calibration of the prediction intervals;
- **test** (newest ~15%): the reported metrics and the interval coverage reached, touched by nothing else.

A sample at origin ``t`` reads rows ``t - lookback + 1 .. t`` and its targets are rows after ``t``; a sample
belongs to the span its targets lie in (its inputs may look back into the previous span: that is the past, known at
``t``). Mini-batches are shuffled within the training span only; nothing crosses a span boundary by shuffling.
Training is reproducible from ``seed`` (``keras.utils.set_random_seed`` before each network is built).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lstm_pipeline.forecasting.config import FORECAST_MODES, ModelConfig, default_config
from lstm_pipeline.forecasting.features import DEFAULT_FEATURES, bar_features
from lstm_pipeline.forecasting.intervals import (
    DEFAULT_COVERAGE,
    EXTRAPOLATION,
    METHOD,
    conformal_halfwidths,
    empirical_coverage,
)
from lstm_pipeline.forecasting.scaler import FeatureScaler, fit_standard_scaler

if TYPE_CHECKING:
    import keras

METRIC_HORIZONS: dict[str, int] = {"1_step": 1, "1_day": 26, "1_week": 130}
"""Horizons (in 15-minute session steps) at which test metrics are reported: 26 windows a session, 5 a week."""


class TrainingDataError(ValueError):
    """The bars cannot support the requested training; the message names the symbol, what is short and the fix."""


@dataclass(frozen=True)
class TrainingSettings:
    """How one symbol's model is trained; the defaults train on ~1 year of bars in about a minute on 2 cores."""

    lookback_steps: int = 48
    horizon_steps: int = 130
    lstm_units: tuple[int, ...] = (32, 32)
    dropout: float = 0.0
    max_epochs: int = 20
    patience: int = 3
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    train_fraction: float = 0.70
    validation_fraction: float = 0.15
    max_bars: int | None = 252 * 26
    """Train on at most this many of the most recent session windows (default: one year)."""
    modes: tuple[str, ...] = FORECAST_MODES
    """Modes to train; with both, the one with the lower validation error is kept."""
    origin_stride_steps: int = 1
    """Spacing of forecast origins on the validation and test spans."""
    coverage: tuple[float, ...] = DEFAULT_COVERAGE
    min_origins: int = 20
    """Fewest forecast origins each of the validation and test spans must hold."""


@dataclass(frozen=True)
class Spans:
    """Row boundaries of the chronological split: train ``[0, train_end)``, validation ``[train_end, validation_end)``,
    test ``[validation_end, rows)``."""

    rows: int
    train_end: int
    validation_end: int


@dataclass
class TrainedModel:
    """A trained model ready to save: the chosen network, its scaler, its config with the full training record."""

    config: ModelConfig
    network: keras.Model
    scaler: FeatureScaler
    metrics: dict[str, Any]
    plot_png: bytes
    seconds: float
    epochs: dict[str, int] = field(default_factory=dict)


ProgressCallback = Callable[[str], None]


def split_spans(rows: int, settings: TrainingSettings, symbol: str) -> Spans:
    """Chronological train / validation / test boundaries; ``TrainingDataError`` when the bars are too few."""
    horizon = settings.horizon_steps
    needed_eval = horizon + settings.min_origins
    validation = max(int(round(rows * settings.validation_fraction)), needed_eval)
    test = max(int(round(rows * (1 - settings.train_fraction - settings.validation_fraction))), needed_eval)
    train = rows - validation - test
    needed_train = settings.lookback_steps + horizon + settings.batch_size
    if train < needed_train:
        minimum = needed_train + 2 * needed_eval
        raise TrainingDataError(
            f"{symbol} has {rows} usable session bars; training with a {settings.lookback_steps}-step lookback and "
            f"a {horizon}-step horizon needs at least {minimum} (about {math.ceil(minimum / 26)} sessions); "
            f"backfill more market_bars for {symbol} or lower lookback_steps / horizon_steps."
        )
    return Spans(rows=rows, train_end=train, validation_end=train + validation)


def _windows(scaled: np.ndarray, origins: np.ndarray, lookback: int) -> np.ndarray:
    """Input windows [len(origins), lookback, F] ending at each origin row (inclusive)."""
    view = np.lib.stride_tricks.sliding_window_view(scaled, lookback, axis=0)  # [rows - L + 1, F, L]
    return np.ascontiguousarray(view[origins - lookback + 1].transpose(0, 2, 1), dtype=np.float32)


def _targets(scaled: np.ndarray, origins: np.ndarray, config: ModelConfig) -> np.ndarray:
    columns = [config.features.index(name) for name in config.output_features]
    if config.forecast_mode == "recursive":
        return scaled[origins + 1][:, columns].astype(np.float32)
    ahead = origins[:, None] + np.arange(1, config.horizon_steps + 1)[None, :]
    return scaled[ahead, columns[0]].astype(np.float32)


def _sample_origins(config: ModelConfig, first: int, stop: int) -> np.ndarray:
    """Origins whose every target row lies in ``[first, stop)``."""
    reach = 1 if config.forecast_mode == "recursive" else config.horizon_steps
    lo = max(first - 1, config.lookback_steps - 1)
    return np.arange(lo, stop - reach, dtype=np.int64)


def _evaluation_origins(spans_start: int, spans_stop: int, horizon: int, stride: int) -> np.ndarray:
    """Origins in a span whose whole horizon lies inside the span."""
    return np.arange(spans_start - 1, spans_stop - horizon, stride, dtype=np.int64)


class _EpochLog:
    """Keras callback factory: one progress line per epoch (the Dagster asset logs it)."""

    @staticmethod
    def make(mode: str, max_epochs: int, progress: ProgressCallback | None) -> Any:
        import keras

        class EpochLog(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
                if progress is None:
                    return
                logs = logs or {}
                progress(
                    f"{mode} epoch {epoch + 1}/{max_epochs}: loss {logs.get('loss', float('nan')):.5f}, "
                    f"val_loss {logs.get('val_loss', float('nan')):.5f} "
                    f"({time.perf_counter() - self.started:.1f} s)"
                )

        return EpochLog()


def _fit(
    config: ModelConfig,
    scaled: np.ndarray,
    spans: Spans,
    settings: TrainingSettings,
    progress: ProgressCallback | None,
) -> tuple[keras.Model, int]:
    import keras

    from lstm_pipeline.forecasting.network import build_network

    train_origins = _sample_origins(config, config.lookback_steps, spans.train_end)
    validation_origins = _sample_origins(config, spans.train_end, spans.validation_end)
    x_train, y_train = _windows(scaled, train_origins, config.lookback_steps), _targets(scaled, train_origins, config)
    x_val = _windows(scaled, validation_origins, config.lookback_steps)
    y_val = _targets(scaled, validation_origins, config)
    keras.utils.set_random_seed(settings.seed)
    network = build_network(config)
    network.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss="mse")
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.patience, restore_best_weights=True
    )
    history = network.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=settings.max_epochs,
        batch_size=settings.batch_size,
        shuffle=True,
        callbacks=[stopper, _EpochLog.make(config.forecast_mode, settings.max_epochs, progress)],
        verbose=0,
    )
    return network, len(history.history.get("loss", []))


@dataclass(frozen=True)
class OriginForecasts:
    """Forecast log-price paths from many origins of one span, with what actually happened."""

    origins: np.ndarray
    predicted_log: np.ndarray  # [origins, H]
    actual_log: np.ndarray  # [origins, H]
    last_close: np.ndarray  # [origins]

    @property
    def abs_residuals(self) -> np.ndarray:
        return np.abs(self.actual_log - self.predicted_log)


def forecast_origins(
    config: ModelConfig,
    network: keras.Model,
    scaler: FeatureScaler,
    features: pd.DataFrame,
    origins: np.ndarray,
    horizon: int,
) -> OriginForecasts:
    """Forecast ``horizon`` steps from each origin row with the compiled forecaster (one call for all origins).

    Future rows' known parts come from the rows themselves (their calendar features are the real windows'); held
    features take the origin's value, exactly as a live forecast would.
    """
    from lstm_pipeline.forecasting.forecaster import compiled_outputs, log_price_paths, network_weights

    scaled = scaler.transform(features[list(config.features)].to_numpy())
    close = features["close"].to_numpy(dtype=np.float64)
    history = _windows(scaled, origins, config.lookback_steps)[None]
    exogenous = None
    if config.forecast_mode == "recursive":
        ahead = origins[:, None] + np.arange(1, horizon + 1)[None, :]
        exogenous = scaled[ahead].copy()
        for column, name in enumerate(config.features):
            if name in config.output_features:
                exogenous[..., column] = 0.0
            elif name in config.held_features:
                exogenous[..., column] = scaled[origins, column][:, None]
        exogenous = exogenous[None]
    outputs = compiled_outputs(config, [network_weights(network)], history, exogenous)[0]
    outputs = outputs[:, :horizon]
    predicted = log_price_paths(config, scaler, outputs, close[origins])
    ahead = origins[:, None] + np.arange(1, horizon + 1)[None, :]
    return OriginForecasts(
        origins=origins, predicted_log=predicted, actual_log=np.log(close[ahead]), last_close=close[origins]
    )


def horizon_metrics(result: OriginForecasts, steps: int) -> dict[str, float]:
    """Price errors ``steps`` ahead against the naive forecast (last close held flat), over all origins.

    MASE here is the model's MAE divided by the naive forecast's MAE on the same origins and horizon: below 1
    beats "no change". Directional accuracy counts origins where the forecast moved the same way as the price;
    ``up_share`` is how often the price rose, the accuracy of always saying "up".
    """
    predicted = np.exp(result.predicted_log[:, steps - 1])
    actual = np.exp(result.actual_log[:, steps - 1])
    naive = result.last_close
    errors = predicted - actual
    naive_errors = naive - actual
    naive_mae = float(np.mean(np.abs(naive_errors)))
    mae = float(np.mean(np.abs(errors)))
    moved = np.sign(actual - naive)
    called = np.sign(predicted - naive)
    return {
        "steps": steps,
        "origins": int(len(actual)),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mae": mae,
        "naive_rmse": float(np.sqrt(np.mean(naive_errors**2))),
        "naive_mae": naive_mae,
        "mase": mae / naive_mae if naive_mae > 0 else float("nan"),
        "directional_accuracy": float(np.mean(called == moved)),
        "up_share": float(np.mean(moved > 0)),
    }


def _path_rmse(result: OriginForecasts) -> float:
    return float(np.sqrt(np.mean((result.actual_log - result.predicted_log) ** 2)))


def _naive_path_rmse(result: OriginForecasts) -> float:
    return float(np.sqrt(np.mean((result.actual_log - np.log(result.last_close)[:, None]) ** 2)))


def train_symbol(
    symbol: str,
    bars: pd.DataFrame,
    settings: TrainingSettings | None = None,
    progress: ProgressCallback | None = None,
    trained_on: str = "market_bars",
) -> TrainedModel:
    """Train, select, calibrate and evaluate one symbol's model from its bars (see the module docstring)."""
    settings = settings or TrainingSettings()
    started = time.perf_counter()
    say = progress or (lambda message: None)
    features = bar_features(bars, DEFAULT_FEATURES, symbol=symbol)
    if settings.max_bars is not None and len(features) > settings.max_bars:
        features = features.iloc[-settings.max_bars:]
    spans = split_spans(len(features), settings, symbol)
    feature_values = features[list(DEFAULT_FEATURES)].to_numpy(dtype=np.float64)
    index = features.index

    def span_dates(lo: int, hi: int) -> list[str]:
        return [index[lo].isoformat(), index[hi - 1].isoformat()]

    scaler = fit_standard_scaler(
        feature_values[: spans.train_end],
        DEFAULT_FEATURES,
        {"span": "train", "first_window": index[0].isoformat(), "last_window": index[spans.train_end - 1].isoformat()},
    )
    scaled = scaler.transform(feature_values)
    say(
        f"{symbol}: {spans.rows} session bars ({int(features['filled'].sum())} missing windows filled flat); "
        f"train {spans.train_end}, validation {spans.validation_end - spans.train_end}, "
        f"test {spans.rows - spans.validation_end} rows"
    )

    horizon = settings.horizon_steps
    validation_origins = _evaluation_origins(
        spans.train_end, spans.validation_end, horizon, settings.origin_stride_steps
    )
    test_origins = _evaluation_origins(spans.validation_end, spans.rows, horizon, settings.origin_stride_steps)

    candidates: dict[str, tuple[ModelConfig, keras.Model, OriginForecasts]] = {}
    epochs: dict[str, int] = {}
    for mode in settings.modes:
        config = default_config(
            symbol,
            mode,  # type: ignore[arg-type]
            lookback_steps=settings.lookback_steps,
            horizon_steps=horizon,
            lstm_units=settings.lstm_units,
            dropout=settings.dropout,
        )
        network, epochs[mode] = _fit(config, scaled, spans, settings, progress)
        validation = forecast_origins(config, network, scaler, features, validation_origins, horizon)
        candidates[mode] = (config, network, validation)
        say(f"{symbol} {mode}: {epochs[mode]} epochs, validation log-price RMSE {_path_rmse(validation):.6f}")

    scores = {mode: _path_rmse(result) for mode, (_, _, result) in candidates.items()}
    chosen = min(scores, key=scores.get)
    config, network, validation = candidates[chosen]
    naive_score = _naive_path_rmse(validation)
    halfwidths = conformal_halfwidths(validation.abs_residuals, settings.coverage)

    test = forecast_origins(config, network, scaler, features, test_origins, horizon)
    metric_steps = {name: steps for name, steps in METRIC_HORIZONS.items() if steps <= horizon}
    horizons = {name: horizon_metrics(test, steps) for name, steps in metric_steps.items()}
    coverage_reached = empirical_coverage(test.abs_residuals, halfwidths, list(metric_steps.values()))
    for name, steps in metric_steps.items():
        for key, by_step in coverage_reached.items():
            horizons[name][f"coverage_{round(float(key) * 100)}"] = by_step[steps]
    seconds = time.perf_counter() - started
    metrics = {
        "span": "test",
        "test_span": span_dates(spans.validation_end, spans.rows),
        "origins": int(len(test_origins)),
        "origin_stride_steps": settings.origin_stride_steps,
        "naive": "last observed close held flat",
        "horizons": horizons,
    }
    record = {
        "trained_on": trained_on,
        "target": "the next step's features, fed back step by step"
        if chosen == "recursive"
        else f"the next {horizon} steps' log returns of the close, in one pass",
        "unpredicted_features": "calendar features from the next session windows; any other input held at its "
        "last observed value",
        "training": {
            "seed": settings.seed,
            "settings": {
                key: list(value) if isinstance(value, tuple) else value for key, value in asdict(settings).items()
            },
            "bars": spans.rows,
            "filled_windows": int(features["filled"].sum()),
            "spans": {
                "train": span_dates(0, spans.train_end),
                "validation": span_dates(spans.train_end, spans.validation_end),
                "test": span_dates(spans.validation_end, spans.rows),
            },
            "epochs": epochs,
            "seconds": round(seconds, 1),
            "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        },
        "mode_selection": {
            "criterion": f"RMSE of log price over all {horizon} steps from every validation origin (lower wins)",
            "validation_log_price_rmse": {**{mode: round(score, 8) for mode, score in scores.items()},
                                          "naive": round(naive_score, 8)},
            "validation_origins": int(len(validation_origins)),
            "chosen": chosen,
        },
        "intervals": {
            "method": METHOD,
            "coverage": list(settings.coverage),
            "calibrated_steps": horizon,
            "calibration_origins": int(len(validation_origins)),
            "extrapolation": EXTRAPOLATION,
            "halfwidth_log_price": {key: [round(value, 8) for value in values] for key, values in halfwidths.items()},
            "test_coverage": {key: {str(step): value for step, value in by_step.items()}
                              for key, by_step in coverage_reached.items()},
        },
        "metrics": metrics,
    }
    config = config.with_record(**record)
    say(f"{symbol}: chose {chosen} mode; " + ", ".join(
        f"{name} MASE {values['mase']:.3f}" for name, values in horizons.items()
    ))
    plot = forecast_plot(symbol, features, test, halfwidths, chosen)
    return TrainedModel(
        config=config, network=network, scaler=scaler, metrics=metrics, plot_png=plot, seconds=seconds, epochs=epochs
    )


def forecast_plot(
    symbol: str, features: pd.DataFrame, test: OriginForecasts, halfwidths: Mapping[str, list[float]], mode: str
) -> bytes:
    """PNG: 1-week forecasts from a few test origins against the actual close, and error by horizon vs naive."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    close = features["close"]
    figure = Figure(figsize=(9, 6), dpi=80)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, gridspec_kw={"height_ratios": [2, 1]})
    first = int(test.origins[0]) - 26
    span = close.iloc[max(first, 0):]
    top.plot(np.arange(len(span)), span.to_numpy(), color="black", linewidth=0.8, label="actual close")
    offset = max(first, 0)
    picks = np.unique(np.linspace(0, len(test.origins) - 1, 4).round().astype(int))
    widest = sorted(halfwidths, key=float)
    for count, pick in enumerate(picks):
        origin = int(test.origins[pick])
        steps = np.arange(origin + 1, origin + 1 + test.predicted_log.shape[1]) - offset
        path = np.exp(test.predicted_log[pick])
        top.plot(steps, path, color="tab:blue", linewidth=1.2, label="forecast" if count == 0 else None)
        for key, alpha in zip(widest, (0.25, 0.12), strict=False):
            width = np.asarray(halfwidths[key])[: len(path)]
            top.fill_between(steps, path * np.exp(-width), path * np.exp(width), color="tab:blue", alpha=alpha,
                             linewidth=0, label=f"{round(float(key) * 100)}% interval" if count == 0 else None)
    top.set_title(f"{symbol}: {mode} forecasts on the held-out test span")
    ticks = np.linspace(0, len(span) - 1, 6).round().astype(int)
    top.set_xticks(ticks, [f"{stamp:%b %d}" for stamp in span.index[ticks]])
    top.set_xlabel("session window (New York date; the axis counts 15-minute session windows, not clock time)")
    top.set_ylabel("close")
    top.legend(loc="best", fontsize=8)
    steps = np.arange(1, test.predicted_log.shape[1] + 1)
    model_mae = np.mean(np.abs(np.exp(test.predicted_log) - np.exp(test.actual_log)), axis=0)
    naive_mae = np.mean(np.abs(test.last_close[:, None] - np.exp(test.actual_log)), axis=0)
    bottom.plot(steps, model_mae, label="model MAE", color="tab:blue")
    bottom.plot(steps, naive_mae, label="naive (last close) MAE", color="tab:gray", linestyle="--")
    bottom.set_xlabel("steps ahead")
    bottom.set_ylabel("price MAE")
    bottom.legend(loc="best", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
