"""The walk-forward backtest: report shape and values, retraining schedule, skill gate, and no look-ahead."""

import math

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.backtest import BacktestDataError, run_backtest
from lstm_pipeline.evaluation.accuracy import HORIZON_BUCKETS, SPAN_WINDOWS
from lstm_pipeline.market.calendar import session_windows
from lstm_pipeline.settings import Settings
from lstm_pipeline.trading.recommendations import NO_SKILL_EVIDENCE, NO_TRADE, SKILL_SPAN, exit_bucket
from tests.backtest.conftest import RETRAIN_EVERY, TRAIN_SESSIONS, sim_history

pytestmark = pytest.mark.slow

BUCKET_FIELDS = {
    "mase", "directional_accuracy", "up_share", "coverage_80", "coverage_95", "interval_score_80",
    "interval_score_95", "naive_band_interval_score_80", "naive_band_interval_score_95",
    "tod_band_interval_score_80", "tod_band_interval_score_95",
}


def _sessions(bars: pd.DataFrame, symbol: str) -> pd.Index:
    stamps = pd.DatetimeIndex(bars.loc[bars["symbol"] == symbol, "window_start"]).tz_convert("America/New_York")
    return pd.Index(stamps.date).unique().sort_values()


def test_report_has_the_issue_shape(backtest):
    report = backtest.report
    assert set(report) == {"symbols", "pooled"}
    assert set(report["symbols"]) == {"AAPL", "MSFT"}
    for entry in [*report["symbols"].values(), report["pooled"]]:
        assert list(entry["horizons"]) == list(HORIZON_BUCKETS)
        for values in entry["horizons"].values():
            assert BUCKET_FIELDS <= set(values)
            assert all(values[name] is not None and math.isfinite(values[name]) for name in BUCKET_FIELDS)
            assert 0 <= values["coverage_80"] <= values["coverage_95"] <= 1
        assert {"count", "hit_rate", "mean_net_return_pct", "withheld_by_rule"} <= set(entry["recommendations"])
        assert 0 <= entry["reprediction_rate"] <= 1
        assert entry["error_by_confidence"]["levels"]


def test_every_origin_after_the_training_span_is_forecast_and_gets_one_recommendation(backtest, history):
    for symbol in ("AAPL", "MSFT"):
        sessions = _sessions(history, symbol)
        stamps = pd.DatetimeIndex(history.loc[history["symbol"] == symbol, "window_start"])
        expected = stamps[pd.Index(stamps.tz_convert("America/New_York").date).isin(sessions[TRAIN_SESSIONS:])]
        rows = backtest.predictions[backtest.predictions["symbol"] == symbol]
        assert set(rows["as_of_window"]) == set(expected)
        recommendations = backtest.recommendations[backtest.recommendations["symbol"] == symbol]
        assert len(recommendations) == len(expected)
        entry = backtest.report["symbols"][symbol]["recommendations"]
        assert entry["count"] == int((recommendations["action"] != NO_TRADE).sum())
        assert entry["count"] + sum(entry["withheld_by_rule"].values()) == len(expected)


def test_models_retrain_every_n_sessions_on_the_bars_before_their_block(backtest, history, factory):
    for symbol in ("AAPL", "MSFT"):
        sessions = _sessions(history, symbol)
        models = backtest.models[backtest.models["symbol"] == symbol].reset_index(drop=True)
        starts = list(range(TRAIN_SESSIONS, len(sessions), RETRAIN_EVERY))
        assert [row.first_origin.date() for row in models.itertuples()] == [sessions[i] for i in starts]
        for row in models.itertuples():
            trained_until = [last for name, last, _ in factory.requests if name == symbol and last < row.first_origin]
            assert trained_until  # the model for this block saw bars strictly before it
        served = backtest.predictions[backtest.predictions["symbol"] == symbol].merge(
            models[["first_origin", "model_version"]], on="model_version"
        )
        assert (served["as_of_window"] >= served["first_origin"]).all()


def test_pooled_figures_are_the_validations_figures(backtest):
    validations = backtest.validations
    counted = validations[validations["status"] != "invalid"]
    one_step = counted[counted["horizon_step"] == 1]
    actual, predicted, last = (one_step[c].to_numpy(float) for c in ("actual_close", "predicted_close", "last_close"))
    pooled = backtest.report["pooled"]["horizons"]["1_step"]
    assert pooled["mase"] == pytest.approx(np.abs(predicted - actual).sum() / np.abs(last - actual).sum(), rel=1e-12)
    assert pooled["up_share"] == pytest.approx(np.mean(actual > last), rel=1e-12)
    assert pooled["coverage_80"] == pytest.approx(one_step["inside_80"].astype(float).mean(), rel=1e-12)
    rows = one_step.merge(backtest.predictions, on=["symbol", "as_of_window", "target_window"], suffixes=("", "_p"))
    lower, upper = rows["lower_95"].to_numpy(float), rows["upper_95"].to_numpy(float)
    winkler = upper - lower + 2 / 0.05 * (np.clip(lower - actual, 0, None) + np.clip(actual - upper, 0, None))
    assert pooled["interval_score_95"] == pytest.approx(np.mean(100 * winkler / last), rel=1e-9)
    assert backtest.report["pooled"]["reprediction_rate"] == pytest.approx(
        (counted["status"] == "needs_reprediction").mean(), rel=1e-12
    )
    per_symbol = [backtest.report["symbols"][s]["horizons"]["1_day"]["n"] for s in ("AAPL", "MSFT")]
    assert backtest.report["pooled"]["horizons"]["1_day"]["n"] == sum(per_symbol)


