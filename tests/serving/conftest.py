"""Fixtures of the REST service tests: a small populated store, keys of both roles, a configured app."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lstm_pipeline.market.calendar import NEW_YORK, WINDOW
from lstm_pipeline.settings import Settings, load_settings
from lstm_pipeline.storage import database_at

SYMBOLS = ("AAPL", "MSFT")
WINDOWS = [pd.Timestamp("2025-01-02 09:30", tz=NEW_YORK) + i * WINDOW for i in range(4)]
READER_KEY = "reader-key-for-tests-0123456789abcdef"
OPERATOR_KEY = "operator-key-for-tests-0123456789abcdef"


def populate(db_path: Path) -> None:
    """Two symbols x four windows of every table the endpoints read."""
    bars, predictions, metrics, recs, outcomes, alerts = [], [], [], [], [], []
    for s_index, symbol in enumerate(SYMBOLS):
        base = 100.0 + 50 * s_index
        for w_index, window in enumerate(WINDOWS):
            close = base + w_index
            bars.append({"symbol": symbol, "window_start": window, "open": close - 0.5, "high": close + 1,
                         "low": close - 1, "close": close, "volume": 1000 + w_index, "vwap": close,
                         "trade_count": 10, "source": "test"})
            for step in range(1, 4):
                predictions.append({
                    "symbol": symbol, "as_of_window": window, "horizon_step": step,
                    "target_window": window + step * WINDOW, "predicted_close": close + 0.1 * step,
                    "lower_80": close - step, "upper_80": close + step, "lower_95": close - 2 * step,
                    "upper_95": close + 2 * step, "last_close": close, "forecast_mode": "lstm",
                    "model_version": f"v-{symbol.lower()}-1", "confidence": 0.7, "confidence_level": "HIGH",
                    "reason": None,
                })
            for span in ("day", "week"):
                metrics.append({"symbol": symbol, "window_start": window, "span": span, "horizon_bucket": "1_step",
                                "n": 10 + w_index, "rmse": 0.5, "mae": 0.4, "mape": 0.01,
                                "directional_accuracy": 0.6, "mase": 0.9, "coverage_80": 0.8, "coverage_95": 0.95,
                                "trade_success_rate": 0.5, "mean_trade_return_pct": 0.2})
            last = w_index == len(WINDOWS) - 1
            recs.append({"symbol": symbol, "as_of_window": window, "model_version": f"v-{symbol.lower()}-1",
                         "action": "buy" if last or w_index == 0 else "none",
                         "entry_window": window + WINDOW, "entry_price": close,
                         "exit_window": window + 3 * WINDOW, "exit_price": close * 1.03,
                         "predicted_return_pct": 3.0, "confidence": 0.7, "confidence_level": "HIGH",
                         "recent_mase": 0.9, "held_back_by": None if last or w_index == 0 else "confidence",
                         "reason": "test"})
            if w_index >= 2:
                outcomes.append({"symbol": symbol, "as_of_window": WINDOWS[0], "scored_window": window,
                                 "action": "buy", "entry_price_actual": close - 1,
                                 "exit_price_actual": close, "realized_return_pct": 1.0, "hit": w_index == 3})
        for level, kind, resolved in (("WARNING", "confidence_low", None), ("CRITICAL", "prediction_error", None),
                                      ("INFO", "resolved_one", WINDOWS[3])):
            alerts.append({"source": "alerts", "symbol": symbol, "as_of_window": WINDOWS[1], "kind": kind,
                           "severity": level.lower(), "message": f"{kind} on {symbol}", "run_id": None,
                           "level": level, "alert_key": f"{kind}:{symbol}", "resolved_at": resolved})
    tables: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for name, rows, partition in (
        ("market_bars", bars, ["symbol", "window_start"]),
        ("predictions", predictions, ["symbol", "as_of_window"]),
        ("accuracy_metrics", metrics, ["symbol", "window_start"]),
        ("trade_recommendations", recs, ["symbol", "as_of_window"]),
        ("trade_outcomes", outcomes, ["symbol", "scored_window"]),
        ("alerts", alerts, ["source", "symbol", "as_of_window"]),
    ):
        frame = pd.DataFrame(rows)
        tables[name] = (frame[partition].drop_duplicates(), frame)
    database_at(db_path).replace_tables(tables)


@pytest.fixture(scope="session")
def populated_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "pipeline.duckdb"
    populate(path)
    return path


@dataclass
class Service:
    """What a test needs to build the app: its settings, environment and where it writes."""

    settings: Settings
    environ: dict[str, str]
    home: Path
    config_path: Path

    def app(self, **options: Any):  # noqa: ANN201 - FastAPI
        from serving.app import create_app

        return create_app(self.settings, environ=self.environ, **options)

    def written_files(self) -> list[Path]:
        return [p for p in self.home.rglob("*") if p.is_file()] + [self.config_path]


def make_service(tmp_path: Path, db_path: Path, api: dict[str, Any] | None = None,
                 extra_env: dict[str, str] | None = None) -> Service:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    config_path = tmp_path / "realtime_config.json"
    config_path.write_text(json.dumps({
        "symbols": list(SYMBOLS), "db_path": str(db_path), "models_dir": str(tmp_path / "models"),
        "api": {"host": "127.0.0.1", "port": 8000, **(api or {})},
    }))
    environ = {
        "DAGSTER_HOME": str(home), "LSTM_PIPELINE_CONFIG": str(config_path),
        "LSTM_PIPELINE_API_KEYS": f"reader:{READER_KEY},operator:{OPERATOR_KEY}",
        "LSTM_PIPELINE_DAGSTER_URL": "http://127.0.0.1:9",  # nothing listens: Dagster unreachable
        **(extra_env or {}),
    }
    return Service(load_settings(config_path, environ), environ, home, config_path)


@pytest.fixture
def service(tmp_path, populated_db) -> Service:
    return make_service(tmp_path, populated_db)
