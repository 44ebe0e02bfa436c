"""Trade recommendations: each rule (skill gate, flat path, profit after costs, confidence), the entry before the
exit, shorts only when enabled; scoring of past recommendations (hit and miss, after costs); the asset over stored
forecasts and bars, scoring across runs and idempotent on re-run."""

import numpy as np
import pandas as pd
import pytest
from dagster import materialize

from lstm_pipeline.assets.trade_recommendations import recent_mase, trade_recommendations
from lstm_pipeline.market.calendar import parse_window_key, week_ahead_windows
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import Settings
from lstm_pipeline.trading import recommend_trades, score_recommendations
from lstm_pipeline.trading.recommendations import SkillEvidence
from tests.helpers import range_tags, register_windows

AS_OF = parse_window_key("2025-07-07-09:30")
SETTINGS = Settings()  # min_profit_percent 2.0, confidence_threshold 0.6, 10 bps round trip, skill below MASE 1.0
GOOD_MASE = {"AAPL": SkillEvidence(0.8, 0.01)}
"""Skill: a recent MASE of 0.8 at every horizon, below 1 by more than chance (p = 0.01)."""


def with_workflow(**changes) -> Settings:
    return SETTINGS.model_copy(update={"workflow": SETTINGS.workflow.model_copy(update=changes)})


def forecast(path, symbol="AAPL", as_of=AS_OF, last_close=100.0, confidence=0.8, level="High", version="v1"):
    """Prediction rows of one origin: ``path`` are the predicted closes of its first target windows."""
    targets = week_ahead_windows(as_of)[: len(path)]
    confidences = confidence if isinstance(confidence, list) else [confidence] * len(path)
    return pd.DataFrame({
        "symbol": symbol,
        "as_of_window": as_of,
        "horizon_step": range(1, len(path) + 1),
        "target_window": targets,
        "predicted_close": [float(price) for price in path],
        "last_close": last_close,
        "forecast_mode": "recursive",
        "model_version": version,
        "confidence": pd.array(confidences, dtype="Float64").astype("float64"),
        "confidence_level": level,
    })


def target(step: int, as_of=AS_OF) -> pd.Timestamp:
    return week_ahead_windows(as_of)[step - 1]


def only(recommendations: pd.DataFrame) -> pd.Series:
    assert len(recommendations) == 1
    return recommendations.iloc[0]


# ------------------------------------------------------------------------------------------------- recommendations


def test_a_buy_enters_at_the_predicted_low_before_the_predicted_high():
    # The lowest price (95, step 5) comes after the highest (104, step 3): it cannot be the entry.
    row = only(recommend_trades(forecast([99, 97, 104, 101, 95, 98]), GOOD_MASE, SETTINGS))
    assert row["action"] == "buy" and pd.isna(row["held_back_by"])
    assert row["entry_window"] == target(2) and row["entry_price"] == 97.0
    assert row["exit_window"] == target(3) and row["exit_price"] == 104.0
    assert row["entry_window"] < row["exit_window"]
    assert row["predicted_return_pct"] == pytest.approx(100 * (104 / 97 - 1) - 0.10)
    assert row["recent_mase"] == 0.8 and row["confidence"] == 0.8 and row["model_version"] == "v1"
    assert row["reason"].startswith("AAPL: buy at 97.00") and "7.12% after 0.10% round-trip costs" in row["reason"]


def test_a_path_that_rises_from_now_buys_at_the_as_of_close():
    row = only(recommend_trades(forecast([101, 102, 103]), GOOD_MASE, SETTINGS))
    assert row["action"] == "buy"
    assert row["entry_window"] == AS_OF and row["entry_price"] == 100.0 and row["exit_window"] == target(3)


def test_round_trip_costs_change_the_decision_at_the_boundary():
    path = [100.5, 102.05]  # 2.05% gross: clears the 2% minimum before costs, not after 10 bps
    held = only(recommend_trades(forecast(path), GOOD_MASE, SETTINGS))
    assert held["action"] == "none" and held["held_back_by"] == "min_profit"
    assert held["predicted_return_pct"] == pytest.approx(1.95)
    assert "1.95% after 0.10% round-trip costs" in held["reason"] and "2.00% minimum profit" in held["reason"]
    free = only(recommend_trades(forecast(path), GOOD_MASE, with_workflow(round_trip_cost_bps=0)))
    assert free["action"] == "buy" and free["predicted_return_pct"] == pytest.approx(2.05)
    exactly = only(recommend_trades(forecast([102.1]), GOOD_MASE, SETTINGS))  # 2.10% - 0.10% = 2.00%: enough
    assert exactly["action"] == "buy"


