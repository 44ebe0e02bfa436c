"""Fixtures for the forecasting tests: simulated bars, tiny networks, saved model folders, one tiny trained model.

Networks here are small (a few units, short lookbacks, few epochs) so the whole folder runs in well under a
minute or two on 2 cores; the behaviour under test does not depend on size.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.forecasting.config import ModelConfig, default_config
from lstm_pipeline.forecasting.features import DEFAULT_FEATURES, bar_features
from lstm_pipeline.forecasting.scaler import fit_standard_scaler
from lstm_pipeline.forecasting.training import TrainingSettings
from lstm_pipeline.market.calendar import session_windows
from lstm_pipeline.market.simulated import simulate_bars

TINY_SETTINGS = TrainingSettings(
    lookback_steps=8,
    horizon_steps=130,
    lstm_units=(8,),
    max_epochs=2,
    patience=1,
    batch_size=64,
    min_origins=20,
    max_bars=None,
)


def sim_bars(symbol: str, start: str = "2025-03-03", end: str = "2025-04-15", seed: int = 0) -> pd.DataFrame:
    """Simulated bars of one symbol over whole sessions ``[start, end)``."""
    return simulate_bars(symbol, session_windows(start, end), seed=seed)


def random_network(config: ModelConfig, seed: int, head_gain: float = 1.0):
    """A freshly initialised network; ``head_gain`` scales the head so fed-back outputs are O(1), not O(0.1)."""
    import keras

    from lstm_pipeline.forecasting.network import build_network

    keras.utils.set_random_seed(seed)
    network = build_network(config)
    head = network.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * head_gain, bias])
    return network


def saved_model(models_dir, symbol: str, config: ModelConfig, seed: int, bars: pd.DataFrame, head_gain: float = 1.0):
    """Save a random-weight model for ``symbol`` (scaler fitted on the first 70% of ``bars``) and load it back."""
    from lstm_pipeline.forecasting.store import load_model, save_model

    features = bar_features(bars, config.features, symbol=symbol)
    train_rows = int(len(features) * 0.7)
    scaler = fit_standard_scaler(features[list(config.features)].to_numpy()[:train_rows], config.features)
    network = random_network(config, seed, head_gain)
    folder, _ = save_model(models_dir, config, network, scaler)
    return load_model(folder, symbol)


@pytest.fixture(scope="session")
def aapl_bars() -> pd.DataFrame:
    return sim_bars("AAPL")


@pytest.fixture(scope="session")
def tiny_trained(aapl_bars):
    """One tiny model trained on simulated AAPL bars (shared: training is the slow part)."""
    from lstm_pipeline.forecasting.training import train_symbol

    lines: list[str] = []
    trained = train_symbol(
        "AAPL", aapl_bars, TINY_SETTINGS, progress=lines.append, trained_on="simulated market (seed 0)"
    )
    return trained, lines


def tiny_config(symbol: str, mode: str, horizon_steps: int = 26) -> ModelConfig:
    return default_config(symbol, mode, lookback_steps=8, horizon_steps=horizon_steps, lstm_units=(8, 6))


def finite(values) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())


__all__ = ["DEFAULT_FEATURES", "TINY_SETTINGS", "finite", "random_network", "saved_model", "sim_bars", "tiny_config"]
