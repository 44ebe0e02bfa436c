"""Fixtures for the backtest tests: simulated bars, tiny training settings, a backtest run shared by the module.

Training is the slow part, so the factory remembers each model by a hash of the bars it was trained on: a second
run over perturbed bars retrains only where its training bars really differ, and the hashes show what each model
saw.
"""

import dataclasses
import hashlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd
import pytest

from lstm_pipeline.market.calendar import session_windows
from lstm_pipeline.market.simulated import simulate_bars
from tests.forecasting.conftest import TINY_SETTINGS

TINY = dataclasses.replace(TINY_SETTINGS, modes=("direct",))
"""The forecasting tests' tiny network, direct mode only (one mode trains twice as fast)."""
TRAIN_SESSIONS = 22
RETRAIN_EVERY = 5
START, END = "2025-03-03", "2025-04-22"


def sim_history(symbols=("AAPL", "MSFT"), start: str = START, end: str = END) -> pd.DataFrame:
    windows = session_windows(start, end)
    return pd.concat([simulate_bars(symbol, windows, seed=1) for symbol in symbols], ignore_index=True)


def bars_hash(bars: pd.DataFrame) -> str:
    columns = bars[["window_start", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    return hashlib.sha256(pd.util.hash_pandas_object(columns, index=False).to_numpy().tobytes()).hexdigest()[:16]


class CachingFactory:
    """Trains a tiny model per distinct training history; records (symbol, last bar, hash) of every request."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], object] = {}
        self.requests: list[tuple[str, pd.Timestamp, str]] = []

    def __call__(self, symbol: str, bars: pd.DataFrame):
        from lstm_pipeline.backtest.walkforward import train_loaded_model

        key = (symbol, bars_hash(bars))
        self.requests.append((symbol, pd.Timestamp(bars["window_start"].max()), key[1]))
        if key not in self.models:
            self.models[key] = train_loaded_model(symbol, bars, TINY)
        return self.models[key]


@pytest.fixture(scope="session")
def factory() -> CachingFactory:
    return CachingFactory()


@pytest.fixture(scope="session")
def history() -> pd.DataFrame:
    return sim_history()


@pytest.fixture(scope="session")
def backtest(history, factory):
    from lstm_pipeline.backtest import run_backtest
    from lstm_pipeline.settings import Settings

    # The schedule alone (the retraining rule has its own tests in test_retrain_rule.py).
    return run_backtest(history, TRAIN_SESSIONS, RETRAIN_EVERY, Settings(), model_factory=factory, retrain_rule=False)