def test_the_confidence_gate_uses_the_lower_of_entry_and_exit_and_holds_back_an_unscored_forecast():
    path = [97, 99, 104]
    at_threshold = only(recommend_trades(forecast(path, confidence=0.6), GOOD_MASE, SETTINGS))
    assert at_threshold["action"] == "buy"
    low = only(recommend_trades(forecast(path, confidence=[0.55, 0.9, 0.9], level="Medium"), GOOD_MASE, SETTINGS))
    assert low["action"] == "none" and low["held_back_by"] == "confidence" and low["confidence"] == 0.55
    assert "confidence 0.55 (Medium), below the 0.60 threshold" in low["reason"]
    unscored = only(recommend_trades(forecast(path, confidence=None, level=None), GOOD_MASE, SETTINGS))
    assert unscored["held_back_by"] == "confidence_unknown" and pd.isna(unscored["confidence"])
    assert "no confidence score yet" in unscored["reason"]
    # The entry at the as-of close is a known price: only the exit's confidence counts.
    from_now = only(recommend_trades(forecast([101, 104], confidence=[0.1, 0.7]), GOOD_MASE, SETTINGS))
    assert from_now["action"] == "buy" and from_now["confidence"] == 0.7


@pytest.mark.parametrize("mase", [1.0, 1.0 - 1e-12, 1.3])  # 1 - 1e-12: a naive-equal forecast, up to rounding
def test_a_model_that_does_not_beat_naive_never_recommends_and_says_so(mase):
    row = only(recommend_trades(forecast([97, 110]), {"AAPL": mase}, SETTINGS))  # a 13% move, confident
    assert row["action"] == "none" and row["held_back_by"] == "skill" and row["recent_mase"] == mase
    assert row["reason"] == (  # buy at step 1, sell at step 2: judged at the 1-hour horizon
        f"AAPL's model does not beat the naive last-price forecast at the 1 hour horizon its best trade exits at "
        f"(recent MASE {mase:.2f} >= 1.00): no trade."
    )
    assert row["predicted_return_pct"] > 10  # the trade it would have been is still shown


@pytest.mark.parametrize(("exit_step", "bucket"), [(1, "1_step"), (4, "1_hour"), (5, "1_day"), (26, "1_day"),
                                                  (27, "1_week"), (130, "1_week")])
def test_the_skill_gate_judges_a_trade_at_the_horizon_it_exits(exit_step, bucket):
    # Skilled one day ahead, worse than naive one week ahead (a recursive model extrapolating a short trend).
    good, bad = SkillEvidence(0.9, 0.01), SkillEvidence(1.3, 0.99)
    mase = {"AAPL": {"1_step": good, "1_hour": good, "1_day": good, "1_week": bad}}
    path = [99.0] * (exit_step - 1) + [110.0] + [99.0] * min(3, 130 - exit_step)  # the best exit: exit_step
    row = only(recommend_trades(forecast(path), mase, SETTINGS))
    assert row["exit_window"] == target(exit_step)
    if bucket == "1_week":
        assert row["action"] == "none" and row["held_back_by"] == "skill" and row["recent_mase"] == 1.3
        assert "at the 1 week horizon its best trade exits at (recent MASE 1.30 >= 1.00)" in row["reason"]
    else:
        assert row["action"] == "buy" and row["recent_mase"] == 0.9
    missing = {"AAPL": {other: good for other in mase["AAPL"] if other != bucket}}
    row = only(recommend_trades(forecast(path), missing, SETTINGS))
    assert row["held_back_by"] == "no_skill_evidence"
    assert f"at the {bucket.replace('_', ' ')} horizon yet" in row["reason"]


