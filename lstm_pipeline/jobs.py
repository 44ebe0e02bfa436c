"""Jobs the sensors, schedules and the REST service launch."""

from dagster import AssetSelection, define_asset_job

from lstm_pipeline.partitions import market_bars_partitions, symbol_partitions

market_bars_update_job = define_asset_job(
    name="market_bars_update",
    selection=AssetSelection.assets("market_bars", "predictions"),
    partitions_def=market_bars_partitions,
    description="Fetches and stores bars for a range of symbol-windows, checks them, and forecasts a week ahead from "
    "each (blocking checks that fail stop the forecasts).",
)

lstm_model_training_job = define_asset_job(
    name="lstm_model_training",
    selection=AssetSelection.assets("lstm_model"),
    partitions_def=symbol_partitions,
    description="Retrains one symbol's LSTM from its stored market_bars and saves it to the model store.",
)
