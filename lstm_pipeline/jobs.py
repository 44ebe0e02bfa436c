"""Jobs the sensors, schedules and the REST service launch."""

from dagster import AssetSelection, define_asset_job

from lstm_pipeline.partitions import market_bars_partitions, symbol_partitions

WORKFLOW_CHAIN: tuple[str, ...] = (
    "market_bars",
    "predictions",
    "validations",
    "accuracy_metrics",
    "trade_recommendations",
    "alerts",
)
"""The assets one tick runs, in dependency order (Dagster orders them by their deps); their checks come along."""

market_bars_update_job = define_asset_job(
    name="market_bars_update",
    selection=AssetSelection.assets(*WORKFLOW_CHAIN),
    partitions_def=market_bars_partitions,
    description="The whole chain for a range of symbol-windows: fetches and checks bars, forecasts a week ahead from "
    "each, validates the stored forecasts of those windows, updates accuracy, recommends trades and raises or "
    "resolves alerts (blocking checks that fail stop everything downstream).",
)

reprediction_job = define_asset_job(
    name="reprediction",
    selection=AssetSelection.assets(*WORKFLOW_CHAIN),
    partitions_def=market_bars_partitions,
    description="Re-fetches one symbol-window's bar and re-forecasts it (tagged lstm_pipeline/reprediction_cause), "
    "then reruns the chain for that window: the new forecast supersedes the one validation found wrong.",
)

lstm_model_training_job = define_asset_job(
    name="lstm_model_training",
    selection=AssetSelection.assets("lstm_model"),
    partitions_def=symbol_partitions,
    description="Retrains one symbol's LSTM from its stored market_bars and saves it to the model store.",
)

backtest_job = define_asset_job(
    name="backtest",
    selection=AssetSelection.assets("backtest_report"),
    description="Walk-forward backtest of the live pipeline on a bar file or folder (set bars_path in the launchpad); "
    "writes the Markdown report beside the DuckDB file and records it as backtest_report's metadata.",
)

daily_report_job = define_asset_job(
    name="daily_reports",
    selection=AssetSelection.assets("daily_report"),
    description="Builds one day's self-contained HTML report (accuracy, recommendations, alerts) with PNG charts.",
)