def test_a_mase_below_one_by_no_more_than_chance_does_not_open_the_gate():
    path = [97, 110]  # buy at step 1, sell at step 2: judged at the 1-hour horizon
    chance = only(recommend_trades(forecast(path), {"AAPL": SkillEvidence(0.9, 0.2)}, SETTINGS))
    assert chance["action"] == "none" and chance["held_back_by"] == "skill_not_significant"
    assert chance["recent_mase"] == 0.9 and chance["skill_p_value"] == 0.2
    assert chance["reason"] == (
        "AAPL's model beats the naive last-price forecast at the 1 hour horizon its best trade exits at (recent MASE "
        "0.90) by no more than chance would (p = 0.200, needs < 0.05): no trade."
    )
    for unknown in (SkillEvidence(0.9, None), SkillEvidence(0.9, float("nan")), 0.9):  # a bare MASE has no p-value
        row = only(recommend_trades(forecast(path), {"AAPL": unknown}, SETTINGS))
        assert row["held_back_by"] == "skill_not_significant" and "(no p-value)" in row["reason"]
    clear = only(recommend_trades(forecast(path), {"AAPL": SkillEvidence(0.9, 0.049)}, SETTINGS))
    assert clear["action"] == "buy" and clear["skill_p_value"] == 0.049 and "p = 0.049" in clear["reason"]
    stricter = with_workflow(skill_significance=0.01)
    assert only(recommend_trades(forecast(path), {"AAPL": SkillEvidence(0.9, 0.049)}, stricter))["action"] == "none"
    off = with_workflow(skill_significance=1.0)  # the requirement turned off: the MASE alone decides
    assert only(recommend_trades(forecast(path), {"AAPL": 0.9}, off))["action"] == "buy"
    assert only(recommend_trades(forecast(path), {"AAPL": 1.1}, off))["held_back_by"] == "skill"


def test_a_skill_table_gives_the_same_recommendations_as_the_mapping():
    later = AS_OF + pd.Timedelta(minutes=15)
    forecasts = pd.concat([forecast([97, 110], as_of=AS_OF), forecast([97, 110], as_of=later),
                           forecast([97, 110], symbol="MSFT")], ignore_index=True)
    mapping = {("AAPL", AS_OF): {"1_hour": SkillEvidence(0.9, 0.01)},
               ("AAPL", later): {"1_hour": SkillEvidence(0.9, 0.3), "1_day": SkillEvidence(0.8, 0.01)}}
    skill = pd.DataFrame({
        "symbol": ["AAPL", "AAPL", "AAPL", "IBM"],
        "as_of_window": [AS_OF, later, later, AS_OF],
        "horizon_bucket": ["1_hour", "1_hour", "1_day", "1_hour"],
        "mase": [0.9, 0.9, 0.8, 0.5],
        "skill_p_value": [0.01, 0.3, 0.01, 0.0],
    })
    origins = [("AAPL", AS_OF), ("AAPL", later), ("MSFT", AS_OF), ("MSFT", later)]
    from_table = recommend_trades(forecasts, skill, SETTINGS, origins=origins)
    pd.testing.assert_frame_equal(from_table, recommend_trades(forecasts, mapping, SETTINGS, origins=origins))
    assert list(from_table["held_back_by"].fillna("-")) == ["-", "skill_not_significant", "no_skill_evidence",
                                                            "no_forecast"]
    duplicated = pd.concat([skill, skill.head(1)], ignore_index=True)
    with pytest.raises(ValueError, match="more than one row"):
        recommend_trades(forecasts, duplicated, SETTINGS)


def test_a_trade_exits_at_most_max_holding_windows_ahead():
    path = [101.0, 103.0, 102.0, 108.0]  # the best exit is step 4 (108); within 2 windows it is step 2 (103)
    assert only(recommend_trades(forecast(path), GOOD_MASE, SETTINGS))["exit_window"] == target(4)
    row = only(recommend_trades(forecast(path), GOOD_MASE, with_workflow(max_holding_windows=2)))
    assert row["action"] == "buy" and row["exit_window"] == target(2) and row["exit_price"] == 103.0


def test_no_mase_yet_is_no_evidence_of_skill_and_skill_is_checked_first():
    for mase in ({}, {"AAPL": None}, {"AAPL": float("nan")}):
        row = only(recommend_trades(forecast([100, 100]), mase, SETTINGS))  # also a flat path
        assert row["held_back_by"] == "no_skill_evidence" and "no trade" in row["reason"]
    per_origin = {("AAPL", AS_OF): SkillEvidence(0.9, 0.01), "AAPL": 1.5}  # a backfill: known as of each origin
    assert only(recommend_trades(forecast([97, 110]), per_origin, SETTINGS))["action"] == "buy"


