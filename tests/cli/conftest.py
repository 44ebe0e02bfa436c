"""A store with data for the CLI tests: two symbols' bars, forecasts, validations, accuracy, recommendations, trade
outcomes and alerts written through the storage layer; a config file naming it; and a runner of the real console
script in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.market.calendar import NEW_YORK, session_windows, week_ahead_windows
from lstm_pipeline.storage import database_at

SCRIPT = Path(sys.executable).with_name("lstm-pipeline")
SYMBOLS = ["AAPL", "MSFT"]
DAY = "2026-03-02"


def _populate(db_path: Path) -> None:
    db = database_at(db_path)
    windows = session_windows(pd.Timestamp(f"{DAY} 09:30", tz=NEW_YORK), pd.Timestamp(f"{DAY} 16:00", tz=NEW_YORK))
    bars, predictions, validations, recommendations, outcomes, accuracy = [], [], [], [], [], []
    for offset, symbol in enumerate(SYMBOLS):
        price = 100.0 + 50 * offset
        for index, window in enumerate(windows):
            close = price + index * 0.1
            bars.append({"symbol": symbol, "window_start": window, "open": close, "high": close + 0.2,
                         "low": close - 0.2, "close": close, "volume": 1000, "vwap": close, "trade_count": 10,
                         "source": "test"})
        for as_of in windows[-2:]:
            for step, target in enumerate(week_ahead_windows(as_of)[:10], start=1):
                predictions.append({
                    "symbol": symbol, "as_of_window": as_of, "horizon_step": step,
                    "target_window": target, "predicted_close": price + step,
                    "lower_80": price + step - 1, "upper_80": price + step + 1, "lower_95": price + step - 2,
                    "upper_95": price + step + 2, "last_close": price, "forecast_mode": "lstm",
                    "model_version": f"v-{symbol.lower()}", "confidence": 0.7, "confidence_level": "HIGH",
                    "created_at": pd.Timestamp.now(tz="UTC"),
                })
        for index, window in enumerate(windows[4:14]):
            actual = price + index * 0.1
            predicted = actual * (1.01 if index % 3 else 1.03)
            validations.append({
                "symbol": symbol, "target_window": window, "as_of_window": windows[index], "horizon_step": 4,
                "model_version": f"v-{symbol.lower()}", "predicted_close": predicted, "actual_close": actual,
                "last_close": actual, "error_pct": 100 * (predicted - actual) / actual,
                "abs_error_pct": abs(100 * (predicted - actual) / actual), "naive_abs_error_pct": 0.5,
                "inside_80": bool(index % 2), "inside_95": True,
                "status": "valid" if index % 3 else "needs_reprediction", "status_reason": "test",
                "validated_at": pd.Timestamp.now(tz="UTC"),
            })
        recommendations.append({
            "symbol": symbol, "as_of_window": windows[-1], "model_version": f"v-{symbol.lower()}",
            "action": "buy" if symbol == "AAPL" else "none", "entry_window": windows[-1] + pd.Timedelta(days=1),
            "entry_price": price, "exit_window": windows[-1] + pd.Timedelta(days=2), "exit_price": price * 1.03,
            "predicted_return_pct": 2.9, "confidence": 0.7, "confidence_level": "HIGH", "recent_mase": 0.9,
            "held_back_by": None if symbol == "AAPL" else "skill", "reason": "test recommendation",
        })
        for index in range(6):
            outcomes.append({"symbol": symbol, "as_of_window": windows[index], "scored_window": windows[index + 10],
                             "action": "buy", "entry_price_actual": price, "exit_price_actual": price * 1.01,
                             "realized_return_pct": 1.0 if index % 2 else -0.5, "hit": bool(index % 2)})
        for span in ("day", "week"):
            accuracy.append({"symbol": symbol, "window_start": windows[-1], "span": span, "horizon_bucket": "1_hour",
                             "n": 40, "rmse": 0.5, "mae": 0.4, "mape": 0.3, "directional_accuracy": 0.55,
                             "up_move_share": 0.5, "mase": 0.95, "coverage_80": 0.8, "coverage_95": 0.94,
                             "winkler_80": 2.0, "winkler_95": 3.0, "reprediction_rate": 0.1,
                             "trade_success_rate": 0.5, "mean_trade_return_pct": 0.2, "mase_trend": -0.01})
    now = pd.Timestamp.now(tz="UTC")
    alerts = [
        {"source": "alerts", "symbol": "AAPL", "as_of_window": windows[-1], "kind": "prediction_error",
         "severity": "warning", "message": "AAPL's forecasts missed by 6%.", "run_id": "r1", "created_at": now,
         "level": "WARNING", "alert_key": "prediction_error:AAPL", "resolved_at": pd.NaT},
        {"source": "runs", "symbol": "*", "as_of_window": windows[-1], "kind": "run_failed", "severity": "error",
         "message": "Run abc of market_bars_update failed.", "run_id": "r2", "created_at": now, "level": "ERROR",
         "alert_key": "run_failed:market_bars_update", "resolved_at": pd.NaT},
    ]

    def replace(name, rows, keys):
        frame = pd.DataFrame(rows)
        db.replace_tables({name: (frame[keys].drop_duplicates(), frame)})

    replace("market_bars", bars, ["symbol", "window_start"])
    replace("predictions", predictions, ["symbol", "as_of_window"])
    replace("validations", validations, ["symbol", "target_window"])
    replace("trade_recommendations", recommendations, ["symbol", "as_of_window"])
    replace("trade_outcomes", outcomes, ["symbol", "scored_window"])
    replace("accuracy_metrics", accuracy, ["symbol", "window_start"])
    replace("alerts", alerts, ["source", "symbol", "as_of_window", "kind"])
    assert np.isclose(len(db.read_rows("predictions")), 40)


@pytest.fixture
def populated(tmp_path) -> dict:
    """A config file and the store it names, with data; ``env`` runs the CLI against them."""
    db_path = tmp_path / "data" / "pipeline.duckdb"
    _populate(db_path)
    config = tmp_path / "realtime_config.json"
    config.write_text(json.dumps({
        "symbols": SYMBOLS, "db_path": str(db_path),
        "alert_channels": {"console": {"enabled": False}},
        "backups": {"dir": str(tmp_path / "backups")},
        "exports": {"dir": str(tmp_path / "exports")},
    }))
    env = {key: value for key, value in os.environ.items() if not key.startswith("LSTM_PIPELINE_")}
    env.update({"LSTM_PIPELINE_CONFIG": str(config), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
                "LSTM_PIPELINE_DAGSTER_URL": "http://127.0.0.1:9"})
    return {"db_path": db_path, "config": config, "env": env, "tmp_path": tmp_path}


def run_cli(populated: dict, *args: str, extra_env: dict | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    """The installed console script ``lstm-pipeline`` in a subprocess."""
    env = {**populated["env"], **(extra_env or {})}
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=populated["tmp_path"])
