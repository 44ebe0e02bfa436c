"""accuracy_metrics: every metric on hand-made validations with a known value (errors, MASE against naive, direction,
coverage, Winkler, spans, buckets, trend, trades), empty inputs, and the asset over stored rows (no TensorFlow)."""

import base64
import math

import numpy as np
import pandas as pd
import pytest
from dagster import materialize

from lstm_pipeline.assets.accuracy_metrics import accuracy_metrics as accuracy_metrics_asset
from lstm_pipeline.evaluation.accuracy import (
    ROW_COLUMNS,
    accuracy_metrics,
    confidence_separates,
    error_by_confidence,
    history_start,
    horizon_buckets,
)
from lstm_pipeline.market.calendar import WINDOW, session_windows
from lstm_pipeline.market.simulated import simulate_bars
from tests.helpers import range_tags, register_windows

# Five weeks with no holiday: 25 sessions, 650 windows; W[i + 130] is W[i] a wall-clock week later.
W = session_windows("2025-07-07", "2025-08-09")


def validation(
    as_of: int,
    step: int,
    predicted: float = 101.0,
    actual: float | None = 100.0,
    last: float = 99.0,
    symbol: str = "AAPL",
    status: str = "valid",
    inside_80: bool | None = True,
    inside_95: bool | None = True,
) -> dict:
    """A validations row of the forecast made as of W[as_of] for W[as_of + step]."""
    error = None if actual is None else 100.0 * (predicted - actual) / actual
    return {
        "symbol": symbol,
        "target_window": W[as_of + step],
        "as_of_window": W[as_of],
        "horizon_step": step,
        "model_version": "v1",
        "predicted_close": predicted,
        "actual_close": actual,
        "last_close": last,
        "error_pct": error,
        "abs_error_pct": None if error is None else abs(error),
        "naive_abs_error_pct": None if actual is None else 100.0 * abs(last - actual) / actual,
        "inside_80": inside_80,
        "inside_95": inside_95,
        "status": status,
        "status_reason": None,
    }


def as_of(*pairs: tuple[str, int]) -> pd.DataFrame:
    return pd.DataFrame([(symbol, W[index]) for symbol, index in pairs], columns=["symbol", "window_start"])


def metric(rows: pd.DataFrame, span: str, bucket: str, column: str, symbol: str = "AAPL", at: int | None = None):
    picked = rows[(rows["symbol"] == symbol) & (rows["span"] == span) & (rows["horizon_bucket"] == bucket)]
    if at is not None:
        picked = picked[picked["window_start"] == W[at]]
    assert len(picked) == 1, picked
    return picked[column].iloc[0]


def test_every_metric_of_a_bucket_has_its_known_value():
    rows = [
        validation(26, 1, predicted=101.0, inside_80=True),
        validation(27, 1, predicted=99.0, inside_80=False, status="needs_reprediction"),
        validation(28, 1, predicted=102.0),
        validation(29, 1, predicted=98.0),
        # Not counted: the bar was invalid, the actual is missing, step 2 is in no bucket.
        validation(25, 1, predicted=150.0, status="invalid"),
        validation(24, 1, predicted=150.0, actual=None, inside_80=None, inside_95=None),
        validation(28, 2, predicted=150.0),
    ]
    intervals = pd.DataFrame(
        [
            # [99, 101] around 100: width 2. [100.5, 101.5]: width 1 + 2 / 0.2 * 0.5 below = 6.
            {"as_of": 26, "lower_80": 99.0, "upper_80": 101.0},
            {"as_of": 27, "lower_80": 100.5, "upper_80": 101.5},
            {"as_of": 28, "lower_80": 99.0, "upper_80": 101.0},
            {"as_of": 29, "lower_80": 99.0, "upper_80": 101.0},
        ]
    )
    forecasts = pd.DataFrame(
        {
            "symbol": "AAPL",
            "as_of_window": W[intervals["as_of"]],
            "target_window": W[intervals["as_of"] + 1],
            "lower_80": intervals["lower_80"],
            "upper_80": intervals["upper_80"],
            "lower_95": 98.0,
            "upper_95": 102.0,
        }
    )
    result = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 30)), forecasts)
    expected = {
        "n": 4,
        "rmse": math.sqrt((1 + 1 + 4 + 4) / 4),
        "mae": 1.5,
        "mape": 1.5,
        "directional_accuracy": 0.5,  # up, flat (wrong), up, down (wrong) against four up moves from 99
        "up_move_share": 1.0,
        "mase": 1.5,  # naive last price 99 misses 100 by 1 each time
        "coverage_80": 0.75,
        "coverage_95": 1.0,
        "winkler_80": (2 + 6 + 2 + 2) / 4,
        "winkler_95": 4.0,
        "reprediction_rate": 0.25,
    }
    for span in ("day", "week", "month"):
        for column, value in expected.items():
            assert metric(result.rows, span, "1_step", column) == pytest.approx(value), (span, column)
    assert set(result.rows["horizon_bucket"]) == {"1_step"}
    assert list(result.rows.columns) == list(ROW_COLUMNS)
    assert result.skipped.empty
    # Without the intervals, no Winkler score, the rest unchanged; no trades given, no trade metrics.
    plain = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 30)))
    assert math.isnan(metric(plain.rows, "day", "1_step", "winkler_80"))
    assert metric(plain.rows, "day", "1_step", "mase") == pytest.approx(1.5)
    assert math.isnan(metric(plain.rows, "day", "1_step", "trade_success_rate"))


