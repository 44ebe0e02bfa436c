"""Walk-forward backtest over any bar history through the live domain code (issue #14). No Dagster here.

``run_backtest`` (``walkforward``) replays the history; ``report`` writes the Markdown report with PNG plots;
``python -m lstm_pipeline.backtest`` (``cli``) runs it on a file or folder of recorded bars.
"""

from lstm_pipeline.backtest.walkforward import BacktestDataError, BacktestResult, backtest_report, run_backtest

__all__ = ["BacktestDataError", "BacktestResult", "backtest_report", "run_backtest"]
