"""The one place that wires assets, checks, jobs, schedules, sensors and resources together.

Loading this module must stay cheap (it runs in the code server, every run and every sensor tick): no
TensorFlow, no great-expectations at import time. Configuration errors surface here as one clear sentence. The
settings are read once per load (``get_settings``) and handed to the partitions, resources, sensors and schedules
built here; nothing re-reads them on a tick.
"""

import warnings

from dagster import BetaWarning, Definitions, PreviewWarning, in_process_executor

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

from lstm_pipeline.assets.accuracy_metrics import accuracy_metrics  # noqa: E402
from lstm_pipeline.assets.alerts import alerts  # noqa: E402
from lstm_pipeline.assets.backtest_report import backtest_report  # noqa: E402
from lstm_pipeline.assets.market_bars import market_bars  # noqa: E402
from lstm_pipeline.assets.market_bars_checks import market_bars_quality  # noqa: E402
from lstm_pipeline.assets.models import lstm_model, lstm_model_loads  # noqa: E402
from lstm_pipeline.assets.predictions import predictions  # noqa: E402
from lstm_pipeline.assets.trade_recommendations import trade_recommendations  # noqa: E402
from lstm_pipeline.assets.validations import validations  # noqa: E402
from lstm_pipeline.jobs import (  # noqa: E402
    backtest_job,
    lstm_model_training_job,
    market_bars_update_job,
    reprediction_job,
)
from lstm_pipeline.resources import build_resources  # noqa: E402
from lstm_pipeline.schedules.market_close import build_market_close_schedule  # noqa: E402
from lstm_pipeline.sensors.market_windows import build_market_windows_sensor  # noqa: E402
from lstm_pipeline.sensors.model_store import build_model_store_sensor  # noqa: E402
from lstm_pipeline.sensors.repredictions import build_reprediction_sensor  # noqa: E402
from lstm_pipeline.sensors.retraining import build_retraining_sensor  # noqa: E402
from lstm_pipeline.sensors.run_failures import build_run_failure_sensors  # noqa: E402
from lstm_pipeline.settings import get_settings  # noqa: E402

settings = get_settings()

market_windows_sensor = build_market_windows_sensor(settings)
model_store_sensor = build_model_store_sensor(settings)
reprediction_sensor = build_reprediction_sensor(settings)
retraining_sensor = build_retraining_sensor(settings)
run_failure_sensors = build_run_failure_sensors()
market_close_schedule = build_market_close_schedule(settings)

defs = Definitions(
    assets=[market_bars, lstm_model, predictions, validations, accuracy_metrics, trade_recommendations, alerts,
            backtest_report],
    asset_checks=[market_bars_quality, lstm_model_loads],
    jobs=[market_bars_update_job, lstm_model_training_job, reprediction_job, backtest_job],
    schedules=[market_close_schedule],
    sensors=[market_windows_sensor, model_store_sensor, reprediction_sensor, retraining_sensor, *run_failure_sensors],
    resources=build_resources(settings),
    # Steps of a run share one DuckDB writer; in-process execution avoids lock contention between them.
    executor=in_process_executor,
)