def test_a_model_that_repeats_the_last_price_has_mase_exactly_one_in_every_bucket():
    rng = np.random.default_rng(3)
    rows = []
    for origin in range(0, 200):
        for step in (1, 4, 26, 130):
            last = 100.0 + rng.normal()
            rows.append(validation(origin, step, predicted=last, last=last, actual=last + rng.choice([-1, 1]) * 0.5))
    result = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 330)))
    assert sorted(set(result.rows["horizon_bucket"])) == ["1_day", "1_hour", "1_step", "1_week"]
    assert (result.rows["mase"] == 1.0).all()
    # A flat predicted move never has the sign of a non-zero actual move.
    assert (result.rows["directional_accuracy"] == 0.0).all()
    assert result.rows["mae"].to_numpy() == pytest.approx(0.5)


def test_spans_count_session_windows_up_to_the_as_of_window_and_buckets_pick_their_steps():
    rows = [validation(origin, step) for origin in range(0, 330) for step in (1, 2, 4, 26, 130) if origin + step <= 330]
    rows += [validation(origin, 1, symbol="MSFT", predicted=200.0) for origin in range(0, 330)]
    result = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 300), ("MSFT", 300)))
    # Targets W[1..330] exist; as of W[300] the day span holds W[275..300], the week W[171..300], the month all
    # 300 (it would hold 546); a target after the as-of window (W[301..330]) never counts.
    assert metric(result.rows, "day", "1_step", "n", at=300) == 26
    assert metric(result.rows, "week", "1_step", "n", at=300) == 130
    assert metric(result.rows, "month", "1_step", "n", at=300) == 300
    assert metric(result.rows, "month", "1_hour", "n", at=300) == 297  # targets W[4..300]
    assert metric(result.rows, "month", "1_day", "n", at=300) == 275  # targets W[26..300]
    assert metric(result.rows, "month", "1_week", "n", at=300) == 171  # targets W[130..300]
    assert metric(result.rows, "week", "1_week", "n", at=300) == 130
    # MSFT's validations stay MSFT's: its MAE is 100, AAPL's 1.
    assert metric(result.rows, "week", "1_step", "mae", symbol="MSFT") == pytest.approx(100.0)
    assert (result.rows.loc[result.rows["symbol"] == "AAPL", "mae"] == 1.0).all()
    assert set(result.rows.loc[result.rows["symbol"] == "MSFT", "horizon_bucket"]) == {"1_step"}


