"""A store with rows in every chain table, written directly (no training): for operations tests and the benchmark."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import WINDOW, session_windows
from lstm_pipeline.storage import database_at

HORIZON_STEPS = 4
"""Forecast rows per as-of window (the live chain stores 130; a few keep test and benchmark stores small)."""


def chain_rows(
    symbols: Sequence[str], windows: Sequence[pd.Timestamp], *, seed: int = 0, price_shift: float = 0.0,
    horizon_steps: int = HORIZON_STEPS,
) -> dict[str, pd.DataFrame]:
    """Rows of market_bars, predictions, validations, accuracy_metrics, trade_recommendations, trade_outcomes and
    alerts for every symbol x window (``price_shift`` makes a second version of the same partitions differ;
    ``horizon_steps`` forecast and validation rows per window: 130 is the live week ahead)."""
    rng = np.random.default_rng(seed)
    grid = pd.MultiIndex.from_product([list(symbols), list(windows)], names=["symbol", "window_start"]).to_frame(
        index=False
    )
    n = len(grid)
    close = 100 + price_shift + rng.normal(0, 1, n).cumsum() / 10
    bars = grid.assign(
        open=close - 0.1, high=close + 0.3, low=close - 0.3, close=close,
        volume=rng.integers(1_000, 100_000, n), vwap=close, trade_count=rng.integers(10, 1_000, n),
        source="simulated(seed=0)", rejected_check=None, rejected_reason=None,
    )
    steps = np.tile(np.arange(1, horizon_steps + 1), n)
    origin = grid.loc[grid.index.repeat(horizon_steps)].reset_index(drop=True)
    last = np.repeat(close, horizon_steps)
    predicted = last + rng.normal(0, 0.5, len(origin))
    predictions = pd.DataFrame(
        {
            "symbol": origin["symbol"], "as_of_window": origin["window_start"], "horizon_step": steps,
            "target_window": origin["window_start"] + steps * WINDOW, "predicted_close": predicted,
            "lower_80": predicted - 1, "upper_80": predicted + 1, "lower_95": predicted - 2, "upper_95": predicted + 2,
            "last_close": last, "forecast_mode": "recursive", "model_version": "v-synthetic",
            "confidence": rng.uniform(0, 1, len(origin)), "confidence_level": "medium", "reason": "synthetic",
        }
    )
    validations = pd.DataFrame(
        {
            "symbol": origin["symbol"], "target_window": origin["window_start"],
            "as_of_window": origin["window_start"] - steps * WINDOW, "horizon_step": steps,
            "model_version": "v-synthetic", "predicted_close": predicted, "actual_close": last, "last_close": last,
            "error_pct": (predicted - last) / last * 100, "abs_error_pct": np.abs(predicted - last) / last * 100,
            "naive_abs_error_pct": 0.5, "inside_80": np.abs(predicted - last) < 1, "inside_95": True,
            "status": "valid", "status_reason": None,
        }
    )
    metrics = grid.rename(columns={"window_start": "window_start"}).assign(
        span="day", horizon_bucket="1_step", n=26, rmse=rng.uniform(0, 1, n), mae=rng.uniform(0, 1, n),
        mape=rng.uniform(0, 1, n), directional_accuracy=0.55, up_move_share=0.5, mase=0.9,
    )
    recommendations = grid.rename(columns={"window_start": "as_of_window"}).assign(
        model_version="v-synthetic", action=np.where(rng.uniform(0, 1, n) > 0.5, "buy", "none"),
        entry_window=grid["window_start"] + WINDOW, entry_price=close, exit_window=grid["window_start"] + 4 * WINDOW,
        exit_price=close + 1, predicted_return_pct=1.0, confidence=0.7, confidence_level="high", reason="synthetic",
    )
    outcomes = grid.rename(columns={"window_start": "scored_window"}).assign(
        as_of_window=grid["window_start"] - 4 * WINDOW, action="buy", entry_price_actual=close,
        exit_price_actual=close + 0.5, realized_return_pct=0.4, hit=True,
    )
    every_tenth = grid.iloc[::10]
    alerts = every_tenth.rename(columns={"window_start": "as_of_window"}).assign(
        source="alerts", kind="prediction_error_high", severity="warning", message="synthetic alert",
        level="WARNING", alert_key=lambda frame: "prediction_error_high:" + frame["symbol"],
    )
    return {
        "market_bars": bars,
        "predictions": predictions,
        "validations": validations,
        "accuracy_metrics": metrics,
        "trade_recommendations": recommendations,
        "trade_outcomes": outcomes,
        "alerts": alerts,
    }


def write_chain(db_path, rows: dict[str, pd.DataFrame]) -> None:
    """Replace the partitions of ``rows`` in the store at ``db_path`` (one transaction)."""
    from lstm_pipeline.storage import TABLES

    database_at(db_path).replace_tables(
        {name: (frame[list(TABLES[name].partition)].drop_duplicates(), frame) for name, frame in rows.items()}
    )


def windows(start: str, end: str) -> list[pd.Timestamp]:
    """Session windows of ``[start, end)``."""
    return list(session_windows(pd.Timestamp(start), pd.Timestamp(end)))


def monitoring_rows(sampled_at: Sequence[pd.Timestamp]) -> dict[str, pd.DataFrame]:
    """Rows of the tables without a symbol-window: two system_metrics samples and one alert delivery per time
    (every other delivery still failing and due for a retry)."""
    stamps = pd.DatetimeIndex(sampled_at)
    metrics = pd.DataFrame(
        {
            "sampled_at": np.repeat(stamps, 2), "category": "system_health",
            "metric": np.tile(["cpu_pct", "memory_pct"], len(stamps)), "value": 12.5, "unit": "%", "detail": None,
        }
    )
    failing = np.arange(len(stamps)) % 2 == 1
    deliveries = pd.DataFrame(
        {
            "channel": "file", "source": "alerts", "symbol": "AAPL", "as_of_window": stamps, "kind": "price_move",
            "event": "open:WARNING", "alert_key": "price_move:AAPL", "level": "WARNING",
            "status": np.where(failing, "failed", "sent"), "attempts": 1, "last_error": None,
            "first_attempt_at": stamps, "last_attempt_at": stamps,
            "next_attempt_at": pd.Series(stamps).where(failing).to_numpy(),
        }
    )
    return {"system_metrics": metrics, "alert_deliveries": deliveries}
