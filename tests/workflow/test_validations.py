"""validations: each stored forecast of a window judged against its actual close (threshold AND own 95% band), bad
bars invalid, missing bars left for later; vectorized over a whole run; the asset validates the right targets and
re-runs replace rows exactly."""

import numpy as np
import pandas as pd
import pytest
from dagster import materialize

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.market_bars_checks import market_bars_quality
from lstm_pipeline.assets.predictions import predictions
from lstm_pipeline.assets.validations import validations
from lstm_pipeline.evaluation.validation import (
    AWAITING_CHECKS_REASON,
    INVALID,
    NEEDS_REPREDICTION,
    NO_BAR_YET,
    VALID,
    VALIDATION_COLUMNS,
    horizon_bucket,
    judge_predictions,
    validate_predictions,
)
from lstm_pipeline.market.calendar import NEW_YORK, parse_window_key
from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.resources.model_store import LocalModelStore
from tests.forecasting.conftest import saved_model, sim_bars, tiny_config
from tests.helpers import range_tags, register_windows

NY = NEW_YORK
TARGET = pd.Timestamp("2025-07-07 10:00", tz=NY)


def prediction(step: int, predicted: float, lower_95: float, upper_95: float, target=TARGET, **extra) -> dict:
    row = {
        "symbol": "AAPL",
        "as_of_window": target - pd.Timedelta(minutes=15 * step),
        "horizon_step": step,
        "target_window": target,
        "predicted_close": predicted,
        "lower_80": (predicted + lower_95) / 2,
        "upper_80": (predicted + upper_95) / 2,
        "lower_95": lower_95,
        "upper_95": upper_95,
        "last_close": 98.0,
        "model_version": "v1",
    }
    return row | extra


def bar(close: float, window=TARGET, symbol="AAPL") -> dict:
    return {"symbol": symbol, "window_start": window, "close": close}


