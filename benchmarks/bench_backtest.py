"""Backtest speed after training, in origins per second: a year of one real symbol, direct and recursive models.

Reads FXY's two years of 1-minute bars from ``../shared/data/real_bars_1m_2y/`` (aggregated to 15-minute windows,
naive UTC stamps), trains once on the first 200 sessions (2 epochs: the speed after training does not depend on the
weights), then times ``run_backtest`` over every later origin with the model cached and prints the per-stage timings
(``--repeat N``: the median of N runs after the first, for a shared, noisy machine). Each timed run is made two ways
(all the runs of one way, then the other's): as the CLI runs it, with the steps that need none of the main line's
results yet on a worker thread beside it ("two lines", the second core), and all in line ("in line",
``second_core=False``), with their ratio. Goal (issue #14): at least 10,000 origins per second for a direct model on
2 cores.
One model serves the whole year (no retraining: ``--retrain-rule`` lets the retraining rule retrain too, which
adds its own check, ``retrain_rule_s``), so figures compare across versions. The process keeps freed memory for
reuse as the backtest CLI and the Dagster job do (``lstm_pipeline.backtest.memory``; ``--plain-malloc`` leaves
glibc's defaults, to see its share side by side).

    python benchmarks/bench_backtest.py [direct|recursive ...] [--symbol FXY] [--retrain-rule] [--repeat N]
                                        [--plain-malloc]

``--simulated PHI`` instead shows the whole loop on the embedded simulated market with its predictable component
at strength PHI (AAPL, seed 0, 2024-01-02 to 2024-10-01, 100 training sessions, 5 epochs, default rules, or
``--max-holding N`` / ``--min-profit PCT``: the simulated edge lives within the hour, and the default 2% minimum
profit is out of reach there): MASE per horizon bucket and the recommendations (made, scored, withheld by rule); PHI
0 shows the skill gate at work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_bars_1m_2y"


def main() -> int:
    from lstm_pipeline.backtest.cli import load_bars
    from lstm_pipeline.backtest.walkforward import run_backtest, train_loaded_model
    from lstm_pipeline.forecasting.training import TrainingSettings
    from lstm_pipeline.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="*", default=["direct", "recursive"])
    parser.add_argument("--symbol", default="FXY")
    parser.add_argument("--retrain-rule", action="store_true", help="also retrain when the retraining rule fires")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="time N runs after the first and print each stage's median")
    parser.add_argument("--plain-malloc", action="store_true",
                        help="leave glibc's malloc defaults (the CLI and the Dagster job keep freed memory for reuse)")
    parser.add_argument("--simulated", type=float, default=None, metavar="PHI",
                        help="run the loop on the simulated market with this predictability instead")
    parser.add_argument("--max-holding", type=int, default=None, metavar="N",
                        help="with --simulated: workflow.max_holding_windows (default: the setting's, 130)")
    parser.add_argument("--min-profit", type=float, default=None, metavar="PCT",
                        help="with --simulated: min_profit_percent (default: the setting's, 2.0)")
    args = parser.parse_args()
    if args.simulated is not None:
        return simulated_loop(args.simulated, args.modes, args.max_holding, args.min_profit)
    if not DATA.is_dir():
        print(f"{DATA} is not here; this benchmark needs the shared real bars.")
        return 0
    from lstm_pipeline.backtest.memory import keep_freed_memory

    if not args.plain_malloc:
        keep_freed_memory()  # as the backtest CLI and the Dagster job do (lstm_pipeline.backtest.memory)
    started = time.perf_counter()
    bars = load_bars(DATA, [args.symbol], "UTC")
    print(f"read {len(bars):,} 15-minute bars of {args.symbol} in {time.perf_counter() - started:.1f} s")
    settings = load_settings(environ={})
    for mode in args.modes:
        training = TrainingSettings(modes=(mode,), max_epochs=2)
        cache: dict[tuple[str, int], object] = {}

        def factory(symbol, rows, training=training, cache=cache):
            key = (symbol, len(rows))
            if key not in cache:
                cache[key] = train_loaded_model(symbol, rows, training)
            return cache[key]

        started = time.perf_counter()
        run_backtest(bars, 200, 0, settings, model_factory=factory, retrain_rule=args.retrain_rule)
        first = time.perf_counter() - started
        # Each run's timings only (a result holds ~10^6 rows). The runs of one way follow each other, as in the
        # process of a CLI or Dagster run (one way only): alternating them slows the runs with the worker by ~8%
        # here (each way leaves glibc's heaps laid out for itself).
        ways = {"two lines": None, "in line": False}  # run_backtest's second_core: None = a worker beside the main
        runs: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
        for way, second_core in ways.items():
            for _ in range(max(args.repeat, 1)):
                result = run_backtest(bars, 200, 0, settings, model_factory=factory, retrain_rule=args.retrain_rule,
                                      second_core=second_core)
                runs[way].append(result.timings)
        print(f"{mode}: {result.origins:,} origins; first run (training included) {first:.1f} s; after training:")
        medians = {}
        for way, timed in runs.items():
            timings = {name: statistics.median(run[name] for run in timed) for name in timed[0]}
            stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in timings.items() if name != "training_s")
            after = medians[way] = timings["after_training_s"]
            best = min(run["after_training_s"] for run in timed)
            print(
                f"  {way:9s}: {after:.2f} s = {result.origins / after:,.0f} origins/s"
                f"{f' (median of {len(timed)}; best {result.origins / best:,.0f}/s)' if len(timed) > 1 else ''}"
                f" ({stages})"
            )
        print(f"  the worker beside the main line: {medians['in line'] / medians['two lines']:.2f}x")
    return 0


def simulated_loop(strength: float, modes: list[str], max_holding: int | None = None,
                   min_profit: float | None = None) -> int:
    import json

    from lstm_pipeline.backtest.walkforward import run_backtest
    from lstm_pipeline.forecasting.training import TrainingSettings
    from lstm_pipeline.market.calendar import session_windows
    from lstm_pipeline.market.simulated import simulate_bars
    from lstm_pipeline.settings import Settings

    bars = simulate_bars("AAPL", session_windows("2024-01-02", "2024-10-01"), seed=0, predictability=strength)
    settings = Settings()
    if max_holding is not None:
        settings = settings.model_copy(update={
            "workflow": settings.workflow.model_copy(update={"max_holding_windows": max_holding})})
    if min_profit is not None:
        settings = settings.model_copy(update={"min_profit_percent": min_profit})
    for mode in modes:
        started = time.perf_counter()
        result = run_backtest(bars, 100, 0, settings, TrainingSettings(modes=(mode,), max_epochs=5),
                              retrain_rule=False)
        pooled = result.report["pooled"]
        mase = {bucket: round(entry["mase"], 3) for bucket, entry in pooled["horizons"].items()}
        print(f"simulated AAPL, predictability {strength:g}, {mode}: {result.origins:,} origins in "
              f"{time.perf_counter() - started:.0f} s; MASE {mase}")
        print(f"  recommendations {json.dumps(pooled['recommendations'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