def test_skill_only_gives_the_same_mase_p_values_and_skipped_pairs_as_the_full_metrics():
    rng = np.random.default_rng(4)
    rows = [validation(origin, step, predicted=100.0 + rng.normal(), last=100.0 + rng.normal(),
                       status="invalid" if origin % 17 == 0 else "valid")
            for origin in range(0, 330) for step in (1, 4, 26, 130) if origin + step <= 330]
    rows += [validation(origin, 1, symbol="MSFT", predicted=200.0) for origin in range(200, 330)]
    wanted = as_of(*((symbol, index) for symbol in ("AAPL", "MSFT") for index in (0, 150, 250, 330)))
    full = accuracy_metrics(pd.DataFrame(rows), wanted)
    skill = accuracy_metrics(pd.DataFrame(rows), wanted, skill_only=True)
    keys = ["symbol", "window_start", "span", "horizon_bucket", "n", "mase", "skill_p_value"]
    assert list(skill.rows.columns) == keys
    pd.testing.assert_frame_equal(skill.rows, full.rows[keys], check_exact=True)
    assert skill.rows["skill_p_value"].notna().any()
    pd.testing.assert_frame_equal(skill.skipped, full.skipped)
    assert full.skipped[["symbol", "window_start"]].values.tolist() == [["AAPL", W[0]], ["MSFT", W[0]],
                                                                         ["MSFT", W[150]]]


def test_the_1_week_bucket_is_the_same_wall_clock_time_a_week_later():
    frame = pd.DataFrame([validation(0, 130), validation(0, 129)] + [validation(3, step) for step in (26, 4, 1)])
    assert horizon_buckets(frame).tolist() == ["1_week", None, "1_day", "1_hour", "1_step"]
    # Across the 4th of July the same wall-clock time a week later is fewer than 130 steps away.
    holiday = session_windows("2025-06-30", "2025-07-09")
    as_of_window = holiday[0]
    target = holiday[holiday == as_of_window + pd.Timedelta(days=7)][0]
    step = int(np.flatnonzero(holiday == target)[0])
    assert step < 130
    crossing = pd.DataFrame({"horizon_step": [step], "as_of_window": [as_of_window], "target_window": [target]})
    assert horizon_buckets(crossing).tolist() == ["1_week"]


@pytest.mark.parametrize(("earlier_error", "later_error", "trend"), [(2.0, 1.0, -1.0), (1.0, 3.0, 2.0)])
def test_mase_trend_is_this_span_minus_the_span_before(earlier_error, later_error, trend):
    # Naive misses by 1 everywhere; the model misses by earlier_error on targets W[1..25], later_error after.
    rows = [
        validation(origin, 1, predicted=100.0 + (earlier_error if origin + 1 <= 25 else later_error))
        for origin in range(0, 51)
    ]
    result = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 51)))
    # As of W[51] the day span is W[26..51]; the one before, W[0..25], holds targets W[1..25].
    assert metric(result.rows, "day", "1_step", "mase") == pytest.approx(later_error)
    assert metric(result.rows, "day", "1_step", "mase_trend") == pytest.approx(trend)
    # The week span has nothing before it: no trend.
    assert math.isnan(metric(result.rows, "week", "1_step", "mase_trend"))


def test_trade_metrics_count_the_trades_scored_in_the_span():
    rows = [validation(origin, 1) for origin in range(0, 60)]
    outcomes = pd.DataFrame(
        {
            "symbol": ["AAPL", "AAPL", "AAPL", "AAPL", "AAPL", "AAPL", "MSFT"],
            "as_of_window": W[[1, 2, 3, 4, 5, 6, 7]],
            "scored_window": W[[50, 55, 60, 60, 61, 10, 60]],
            "action": ["buy", "buy", "short", "none", "buy", "buy", "buy"],
            "realized_return_pct": [1.0, 2.0, -0.5, None, 9.0, 9.0, 9.0],
            "hit": [True, True, False, None, True, True, True],
        }
    )
    result = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 60)), trade_outcomes=outcomes)
    # Day span W[35..60]: three trades (the "none" row, the one scored after W[60], the one at W[10], MSFT's: out).
    assert metric(result.rows, "day", "1_step", "trade_success_rate") == pytest.approx(2 / 3)
    assert metric(result.rows, "day", "1_step", "mean_trade_return_pct") == pytest.approx(2.5 / 3)
    assert metric(result.rows, "week", "1_step", "trade_success_rate") == pytest.approx(3 / 4)


