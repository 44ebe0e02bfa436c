"""``python -m lstm_pipeline.backtest --bars PATH ...``: the walk-forward backtest on a file or folder of bars.

Bars are read by the file source (``market.file_source.load_recorded_bars``: CSV or Parquet, 1- or 5-minute bars
aggregated to the 15-minute session windows, naive stamps read in ``--file-timezone``). Prints a table per symbol
and pooled (``--json``: the one JSON object instead), and writes the Markdown report with PNG plots to a folder it
names. Bad input (an unreadable file, a timezone that puts most bars outside the session, too little history) is
one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

EXIT_BAD_INPUT = 2
READ_FROM = pd.Timestamp("2000-01-03")
"""The earliest bar read (the exchange calendar's span starts in 2000)."""


class BadInput(ValueError):
    """Input the user can fix; its message is the one sentence printed."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_pipeline.backtest",
        description="Walk-forward backtest of the LSTM pipeline on recorded bars, through the live domain code.",
    )
    parser.add_argument("--bars", required=True, help="a CSV or Parquet file, or a folder of them")
    parser.add_argument("--file-timezone", default="America/New_York",
                        help="zone of timestamps written without a UTC offset (default America/New_York)")
    parser.add_argument("--symbols", default=None, help="comma-separated symbols (default: every symbol found)")
    parser.add_argument("--train-sessions", type=int, default=60,
                        help="sessions of the initial training span (default 60)")
    parser.add_argument("--retrain-every", type=int, default=0,
                        help="retrain every N sessions on all bars before (default 0: never)")
    parser.add_argument("--no-retrain-rule", action="store_true",
                        help="do not also retrain when the retraining sensor's rule fires (low accuracy, old model)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    parser.add_argument("--report-dir", default=None,
                        help="folder for the Markdown report and plots (default: backtest-report-<timestamp>)")
    training = parser.add_argument_group("training (defaults: the live model's)")
    training.add_argument("--lookback-steps", type=int, default=None)
    training.add_argument("--lstm-units", default=None, help="comma-separated units per layer, e.g. 32,32")
    training.add_argument("--max-epochs", type=int, default=None)
    training.add_argument("--modes", default=None, help="direct, recursive or direct,recursive (default both)")
    return parser


def _say(message: str) -> None:
    text = " ".join(str(message).split())
    print(text if text.endswith(".") else text + ".", file=sys.stderr)


def _for_cli(message: str) -> str:
    """The file source's sentences name the config keys; on the command line the flag is the fix."""
    return str(message).replace("market_data.file_timezone", "--file-timezone")


def discover_symbols(path: Path) -> list[str]:
    """Every symbol a file or folder holds: a file's symbol column, else the name (``AAPL.csv``, ``AAPL_15m.csv``)."""
    from lstm_pipeline.market.bar_files import DEFAULT_COLUMN_MAP, column_names, source_columns, symbols_in
    from lstm_pipeline.market.file_source import BAR_FILE_SUFFIXES

    files = [path] if path.is_file() else sorted(
        item for item in path.iterdir() if item.is_file() and item.suffix.lower() in BAR_FILE_SUFFIXES
    )
    if not files:
        raise BadInput(f"{path} holds no .csv or .parquet bar file; pass --bars a bar file or a folder of them.")
    found: set[str] = set()
    for item in files:
        try:
            columns = source_columns(column_names(item), DEFAULT_COLUMN_MAP).get("symbol")
            found |= symbols_in(item, columns[0]) if columns else {item.stem.split("_")[0].upper()}
        except Exception as exc:  # noqa: BLE001 - any reader failure is one sentence about the file
            raise BadInput(f"{item} cannot be read ({' '.join(str(exc).split())}); fix or remove it.") from None
    return sorted(symbol for symbol in found if symbol)


def load_bars(path: Path, symbols: Sequence[str], file_timezone: str) -> pd.DataFrame:
    """Every symbol's session bars from the file source, one frame."""
    from lstm_pipeline.market.bars import MarketDataError
    from lstm_pipeline.market.file_source import load_recorded_bars

    end = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + pd.Timedelta(days=2)
    frames = []
    for symbol in symbols:
        try:
            frames.append(load_recorded_bars(path, symbol, READ_FROM, end, timezone=file_timezone))
        except MarketDataError as exc:
            raise BadInput(_for_cli(str(exc))) from None
        except Exception as exc:  # noqa: BLE001 - a reader failure on user data is one sentence
            raise BadInput(f"The bars of {symbol} in {path} cannot be read ({' '.join(str(exc).split())}); fix the "
                           "file or pass another with --bars.") from None
    bars = pd.concat(frames, ignore_index=True)
    if bars.empty:
        raise BadInput(f"No session bars of {', '.join(symbols)} in {path}; check the file or --file-timezone.")
    return bars


def _training(args: argparse.Namespace):
    from dataclasses import replace

    from lstm_pipeline.forecasting.training import TrainingSettings

    settings = TrainingSettings()
    changes = {}
    if args.lookback_steps is not None:
        changes["lookback_steps"] = args.lookback_steps
    if args.lstm_units:
        changes["lstm_units"] = tuple(int(part) for part in args.lstm_units.split(",") if part.strip())
    if args.max_epochs is not None:
        changes["max_epochs"] = args.max_epochs
    if args.modes:
        changes["modes"] = tuple(part.strip() for part in args.modes.split(",") if part.strip())
    return replace(settings, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except BadInput as exc:
        _say(str(exc))
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    from lstm_pipeline.backtest.memory import keep_freed_memory
    from lstm_pipeline.backtest.report import report_json, text_table, write_report
    from lstm_pipeline.backtest.walkforward import BacktestDataError, run_backtest
    from lstm_pipeline.settings import ConfigError, load_settings

    path = Path(args.bars).expanduser()
    if not path.exists():
        raise BadInput(f"The bar path {path} does not exist; pass --bars a CSV or Parquet file or a folder of them.")
    if args.train_sessions < 1 or args.retrain_every < 0:
        raise BadInput("--train-sessions must be at least 1 and --retrain-every at least 0 (0: never retrain).")
    symbols = [part.strip().upper() for part in args.symbols.split(",") if part.strip()] if args.symbols \
        else discover_symbols(path)
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    bars = load_bars(path, symbols, args.file_timezone)
    keep_freed_memory()  # this process exists for the replay: keep its freed arrays for reuse (backtest.memory)
    try:
        result = run_backtest(bars, args.train_sessions, args.retrain_every, settings, _training(args),
                              retrain_rule=not args.no_retrain_rule)
    except BacktestDataError as exc:
        raise BadInput(str(exc)) from None
    folder = Path(args.report_dir or f"backtest-report-{pd.Timestamp.now():%Y%m%d-%H%M%S}")
    parameters = {
        "bars": str(path), "file_timezone": args.file_timezone, "symbols": ", ".join(symbols),
        "train_sessions": args.train_sessions, "retrain_every": args.retrain_every,
        "intervals": result.intervals, "origins": result.origins,
        "origins_per_second_after_training": round(result.origins_per_second, 1),
    }
    written = write_report(result.report, folder, parameters, result.timings)
    if args.json:
        print(report_json(result.report))
    else:
        print(text_table(result.report))
        print(f"\n{result.origins} origins, {result.origins_per_second:.0f} per second after training; "
              f"intervals: {result.intervals}.")
    print(f"Report written to {written}.", file=sys.stderr)
    return 0


__all__ = ["EXIT_BAD_INPUT", "discover_symbols", "load_bars", "main"]