def test_a_flat_or_falling_path_holds_the_trade_back_and_shorts_only_when_enabled():
    flat = only(recommend_trades(forecast([100, 100, 100]), GOOD_MASE, SETTINGS))
    assert flat["held_back_by"] == "flat_path" and pd.isna(flat["entry_window"]) and pd.isna(flat["exit_window"])
    assert "never rises (shorting is disabled)" in flat["reason"]
    falling = forecast([99, 98, 96, 95])
    assert only(recommend_trades(falling, GOOD_MASE, SETTINGS))["held_back_by"] == "flat_path"
    short = only(recommend_trades(falling, GOOD_MASE, with_workflow(allow_short=True)))
    assert short["action"] == "short" and short["entry_window"] == AS_OF and short["exit_window"] == target(4)
    assert short["predicted_return_pct"] == pytest.approx(100 * (1 - 95 / 100) - 0.10)
    assert short["reason"].startswith("AAPL: short at 100.00") and "cover at 95.00" in short["reason"]
    still_flat = only(recommend_trades(forecast([100, 100]), GOOD_MASE, with_workflow(allow_short=True)))
    assert still_flat["held_back_by"] == "flat_path" and "never rises or falls" in still_flat["reason"]


def test_with_shorts_enabled_the_larger_predicted_move_wins():
    path = [101, 104, 99, 95, 97]  # long 100 -> 104 (4%), short 104 -> 95 (8.7%)
    assert only(recommend_trades(forecast(path), GOOD_MASE, SETTINGS))["action"] == "buy"
    short = only(recommend_trades(forecast(path), GOOD_MASE, with_workflow(allow_short=True)))
    assert short["action"] == "short" and (short["entry_price"], short["exit_price"]) == (104.0, 95.0)
    assert short["entry_window"] == target(2) and short["exit_window"] == target(4)


def test_a_batch_gives_one_row_per_origin_and_says_which_origins_had_no_forecast():
    later = AS_OF + pd.Timedelta(minutes=15)
    forecasts = pd.concat([
        forecast([97, 104]), forecast([100, 100], as_of=later), forecast([90, 99], symbol="MSFT", last_close=95)
    ]).sample(frac=1, random_state=3)  # order does not matter
    origins = [("AAPL", AS_OF), ("AAPL", later), ("MSFT", AS_OF), ("MSFT", later)]
    skill = {"AAPL": SkillEvidence(0.8, 0.01), "MSFT": SkillEvidence(0.7, 0.001)}
    rows = recommend_trades(forecasts, skill, SETTINGS, origins=origins)
    assert list(zip(rows["symbol"], rows["as_of_window"], strict=True)) == origins
    assert list(rows["action"]) == ["buy", "none", "buy", "none"]
    assert list(rows["held_back_by"].fillna("-")) == ["-", "flat_path", "-", "no_forecast"]
    assert rows.loc[3, "reason"].startswith("No stored forecast for MSFT as of 2025-07-07 09:45")
    assert rows.loc[2, "entry_price"] == 90.0 and rows.loc[2, "exit_price"] == 99.0