def test_empty_inputs_give_no_rows_and_say_why_instead_of_crashing():
    wanted = as_of(("AAPL", 30), ("MSFT", 31))
    nothing = accuracy_metrics(pd.DataFrame(columns=list(validation(0, 1))), wanted, None, pd.DataFrame())
    assert nothing.rows.empty and list(nothing.rows.columns) == list(ROW_COLUMNS)
    assert nothing.skipped[["symbol", "window_start"]].values.tolist() == wanted.values.tolist()
    assert nothing.skipped["reason"].str.contains("no validated forecast of AAPL").iloc[0]

    none_wanted = accuracy_metrics(pd.DataFrame([validation(0, 1)]), wanted.iloc[:0])
    assert none_wanted.rows.empty and none_wanted.skipped.empty

    only_invalid = accuracy_metrics(pd.DataFrame([validation(29, 1, status="invalid")]), wanted)
    assert only_invalid.rows.empty and len(only_invalid.skipped) == 2

    # A naive forecast with no error: MASE is unknown, not infinite.
    exact_naive = accuracy_metrics(pd.DataFrame([validation(29, 1, last=100.0)]), wanted.iloc[:1])
    assert math.isnan(metric(exact_naive.rows, "day", "1_step", "mase"))
    assert metric(exact_naive.rows, "day", "1_step", "mae") == 1.0
    # Still unknown when earlier targets had naive errors: the span's naive error is zero, not rounding noise.
    rows = [validation(o, 1, actual=100.0 + 0.1 * o, last=99.0 if o < 100 else 100.0 + 0.1 * o) for o in range(130)]
    later = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 130)))
    assert math.isnan(metric(later.rows, "day", "1_step", "mase"))
    assert metric(later.rows, "month", "1_step", "mase") > 0


def test_error_by_confidence_level_orders_levels_and_keeps_unscored_forecasts():
    rows = [validation(origin, 1, predicted=100.5 if origin % 2 else 103.0) for origin in range(0, 20)]
    forecasts = pd.DataFrame(
        {
            "symbol": "AAPL",
            "as_of_window": W[0:20],
            "target_window": W[1:21],
            "confidence_level": ["High" if origin % 2 else "Low" for origin in range(20)],
        }
    )
    forecasts.loc[0, "confidence_level"] = None
    table = error_by_confidence(pd.DataFrame(rows), forecasts)
    assert table["confidence_level"].tolist() == ["Low", "High", "unscored"]
    assert table["n"].tolist() == [9, 10, 1]
    assert table["mase"].tolist() == pytest.approx([3.0, 0.5, 3.0])
    assert confidence_separates(table) is True
    assert confidence_separates(error_by_confidence(pd.DataFrame(rows), None)) is None


def test_baseline_band_columns_score_the_bands_on_the_same_origins_and_targets():
    rows = [validation(26, 1, actual=100.0), validation(27, 1, actual=104.0), validation(28, 4, actual=100.0)]
    bands = pd.DataFrame(
        {
            "symbol": "AAPL",
            "as_of_window": [W[26], W[27], W[28]],
            "target_window": [W[27], W[28], W[32]],
            # naive: [99, 101] / [98, 102] around each; tod: NaN for the step-4 pair (still warming up).
            "naive_lower_80": 99.0, "naive_upper_80": 101.0, "naive_lower_95": 98.0, "naive_upper_95": 102.0,
            "tod_lower_80": [99.5, 99.5, np.nan], "tod_upper_80": [100.5, 100.5, np.nan],
            "tod_lower_95": [99.0, 99.0, np.nan], "tod_upper_95": [101.0, 101.0, np.nan],
        }
    )
    result = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 40)), bands=bands).rows
    assert metric(result, "day", "1_step", "naive_band_coverage_80") == pytest.approx(0.5)
    # Winkler 80: width 2, plus 2 / 0.2 x 3 for the actual 104 above 101.
    assert metric(result, "day", "1_step", "naive_band_winkler_80") == pytest.approx((2.0 + 2.0 + 30.0) / 2)
    assert metric(result, "day", "1_step", "tod_band_winkler_95") == pytest.approx((2.0 + 2.0 + 40.0 * 3.0) / 2)
    assert metric(result, "day", "1_hour", "naive_band_coverage_95") == pytest.approx(1.0)
    assert math.isnan(metric(result, "day", "1_hour", "tod_band_coverage_80"))  # no band, no figure
    without = accuracy_metrics(pd.DataFrame(rows), as_of(("AAPL", 40))).rows
    assert without["naive_band_coverage_80"].isna().all()


