"""Forecast speed: the project's compiled, batched path against the seed's per-step ``model.predict`` loop.

Side by side in one run, on the same weights (a 2-layer LSTM, 32 units, lookback 48, the default architecture):

1. The seed's loop (``reference_outputs``: ``model.predict`` on the last 48 rows, append, roll) for 672 steps and
   for one week. It is per-symbol sequential work (one ``predict`` per step per symbol), so its seconds per symbol
   do not depend on how many symbols there are: it runs on ``--naive-symbols`` symbols (default 1) and that figure
   stands for every row of the table.
2. The project's path (``forecast_prices``: bars -> features -> one compiled TensorFlow loop for all symbols ->
   prices and intervals on the next session windows) for 1, 10 and 100 symbols, each with its own weights. First
   call (includes tracing the ``tf.function``) and steady state (median of ``--repeats``) are both printed.
3. The largest difference between the two paths' outputs on the naive symbols (must be <= 1e-5).
4. Training time per symbol: the ``lstm_model`` training function with its defaults on one year of simulated bars.

    python benchmarks/bench_forecast.py
"""

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from lstm_pipeline.forecasting.config import default_config  # noqa: E402
from lstm_pipeline.forecasting.features import bar_features, future_windows  # noqa: E402
from lstm_pipeline.forecasting.forecaster import (  # noqa: E402
    compiled_outputs,
    forecast_prices,
    future_rows,
    network_weights,
    reference_outputs,
)
from lstm_pipeline.forecasting.scaler import fit_standard_scaler  # noqa: E402
from lstm_pipeline.forecasting.store import LoadedModel  # noqa: E402
from lstm_pipeline.market.calendar import session_windows  # noqa: E402
from lstm_pipeline.market.simulated import simulate_bars  # noqa: E402

DEFAULT_SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]
LAST_SESSION_END = "2025-07-19"  # bars end Friday 2025-07-18 15:45, so "one week" is the 130 windows of 07-21..25


def _models(count: int, mode: str) -> tuple[list[LoadedModel], dict]:
    import keras

    from lstm_pipeline.forecasting.network import build_network

    symbols = (DEFAULT_SYMBOLS + [f"S{index:03d}" for index in range(count)])[:count]
    windows = session_windows("2025-07-07", LAST_SESSION_END)
    config_template = default_config("X", mode, lookback_steps=48, horizon_steps=130, lstm_units=(32, 32))
    models, bars = [], {}
    for index, symbol in enumerate(symbols):
        bars[symbol] = simulate_bars(symbol, windows, seed=0)
        features = bar_features(bars[symbol], config_template.features, symbol=symbol)
        scaler = fit_standard_scaler(features[list(config_template.features)].to_numpy(), config_template.features)
        config = default_config(symbol, mode, lookback_steps=48, horizon_steps=130, lstm_units=(32, 32))
        keras.utils.set_random_seed(index)
        network = build_network(config)
        models.append(
            LoadedModel(
                symbol=symbol, folder=Path("."), config=config, scaler=scaler, network=network,
                weights=network_weights(network), version=f"bench-{index}",
            )
        )
    return models, bars


