"""Train the shipped models through Dagster: fetch a year of bars, then materialize ``lstm_model`` per symbol.

    python scripts/train_default_models.py                      # AAPL MSFT GOOGL AMZN TSLA into models/
    python scripts/train_default_models.py --symbols AAPL       # retrain one symbol (about a minute on 2 cores)

Each symbol runs ``market_bars`` for the last ``--sessions`` sessions before ``--end`` (one single-run backfill per
symbol, into the DuckDB file of the settings; skipped when those bars are already stored) and then ``lstm_model``
with its blocking ``lstm_model_loads`` check, exactly as a click on Materialize in the UI would. With
``DAGSTER_HOME`` set the runs land in that instance (and show in the UI); otherwise in a temporary one. The default
market is the embedded simulated one, and each model's config is labelled ``"trained_on": "simulated market (seed
N)"``; ``--source configured`` uses the configured market-data source instead (Polygon with a key, a file replay).
"""

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dagster import DagsterInstance, materialize  # noqa: E402

from lstm_pipeline.assets.market_bars import market_bars  # noqa: E402
from lstm_pipeline.assets.market_bars_checks import market_bars_quality  # noqa: E402
from lstm_pipeline.assets.models import lstm_model, lstm_model_loads  # noqa: E402
from lstm_pipeline.market.calendar import NEW_YORK, WINDOW, session_windows, sessions, window_key  # noqa: E402
from lstm_pipeline.partitions import partition_range_tags, register_session_windows  # noqa: E402
from lstm_pipeline.resources import build_market_data  # noqa: E402
from lstm_pipeline.resources.market_data import SimulatedMarketData  # noqa: E402
from lstm_pipeline.resources.model_store import LocalModelStore  # noqa: E402
from lstm_pipeline.resources.storage import PipelineStore  # noqa: E402
from lstm_pipeline.settings import get_settings  # noqa: E402

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA")


def main() -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", nargs="+", default=list(DEFAULT_SYMBOLS))
    parser.add_argument("--sessions", type=int, default=252, help="Sessions of history to train on (252 = 1 year).")
    parser.add_argument("--end", default=pd.Timestamp.now(tz=NEW_YORK).strftime("%Y-%m-%d"),
                        help="Train on sessions before this date (New York); default today.")
    parser.add_argument("--source", choices=["simulated", "configured"], default="simulated")
    parser.add_argument("--simulation-seed", type=int, default=settings.market_data.simulation_seed)
    parser.add_argument("--training-seed", type=int, default=0)
    parser.add_argument("--models-dir", default=str(settings.models_dir))
    parser.add_argument("--db-path", default=str(settings.db_path))
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument(
        "--fetch-bars",
        choices=["auto", "always", "never"],
        default="auto",
        help="Run market_bars first: 'auto' only when the store lacks bars of the span (a retrain then just trains).",
    )
    args = parser.parse_args()

    unknown = [symbol for symbol in args.symbols if symbol not in settings.symbols]
    if unknown:
        print(f"{unknown} are not configured symbols ({list(settings.symbols)}); add them to `symbols` first.")
        return 2
    end = pd.Timestamp(args.end)
    days = sessions(end - pd.Timedelta(days=args.sessions * 2), end - pd.Timedelta(days=1)).index[-args.sessions:]
    windows = session_windows(days[0], end)
    keys = [window_key(stamp) for stamp in windows]
    market_data = (
        SimulatedMarketData(seed=args.simulation_seed) if args.source == "simulated" else build_market_data(settings)
    )
    resources = {
        "market_data": market_data,
        "store": PipelineStore.for_path(args.db_path),
        "model_store": LocalModelStore(models_dir=args.models_dir),
    }
    run_config = {
        "ops": {
            "lstm_model": {
                "config": {"history_sessions": args.sessions, "seed": args.training_seed, "max_epochs": args.max_epochs}
            }
        }
    }
    with ExitStack() as stack:
        if os.environ.get("DAGSTER_HOME"):
            instance = stack.enter_context(DagsterInstance.get())
        else:
            home = stack.enter_context(tempfile.TemporaryDirectory())
            instance = stack.enter_context(DagsterInstance.local_temp(home))
        register_session_windows(instance, keys)  # in time order, even before windows already registered
        print(f"{len(keys)} session windows {keys[0]} .. {keys[-1]} from {market_data.source_name}")
        for symbol in args.symbols:
            started = time.perf_counter()
            tags = partition_range_tags(symbol, symbol, keys[0], keys[-1])
            stored = len(resources["store"].read_bars(symbol, windows[0], windows[-1] + WINDOW))
            if args.fetch_bars == "always" or (args.fetch_bars == "auto" and stored < len(windows)):
                # With its blocking checks: market_bars stages its bars and only checked ones are trained on.
                bars = materialize(
                    [market_bars, market_bars_quality], instance=instance, resources=resources, tags=tags
                )
                if not bars.success:
                    print(f"{symbol}: market_bars failed; see the run's logs in the Dagster instance.")
                    return 1
            fetched = time.perf_counter()
            result = materialize(
                [lstm_model, lstm_model_loads],
                instance=instance,
                resources=resources,
                partition_key=symbol,
                run_config=run_config,
                raise_on_error=False,
            )
            if not result.success:
                print(f"{symbol}: lstm_model failed; see the run's logs in the Dagster instance.")
                return 1
            checks = result.get_asset_check_evaluations()
            if not all(check.passed for check in checks):
                print(f"{symbol}: the saved model failed its health check: {[c.description for c in checks]}")
                return 1
            metadata = result.asset_materializations_for_node("lstm_model")[0].metadata
            folder = Path(args.models_dir) / symbol
            size_kib = sum(path.stat().st_size for path in folder.iterdir()) / 1024
            print(
                json.dumps(
                    {
                        "symbol": symbol,
                        "version": metadata["model_version"].value,
                        "mode": metadata["forecast_mode"].value,
                        "trained_on": metadata["trained_on"].value,
                        "test_1_week_mase": metadata.get("test_1_week_mase").value
                        if "test_1_week_mase" in metadata
                        else None,
                        "bars_seconds": round(fetched - started, 1),
                        "training_seconds": metadata["training_seconds"].value,
                        "folder_kib": round(size_kib, 1),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