def test_filtered_inputs_with_their_own_index_join_row_by_row():
    rows = pd.DataFrame([validation(26, 1, actual=100.0), validation(27, 1, actual=100.0)], index=[7, 3])
    forecasts = pd.DataFrame(
        {"symbol": "AAPL", "as_of_window": [W[27], W[26]], "target_window": [W[28], W[27]],
         "lower_80": [99.0, 98.0], "upper_80": [101.0, 99.0], "lower_95": [97.0, 97.0], "upper_95": [103.0, 103.0]},
        index=[5, 9],
    )
    result = accuracy_metrics(rows, as_of(("AAPL", 40)), forecasts).rows
    # W[26] -> [98, 99]: width 1 + 10 x 1 outside; W[27] -> [99, 101]: width 2.
    assert metric(result, "day", "1_step", "winkler_80") == pytest.approx((11.0 + 2.0) / 2)


def test_history_start_reaches_back_two_month_spans():
    # The month span and the month before it: 1092 session windows ending with the as-of window.
    first = W[600]
    assert len(session_windows(history_start(first), first + WINDOW)) == 2 * 546


# ----------------------------------------------------------------------------------------------- the asset

SYMBOLS = ["AAPL", "MSFT"]
STEPS = 130


def store_history(store, windows: pd.DatetimeIndex, forecast_origins: int) -> None:
    """Bars, week-ahead predictions as of the first ``forecast_origins`` windows (predicted = last close + 0.1%,
    80% band +-0.5%), their validations for every target with a bar, and two scored trades."""
    bars = pd.concat([simulate_bars(symbol, windows, seed=11) for symbol in SYMBOLS], ignore_index=True)
    store.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
    close = bars.set_index(["symbol", "window_start"])["close"]
    predictions, validations = [], []
    for symbol in SYMBOLS:
        for origin in range(forecast_origins):
            last = float(close[(symbol, windows[origin])])
            targets = windows[origin + 1: origin + 1 + STEPS]
            predicted = last * 1.001
            predictions.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "as_of_window": windows[origin],
                        "horizon_step": np.arange(1, len(targets) + 1),
                        "target_window": targets,
                        "predicted_close": predicted,
                        "lower_80": predicted * 0.995,
                        "upper_80": predicted * 1.005,
                        "lower_95": predicted * 0.99,
                        "upper_95": predicted * 1.01,
                        "last_close": last,
                        "forecast_mode": "recursive",
                        "model_version": "v1",
                        "confidence_level": "Medium",
                    }
                )
            )
    predictions = pd.concat(predictions, ignore_index=True)
    partitions = predictions[["symbol", "as_of_window"]].drop_duplicates().itertuples(index=False)
    store.replace_forecasts(predictions, pd.DataFrame(), partitions)
    judged = predictions.merge(
        bars[["symbol", "window_start", "close"]].rename(columns={"window_start": "target_window"}),
        on=["symbol", "target_window"],
    )
    actual = judged["close"]
    error = 100.0 * (judged["predicted_close"] - actual) / actual
    validations = judged.assign(
        actual_close=actual,
        error_pct=error,
        abs_error_pct=error.abs(),
        naive_abs_error_pct=100.0 * (judged["last_close"] - actual).abs() / actual,
        inside_80=(actual >= judged["lower_80"]) & (actual <= judged["upper_80"]),
        inside_95=(actual >= judged["lower_95"]) & (actual <= judged["upper_95"]),
        status="valid",
    )[
        ["symbol", "target_window", "as_of_window", "horizon_step", "model_version", "predicted_close",
         "actual_close", "last_close", "error_pct", "abs_error_pct", "naive_abs_error_pct", "inside_80",
         "inside_95", "status"]
    ]
    outcomes = pd.DataFrame(
        {
            "symbol": ["AAPL", "AAPL"],
            "as_of_window": windows[[10, 20]],
            "scored_window": windows[[140, 150]],
            "action": ["buy", "buy"],
            "realized_return_pct": [1.0, -1.0],
            "hit": [True, False],
        }
    )
    store.replace_tables(
        {
            "validations": (validations[["symbol", "target_window"]].drop_duplicates(), validations),
            "trade_outcomes": (outcomes[["symbol", "scored_window"]], outcomes),
        }
    )