COLD = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
import keras, tensorflow
imported = time.perf_counter()
import bench_forecast
models, bars = bench_forecast._models(1, "recursive")
built = time.perf_counter()
from lstm_pipeline.forecasting.forecaster import forecast_prices
forecast_prices(models, bars)
done = time.perf_counter()
print(json.dumps({"import_s": imported - started, "model_s": built - imported, "first_call_s": done - built}))
"""


def _cold_single_symbol() -> dict[str, float]:
    """A single-symbol 1-week forecast in a fresh interpreter: what one prediction run pays the first time."""
    import json
    import subprocess

    here = str(Path(__file__).resolve().parent)
    completed = subprocess.run([sys.executable, "-c", COLD, here], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _time(call, repeats: int) -> tuple[float, float]:
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        runs.append(time.perf_counter() - started)
    return first, statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--naive-symbols", type=int, default=1, help="Symbols the seed's per-step loop runs on.")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-symbols", type=int, default=1, help="Symbols to time training on (0 to skip).")
    args = parser.parse_args()

    cold = _cold_single_symbol()
    import tensorflow as tf

    print(f"# bench_forecast: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"TensorFlow {tf.__version__}, Python {platform.python_version()}")
    print("# network: 2-layer LSTM (32, 32), lookback 48, 5 features; each symbol has its own random weights")
    largest = max(args.counts + [args.naive_symbols])
    models, bars = _models(largest, "recursive")
    week = len(future_windows(bars[models[0].symbol]["window_start"].iloc[-1]))
    horizons = {"672 steps": 672, f"1 week ({week} steps)": None}

    # The seed's loop, and the equivalence of both paths on the same inputs.
    naive: dict[str, float] = {}
    worst_difference = 0.0
    for label, horizon in horizons.items():
        steps = horizon or week
        seconds = []
        for model in models[: args.naive_symbols]:
            config, scaler = model.config, model.scaler
            features = bar_features(bars[model.symbol], config.features)
            scaled = scaler.transform(features[list(config.features)].to_numpy())[-config.lookback_steps:]
            exogenous = future_rows(config, scaler, scaled[-1], future_windows(features.index[-1], steps))
            started = time.perf_counter()
            reference = reference_outputs(config, model.network, scaled, exogenous)
            seconds.append(time.perf_counter() - started)
            fast = compiled_outputs(config, [model.weights], scaled[None, None], exogenous[None, None])[0, 0]
            worst_difference = max(worst_difference, float(np.abs(fast - reference).max()))
        naive[label] = statistics.mean(seconds)
        print(f"# seed's per-step loop, {label}: {naive[label]:.2f} s per symbol "
              f"(sequential per symbol; measured on {args.naive_symbols} symbol(s))", flush=True)
    print(f"# largest |compiled - per-step| output difference: {worst_difference:.2e} (tolerance 1e-5)")
    print(f"# cold start, fresh interpreter, 1 symbol, 1 week: first forecast_prices call {cold['first_call_s']:.2f} s "
          f"(tracing included), after importing TensorFlow/Keras ({cold['import_s']:.1f} s) and building the "
          f"model ({cold['model_s']:.2f} s)")
    print()
    print(f"| horizon | symbols | project first call s | project s (median of {args.repeats}) | project s/symbol "
          f"| seed loop s/symbol | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for label, horizon in horizons.items():
        for count in args.counts:
            chosen = models[:count]
            subset = {model.symbol: bars[model.symbol] for model in chosen}
            first, steady = _time(lambda c=chosen, s=subset, h=horizon: forecast_prices(c, s, h),
                                  args.repeats)
            per_symbol = steady / count
            print(f"| {label} | {count} | {first:.3f} | {steady:.3f} | {per_symbol:.4f} | {naive[label]:.2f} | "
                  f"{naive[label] / per_symbol:,.0f}x |", flush=True)

    direct_models, direct_bars = _models(max(args.counts), "direct")
    for count in args.counts:
        chosen = direct_models[:count]
        subset = {model.symbol: direct_bars[model.symbol] for model in chosen}
        first, steady = _time(lambda chosen=chosen, subset=subset: forecast_prices(chosen, subset), args.repeats)
        print(f"| 1 week, direct mode (one pass) | {count} | {first:.3f} | {steady:.3f} | {steady / count:.4f} "
              f"| - | - |", flush=True)

    if args.train_symbols:
        from lstm_pipeline.forecasting.training import TrainingSettings, train_symbol

        print()
        windows = session_windows("2024-07-01", "2025-07-01")
        for symbol in DEFAULT_SYMBOLS[: args.train_symbols]:
            history = simulate_bars(symbol, windows, seed=0)
            started = time.perf_counter()
            trained = train_symbol(symbol, history, TrainingSettings())
            seconds = time.perf_counter() - started
            print(f"# training {symbol}: {seconds:.1f} s on {len(history)} bars (1 year), epochs {trained.epochs}, "
                  f"chose {trained.config.forecast_mode}; includes validation/test forecasts, intervals and the plot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
