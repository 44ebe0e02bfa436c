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
from lstm_pipeline.assets.backups import backups, backups_restore_verified  # noqa: E402
from lstm_pipeline.assets.daily_report import daily_report  # noqa: E402
from lstm_pipeline.assets.exports import exports, exports_readable  # noqa: E402
from lstm_pipeline.assets.freshness import build_freshness_checks, build_freshness_sensor  # noqa: E402
from lstm_pipeline.assets.market_bars import market_bars  # noqa: E402
from lstm_pipeline.assets.market_bars_checks import market_bars_quality  # noqa: E402
from lstm_pipeline.assets.models import lstm_model, lstm_model_loads  # noqa: E402
from lstm_pipeline.assets.predictions import predictions  # noqa: E402
from lstm_pipeline.assets.trade_recommendations import trade_recommendations  # noqa: E402
from lstm_pipeline.assets.validations import validations  # noqa: E402
from lstm_pipeline.jobs import (  # noqa: E402
    backtest_job,
    daily_report_job,
    lstm_model_training_job,
    market_bars_update_job,
    reprediction_job,
)
from lstm_pipeline.operations_jobs import (  # noqa: E402
    alert_actions_job,
    backup_job,
    export_job,
    restore_job,
    retention_job,
)
from lstm_pipeline.resources import build_resources  # noqa: E402
from lstm_pipeline.schedules.daily_report import build_daily_report_schedule  # noqa: E402
from lstm_pipeline.schedules.market_close import build_market_close_schedule  # noqa: E402
from lstm_pipeline.schedules.operations import build_export_schedule, build_retention_schedule  # noqa: E402
from lstm_pipeline.sensors.alert_delivery import build_alert_delivery_sensor  # noqa: E402
from lstm_pipeline.sensors.backups_automation import backups_automation_sensor  # noqa: E402
from lstm_pipeline.sensors.market_windows import build_market_windows_sensor  # noqa: E402
from lstm_pipeline.sensors.model_store import build_model_store_sensor  # noqa: E402
from lstm_pipeline.sensors.repredictions import build_reprediction_sensor  # noqa: E402
from lstm_pipeline.sensors.retraining import build_retraining_sensor  # noqa: E402
from lstm_pipeline.sensors.run_failures import build_run_failure_sensors  # noqa: E402
from lstm_pipeline.sensors.system_metrics import build_system_metrics_sensor, system_metrics  # noqa: E402
from lstm_pipeline.settings import get_settings  # noqa: E402

settings = get_settings()

market_windows_sensor = build_market_windows_sensor(settings)
model_store_sensor = build_model_store_sensor(settings)
reprediction_sensor = build_reprediction_sensor(settings)
retraining_sensor = build_retraining_sensor(settings)
run_failure_sensors = build_run_failure_sensors()
market_close_schedule = build_market_close_schedule(settings)
exports_schedule = build_export_schedule(settings)
retention_schedule = build_retention_schedule(settings)
alert_delivery_sensor = build_alert_delivery_sensor(settings)
system_metrics_sensor = build_system_metrics_sensor(settings)
freshness_checks = build_freshness_checks(settings)
freshness_checks_sensor = build_freshness_sensor(freshness_checks)
daily_report_schedule = build_daily_report_schedule()

defs = Definitions(
    assets=[market_bars, lstm_model, predictions, validations, accuracy_metrics, trade_recommendations, alerts,
            backtest_report, daily_report, system_metrics, backups, exports],
    asset_checks=[market_bars_quality, lstm_model_loads, *freshness_checks, backups_restore_verified,
                  exports_readable],
    jobs=[market_bars_update_job, lstm_model_training_job, reprediction_job, backtest_job, daily_report_job,
          backup_job, export_job, restore_job, retention_job, alert_actions_job],
    schedules=[market_close_schedule, daily_report_schedule, exports_schedule, retention_schedule],
    sensors=[market_windows_sensor, model_store_sensor, reprediction_sensor, retraining_sensor, *run_failure_sensors,
             alert_delivery_sensor, system_metrics_sensor, freshness_checks_sensor, backups_automation_sensor],
    resources=build_resources(settings),
    # Steps of a run share one DuckDB writer; in-process execution avoids lock contention between them.
    executor=in_process_executor,
)
