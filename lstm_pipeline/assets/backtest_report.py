"""``backtest_report``: the walk-forward backtest launched from the UI, its report recorded as asset metadata.

Thin on purpose: the bars are read by the backtest's own loader (``backtest.cli.load_bars``: CSV or Parquet, 1-, 5-
or 15-minute bars), the replay is ``backtest.run_backtest`` (the same domain code the assets run) and the Markdown
report with its plots is ``backtest.report.write_report``, exactly as ``python -m lstm_pipeline.backtest`` does.
The report goes to ``report_dir``, by default ``<folder of the DuckDB file>/backtests/<timestamp>/``. Bad input
(a missing or unreadable file, a timezone that puts most bars outside the session, too little history) fails the
run with the backtest's one sentence. TensorFlow and matplotlib are imported only when a run trains and plots.
"""

import base64
import math
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from lstm_pipeline.resources.storage import PipelineStore

_CONFIG_NAMES = (
    ("--bars", "bars_path"),
    ("--file-timezone", "file_timezone"),
    ("--train-sessions", "train_sessions"),
    ("--retrain-every", "retrain_every"),
    ("--symbols", "symbols"),
)
"""The backtest's sentences name its command-line flags; in the launchpad the config field is the fix."""


class BacktestConfig(Config):
    """Launchpad settings of a backtest run; the training fields left empty train like the live model."""

    bars_path: str = Field(description="A CSV or Parquet bar file, or a folder of them (1-, 5- or 15-minute bars).")
    file_timezone: str = Field("America/New_York", description="Zone of timestamps written without a UTC offset.")
    symbols: list[str] = Field(default_factory=list, description="Symbols to replay (empty: every symbol found).")
    train_sessions: int = Field(60, description="Sessions of the initial training span.")
    retrain_every: int = Field(0, description="Retrain every N sessions on all bars before (0: never).")
    max_epochs: int | None = Field(None, description="Training epochs per model (empty: the live model's).")
    lookback_steps: int | None = Field(None, description="15-minute windows the network reads (empty: live).")
    lstm_units: list[int] | None = Field(None, description="Width of each LSTM layer (empty: the live model's).")
    modes: list[str] | None = Field(None, description="direct and/or recursive (empty: the live model's).")
    report_dir: str | None = Field(
        None, description="Folder for the Markdown report and plots (empty: backtests/<timestamp>/ beside the DuckDB "
        "file)."
    )


def _sentence(message: str) -> str:
    text = " ".join(str(message).split())
    for flag, name in _CONFIG_NAMES:
        text = text.replace(flag, name)
    return text if text.endswith(".") else text + "."


def _fail(message: str) -> Failure:
    return Failure(description=_sentence(message), allow_retries=False)


def _training(config: BacktestConfig):
    from dataclasses import replace

    from lstm_pipeline.forecasting.training import TrainingSettings

    changes: dict[str, Any] = {}
    if config.max_epochs is not None:
        changes["max_epochs"] = config.max_epochs
    if config.lookback_steps is not None:
        changes["lookback_steps"] = config.lookback_steps
    if config.lstm_units:
        changes["lstm_units"] = tuple(config.lstm_units)
    if config.modes:
        changes["modes"] = tuple(config.modes)
    return replace(TrainingSettings(), **changes)