def test_forecast_rows_found_from_the_paths_layout_equal_a_join_however_the_rows_come(backtest):
    from lstm_pipeline.backtest.walkforward import _forecast_rows, _row_positions

    counted = backtest.validations.reset_index(drop=True)
    rng = np.random.default_rng(7)
    forecasts = backtest.forecasts
    layouts = {
        "as forecast": forecasts,
        "shuffled": forecasts.take(rng.permutation(len(forecasts))).reset_index(drop=True),
        "with gaps": forecasts.drop(index=rng.choice(len(forecasts), 500, replace=False)).reset_index(drop=True),
    }
    for name, rows in layouts.items():
        found = _forecast_rows(counted, rows)
        assert np.array_equal(found, _row_positions(counted, rows)), name
    assert (_forecast_rows(counted, forecasts) >= 0).all()


def test_the_skill_gate_reads_only_the_mase_known_at_each_origin(backtest):
    recommendations = backtest.recommendations
    first = recommendations.sort_values("as_of_window").groupby("symbol").head(26)
    assert (first["held_back_by"] == NO_SKILL_EVIDENCE).all()  # nothing validated one day ahead yet
    validations = backtest.validations
    counted = validations[validations["status"] != "invalid"]
    known = recommendations[recommendations["recent_mase"].notna() & recommendations["exit_window"].notna()]
    assert len(known) > 0
    for row in known.sample(8, random_state=0).itertuples():
        calendar = session_windows(row.as_of_window - pd.Timedelta(days=45), row.as_of_window + pd.Timedelta(minutes=1))
        span = calendar[-SPAN_WINDOWS[SKILL_SPAN]:]
        # The gate reads the MASE of the bucket the trade exits in (the first at or beyond its exit step).
        ahead = session_windows(row.as_of_window + pd.Timedelta(minutes=15), row.exit_window + pd.Timedelta(minutes=1))
        step = {"1_step": 1, "1_hour": 4, "1_day": 26}.get(exit_bucket(len(ahead)))
        if step is None:  # 1_week: the target one week of wall-clock time ahead
            horizon = counted[pd.to_datetime(counted["target_window"]).dt.tz_localize(None)
                              - pd.to_datetime(counted["as_of_window"]).dt.tz_localize(None) == pd.Timedelta(days=7)]
        else:
            horizon = counted[counted["horizon_step"] == step]
        mine = horizon[(horizon["symbol"] == row.symbol) & horizon["target_window"].isin(span)]
        assert mine["target_window"].max() <= row.as_of_window
        expected = (np.abs(mine["predicted_close"] - mine["actual_close"]).sum()
                    / np.abs(mine["last_close"] - mine["actual_close"]).sum())
        assert row.recent_mase == pytest.approx(expected, rel=1e-9)