def test_scores_per_origin_give_what_the_same_confidence_on_every_row_gives():
    later = AS_OF + pd.Timedelta(minutes=15)
    forecasts = pd.concat([
        forecast([97, 104], confidence=0.9, level="High"), forecast([97, 104], as_of=later, confidence=0.5,
                                                                      level="Low"),
        forecast([90, 99], symbol="MSFT", last_close=95, confidence=0.7, level="Medium"),
    ]).sample(frac=1, random_state=5)
    skill = {"AAPL": SkillEvidence(0.8, 0.01), "MSFT": SkillEvidence(0.7, 0.001)}
    # One score per origin (MSFT's first and an origin no forecast has: ignored), and none for AAPL's later origin.
    scores = pd.DataFrame({"symbol": ["MSFT", "AAPL", "MSFT"], "as_of_window": [AS_OF, AS_OF, later],
                           "confidence": [0.7, 0.9, 0.1], "confidence_level": ["Medium", "High", "Low"]})
    unscored = forecasts.assign(confidence=forecasts["confidence"].where(forecasts["as_of_window"] != later),
                                confidence_level=forecasts["confidence_level"].where(
                                    forecasts["as_of_window"] != later, None))
    by_rows = recommend_trades(unscored, skill, SETTINGS)
    by_origin = recommend_trades(forecasts.drop(columns=["confidence", "confidence_level"]), skill, SETTINGS,
                                 scores=scores)
    pd.testing.assert_frame_equal(by_origin, by_rows)
    assert list(by_origin["held_back_by"].fillna("-")) == ["-", "confidence_unknown", "-"]
    with pytest.raises(ValueError, match="confidence_level"):
        recommend_trades(forecasts, skill, SETTINGS, scores=scores.drop(columns=["confidence_level"]))


def test_scores_per_origin_match_per_row_confidence_on_random_paths():
    # Paths of any length with missing forecasts and as-of closes, unscored origins, longs and shorts, a holding cap.
    rng = np.random.default_rng(0)
    capped = with_workflow(allow_short=True, max_holding_windows=5)
    for _ in range(60):
        frames, scored = [], {}
        for origin in range(int(rng.integers(1, 6))):
            as_of = AS_OF + pd.Timedelta(minutes=15 * origin)
            size = int(rng.integers(1, 12))
            confidence = float(rng.choice([0.3, 0.7, 0.9]))
            rows = forecast(list(100 + rng.normal(0, 3, size)), as_of=as_of, confidence=confidence,
                            level=str(confidence), last_close=100.0 if rng.random() < 0.9 else np.nan)
            rows.loc[rng.random(size) < 0.15, "predicted_close"] = np.nan
            frames.append(rows)
            if rng.random() < 0.8:
                scored[as_of] = confidence
        forecasts = pd.concat(frames, ignore_index=True)
        known = forecasts["as_of_window"].isin(list(scored))
        per_row = forecasts.assign(confidence=forecasts["confidence"].where(known),
                                   confidence_level=forecasts["confidence_level"].where(known, None))
        scores = pd.DataFrame({"symbol": "AAPL", "as_of_window": list(scored), "confidence": list(scored.values()),
                               "confidence_level": [str(value) for value in scored.values()]})
        for settings in (SETTINGS, capped):
            pd.testing.assert_frame_equal(
                recommend_trades(forecasts.drop(columns=["confidence", "confidence_level"]), GOOD_MASE, settings,
                                 scores=scores),
                recommend_trades(per_row, GOOD_MASE, settings),
            )


# --------------------------------------------------------------------------------------------------------- scoring


def bars_of(closes: dict[pd.Timestamp, float], symbol="AAPL") -> pd.DataFrame:
    return pd.DataFrame({"symbol": symbol, "window_start": list(closes), "close": list(closes.values())})


def test_a_past_buy_is_scored_on_the_actual_closes_after_costs_hit_and_miss():
    recommendation = recommend_trades(forecast([99, 97, 104]), GOOD_MASE, SETTINGS)  # buy step 2, sell step 3
    hit = only(score_recommendations(recommendation, bars_of({target(2): 98.0, target(3): 101.0}), SETTINGS))
    assert hit["scored_window"] == target(3) and hit["as_of_window"] == AS_OF and hit["action"] == "buy"
    assert (hit["entry_price_actual"], hit["exit_price_actual"]) == (98.0, 101.0)
    assert hit["realized_return_pct"] == pytest.approx(100 * (101 / 98 - 1) - 0.10) and hit["hit"]
    # A price that did not move is a miss once the costs are paid.
    miss = only(score_recommendations(recommendation, bars_of({target(2): 98.0, target(3): 98.0}), SETTINGS))
    assert miss["realized_return_pct"] == pytest.approx(-0.10) and not miss["hit"]


def test_a_short_is_scored_the_other_way_round():
    recommendation = recommend_trades(forecast([99, 95]), GOOD_MASE, with_workflow(allow_short=True))
    assert only(recommendation)["action"] == "short"
    outcome = only(score_recommendations(recommendation, bars_of({AS_OF: 100.0, target(2): 97.0}), SETTINGS))
    assert outcome["realized_return_pct"] == pytest.approx(3.0 - 0.10) and outcome["hit"]