def _cell(value: Any, pattern: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return pattern.format(value)


def _pooled_table(report: dict[str, Any]) -> str:
    from lstm_pipeline.backtest.report import _markdown_table

    return _markdown_table(report["pooled"])


def _symbol_mase_table(report: dict[str, Any]) -> str:
    lines = ["| symbol | MASE at 1 day |", "|---|---|"]
    for symbol, entry in report["symbols"].items():
        lines.append(f"| {symbol} | {_cell(entry['horizons']['1_day'].get('mase'))} |")
    return "\n".join(lines)


def _recommendations(report: dict[str, Any]) -> dict[str, Any]:
    from lstm_pipeline.backtest.report import json_ready

    trades = report["pooled"]["recommendations"]
    return json_ready({key: trades.get(key) for key in ("count", "scored", "hit_rate", "mean_net_return_pct",
                                                        "withheld_by_rule")})


def default_report_dir(db_path: str | Path, now: pd.Timestamp | None = None) -> Path:
    """``<folder of the DuckDB file>/backtests/<timestamp>/``."""
    stamp = (now or pd.Timestamp.now()).strftime("%Y%m%d-%H%M%S")
    return Path(db_path).expanduser().resolve().parent / "backtests" / stamp


@asset(
    group_name="evaluation",
    kinds={"tensorflow", "markdown"},
    description=(
        "Walk-forward backtest of the live pipeline on a bar file or folder (launchpad config): trains on the first "
        "sessions, forecasts the week ahead from every later window, validates, adapts the intervals, recommends "
        "and scores, retraining every N sessions. Records the pooled table per horizon bucket (MASE, directional "
        "accuracy, 80/95% coverage and interval scores beside the naive and time-of-day bands), MASE at 1 day per "
        "symbol, the recommendations, origins per second, the interval-score plot and the Markdown report's path."
    ),
)
def backtest_report(context: AssetExecutionContext, config: BacktestConfig, store: PipelineStore) -> MaterializeResult:
    from lstm_pipeline.backtest.cli import BadInput, discover_symbols, load_bars
    from lstm_pipeline.backtest.memory import keep_freed_memory
    from lstm_pipeline.backtest.report import INTERVAL_PLOT, write_report
    from lstm_pipeline.backtest.walkforward import BacktestDataError, run_backtest
    from lstm_pipeline.forecasting.training import TrainingDataError
    from lstm_pipeline.settings import ConfigError, get_settings

    path = Path(config.bars_path).expanduser()
    if not path.exists():
        raise _fail(f"The bar path {path} does not exist; set bars_path to a CSV or Parquet file or a folder of them.")
    if config.train_sessions < 1 or config.retrain_every < 0:
        raise _fail("train_sessions must be at least 1 and retrain_every at least 0 (0: never retrain).")
    try:
        settings = get_settings()
        symbols = [s.strip().upper() for s in config.symbols if s.strip()] or discover_symbols(path)
        bars = load_bars(path, symbols, config.file_timezone)
        context.log.info(f"Backtesting {', '.join(symbols)} on {len(bars)} bars from {path}.")
        keep_freed_memory()  # a run step's process: keep its freed arrays for reuse (backtest.memory)
        result = run_backtest(bars, config.train_sessions, config.retrain_every, settings, _training(config))
    except (BadInput, BacktestDataError, TrainingDataError, ConfigError) as exc:
        raise _fail(str(exc)) from None

    folder = Path(config.report_dir).expanduser() if config.report_dir else default_report_dir(store.duckdb.database)
    parameters = {
        "bars": str(path), "file_timezone": config.file_timezone, "symbols": ", ".join(symbols),
        "train_sessions": config.train_sessions, "retrain_every": config.retrain_every,
        "intervals": result.intervals, "origins": result.origins,
        "origins_per_second_after_training": round(result.origins_per_second, 1),
    }
    written = write_report(result.report, folder, parameters, result.timings)
    plot = base64.b64encode((folder / INTERVAL_PLOT).read_bytes()).decode()
    per_second = result.origins_per_second
    return MaterializeResult(
        metadata={
            "pooled": MetadataValue.md(_pooled_table(result.report)),
            "mase_1_day_by_symbol": MetadataValue.md(_symbol_mase_table(result.report)),
            "recommendations": MetadataValue.json(_recommendations(result.report)),
            "origins": MetadataValue.int(result.origins),
            "origins_per_second": MetadataValue.float(round(per_second, 1) if math.isfinite(per_second) else 0.0),
            "intervals": MetadataValue.text(result.intervals),
            "symbols": MetadataValue.text(", ".join(symbols)),
            "report_path": MetadataValue.path(str(written)),
            "interval_scores": MetadataValue.md(f"![interval scores and coverage](data:image/png;base64,{plot})"),
        }
    )