def test_bars_after_an_origin_change_nothing_known_at_it(backtest, history, factory):
    """Perturb every bar after an origin: that origin's forecasts, intervals, confidence, recommendation and every
    validation known at it are unchanged (and models serving up to it were trained on the same bars)."""
    aapl = backtest.predictions[backtest.predictions["symbol"] == "AAPL"]
    origins = np.sort(aapl["as_of_window"].unique())
    origin = pd.Timestamp(origins[len(origins) // 2])
    perturbed = history.copy()
    later = pd.to_datetime(perturbed["window_start"]) > origin
    for column in ("open", "high", "low", "close"):
        perturbed.loc[later, column] = perturbed.loc[later, column] * 1.07
    perturbed.loc[later, "volume"] = perturbed.loc[later, "volume"] * 3
    again = run_backtest(perturbed, TRAIN_SESSIONS, RETRAIN_EVERY, Settings(), model_factory=factory,
                         retrain_rule=False)

    def known(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        rows = frame[frame[column] <= origin]
        return rows.sort_values([c for c in ("symbol", "as_of_window", "target_window") if c in rows]).reset_index(
            drop=True)

    pd.testing.assert_frame_equal(known(backtest.predictions, "as_of_window"), known(again.predictions, "as_of_window"))
    before = backtest.predictions[backtest.predictions["as_of_window"] > origin]
    after = again.predictions[again.predictions["as_of_window"] > origin]
    assert not np.allclose(before["last_close"].to_numpy(), after["last_close"].to_numpy())  # the change is real
    pd.testing.assert_frame_equal(known(backtest.validations, "target_window"),
                                  known(again.validations, "target_window"))
    pd.testing.assert_frame_equal(known(backtest.recommendations, "as_of_window").drop(columns=["reason"]),
                                  known(again.recommendations, "as_of_window").drop(columns=["reason"]))
    for name, columns in (("scored", ["naive_band_interval_score_80", "tod_band_interval_score_95"]),):
        mine = getattr(backtest, name)
        other = getattr(again, name)
        left = mine[mine["target_window"] <= origin].sort_values(["symbol", "as_of_window", "target_window"])
        right = other[other["target_window"] <= origin].sort_values(["symbol", "as_of_window", "target_window"])
        np.testing.assert_allclose(left[columns].to_numpy(float), right[columns].to_numpy(float), rtol=0, atol=0)


def test_too_little_history_is_one_sentence():
    bars = sim_history(("AAPL",), "2025-03-03", "2025-03-20")
    with pytest.raises(BacktestDataError, match=r"^AAPL has 13 sessions of bars but training on 22 sessions .*\.$"):
        run_backtest(bars, TRAIN_SESSIONS, 0, Settings(), model_factory=lambda symbol, rows: None)


def test_the_work_beside_the_main_line_gives_what_the_serial_chain_gives(backtest, history):
    """The second core computes both baseline bands at every planned origin and every step a bucket can read (more
    than are scored), and scores the validations before the confidence levels are known: the scored rows equal
    those of ``scored_validations`` run in line, with the bands at exactly the scored origins and steps."""
    from lstm_pipeline.backtest.walkforward import _symbol_bars, bucket_candidates, scored_validations
    from lstm_pipeline.evaluation.keys import rows_at
    from lstm_pipeline.forecasting import bands

    validations = backtest.validations
    bucketed = rows_at(validations, np.flatnonzero(bucket_candidates(validations)))
    serial = scored_validations(bucketed, backtest.forecasts, _symbol_bars(history), bands, backtest.scores)
    serial = serial.drop(columns=["status_reason"])  # written when the validations are first read
    assert serial["naive_band_interval_score_80"].notna().mean() > 0.9  # the bands really are compared
    pd.testing.assert_frame_equal(backtest.scored, serial, check_exact=True)
    assert backtest.timings["beside_s"] > 0
    # The sentences no figure reads are written when the validations are first read, beside the same rows.
    assert "status_reason" not in backtest.validation_rows.columns
    assert list(backtest.validations.columns[:-1]) == list(backtest.validation_rows.columns)
    assert backtest.validations["status_reason"].str.len().gt(20).all()


def test_the_worker_and_all_in_line_give_the_same_replay(backtest, history, factory):
    """second_core=True uses the worker thread even on one processor; False runs every step in line."""
    import json

    runs = {way: run_backtest(history, TRAIN_SESSIONS, RETRAIN_EVERY, Settings(), model_factory=factory,
                              retrain_rule=False, second_core=way) for way in (True, False)}
    assert runs[True].timings["beside_s"] > 0 and runs[False].timings["beside_s"] > 0
    for name in ("forecasts", "scores", "validations", "recommendations", "outcomes", "scored"):
        pd.testing.assert_frame_equal(getattr(runs[True], name), getattr(runs[False], name), check_exact=True)
        pd.testing.assert_frame_equal(getattr(runs[True], name), getattr(backtest, name), check_exact=True)
    assert json.dumps(runs[True].report, sort_keys=True) == json.dumps(runs[False].report, sort_keys=True)


@pytest.mark.parametrize("where", ["beside", "main line"])
def test_a_failure_on_either_line_is_raised_and_leaves_no_thread(history, factory, monkeypatch, where):
    import threading

    from lstm_pipeline.backtest import walkforward
    from lstm_pipeline.forecasting import bands

    def broken(*args, **kwargs):
        raise RuntimeError(f"a step on the {where} failed")

    if where == "beside":
        monkeypatch.setattr(bands, "baseline_band_kinds", broken)
    else:  # the worker is busy with the confidence scores and the scored validations meanwhile
        monkeypatch.setattr(walkforward, "skill_mase", broken)
    with pytest.raises(RuntimeError, match=f"a step on the {where} failed"):
        run_backtest(history, TRAIN_SESSIONS, RETRAIN_EVERY, Settings(), model_factory=factory, retrain_rule=False,
                     second_core=True)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("backtest")]


def test_a_bar_outside_the_session_calendar_is_an_origin_skipped_not_a_failure(history, factory):
    """Its window is planned as an origin but cannot be forecast; the baseline bands, built only at forecast
    origins, never see it."""
    stray = history[history["symbol"] == "AAPL"].iloc[[-300]].copy()
    saturday = pd.Timestamp("2025-04-12 11:00", tz="America/New_York")  # a Saturday
    stray["window_start"] = saturday
    result = run_backtest(pd.concat([history, stray], ignore_index=True), TRAIN_SESSIONS, RETRAIN_EVERY, Settings(),
                          model_factory=factory, retrain_rule=False)
    assert ("AAPL", saturday) in result.skipped
    assert result.report["pooled"]["horizons"]["1_step"]["naive_band_interval_score_80"] is not None