def test_a_missing_entry_bar_enters_at_the_next_bar_and_a_missing_exit_bar_is_not_scored_yet():
    recommendation = recommend_trades(forecast([99, 97, 98, 104]), GOOD_MASE, SETTINGS)  # buy step 2, sell step 4
    outcome = only(score_recommendations(recommendation, bars_of({target(3): 99.0, target(4): 102.0}), SETTINGS))
    assert outcome["entry_price_actual"] == 99.0  # step 2's bar is missing: entered at step 3's close
    assert outcome["realized_return_pct"] == pytest.approx(100 * (102 / 99 - 1) - 0.10)
    assert score_recommendations(recommendation, bars_of({target(2): 97.0, target(3): 99.0}), SETTINGS).empty
    never_entered = only(score_recommendations(recommendation, bars_of({target(4): 102.0}), SETTINGS))
    assert pd.isna(never_entered["realized_return_pct"]) and pd.isna(never_entered["hit"])


def test_held_back_recommendations_are_never_scored():
    held = recommend_trades(forecast([99, 97, 104]), {"AAPL": 1.2}, SETTINGS)
    assert score_recommendations(held, bars_of({target(2): 98.0, target(3): 101.0}), SETTINGS).empty


# ----------------------------------------------------------------------------------------------------------- asset

SYMBOLS = ["AAPL", "MSFT"]


@pytest.fixture
def keys(instance):
    return register_windows(instance, "2025-07-07", "2025-07-09")


def stored_bars(keys, special: dict[tuple[str, int], float]) -> pd.DataFrame:
    rows = []
    for symbol in SYMBOLS:
        for index, key in enumerate(keys):
            close = special.get((symbol, index), 100.0)
            rows.append({"symbol": symbol, "window_start": parse_window_key(key), "open": close, "high": close + 0.2,
                         "low": close - 0.2, "close": close, "volume": 1000, "source": "test"})
    return pd.DataFrame(rows)


def write_inputs(store, keys):
    """AAPL as of 09:30: buy at 10:00 (step 2), sell at 11:00 (step 6); as of 09:45: flat. MSFT as of 09:30: a
    rising path but no MASE. Actual closes: 97.5 at 10:00 and 101.5 at 11:00."""
    bars = stored_bars(keys, {("AAPL", 2): 97.5, ("AAPL", 6): 101.5})
    store.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
    first, second = parse_window_key(keys[0]), parse_window_key(keys[1])
    rows = pd.concat([
        forecast([99, 97, 98, 100, 101, 103, 100, 99], as_of=first),
        forecast([100] * 8, as_of=second),
        forecast([101, 102, 104, 106], symbol="MSFT", as_of=first),
    ], ignore_index=True)
    store.replace_forecasts(rows, pd.DataFrame(), [("AAPL", first), ("AAPL", second), ("MSFT", first)])
    metrics = pd.DataFrame({"symbol": ["AAPL"], "window_start": [first], "span": ["month"],
                            "horizon_bucket": ["1_day"], "n": [546], "mase": [0.8], "skill_p_value": [0.01]})
    store.replace_tables({"accuracy_metrics": (metrics[["symbol", "window_start"]], metrics)})


def run(instance, store, keys):
    result = materialize([trade_recommendations], instance=instance, tags=range_tags(SYMBOLS, keys),
                         resources={"store": store})
    assert result.success
    materialization = result.asset_materializations_for_node("trade_recommendations")[0]
    return {key: value.value for key, value in materialization.metadata.items()}


def table(store, name: str, stamp: str) -> pd.DataFrame:
    return store.read_rows(name).drop(columns=[stamp]).reset_index(drop=True)