def test_asset_stores_every_span_and_bucket_of_the_run_and_shows_a_plot(instance, store, monkeypatch):
    keys = register_windows(instance, "2025-07-07", "2025-07-26")
    windows = session_windows("2025-07-07", "2025-07-26")
    store_history(store, windows, forecast_origins=156)
    run_keys = keys[150:156]

    def run():
        return materialize(
            [accuracy_metrics_asset], instance=instance, tags=range_tags(SYMBOLS, run_keys),
            resources={"store": store},
        )

    result = run()
    assert result.success
    stored = store.read_rows("accuracy_metrics")
    # 2 symbols x 6 windows x 3 spans x 4 buckets, every one with validations (W[150] has 1_week targets from 20).
    assert len(stored) == 2 * 6 * 3 * 4
    assert set(stored["window_start"]) == set(windows[150:156])
    week_step = stored[(stored["symbol"] == "AAPL") & (stored["window_start"] == windows[155])
                       & (stored["span"] == "week") & (stored["horizon_bucket"] == "1_step")].iloc[0]
    assert week_step["n"] == 130
    assert 0.0 < week_step["mase"] < 10.0 and 0.0 <= week_step["coverage_80"] <= 1.0
    # Each interval is centred on its forecast, so its Winkler score is never below the forecast's absolute error.
    assert week_step["winkler_80"] >= week_step["mae"]
    assert week_step["trade_success_rate"] == pytest.approx(0.5)
    assert week_step["mean_trade_return_pct"] == pytest.approx(0.0)
    # The baseline bands, walk-forward over the stored bars, on the same validated origins and targets; after six
    # sessions of bars the time-of-day band (five sessions per slot, then 50 realized errors) is still warming up.
    assert 0.5 < week_step["naive_band_coverage_80"] <= week_step["naive_band_coverage_95"] <= 1.0
    assert 0.0 < week_step["naive_band_winkler_80"] < week_step["naive_band_winkler_95"]
    assert math.isnan(week_step["tod_band_coverage_80"]) and math.isnan(week_step["tod_band_winkler_95"])

    metadata = result.asset_materializations_for_node("accuracy_metrics")[0].metadata
    assert metadata["rows"].value == len(stored)
    assert metadata["symbol_windows_without_metrics"].value == 0
    assert "| AAPL | 2025-07-" in metadata["latest_week_metrics"].value
    assert "| Medium |" in metadata["error_by_confidence"].value
    plot = metadata["accuracy_plot"].value
    prefix = "![AAPL accuracy](data:image/png;base64,"
    assert plot.startswith(prefix)
    assert base64.b64decode(plot[len(prefix):-1]).startswith(b"\x89PNG")

    # A re-run replaces its partitions: nothing duplicated.
    assert run().success
    assert len(store.read_rows("accuracy_metrics")) == len(stored)

    # A run of more symbol-windows than the plot's limit (a backfill) draws none: Dagster would copy the image onto
    # every partition's event.
    monkeypatch.setattr("lstm_pipeline.assets.accuracy_metrics.MAX_PLOT_PARTITIONS", len(run_keys) * 2 - 1)
    backfill = run()
    assert backfill.success
    events = backfill.asset_materializations_for_node("accuracy_metrics")
    assert len(events) == len(run_keys) * 2
    assert all(event.metadata["accuracy_plot"].value.startswith("not drawn for a run of 12 symbol-windows")
               for event in events)