def judged(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.set_index("horizon_step").sort_index()


# ------------------------------------------------------------------------------------------------- the pure function


def test_status_needs_both_the_threshold_and_the_prediction_s_own_95_band():
    frame = pd.DataFrame(
        [
            prediction(1, 101.0, 99.0, 102.0),  # +1%: under the threshold, inside the band
            prediction(2, 100.5, 100.2, 100.8),  # +0.5%: outside a narrow band, but under the threshold
            prediction(3, 103.0, 95.0, 110.0),  # +3%: over the threshold, inside a wide band
            prediction(4, 103.0, 101.0, 105.0),  # +3%: over the threshold and outside the band
            prediction(5, 97.0, 96.0, 98.0),  # -3%: the same below
            prediction(6, 103.0, np.nan, np.nan),  # no interval: the threshold alone decides
            prediction(7, 102.0, 101.0, 103.0),  # exactly 2%: does not exceed the threshold
        ]
    )
    rows, not_validated = validate_predictions(frame, pd.DataFrame([bar(100.0)]), None, 0.02)
    assert not_validated.empty
    out = judged(rows)
    assert out["status"].to_dict() == {
        1: VALID, 2: VALID, 3: VALID, 4: NEEDS_REPREDICTION, 5: NEEDS_REPREDICTION, 6: NEEDS_REPREDICTION, 7: VALID,
    }
    assert "within the 2% validation threshold" in out.loc[2, "status_reason"]
    assert "inside the prediction's 95% interval [95.0, 110.0]" in out.loc[3, "status_reason"]
    assert out.loc[4, "status_reason"] == (
        "Error +3.0% exceeds the 2% threshold and the actual close 100.0 lies outside the prediction's 95% interval "
        "[101.0, 105.0]."
    )
    assert out.loc[5, "status_reason"].startswith("Error -3.0% exceeds")
    assert "no 95% interval" in out.loc[6, "status_reason"]
    # A looser threshold lets the same miss through: both conditions are needed.
    loose = judged(validate_predictions(frame, pd.DataFrame([bar(100.0)]), None, 0.05).rows)
    assert (loose["status"] == VALID).all()


def test_errors_naive_error_and_interval_flags():
    frame = pd.DataFrame(
        [
            prediction(1, 103.0, 101.0, 105.0),  # 80%: [102, 104]
            prediction(2, 99.0, 97.0, 101.0),  # 80%: [98, 100] holds 100
            prediction(3, 103.0, 101.0, 105.0, lower_80=np.nan),
        ]
    )
    rows = validate_predictions(frame, pd.DataFrame([bar(100.0)]), None, 0.02).rows
    assert list(rows.columns) == list(VALIDATION_COLUMNS)
    out = judged(rows)
    np.testing.assert_allclose(out["error_pct"], [3.0, -1.0, 3.0])
    np.testing.assert_allclose(out["abs_error_pct"], [3.0, 1.0, 3.0])
    np.testing.assert_allclose(out["naive_abs_error_pct"], [2.0, 2.0, 2.0])  # |98 - 100| / 100
    np.testing.assert_allclose(out["actual_close"], 100.0)
    assert out["inside_80"].tolist()[:2] == [False, True] and pd.isna(out.loc[3, "inside_80"])
    assert out["inside_95"].tolist() == [False, True, False]
    assert out["as_of_window"].tolist() == [TARGET - pd.Timedelta(minutes=15 * step) for step in (1, 2, 3)]
    assert (out["target_window"] == TARGET).all() and (out["model_version"] == "v1").all()


def test_a_bad_target_bar_makes_every_forecast_of_it_invalid_and_a_missing_one_waits():
    later = [TARGET + pd.Timedelta(minutes=15 * k) for k in range(1, 6)]
    frame = pd.DataFrame(
        [
            prediction(1, 101.0, 99.0, 102.0),  # its bar was rejected by a blocking check
            prediction(2, 101.0, 99.0, 102.0),
            prediction(1, 101.0, 99.0, 102.0, target=later[0]),  # close is not positive
            prediction(1, 101.0, 99.0, 102.0, target=later[1]),  # close is NaN
            prediction(1, 101.0, 99.0, 102.0, target=later[2]),  # no bar yet
            prediction(1, 101.0, 99.0, 102.0, target=later[3]),  # bar stored, awaiting its checks
            prediction(1, 130.0, 120.0, 140.0, target=later[4]),  # a usable bar
        ]
    )
    actual = pd.DataFrame([bar(0.0, later[0]), bar(np.nan, later[1]), bar(100.0, later[4])])
    rejected = pd.DataFrame(
        [
            bar(100.0) | {"rejected_check": "high_low_bounds", "rejected_reason": "high 99.0 is below close 100.0."},
            bar(100.0, later[3]) | {"rejected_check": "awaiting_checks", "rejected_reason": "written by market_bars"},
        ]
    )
    rows, not_validated = validate_predictions(frame, actual, rejected, 0.02)
    by_target = rows.set_index(["target_window", "horizon_step"]).sort_index()
    assert by_target["status"].tolist() == [INVALID, INVALID, INVALID, INVALID, NEEDS_REPREDICTION]
    rejected_reason = by_target.loc[(TARGET, 1), "status_reason"]
    assert rejected_reason.startswith(
        "The actual bar was rejected by the blocking check high_low_bounds (high 99.0 is below close 100.0), so it "
        "cannot judge this forecast; repair the bar"
    )
    assert "is not positive" in by_target.loc[(later[0], 1), "status_reason"]
    assert "missing or not finite" in by_target.loc[(later[1], 1), "status_reason"]
    invalid = rows[rows["status"] == INVALID]
    assert invalid[["error_pct", "abs_error_pct", "naive_abs_error_pct"]].isna().all().all()
    assert invalid["inside_80"].isna().all() and invalid["inside_95"].isna().all()
    assert by_target.loc[(TARGET, 1), "actual_close"] == 100.0  # the rejected bar's close, kept for inspection
    assert not_validated[["target_window", "reason"]].values.tolist() == [
        [later[2], NO_BAR_YET],
        [later[3], AWAITING_CHECKS_REASON],
    ]


def test_judging_without_sentences_gives_the_same_rows_and_writes_them_later_on_any_thread():
    """The backtest judges first and writes a year's sentences on its second core: the rows are the validations'
    but the last column, and the function beside them writes that column exactly as validate_predictions does."""
    from concurrent.futures import ThreadPoolExecutor

    later, rejected_at = TARGET + pd.Timedelta(minutes=15), TARGET + pd.Timedelta(minutes=30)
    frame = pd.DataFrame(
        [
            prediction(2, 101.5, 101.2, 102.0),  # beyond the threshold, outside its band
            prediction(3, 101.5, 99.0, 103.0),  # beyond the threshold, inside its band
            prediction(4, 101.5, np.nan, np.nan),  # beyond the threshold, no band
            prediction(5, 100.5, 99.0, 102.0),  # within the threshold
            prediction(1, 101.0, 99.0, 102.0, target=later),  # close not positive
            prediction(1, 101.0, 99.0, 102.0, target=rejected_at),  # rejected bar
        ]
    )
    actual = pd.DataFrame([bar(100.0), bar(0.0, later)])
    rejected = pd.DataFrame([bar(100.0, rejected_at) | {"rejected_check": "high_low_bounds",
                                                         "rejected_reason": "high below close."}])
    whole = validate_predictions(frame, actual, rejected, 0.01)
    judged, sentences = judge_predictions(frame, actual, rejected, 0.01)
    assert list(judged.rows.columns) == list(VALIDATION_COLUMNS[:-1])
    with ThreadPoolExecutor(max_workers=1) as pool:
        written = pool.submit(sentences).result()
    pd.testing.assert_frame_equal(judged.rows.assign(status_reason=written), whole.rows, check_exact=True)
    pd.testing.assert_frame_equal(judged.not_validated, whole.not_validated)
    reasons = whole.rows.set_index(["target_window", "horizon_step"]).sort_index()["status_reason"]
    assert "lies outside" in reasons.loc[(TARGET, 2)] and "lies inside" in reasons.loc[(TARGET, 3)]
    assert "no 95% interval" in reasons.loc[(TARGET, 4)] and "within the 1%" in reasons.loc[(TARGET, 5)]
    assert "is not positive" in reasons.loc[(later, 1)] and "high_low_bounds" in reasons.loc[(rejected_at, 1)]


def test_bars_match_by_symbol_and_instant_whatever_the_zone():
    frame = pd.DataFrame([prediction(1, 101.0, 99.0, 102.0), prediction(1, 101.0, 99.0, 102.0, symbol="MSFT")])
    utc_bars = pd.DataFrame([bar(100.0, TARGET.tz_convert("UTC"), "MSFT")])
    rows, not_validated = validate_predictions(frame, utc_bars, None, 0.02)
    assert rows["symbol"].tolist() == ["MSFT"] and not_validated["symbol"].tolist() == ["AAPL"]
    assert str(rows["target_window"].dt.tz) == NY


def test_a_threshold_that_is_not_a_fraction_is_refused_in_one_sentence():
    frame = pd.DataFrame([prediction(1, 101.0, 99.0, 102.0)])
    with pytest.raises(ValueError, match=r"validation_threshold is 2.0 but must be a fraction between 0 and 1"):
        validate_predictions(frame, pd.DataFrame([bar(100.0)]), None, 2.0)
    with pytest.raises(ValueError, match=r"lack column\(s\) \['close'\]"):
        validate_predictions(frame, pd.DataFrame({"symbol": ["AAPL"], "window_start": [TARGET]}), None, 0.02)


def test_horizon_buckets_follow_the_vocabulary():
    buckets = horizon_bucket(pd.Series([1, 2, 4, 26, 27, 125, 126, 130]))
    assert buckets.tolist() == ["1_step", None, "1_hour", "1_day", None, None, "1_week", "1_week"]


def test_a_hundred_thousand_predictions_in_one_call_match_a_row_by_row_reference():
    rng = np.random.default_rng(3)
    count = 100_000
    targets = pd.date_range("2025-07-07 09:30", periods=1_000, freq="15min", tz=NY)
    symbols = np.array(["AAPL", "MSFT", "TSLA", "AMZN"])
    actual = pd.DataFrame(
        {
            "symbol": np.repeat(symbols, len(targets)),
            "window_start": np.tile(targets, len(symbols)),
            "close": 100.0 * np.exp(rng.normal(0, 0.02, len(symbols) * len(targets))),
        }
    )
    pick = rng.integers(0, len(actual), count)
    step = rng.integers(1, 131, count)
    predicted = actual["close"].to_numpy()[pick] * np.exp(rng.normal(0, 0.02, count))
    width = 0.002 * np.sqrt(step) * predicted * 1.96
    frame = pd.DataFrame(
        {
            "symbol": actual["symbol"].to_numpy()[pick],
            "as_of_window": pd.DatetimeIndex(actual["window_start"])[pick] - pd.to_timedelta(15 * step, unit="min"),
            "horizon_step": step,
            "target_window": pd.DatetimeIndex(actual["window_start"])[pick],
            "predicted_close": predicted,
            "lower_80": predicted - width * 0.65,
            "upper_80": predicted + width * 0.65,
            "lower_95": predicted - width,
            "upper_95": predicted + width,
            "last_close": actual["close"].to_numpy()[pick] * np.exp(rng.normal(0, 0.01, count)),
            "model_version": "v1",
        }
    ).drop_duplicates(["symbol", "as_of_window", "horizon_step"])
    rows, not_validated = validate_predictions(frame, actual, None, 0.02)
    assert len(rows) == len(frame) and not_validated.empty
    counts = rows["status"].value_counts()
    assert set(counts.index) == {VALID, NEEDS_REPREDICTION}  # both statuses occur at this spread

    sample = rows.sample(300, random_state=1)
    for row in sample.itertuples():
        error = 100 * (row.predicted_close - row.actual_close) / row.actual_close
        original = frame[(frame["symbol"] == row.symbol) & (frame["as_of_window"] == row.as_of_window)
                         & (frame["horizon_step"] == row.horizon_step)].iloc[0]
        outside = not (original["lower_95"] <= row.actual_close <= original["upper_95"])
        expected = NEEDS_REPREDICTION if abs(error) > 2.0 and outside else VALID
        assert row.status == expected and row.error_pct == pytest.approx(error)
        assert row.actual_close == pytest.approx(
            actual.set_index(["symbol", "window_start"]).loc[(row.symbol, row.target_window), "close"]
        )


# ------------------------------------------------------------------------------------------------------ the asset

SYMBOLS = ["AAPL", "MSFT"]


@pytest.fixture
def models_dir(tmp_path):
    folder = tmp_path / "models"
    for symbol in SYMBOLS:
        training_bars = sim_bars(symbol, "2025-06-02", "2025-06-20")
        saved_model(folder, symbol, tiny_config(symbol, "recursive"), seed=1, bars=training_bars)
    return folder


def test_the_chain_validates_every_stored_forecast_of_each_window_and_re_runs_add_nothing(
    instance, store, models_dir
):
    history = pd.concat([sim_bars(symbol, "2025-06-30", "2025-07-07", seed=7) for symbol in SYMBOLS])
    store.replace_bars(history, zip(history["symbol"], history["window_start"], strict=True))
    keys = register_windows(instance, "2025-07-07", "2025-07-09")
    resources = {
        "store": store,
        "market_data": SimulatedMarketData(seed=7),
        "model_store": LocalModelStore(models_dir=str(models_dir)),
    }
    tags = range_tags(SYMBOLS, keys)
    first = materialize(
        [market_bars, market_bars_quality, predictions, validations], instance=instance, tags=tags,
        resources=resources,
    )
    assert first.success

    rows = store.read_rows("validations")
    windows = [parse_window_key(key) for key in keys]
    # Target W of the run is forecast by every as-of window of the run before it (all within the week ahead).
    per_target = rows.groupby(["symbol", "target_window"]).size()
    expected = pd.Series(
        {(symbol, window): index for symbol in SYMBOLS for index, window in enumerate(windows) if index},
    )
    assert per_target.sort_index().to_dict() == expected.sort_index().to_dict()
    stored = store.read_predictions()
    merged = rows.merge(stored, on=["symbol", "as_of_window", "horizon_step"], suffixes=("", "_prediction"))
    assert len(merged) == len(rows) and (merged["target_window"] == merged["target_window_prediction"]).all()
    assert (merged["model_version"] == merged["model_version_prediction"]).all()
    bars = store.read_bars(symbols=SYMBOLS).rename(columns={"window_start": "target_window"})
    with_bars = rows.merge(bars[["symbol", "target_window", "close"]], on=["symbol", "target_window"])
    assert len(with_bars) == len(rows)
    np.testing.assert_allclose(with_bars["actual_close"], with_bars["close"])
    assert set(rows["status"]) <= {VALID, NEEDS_REPREDICTION}
    assert rows["validated_at"].notna().all()
    metadata = {key: value.value for key, value in first.asset_materializations_for_node("validations")[0]
                .metadata.items()}
    assert metadata["rows"] == len(rows) and sum(metadata["status_counts"].values()) == len(rows)

    # A bar rejected after the fact: re-validating its window marks each forecast of it invalid, nothing added.
    bad_window = windows[30]
    store.reject_bars(pd.DataFrame(
        [{"symbol": "AAPL", "window_start": bad_window, "check_name": "close_positive", "reason": "close is -1."}]
    ))
    again = materialize([validations], instance=instance, tags=tags, resources=resources)
    assert again.success
    after = store.read_rows("validations")
    key = ["symbol", "target_window", "as_of_window"]
    assert len(after) == len(rows) and not after.duplicated(key).any()
    hit = (after["symbol"] == "AAPL") & (after["target_window"] == bad_window)
    assert hit.sum() == 30 and (after.loc[hit, "status"] == INVALID).all()
    assert after.loc[hit, "status_reason"].str.contains("blocking check close_positive").all()
    untouched = after[~hit].drop(columns="validated_at").reset_index(drop=True)
    assert untouched.equals(rows[~hit.to_numpy()].drop(columns="validated_at").reset_index(drop=True))
