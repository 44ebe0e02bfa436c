"""The backtest and the assets agree: the same bars and the same model through the Dagster chain, window by window
as the market sensor runs it, and through ``run_backtest`` give the same forecasts, validations, coverage,
confidence, skill-gate MASE and recommendations (to 1e-9). (The trades' exits lie beyond the chain's windows, so
their outcomes are not compared here; ``score_recommendations`` is the same function on both sides.)

The chain runs one window per run (``market_bars_update``: bars, predictions, validations, accuracy_metrics,
trade_recommendations, alerts), as live: a run sees only what earlier runs stored. The backtest replays the same
stored bars (plus the week after, which it needs and which changes nothing known at the compared origins) with
the same model, no retraining. The rules are loosened (any MASE passes the skill gate, small profits and any
confidence clear) so every rule, trades and their scoring are exercised, not only the withholding.
"""

import json

import numpy as np
import pandas as pd
import pytest
from dagster import Definitions, in_process_executor

from lstm_pipeline.assets.accuracy_metrics import accuracy_metrics
from lstm_pipeline.assets.alerts import alerts
from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.market_bars_checks import market_bars_quality
from lstm_pipeline.assets.predictions import predictions
from lstm_pipeline.assets.trade_recommendations import trade_recommendations
from lstm_pipeline.assets.validations import validations
from lstm_pipeline.jobs import market_bars_update_job
from lstm_pipeline.market.calendar import NEW_YORK, session_windows
from lstm_pipeline.market.simulated import simulate_bars
from lstm_pipeline.partitions import market_bars_key
from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.resources.model_store import LocalModelStore, clear_model_cache
from lstm_pipeline.settings import get_settings
from lstm_pipeline.trading.recommendations import SKILL_SPAN
from tests.backtest.conftest import TINY
from tests.helpers import register_windows

SYMBOL = "AAPL"
SEED = 3
HISTORY = ("2025-03-03", "2025-04-01")  # the training span (20 sessions), stored before the chain runs
CHAIN = ("2025-04-01 09:30", "2025-04-02 11:30")  # the chain runs each of these 34 windows, one run each
END = "2025-04-10"  # the backtest also gets the week after (it needs one; nothing known before it changes)
TOLERANCE = 1e-9
CONFIG = {
    "symbols": [SYMBOL],
    "min_profit_percent": 0.1,
    "confidence_threshold": 0.0,
    # Exits within a day: the skill gate judges a trade at its exit's horizon, and 34 windows never validate a
    # week-ahead target, so longer trades would all be held back for want of evidence. The significance requirement
    # is off (the simulated market gives no model a significant edge, so no trade would be made to compare); the
    # p-values themselves are compared.
    "workflow": {"skill_mase_max": 100.0, "skill_significance": 1.0, "max_holding_windows": 26},
    "market_data": {"source": "simulated", "simulation_seed": SEED},
}


def _stamps(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values)
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize("UTC")
    return stamps.dt.tz_convert(NEW_YORK).astype(f"datetime64[ns, {NEW_YORK}]")


