"""The compiled, batched forecaster, the seed's per-step reference, and forecasts turned into priced windows.

Why a compiled loop: the seed forecasts recursively by calling ``model.predict`` on the last ``lookback`` rows,
appending the prediction and rolling the window forward, once per step: ~70 ms of Python and Keras overhead per
call, ~48 s for 672 steps of one symbol. Here the whole horizon of every symbol sharing an architecture runs in
ONE ``tf.function`` with the LSTM cell written out as batched matmuls over a leading symbol axis (each symbol keeps
its own weights).

Why it equals the reference: the reference re-runs the full ``lookback`` window from a zero LSTM state at every
step, so carrying the state forward would NOT reproduce it (the state would remember rows older than the window).
Instead the loop keeps ``lookback`` window "chains" in flight: the chain started at row ``j`` has processed rows
``j..n`` from a zero state. Each new row is fed to every chain at once (one batched cell step per layer), the
oldest chain has then seen exactly ``lookback`` rows - the window the reference would run - and emits the
prediction, and a fresh zero chain takes its place. Every chain performs exactly the reference's operations on
exactly the reference's window, but one step costs one batched matmul per layer instead of ``lookback`` sequential
ones. Rows fed back are assembled identically in both paths: the emitted features from the prediction, the
time-of-day features from the exchange calendar's next windows, any other input held at its last observed value.

TensorFlow is imported inside functions only, so importing this module costs nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lstm_pipeline.forecasting.config import ModelConfig
from lstm_pipeline.forecasting.features import CALENDAR_FEATURES, calendar_features
from lstm_pipeline.forecasting.intervals import price_intervals
from lstm_pipeline.forecasting.scaler import FeatureScaler
from lstm_pipeline.market.calendar import to_new_york

if TYPE_CHECKING:
    import keras

    from lstm_pipeline.forecasting.store import LoadedModel

_DENSE_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")


class UnsupportedNetworkError(ValueError):
    """A network uses a layer or option the compiled forecaster does not implement."""


@dataclass(frozen=True)
class NetworkWeights:
    """The numbers of a stacked-LSTM network, in the order the compiled forecaster applies them."""

    lstm: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    """(kernel [inputs, 4 units], recurrent kernel [units, 4 units], bias [4 units]) per LSTM layer, gates i f c o."""
    dense: tuple[tuple[np.ndarray, np.ndarray], ...]
    """(kernel, bias) per Dense layer, the head last."""
    activations: tuple[str, ...]
    """Activation of each Dense layer."""

    @property
    def shape_key(self) -> tuple[Any, ...]:
        """Networks with equal keys can be stacked into one batched call."""
        return (
            tuple(tuple(array.shape for array in layer) for layer in self.lstm),
            tuple(tuple(array.shape for array in layer) for layer in self.dense),
            self.activations,
        )


def network_weights(network: keras.Model) -> NetworkWeights:
    """Read a Keras stacked-LSTM network's weights; refuses layers or options the compiled loop does not do."""
    import keras

    lstm: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    dense: list[tuple[np.ndarray, np.ndarray]] = []
    activations: list[str] = []
    sequences: list[bool] = []
    for layer in network.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
            continue
        if isinstance(layer, keras.layers.LSTM):
            settings = layer.get_config()
            problems = [
                f"{key}={settings.get(key)!r}"
                for key, wanted in (
                    ("activation", "tanh"),
                    ("recurrent_activation", "sigmoid"),
                    ("use_bias", True),
                    ("go_backwards", False),
                    ("stateful", False),
                )
                if settings.get(key) != wanted
            ]
            if dense or problems:
                raise UnsupportedNetworkError(
                    f"LSTM layer {layer.name} ({', '.join(problems) or 'after a Dense layer'}) is not supported"
                )
            kernel, recurrent, bias = layer.get_weights()
            lstm.append((kernel, recurrent, bias))
            sequences.append(bool(settings.get("return_sequences")))
        elif isinstance(layer, keras.layers.Dense):
            activation = layer.get_config()["activation"]
            if activation not in _DENSE_ACTIVATIONS or not layer.use_bias:
                raise UnsupportedNetworkError(f"Dense layer {layer.name} ({activation}, bias={layer.use_bias})")
            kernel, bias = layer.get_weights()
            dense.append((kernel, bias))
            activations.append(activation)
        else:
            raise UnsupportedNetworkError(f"layer {layer.name} of type {type(layer).__name__} is not supported")
    if not lstm or not dense:
        raise UnsupportedNetworkError("a network needs at least one LSTM layer and a Dense head")
    if sequences != [True] * (len(lstm) - 1) + [False]:
        raise UnsupportedNetworkError("every LSTM layer but the last must return sequences, and the last must not")
    return NetworkWeights(tuple(lstm), tuple(dense), tuple(activations))


