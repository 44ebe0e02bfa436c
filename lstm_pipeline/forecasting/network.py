"""The Keras network a ``ModelConfig`` describes: stacked LSTM layers, optional Dense layers, a linear head.

Imported lazily (it imports Keras): Dagster's code location never pays for TensorFlow.
Recursive mode's head emits the next step's ``output_features``; direct mode's head emits ``horizon_steps`` future
values of its one output feature in a single pass. Dropout layers carry no weights, so the layer order that weights
files rely on is that of the LSTM and Dense layers alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lstm_pipeline.forecasting.config import ModelConfig

if TYPE_CHECKING:
    import keras


def build_network(config: ModelConfig) -> keras.Model:
    """A fresh, built (randomly initialised) network with the config's input shape and head."""
    import keras

    inputs = keras.Input(shape=(config.lookback_steps, config.n_features), name="window")
    hidden = inputs
    last = len(config.lstm_units) - 1
    for index, units in enumerate(config.lstm_units):
        hidden = keras.layers.LSTM(units, return_sequences=index < last, name=f"lstm_{index}")(hidden)
        if config.dropout > 0:
            hidden = keras.layers.Dropout(config.dropout, name=f"dropout_{index}")(hidden)
    for index, units in enumerate(config.dense_units):
        hidden = keras.layers.Dense(units, activation=config.dense_activation, name=f"dense_{index}")(hidden)
    outputs = keras.layers.Dense(config.n_outputs, name="head")(hidden)
    return keras.Model(inputs, outputs, name=f"{config.forecast_mode}_lstm")