def test_the_asset_recommends_then_scores_in_a_later_run_and_re_runs_duplicate_nothing(instance, store, keys):
    write_inputs(store, keys)
    first = run(instance, store, keys[:3])
    recommendations = store.read_rows("trade_recommendations")
    assert len(recommendations) == 6  # 2 symbols x 3 windows, one row each
    by_origin = {(row.symbol, row.as_of_window.strftime("%H:%M")): row for row in recommendations.itertuples()}
    aapl = by_origin[("AAPL", "09:30")]
    assert aapl.action == "buy" and aapl.entry_window == parse_window_key(keys[2])
    assert aapl.exit_window == parse_window_key(keys[6]) and aapl.recent_mase == 0.8
    assert by_origin[("AAPL", "09:45")].held_back_by == "flat_path"
    assert by_origin[("MSFT", "09:30")].held_back_by == "no_skill_evidence"
    assert by_origin[("AAPL", "10:00")].held_back_by == "no_forecast"
    assert first["by_action"] == {"buy": 1, "none": 5}
    assert first["held_back_by"] == {"flat_path": 1, "no_forecast": 3, "no_skill_evidence": 1}
    assert first["mean_predicted_return_pct"] == pytest.approx(100 * (103 / 97 - 1) - 0.10, abs=1e-4)
    assert first["outcomes_scored"] == 0 and store.read_rows("trade_outcomes").empty  # exit 11:00 not reached

    second = run(instance, store, keys[3:8])  # 11:00 is in this run: the stored recommendation is scored
    outcome = only(store.read_rows("trade_outcomes"))
    assert outcome["symbol"] == "AAPL" and outcome["scored_window"] == parse_window_key(keys[6])
    assert outcome["realized_return_pct"] == pytest.approx(100 * (101.5 / 97.5 - 1) - 0.10) and outcome["hit"]
    assert second["outcomes_scored"] == 1 and second["success_rate_so_far"] == 1.0
    assert len(store.read_rows("trade_recommendations")) == 6 + 10

    before = (table(store, "trade_recommendations", "created_at"), table(store, "trade_outcomes", "scored_at"))
    run(instance, store, keys[3:8])
    run(instance, store, keys[:3])
    pd.testing.assert_frame_equal(table(store, "trade_recommendations", "created_at"), before[0])
    pd.testing.assert_frame_equal(table(store, "trade_outcomes", "scored_at"), before[1])

    # One run over the whole range recommends and scores the same trade together.
    whole = run(instance, store, keys[:8])
    assert whole["outcomes_scored"] == 1
    pd.testing.assert_frame_equal(table(store, "trade_outcomes", "scored_at"), before[1])
    pd.testing.assert_frame_equal(table(store, "trade_recommendations", "created_at"), before[0])


def test_the_skill_gate_reads_the_newest_month_evidence_known_as_of_each_origin(store):
    monday, tuesday = parse_window_key("2025-07-07-10:00"), parse_window_key("2025-07-08-10:00")
    metrics = pd.DataFrame({
        "symbol": ["AAPL", "AAPL", "AAPL", "AAPL", "MSFT"],
        "window_start": [monday, monday, tuesday, tuesday, monday - pd.Timedelta(days=8)],
        "span": ["month", "week", "month", "month", "month"],
        "horizon_bucket": ["1_day", "1_day", "1_day", "1_step", "1_day"],
        "n": 100,
        "mase": [0.9, 0.1, 1.4, 0.2, 0.5],
        "skill_p_value": [0.2, 0.0, 0.9, 0.001, 0.0],
    })
    store.replace_tables({"accuracy_metrics": (metrics[["symbol", "window_start"]].drop_duplicates(), metrics)})
    wanted = {"AAPL": [monday - pd.Timedelta(minutes=15), monday, tuesday - pd.Timedelta(minutes=15), tuesday],
              "MSFT": [monday]}
    found = recent_mase(store, wanted)
    assert list(found.columns) == ["symbol", "as_of_window", "horizon_bucket", "mase", "skill_p_value"]
    got = {(row.symbol, row.as_of_window, row.horizon_bucket): (row.mase, row.skill_p_value)
           for row in found.itertuples()}
    assert got == {  # nothing before Monday 10:00; no figure from the future; none stale; only the month span
        ("AAPL", monday, "1_day"): (0.9, 0.2), ("AAPL", tuesday - pd.Timedelta(minutes=15), "1_day"): (0.9, 0.2),
        ("AAPL", tuesday, "1_day"): (1.4, 0.9), ("AAPL", tuesday, "1_step"): (0.2, 0.001),
    }
    assert recent_mase(PipelineStore.for_path(store.duckdb.database + ".absent"), wanted).empty