def _keyed(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    out = frame[[*keys, *columns]].copy()
    out["symbol"] = out["symbol"].astype(str)
    for name in keys:
        if name != "symbol":
            out[name] = _stamps(out[name])
    return out.sort_values(keys).reset_index(drop=True)


def _assert_same(left: pd.DataFrame, right: pd.DataFrame, keys: list[str], numbers: list[str], others: list[str]):
    assert len(left) == len(right) and len(left) > 0
    merged = _keyed(left, keys, numbers + others).merge(
        _keyed(right, keys, numbers + others), on=keys, how="outer", suffixes=("_chain", "_backtest"), indicator=True
    )
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][keys].head()
    for name in numbers:
        chain = merged[f"{name}_chain"].astype("float64").to_numpy()
        replay = merged[f"{name}_backtest"].astype("float64").to_numpy()
        same = (np.isnan(chain) & np.isnan(replay)) | (np.abs(chain - replay) <= TOLERANCE * np.maximum(
            1.0, np.abs(chain)))
        assert same.all(), (name, merged.loc[~same, [*keys, f"{name}_chain", f"{name}_backtest"]].head())
    for name in others:
        chain = merged[f"{name}_chain"].astype(object).where(merged[f"{name}_chain"].notna(), None)
        replay = merged[f"{name}_backtest"].astype(object).where(merged[f"{name}_backtest"].notna(), None)
        same = [a == b for a, b in zip(chain, replay, strict=True)]
        assert all(same), (name, merged.loc[[not s for s in same], [*keys, f"{name}_chain", f"{name}_backtest"]])


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(what the chain stored, the backtest's result, the chain's windows)."""
    return run_both(tmp_path_factory.mktemp("agreement"))


def run_both(folder):
    from dagster import instance_for_test

    from lstm_pipeline.backtest import run_backtest
    from lstm_pipeline.forecasting.store import load_model, save_model
    from lstm_pipeline.forecasting.training import train_symbol
    from lstm_pipeline.resources.storage import PipelineStore

    config = folder / "config.json"
    config.write_text(json.dumps(CONFIG))
    patch = pytest.MonkeyPatch()
    patch.setenv("LSTM_PIPELINE_CONFIG", str(config))
    get_settings.cache_clear()
    clear_model_cache()
    try:
        settings = get_settings()
        history = simulate_bars(SYMBOL, session_windows(*HISTORY), seed=SEED)
        trained = train_symbol(SYMBOL, history, TINY, trained_on="agreement test")
        saved, _ = save_model(folder / "models", trained.config, trained.network, trained.scaler)
        model = load_model(saved, SYMBOL)

        store = PipelineStore.for_path(folder / "pipeline.duckdb")
        store.replace_bars(history, [(SYMBOL, window) for window in history["window_start"]])
        defs = Definitions(
            assets=[market_bars, predictions, validations, accuracy_metrics, trade_recommendations, alerts],
            asset_checks=[market_bars_quality],
            jobs=[market_bars_update_job],
            resources={
                "store": store,
                "model_store": LocalModelStore(models_dir=str(folder / "models")),
                "market_data": SimulatedMarketData(seed=SEED),
            },
            executor=in_process_executor,
        )
        job = defs.resolve_job_def("market_bars_update")
        with instance_for_test() as instance:
            keys = register_windows(instance, *CHAIN)
            for key in keys:
                result = job.execute_in_process(instance=instance, partition_key=str(market_bars_key(SYMBOL, key)))
                assert result.success
        chain = {table: store.read_rows(table) for table in (
            "market_bars", "predictions", "validations", "accuracy_metrics", "trade_recommendations",
            "trade_outcomes")}

        stored = store.read_bars(symbols=[SYMBOL])
        later = simulate_bars(SYMBOL, session_windows(CHAIN[1], END), seed=SEED)
        bars = pd.concat([stored, later], ignore_index=True)
        sessions = len(set(pd.DatetimeIndex(history["window_start"]).date))
        result = run_backtest(bars, sessions, 0, settings, model_factory=lambda symbol, rows: model,
                              retrain_rule=False)
    finally:
        patch.undo()
        get_settings.cache_clear()
        clear_model_cache()
    windows = session_windows(*CHAIN)
    return chain, result, windows


def _known(frame: pd.DataFrame, windows: pd.DatetimeIndex, column: str) -> pd.DataFrame:
    stamps = _stamps(frame[column])
    return frame[(stamps >= windows[0]) & (stamps <= windows[-1])]


def test_the_chain_ran_every_window_and_the_bars_are_the_same(both):
    chain, result, windows = both
    forecast = set(_stamps(chain["predictions"]["as_of_window"]).unique())
    assert forecast == set(windows)
    replayed = set(_stamps(result.predictions["as_of_window"]))
    assert set(windows) <= replayed


def test_forecasts_with_their_intervals_and_confidence_agree(both):
    chain, result, windows = both
    replay = _known(result.predictions, windows, "as_of_window")
    keys = ["symbol", "as_of_window", "target_window"]
    numbers = ["predicted_close", "last_close", "lower_80", "upper_80", "lower_95", "upper_95", "confidence",
               *[c for c in chain["predictions"].columns if c.startswith("factor_")]]
    _assert_same(chain["predictions"], replay, keys, numbers, ["model_version", "confidence_level"])


def test_validations_and_coverage_agree(both):
    chain, result, windows = both
    replay = _known(result.validations, windows, "target_window")
    keys = ["symbol", "as_of_window", "target_window"]
    numbers = ["predicted_close", "actual_close", "last_close", "error_pct", "abs_error_pct", "naive_abs_error_pct"]
    _assert_same(chain["validations"], replay, keys, numbers, ["status", "inside_80", "inside_95", "status_reason"])


def test_the_skill_gate_mase_recommendations_and_outcomes_agree(both):
    chain, result, windows = both
    replay = _known(result.recommendations, windows, "as_of_window")
    keys = ["symbol", "as_of_window"]
    numbers = ["entry_price", "exit_price", "predicted_return_pct", "confidence", "recent_mase", "skill_p_value"]
    others = ["action", "held_back_by", "reason", "model_version", "confidence_level"]
    recommended = chain["trade_recommendations"]
    _assert_same(recommended, replay, keys, numbers, others)
    held = set(recommended["held_back_by"].dropna())
    assert {"no_skill_evidence"} <= held and (recommended["action"] != "none").any()  # gate shut, then trades
    assert recommended["recent_mase"].notna().any()


def test_the_skill_gates_evidence_agrees_at_every_origin_and_bucket(both):
    from lstm_pipeline.backtest.walkforward import skill_mase

    chain, result, windows = both
    stored = chain["accuracy_metrics"]
    stored = stored[(stored["span"] == SKILL_SPAN) & stored["mase"].notna()].rename(
        columns={"window_start": "as_of_window"})
    origins = pd.DataFrame({"symbol": SYMBOL, "as_of_window": sorted(windows)})
    replay = skill_mase(result.validations, origins)
    assert sorted(set(stored["horizon_bucket"])) == sorted(set(replay["horizon_bucket"]))
    for bucket in set(stored["horizon_bucket"]):
        _assert_same(stored[stored["horizon_bucket"] == bucket], replay[replay["horizon_bucket"] == bucket],
                     ["symbol", "as_of_window"], ["mase", "skill_p_value"], [])
    assert stored["skill_p_value"].notna().any()  # short horizons: enough validations for a p-value