@dataclass(frozen=True)
class _Stacked:
    lstm: tuple[tuple[Any, Any, Any], ...]
    dense: tuple[tuple[Any, Any], ...]
    activations: tuple[str, ...]


def _stack(weights: Sequence[NetworkWeights]) -> _Stacked:
    import tensorflow as tf

    keys = {item.shape_key for item in weights}
    if len(keys) != 1:
        raise ValueError("networks stacked into one batched forecast must share one architecture")

    def stacked(arrays: Sequence[np.ndarray]) -> Any:
        return tf.constant(np.stack([np.asarray(array, dtype=np.float32) for array in arrays]))

    first = weights[0]
    lstm = tuple(
        tuple(stacked([item.lstm[layer][part] for item in weights]) for part in range(3))
        for layer in range(len(first.lstm))
    )
    dense = tuple(
        tuple(stacked([item.dense[layer][part] for item in weights]) for part in range(2))
        for layer in range(len(first.dense))
    )
    return _Stacked(lstm=lstm, dense=dense, activations=first.activations)


@functools.lru_cache(maxsize=1)
def _compiled() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Build the two compiled programs once per process (first use pays TensorFlow's import and tracing)."""
    import tensorflow as tf

    activation_ops = {"linear": tf.identity, "relu": tf.nn.relu, "tanh": tf.tanh, "sigmoid": tf.sigmoid}

    def cell(z: tf.Tensor, carry: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Keras' LSTM cell (gates i, f, c, o; sigmoid recurrent activation, tanh activation).
        gate_i, gate_f, gate_c, gate_o = tf.split(z, 4, axis=-1)
        carry = tf.sigmoid(gate_f) * carry + tf.sigmoid(gate_i) * tf.tanh(gate_c)
        return tf.sigmoid(gate_o) * tf.tanh(carry), carry

    def head(hidden: tf.Tensor, dense: tuple, activations: tuple[str, ...]) -> tf.Tensor:
        for (kernel, bias), activation in zip(dense, activations, strict=True):
            hidden = activation_ops[activation](tf.linalg.matmul(hidden, kernel) + bias[:, None, :])
        return hidden

    def shift(state: tf.Tensor, symbols: tf.Tensor, windows: tf.Tensor, lookback: tf.Tensor) -> tf.Tensor:
        # Drop the oldest chain (it has just emitted) and start a fresh zero-state chain at the end.
        chains = tf.reshape(state, [symbols, windows, lookback, tf.shape(state)[-1]])
        chains = tf.concat([chains[:, :, 1:], tf.zeros_like(chains[:, :, :1])], axis=2)
        return tf.reshape(chains, tf.shape(state))

    @tf.function(reduce_retracing=True, autograph=False)
    def recursive(history, exogenous, keep, emit, lstm, dense, activations):
        # history [S, B, L, F]; exogenous [S, B, H, F]; keep [F] (1 where the row takes exogenous);
        # emit [n_out, F] one-hot placement of the outputs; returns [S, B, H, n_out].
        symbols, windows, lookback = tf.shape(history)[0], tf.shape(history)[1], tf.shape(history)[2]
        horizon = tf.shape(exogenous)[2]
        chains = windows * lookback

        def step(row, states):
            new_states = []
            inputs = None
            for index, (kernel, recurrent, bias) in enumerate(lstm):
                hidden, carry = states[index]
                if index == 0:
                    # Every chain of a window reads the same new row: project it once, broadcast to the chains.
                    projected = tf.linalg.matmul(row, kernel)[:, :, None, :]
                    recurrent_part = tf.reshape(
                        tf.linalg.matmul(hidden, recurrent), [symbols, windows, lookback, tf.shape(kernel)[-1]]
                    )
                    z = tf.reshape(projected + recurrent_part, [symbols, chains, tf.shape(kernel)[-1]])
                else:
                    z = tf.linalg.matmul(inputs, kernel) + tf.linalg.matmul(hidden, recurrent)
                hidden, carry = cell(z + bias[:, None, :], carry)
                new_states.append((hidden, carry))
                inputs = hidden
            complete = tf.reshape(inputs, [symbols, windows, lookback, tf.shape(inputs)[-1]])[:, :, 0]
            output = head(complete, dense, activations)
            return output, [(shift(h, symbols, windows, lookback), shift(c, symbols, windows, lookback))
                            for h, c in new_states]

        states = [
            (
                tf.zeros([symbols, chains, tf.shape(recurrent)[1]], history.dtype),
                tf.zeros([symbols, chains, tf.shape(recurrent)[1]], history.dtype),
            )
            for _, recurrent, _ in lstm
        ]
        output = tf.zeros([symbols, windows, tf.shape(emit)[0]], history.dtype)
        # Batch sizes stay dynamic, so one trace serves any number of symbols and windows.
        any_shape = tf.TensorShape([None, None, None])
        state_shapes = [(any_shape, any_shape) for _ in lstm]

        def warm_up(position, output, states):  # the observed window
            output, states = step(history[:, :, position], states)
            return position + 1, output, states

        _, output, states = tf.while_loop(
            lambda position, *_: position < lookback,
            warm_up,
            [tf.constant(0), output, states],
            shape_invariants=[tf.TensorShape([]), any_shape, state_shapes],
        )
        outputs = tf.TensorArray(history.dtype, size=horizon).write(0, output)

        def roll(ahead, output, states, outputs):  # feed the prediction back as the next row
            row = exogenous[:, :, ahead - 1] * keep + tf.linalg.matmul(output, emit)
            output, states = step(row, states)
            return ahead + 1, output, states, outputs.write(ahead, output)

        _, _, _, outputs = tf.while_loop(
            lambda ahead, *_: ahead < horizon,
            roll,
            [tf.constant(1), output, states, outputs],
            shape_invariants=[tf.TensorShape([]), any_shape, state_shapes, tf.TensorShape(None)],
        )
        return tf.transpose(outputs.stack(), [1, 2, 0, 3])

    @tf.function(reduce_retracing=True, autograph=False)
    def direct(history, lstm, dense, activations):
        # history [S, B, L, F]; one pass over the window; returns [S, B, n_out].
        # All layers advance together, one window position at a time: layer k reads layer k-1's new hidden state
        # straight away, so no layer's whole sequence ([S, B * L, 4 units], ~160 MB for a year of origins) is ever
        # projected, stored and transposed. Each element sees the same matmuls and cell as a layer-by-layer pass.
        symbols, windows, lookback = tf.shape(history)[0], tf.shape(history)[1], tf.shape(history)[2]
        rows = tf.transpose(history, [2, 0, 1, 3])  # position-major: each step reads one contiguous [S, B, F] block
        states = [
            (
                tf.zeros([symbols, windows, tf.shape(recurrent)[1]], history.dtype),
                tf.zeros([symbols, windows, tf.shape(recurrent)[1]], history.dtype),
            )
            for _, recurrent, _ in lstm
        ]
        any_shape = tf.TensorShape([None, None, None])

        # Each layer's input and recurrent kernels stacked: one matmul of [input, hidden] per layer and position
        # instead of two and a sum (about a tenth less time; the same products, summed in another order).
        fused = [tf.concat([kernel, recurrent], axis=1) for kernel, recurrent, _ in lstm]

        def advance(position, states):
            inputs = rows[position]
            new_states = []
            for weights, (_, _, bias), (hidden, carry) in zip(fused, lstm, states, strict=True):
                z = tf.linalg.matmul(tf.concat([inputs, hidden], axis=-1), weights)
                hidden, carry = cell(z + bias[:, None, :], carry)
                new_states.append((hidden, carry))
                inputs = hidden
            return position + 1, new_states

        _, states = tf.while_loop(
            lambda position, *_: position < lookback,
            advance,
            [tf.constant(0), states],
            shape_invariants=[tf.TensorShape([]), [(any_shape, any_shape) for _ in lstm]],
        )
        return head(states[-1][0], dense, activations)

    return recursive, direct


def output_layout(config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(keep [F], emit [n_out, F]): where a fed-back row takes known values and where it takes the outputs."""
    keep = np.ones(config.n_features, dtype=np.float32)
    emit = np.zeros((len(config.output_features), config.n_features), dtype=np.float32)
    for index, name in enumerate(config.output_features):
        column = config.features.index(name)
        keep[column] = 0.0
        emit[index, column] = 1.0
    return keep, emit


def compiled_outputs(
    config: ModelConfig, weights: Sequence[NetworkWeights], history: np.ndarray, exogenous: np.ndarray | None
) -> np.ndarray:
    """Network outputs for S networks sharing ``config``'s architecture, over B windows each, in one call.

    ``history`` is [S, B, lookback, F] of scaled rows. Recursive: ``exogenous`` [S, B, H, F] holds each future
    row's known values (calendar features, held features); returns [S, B, H, n_out]. Direct: returns [S, B, H].
    """
    import tensorflow as tf

    recursive, direct = _compiled()
    stacked = _stack(weights)
    history_tensor = tf.constant(np.asarray(history, dtype=np.float32))
    if config.forecast_mode == "direct":
        return direct(history_tensor, stacked.lstm, stacked.dense, stacked.activations).numpy()
    if exogenous is None:
        raise ValueError("a recursive forecast needs the known part of each future row (exogenous)")
    keep, emit = output_layout(config)
    result = recursive(
        history_tensor,
        tf.constant(np.asarray(exogenous, dtype=np.float32)),
        tf.constant(keep),
        tf.constant(emit),
        stacked.lstm,
        stacked.dense,
        stacked.activations,
    )
    return result.numpy()


def reference_outputs(
    config: ModelConfig, network: keras.Model, history: np.ndarray, exogenous: np.ndarray | None
) -> np.ndarray:
    """The seed's loop, kept as the reference: ``model.predict`` on the window, append, roll, once per step.

    ``history`` [lookback, F]; ``exogenous`` [H, F]. Returns [H, n_out] (recursive) or [H] (direct).
    """
    window = np.asarray(history, dtype=np.float32).copy()
    if config.forecast_mode == "direct":
        return network.predict(window[None], verbose=0)[0]
    columns = [config.features.index(name) for name in config.output_features]
    horizon = len(exogenous)
    outputs = np.zeros((horizon, len(columns)), dtype=np.float32)
    for ahead in range(horizon):
        prediction = network.predict(window[None], verbose=0)[0]
        outputs[ahead] = prediction
        row = np.asarray(exogenous[ahead], dtype=np.float32).copy()
        row[columns] = prediction
        window = np.concatenate([window[1:], row[None]], axis=0)
    return outputs


def price_feature_path(config: ModelConfig, outputs: np.ndarray) -> np.ndarray:
    """The scaled series of the price feature from network outputs ([..., H, n_out] or direct [..., H])."""
    if config.forecast_mode == "direct":
        return np.asarray(outputs)
    return np.asarray(outputs)[..., config.output_features.index(config.price_feature)]


def log_price_paths(
    config: ModelConfig, scaler: FeatureScaler, outputs: np.ndarray, last_close: np.ndarray
) -> np.ndarray:
    """Forecast log prices [..., H] from outputs: cumulative log returns from the last close (or unscaled close)."""
    center, scale = scaler.column(config.price_feature)
    values = price_feature_path(config, outputs).astype(np.float64) * scale + center
    if config.price_feature == "close":
        return np.log(np.maximum(values, 1e-12))
    return np.log(np.asarray(last_close, dtype=np.float64))[..., None] + np.cumsum(values, axis=-1)


def future_rows(
    config: ModelConfig, scaler: FeatureScaler, last_row: np.ndarray, windows: pd.DatetimeIndex
) -> np.ndarray:
    """Known part of each future row [H, F], scaled: calendar features of the windows, held features at their last
    scaled value, emitted features zero (the forecast overwrites them).

    ``last_row`` is the last observed scaled row [F], or one per window [H, F], so that the rows of many origins'
    horizons, laid end to end, are built in one call."""
    rows = np.zeros((len(windows), config.n_features), dtype=np.float64)
    calendar = calendar_features(windows)
    for column, name in enumerate(config.features):
        if name in CALENDAR_FEATURES:
            center, scale = scaler.column(name)
            rows[:, column] = (calendar[name].to_numpy() - center) / scale
        elif name in config.held_features:
            rows[:, column] = np.asarray(last_row)[..., column]
    return rows


@dataclass(frozen=True)
class PriceForecast:
    """One symbol's forecast as of one window: a predicted close per target window, with intervals and provenance."""

    symbol: str
    model_version: str
    forecast_mode: str
    as_of_window: pd.Timestamp
    """The window whose close the forecast is made at: its bar is the last one used."""
    last_close: float
    target_window: pd.DatetimeIndex
    predicted_close: np.ndarray
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Coverage key ("0.8", "0.95") -> (lower, upper) close bounds per target window."""

    def to_frame(self) -> pd.DataFrame:
        """One row per target window, in the ``predictions`` table's columns (without ``created_at``)."""
        from lstm_pipeline.forecasting.batch import PREDICTION_COLUMNS

        frame = pd.DataFrame(
            {
                "symbol": self.symbol,
                "as_of_window": self.as_of_window,
                "horizon_step": np.arange(1, len(self.target_window) + 1, dtype=np.int64),
                "target_window": self.target_window,
                "predicted_close": self.predicted_close,
            }
        )
        for key, (lower, upper) in sorted(self.intervals.items()):
            percent = round(float(key) * 100)
            frame[f"lower_{percent}"] = lower
            frame[f"upper_{percent}"] = upper
        for name in PREDICTION_COLUMNS:
            if name not in frame:
                frame[name] = np.nan
        frame["last_close"] = self.last_close
        frame["forecast_mode"] = self.forecast_mode
        frame["model_version"] = self.model_version
        return frame[list(PREDICTION_COLUMNS)]


def forecast_prices(
    models: Sequence[LoadedModel],
    bars_by_symbol: Mapping[str, pd.DataFrame],
    horizon_steps: int | None = None,
) -> dict[str, PriceForecast]:
    """Forecast every model's symbol as of its latest bar, batching models that share an architecture.

    The horizon is the week ahead of each symbol's last bar (``market.calendar.week_ahead_windows``, 130 windows
    in a normal week), or the next ``horizon_steps`` windows. This is ``batch.forecast_windows`` for one as-of
    window per symbol, for callers that want the latest forecast; a symbol that cannot be forecast raises
    ``ValueError`` with the reason (the batch function skips it instead).
    """
    from lstm_pipeline.forecasting.batch import forecast_windows

    wanted: dict[str, list[pd.Timestamp]] = {}
    for model in models:
        bars = bars_by_symbol.get(model.symbol)
        if bars is None or bars.empty:
            raise ValueError(f"No bars were passed for {model.symbol}; pass its latest bars to forecast it.")
        stamps = pd.DatetimeIndex(pd.to_datetime(bars["window_start"]))
        wanted[model.symbol] = [to_new_york(stamps.max())]
    result = forecast_windows(
        wanted, {model.symbol: model for model in models}, bars_by_symbol, horizon_steps=horizon_steps
    )
    if result.skipped:
        raise ValueError(" ".join(reason for _, reason in result.skipped.values()))
    forecasts: dict[str, PriceForecast] = {}
    for model in models:
        rows = result.rows[result.rows["symbol"] == model.symbol]
        path = rows["predicted_close"].to_numpy()
        forecasts[model.symbol] = PriceForecast(
            symbol=model.symbol,
            model_version=model.version,
            forecast_mode=model.config.forecast_mode,
            as_of_window=wanted[model.symbol][0],
            last_close=float(rows["last_close"].iloc[0]),
            target_window=pd.DatetimeIndex(rows["target_window"]),
            predicted_close=path,
            intervals=price_intervals(path, model.config.intervals),
        )
    return forecasts
