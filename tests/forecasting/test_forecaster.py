"""The compiled forecaster equals the seed's per-step ``model.predict`` loop, for one symbol and for many symbols
with different weights, in both modes; forecasts are priced on the next session windows."""

import numpy as np
import pytest

from lstm_pipeline.forecasting.config import ModelConfig, default_config
from lstm_pipeline.forecasting.features import future_windows
from lstm_pipeline.forecasting.forecaster import (
    compiled_outputs,
    forecast_prices,
    future_rows,
    log_price_paths,
    network_weights,
    reference_outputs,
)
from tests.forecasting.conftest import finite, random_network, saved_model, sim_bars, tiny_config

TOLERANCE = 1e-5


def _inputs(config: ModelConfig, symbols: int, windows: int, horizon: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    history = rng.standard_normal((symbols, windows, config.lookback_steps, config.n_features)).astype(np.float32)
    exogenous = rng.standard_normal((symbols, windows, horizon, config.n_features)).astype(np.float32)
    return history, exogenous


@pytest.mark.parametrize("mode", ["recursive", "direct"])
def test_one_symbol_matches_the_per_step_reference(mode):
    config = default_config("AAPL", mode, lookback_steps=12, horizon_steps=20, lstm_units=(16, 16))
    network = random_network(config, seed=11, head_gain=10.0)  # outputs of order 1, fed back 20 times
    history, exogenous = _inputs(config, 1, 1, 20)
    fast = compiled_outputs(config, [network_weights(network)], history, exogenous)[0, 0]
    reference = reference_outputs(config, network, history[0, 0], exogenous[0, 0])
    assert fast.shape == reference.shape
    assert np.abs(reference).max() > 0.5  # the comparison is not between near-zero numbers
    np.testing.assert_allclose(fast, reference, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("mode", ["recursive", "direct"])
def test_many_symbols_with_different_weights_match_the_reference(mode):
    config = default_config("X", mode, lookback_steps=10, horizon_steps=15, lstm_units=(12, 8))
    networks = [random_network(config, seed=seed, head_gain=8.0) for seed in range(4)]
    history, exogenous = _inputs(config, len(networks), 1, 15, seed=1)
    fast = compiled_outputs(config, [network_weights(network) for network in networks], history, exogenous)
    for index, network in enumerate(networks):
        reference = reference_outputs(config, network, history[index, 0], exogenous[index, 0])
        np.testing.assert_allclose(fast[index, 0], reference, atol=TOLERANCE, rtol=0)
    assert not np.allclose(fast[0], fast[1])  # each symbol ran with its own weights


def test_held_features_and_dense_layers_match_the_reference():
    # A seed-style network: Dense layers after the LSTMs, and an output that does not cover every input, so the
    # fed-back row holds the unpredicted inputs at their last value.
    config = ModelConfig(
        symbol="X", forecast_mode="recursive", lookback_steps=9, features=("log_return", "log_range", "log_volume",
        "tod_sin", "tod_cos"), output_features=("log_return",), horizon_steps=12, lstm_units=(10, 10),
        dense_units=(6,), dense_activation="tanh",
    )
    assert config.held_features == ("log_range", "log_volume")
    network = random_network(config, seed=4, head_gain=8.0)
    history, exogenous = _inputs(config, 1, 1, 12, seed=2)
    fast = compiled_outputs(config, [network_weights(network)], history, exogenous)[0, 0]
    np.testing.assert_allclose(fast, reference_outputs(config, network, history[0, 0], exogenous[0, 0]), atol=TOLERANCE)


def test_many_windows_of_one_symbol_equal_one_window_at_a_time():
    config = default_config("X", "recursive", lookback_steps=8, horizon_steps=30, lstm_units=(8,))
    weights = [network_weights(random_network(config, seed=0, head_gain=8.0))]
    history, exogenous = _inputs(config, 1, 5, 30, seed=3)
    together = compiled_outputs(config, weights, history, exogenous)
    for window in range(5):
        alone = compiled_outputs(config, weights, history[:, window : window + 1], exogenous[:, window : window + 1])
        np.testing.assert_allclose(together[:, window], alone[:, 0], atol=1e-6)


def test_forecast_prices_batches_symbols_and_prices_the_next_session_windows(tmp_path):
    symbols = ["AAPL", "MSFT", "TSLA"]
    bars = {symbol: sim_bars(symbol, "2025-06-02", "2025-06-20", seed=1) for symbol in symbols}
    models = [
        saved_model(tmp_path, symbol, tiny_config(symbol, "recursive"), seed=index, bars=bars[symbol], head_gain=2.0)
        for index, symbol in enumerate(symbols)
    ]
    forecasts = forecast_prices(models, bars)
    for model in models:
        forecast = forecasts[model.symbol]
        last = bars[model.symbol]["window_start"].iloc[-1]
        assert forecast.as_of_window == last
        assert forecast.target_window.equals(future_windows(last))  # next 7 days of session windows
        assert len(forecast.target_window) == 4 * 26  # from 06-18 15:45: 06-19 is Juneteenth, then 06-20 .. 06-25
        # Same prices as the seed's loop on the same model and the same inputs.
        config, scaler = model.config, model.scaler
        from lstm_pipeline.forecasting.features import bar_features

        features = bar_features(bars[model.symbol], config.features)
        scaled = scaler.transform(features[list(config.features)].to_numpy())[-config.lookback_steps :]
        exogenous = future_rows(config, scaler, scaled[-1], forecast.target_window)
        reference = reference_outputs(config, model.network, scaled, exogenous[:12])
        expected = np.exp(log_price_paths(config, scaler, reference, np.asarray(forecast.last_close)))
        np.testing.assert_allclose(forecast.predicted_close[:12], expected, rtol=TOLERANCE)
        frame = forecast.to_frame()
        assert set(frame["model_version"]) == {model.version} and set(frame["symbol"]) == {model.symbol}
    assert len({tuple(forecasts[symbol].predicted_close[:5]) for symbol in symbols}) == 3


def test_recursive_forecasts_the_seeds_672_steps_and_direct_refuses_past_its_horizon(tmp_path):
    bars = sim_bars("AAPL", "2025-06-02", "2025-06-20")
    recursive = saved_model(tmp_path / "r", "AAPL", tiny_config("AAPL", "recursive"), seed=0, bars=bars)
    forecast = forecast_prices([recursive], {"AAPL": bars}, horizon_steps=672)["AAPL"]
    assert len(forecast.predicted_close) == 672 and finite(forecast.predicted_close)
    assert forecast.target_window.equals(future_windows(bars["window_start"].iloc[-1], 672))
    direct = saved_model(tmp_path / "d", "AAPL", tiny_config("AAPL", "direct", horizon_steps=26), seed=0, bars=bars)
    assert len(forecast_prices([direct], {"AAPL": bars}, horizon_steps=26)["AAPL"].predicted_close) == 26
    with pytest.raises(ValueError, match=r"AAPL is direct with a 26-step horizon and cannot forecast the 672 steps"):
        forecast_prices([direct], {"AAPL": bars}, horizon_steps=672)
